//! What the multi-process end-to-end tests share: finding Redis, livekit-server and the Python
//! SDK (failing under CI when one is missing, skipping with a note otherwise), starting
//! `callfleet` subcommands as child processes that die with the test, and reading their output.

#![allow(dead_code)]

pub mod caller;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

#[derive(Clone)]
pub struct Env {
    pub redis: String,
    pub livekit: String,
    pub python: PathBuf,
}

/// `None` (after a note) when a piece is missing outside CI; a panic under CI.
pub fn missing<T>(test: &str, what: &str) -> Option<T> {
    if std::env::var_os("CI").is_some() {
        panic!("{what} (CI is set, so this end-to-end test fails instead of skipping)");
    }
    eprintln!("note: skipping the {test} test: {what}");
    None
}

pub fn env(test: &str) -> Option<Env> {
    let Some(redis) = std::env::var("CALLFLEET_TEST_REDIS_URL")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        return missing(test, "CALLFLEET_TEST_REDIS_URL is not set");
    };
    let livekit =
        std::env::var("CALLFLEET_LIVEKIT_URL").unwrap_or_else(|_| "ws://127.0.0.1:7880".into());
    let host_port = livekit
        .split("://")
        .nth(1)
        .unwrap_or(&livekit)
        .trim_end_matches('/')
        .to_string();
    let reachable = host_port.parse().ok().is_some_and(|addr| {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
    });
    if !reachable {
        return missing(test, &format!("no livekit-server answers at {livekit}"));
    }
    let python = std::env::var_os("CALLFLEET_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/callfleet/venv/bin/python")
        });
    if !python.exists() {
        return missing(
            test,
            &format!("no Python with the LiveKit SDK at {}", python.display()),
        );
    }
    Some(Env {
        redis,
        livekit,
        python,
    })
}

/// Kills the child when the test ends, however it ends.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

impl Proc {
    pub fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("bound")
        .port()
}

/// A redis-server of a test's own on loopback, with an append-only file fsynced on every write,
/// so that killing and restarting it (a fault the test injects) loses nothing it acknowledged.
pub struct AofRedis {
    dir: tempfile::TempDir,
    port: u16,
    process: Option<Proc>,
}

impl AofRedis {
    pub fn start() -> AofRedis {
        let mut redis = AofRedis {
            dir: tempfile::tempdir().expect("temp dir"),
            port: free_port(),
            process: None,
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again, on the same port and files) and waits until it accepts connections.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test-services.sh installs it)");
        self.process = Some(Proc(child));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.process = None;
    }
}

/// Starts `callfleet ARGS` against the test's Redis (under `prefix`) and livekit-server, with
/// stderr going to `log` and `extra` added to its environment.
pub fn callfleet(
    args: &[&str],
    data: &Path,
    env: &Env,
    prefix: &str,
    log: &Path,
    extra: &[(&str, String)],
) -> Proc {
    let mut command = Command::new(env!("CARGO_BIN_EXE_callfleet"));
    command
        .args(args)
        .env("CALLFLEET_DATA", data)
        .env("CALLFLEET_ADMIN_KEY", "e2e-admin")
        .env("REDIS_URL", &env.redis)
        .env("CALLFLEET_REDIS_PREFIX", prefix)
        .env("LIVEKIT_URL", &env.livekit)
        .env(
            "LIVEKIT_API_KEY",
            std::env::var("CALLFLEET_LIVEKIT_API_KEY").unwrap_or_else(|_| "devkey".into()),
        )
        .env(
            "LIVEKIT_API_SECRET",
            std::env::var("CALLFLEET_LIVEKIT_API_SECRET").unwrap_or_else(|_| "secret".into()),
        )
        // The test livekit-server is a development one (`--dev`, devkey/secret).
        .env("CALLFLEET_ALLOW_DEV_SECRET", "1")
        .env("RUST_LOG", "info,sqlx=warn")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"));
    for (name, value) in extra {
        command.env(name, value);
    }
    Proc(command.spawn().expect("start callfleet"))
}

/// A fleet's control plane as processes: `callfleet api` and `callfleet dispatcher` on one data
/// dir and one Redis prefix, each logging to `NAME.log` in the test's directory. Workers are
/// started with [`Stack::agent`] (or any subcommand with [`Stack::spawn`]); every process dies
/// with the test.
pub struct Stack {
    pub env: Env,
    dir: PathBuf,
    pub data: PathBuf,
    /// The Redis key prefix this stack's processes share (so tests never see each other's keys).
    pub prefix: String,
    /// The admin API's base URL.
    pub base: String,
    pub api: Proc,
    pub dispatcher: Proc,
}

impl Stack {
    /// Starts the API and the dispatcher (listening on `dispatcher_addr`; `127.0.0.1:0` when
    /// nothing needs its address), both with `extra` in their environment, and waits for the
    /// API's address. `tag` names the stack in its Redis prefix.
    pub fn start(
        env: &Env,
        dir: &Path,
        tag: &str,
        dispatcher_addr: &str,
        extra: &[(&str, String)],
    ) -> Stack {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let prefix = format!("{tag}:{}:{nanos}:", std::process::id());
        let data = dir.join("data");
        let log = |name: &str| dir.join(format!("{name}.log"));
        let args = ["api", "--http-addr", "127.0.0.1:0"];
        let mut api = callfleet(&args, &data, env, &prefix, &log("api"), extra);
        let base = api_base(&mut api);
        let args = ["dispatcher", "--http-addr", dispatcher_addr];
        let dispatcher = callfleet(&args, &data, env, &prefix, &log("dispatcher"), extra);
        Stack {
            env: env.clone(),
            dir: dir.to_path_buf(),
            data,
            prefix,
            base,
            api,
            dispatcher,
        }
    }

    /// Where the process started as `name` logs.
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// `callfleet ARGS` on this stack, logging to `name`'s log.
    pub fn spawn(&self, name: &str, args: &[&str], extra: &[(&str, String)]) -> Proc {
        callfleet(
            args,
            &self.data,
            &self.env,
            &self.prefix,
            &self.log(name),
            extra,
        )
    }

    /// `callfleet agent --worker-id ID ARGS`, logging to `ID`'s log.
    pub fn agent(&self, id: &str, args: &[&str], extra: &[(&str, String)]) -> Proc {
        let mut all = vec!["agent", "--worker-id", id];
        all.extend_from_slice(args);
        self.spawn(id, &all, extra)
    }

    /// Waits until each of `workers` heartbeats on this stack's fleet bus.
    pub fn wait_workers(&self, workers: &[&str], limit: Duration) {
        wait_workers(&self.env, &self.prefix, workers, limit);
    }
}

/// Reads stdout lines until one starts with `prefix`; returns the rest of that line.
pub fn wait_line(stdout: &mut BufReader<ChildStdout>, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stdout.read_line(&mut line).expect("read stdout") > 0,
            "exited before printing {prefix:?}"
        );
        if let Some(rest) = line.strip_prefix(prefix) {
            return rest.trim().to_string();
        }
    }
}

/// The admin API's base URL, once `callfleet api` has printed it.
pub fn api_base(api: &mut Proc) -> String {
    let mut out = BufReader::new(api.0.stdout.take().unwrap());
    let base = wait_line(&mut out, "admin API: ")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    // Keep draining stdout so the API never blocks on a full pipe.
    std::thread::spawn(move || for _ in out.lines() {});
    base
}

/// A company with an API key and a bot from `config`; returns (key, bot id).
pub fn company_with_bot(
    http: &reqwest::blocking::Client,
    base: &str,
    config: &str,
) -> (String, String) {
    company_with_bot_at(http, base, config, 10)
}

/// [`company_with_bot`] for a company that may hold `max_calls` calls at once.
pub fn company_with_bot_at(
    http: &reqwest::blocking::Client,
    base: &str,
    config: &str,
    max_calls: u32,
) -> (String, String) {
    let admin = |req: reqwest::blocking::RequestBuilder| req.bearer_auth("e2e-admin");
    let company: serde_json::Value = admin(http.post(format!("{base}/companies")))
        .json(
            &serde_json::json!({"name": "Clinic", "timezone": "America/New_York",
            "max_concurrent_calls": max_calls}),
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    let company_id = company["id"].as_str().unwrap();
    let key: serde_json::Value =
        admin(http.post(format!("{base}/companies/{company_id}/api-keys")))
            .send()
            .unwrap()
            .json()
            .unwrap();
    let key = key["key"].as_str().unwrap().to_string();
    let bot: serde_json::Value = http
        .post(format!("{base}/bots"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"config": config}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let bot_id = bot["id"]
        .as_str()
        .unwrap_or_else(|| panic!("bot created: {bot}"))
        .to_string();
    (key, bot_id)
}

/// `POST /bots/{bot_id}/sessions` (a browser call): `{url, token, room, call_id}`.
pub fn browser_session(
    http: &reqwest::blocking::Client,
    base: &str,
    key: &str,
    bot_id: &str,
) -> serde_json::Value {
    let session = http
        .post(format!("{base}/bots/{bot_id}/sessions"))
        .bearer_auth(key)
        .send()
        .unwrap();
    assert_eq!(
        session.status(),
        201,
        "{}",
        session.text().unwrap_or_default()
    );
    session.json().unwrap()
}

/// Which of `workers` has logged `call_id` (the one that took the call).
pub fn holder(
    workers: &[(&str, Proc)],
    log: impl Fn(&str) -> PathBuf,
    call_id: &str,
) -> Option<usize> {
    workers.iter().position(|(name, _)| {
        std::fs::read_to_string(log(name))
            .unwrap_or_default()
            .contains(call_id)
    })
}

/// Waits until each of `workers` heartbeats on the fleet bus under `prefix`: started, connected
/// and taking calls (their readiness, instead of a fixed sleep). Panics after `limit`.
pub fn wait_workers(env: &Env, prefix: &str, workers: &[&str], limit: Duration) {
    use callfleet_fleet::FleetBus as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let bus = callfleet_fleet::RedisBus::connect(&env.redis, prefix)
            .await
            .expect("connect to the test Redis");
        let deadline = std::time::Instant::now() + limit;
        loop {
            let live: Vec<String> = bus
                .live_workers()
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|w| w.worker_id)
                .collect();
            if workers.iter().all(|w| live.iter().any(|l| l == w)) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "workers {workers:?} never heartbeat (live: {live:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// Waits until the log at `path` holds `needle` (a process's readiness line); panics with the
/// log after `limit`.
pub fn wait_logged(path: &Path, needle: &str, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.contains(needle) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never logged {needle:?}:\n{log}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for `proc` to exit by itself; panics after `limit`.
pub fn wait_exit(proc: &mut Proc, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(exit) = proc.0.try_wait().unwrap() {
            return exit;
        }
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `GET /calls/{id}` until the post-call consumer has stored the call.
pub fn stored_call(
    http: &reqwest::blocking::Client,
    base: &str,
    key: &str,
    call_id: &str,
    log: &Path,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let reply = http
            .get(format!("{base}/calls/{call_id}"))
            .bearer_auth(key)
            .send()
            .unwrap();
        if reply.status() == 200 {
            return reply.json::<serde_json::Value>().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the call was never stored: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A scratch directory for one test: removed afterwards, unless `CALLFLEET_KEEP_TEST_DIRS` is
/// set, in which case its path (with the processes' logs) is printed and it stays.
pub struct TestDir(Option<tempfile::TempDir>, PathBuf);

impl TestDir {
    pub fn new() -> TestDir {
        let dir = tempfile::tempdir().unwrap();
        if std::env::var_os("CALLFLEET_KEEP_TEST_DIRS").is_some() {
            let path = dir.keep();
            eprintln!("test files kept in {}", path.display());
            TestDir(None, path)
        } else {
            let path = dir.path().to_path_buf();
            TestDir(Some(dir), path)
        }
    }

    pub fn path(&self) -> &Path {
        &self.1
    }
}
