//! callfleet and LiveKit Agents side by side: the same callers, the same livekit-server, the same
//! fake providers, one system at a time. Run by `scripts/bench-vs-livekit-agents`, which builds
//! this, the `callfleet` binary and the LiveKit Agents venv, and passes their paths.
//!
//! This process is the harness, never measured: it hosts the testkit's protocol-exact fake
//! Deepgram, Cartesia and OpenAI-compatible servers (fixed delays), starts the system under test
//! as child processes pointed at them, and plays every caller (callfleet-rtc participants that
//! speak a recorded utterance on a schedule and listen for the agent). The agent side is the
//! system's processes and all their descendants: `callfleet dispatcher` + `callfleet agent`
//! (the admin API that hands out the browser sessions is left out, as livekit-server's own
//! dispatch is on the other side), or the LiveKit Agents worker with its job processes.
//!
//! Per level and system it prints: calls completed, first greeting after join, voice-to-voice
//! p50/p95/p99 (the caller's end of speech → the first agent audio it hears), the agent side's
//! CPU (share of the machine), RSS (sum over its processes) and PSS (shared pages split, so a
//! fair total for forked workers) and per call, late agent audio (a gap of 0.1–1.5 s inside an
//! agent utterance) and missing agent audio (a greeting or reply never heard). Then, at
//! `--kill-at` calls on two workers, it SIGKILLs one worker's process tree mid-call and prints
//! what each caller heard and when. `--smoke`: one call per system, exit status 1 unless both
//! greeted and answered (CI).

use callfleet_rtc::{AudioFrame, Room, RoomEvent, RoomOptions};
use callfleet_testkit::{FakeCartesia, FakeDeepgram, FakeOpenAi, LlmReply, SttScript, TEST_KEY};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// What every caller says (and what the fake recognizer hears in each stretch of speech).
const UTTERANCE: &str = "I have a question about my account";
/// The agent's reply to it: the LLM's answer on both sides (see `fakes`).
const REPLY: &str = "I see. Could you tell me a little more about that, please?";
/// Marks LiveKit Agents' chat requests (its instructions, bench/livekit-agents/agent.py).
const LK_MARKER: &str = "bench clinic";
/// Marks callfleet's routing request (crates/core/src/scenario/engine/intent.rs).
const CF_MARKER: &str = "You route a phone caller";

/// The fixed provider delays, the same for both systems.
const STT_FINAL_DELAY: Duration = Duration::from_millis(100);
const LLM_FIRST_TOKEN: Duration = Duration::from_millis(250);
const LLM_TOKEN_INTERVAL: Duration = Duration::from_millis(15);
const TTS_FIRST_BYTE: Duration = Duration::from_millis(150);

/// Agent audio louder than this (RMS) is the agent speaking.
const LOUD: f64 = 300.0;
/// A silence this long inside agent audio ends an utterance; shorter (above `LATE_GAP`) is a
/// hiccup the caller hears.
const UTTERANCE_GAP: Duration = Duration::from_millis(1500);
const LATE_GAP: Duration = Duration::from_millis(100);
/// A greeting or reply not heard within this is missing.
const ANSWER_WITHIN: Duration = Duration::from_secs(6);

#[derive(Clone, Debug)]
struct Opts {
    systems: Vec<System>,
    levels: Vec<usize>,
    extra_callfleet: Vec<usize>,
    kill_at: usize,
    smoke: bool,
    out: Option<PathBuf>,
    callfleet_bin: PathBuf,
    python: PathBuf,
    agent_py: PathBuf,
    bot: PathBuf,
    models: Option<PathBuf>,
    redis: String,
    utterance_wav: PathBuf,
    livekit_url: String,
    key: String,
    secret: String,
    header: String,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum System {
    Callfleet,
    LiveKitAgents,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Callfleet => "callfleet",
            System::LiveKitAgents => "LiveKit Agents",
        }
    }
}

fn list(v: &str) -> Vec<usize> {
    v.split(',')
        .filter_map(|n| n.trim().parse().ok())
        .filter(|&n| n > 0)
        .collect()
}

fn opts() -> Res<Opts> {
    let mut args: HashMap<String, String> = HashMap::new();
    let mut smoke = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--smoke" {
            smoke = true;
        } else if let Some(name) = a.strip_prefix("--") {
            let v = it.next().ok_or(format!("--{name} needs a value"))?;
            args.insert(name.to_string(), v);
        }
    }
    let get = |n: &str| args.get(n).cloned();
    let need = |n: &str| get(n).ok_or(format!("--{n} is required"));
    let env = |n: &str, d: &str| std::env::var(n).unwrap_or_else(|_| d.to_string());
    Ok(Opts {
        systems: get("systems")
            .unwrap_or_else(|| "callfleet,livekit-agents".into())
            .split(',')
            .filter_map(|s| match s.trim() {
                "callfleet" => Some(System::Callfleet),
                "livekit-agents" => Some(System::LiveKitAgents),
                _ => None,
            })
            .collect(),
        levels: if smoke {
            vec![1]
        } else {
            list(&get("levels").unwrap_or_else(|| "1,10,25,50".into()))
        },
        extra_callfleet: if smoke {
            Vec::new()
        } else {
            list(&get("callfleet-extra").unwrap_or_default())
        },
        kill_at: if smoke {
            0
        } else {
            get("kill-at").and_then(|v| v.parse().ok()).unwrap_or(10)
        },
        smoke,
        out: get("out").map(PathBuf::from),
        callfleet_bin: need("callfleet-bin")?.into(),
        python: need("python")?.into(),
        agent_py: need("agent-py")?.into(),
        bot: need("bot")?.into(),
        models: get("models").map(PathBuf::from),
        redis: need("redis")?,
        utterance_wav: need("utterance")?.into(),
        livekit_url: env("CALLFLEET_LIVEKIT_URL", "ws://127.0.0.1:7880"),
        key: env("CALLFLEET_LIVEKIT_API_KEY", "devkey"),
        secret: env("CALLFLEET_LIVEKIT_API_SECRET", "secret"),
        header: get("header").unwrap_or_default(),
    })
}

// ------------------------------------------------------------------------------------- fakes

struct Fakes {
    stt: FakeDeepgram,
    tts: FakeCartesia,
    llm: FakeOpenAi,
}

async fn fakes() -> Fakes {
    let stt = FakeDeepgram::start(SttScript {
        transcripts: vec![UTTERANCE.to_string(); 1_000_000],
        final_delay: STT_FINAL_DELAY,
        ..SttScript::default()
    })
    .await;
    let tts = FakeCartesia::start().await;
    tts.update_script(|s| s.first_byte_delay = TTS_FIRST_BYTE);
    let llm = FakeOpenAi::start().await;
    // Both systems get the same completion with the same timing: LiveKit Agents speaks the
    // model's words; callfleet's engine asks the model to route the request (no scenario name in
    // the answer) and then says its configured fallback, which is the same sentence.
    let reply = LlmReply::text(REPLY).delays(LLM_FIRST_TOKEN, LLM_TOKEN_INTERVAL);
    llm.reply_when(&[LK_MARKER], reply.clone());
    llm.reply_when(&[CF_MARKER], reply);
    Fakes { stt, tts, llm }
}

// ------------------------------------------------------------------------- the agent side

/// The system under test: its processes (roots of the measured process trees).
struct Running {
    system: System,
    /// (name, process); `callfleet` api first when present (not measured).
    procs: Vec<(String, Child)>,
    measured: Vec<usize>,
    placer: Placer,
    _data: tempdir::Dir,
}

enum Placer {
    Callfleet {
        base: String,
        key: String,
        bot: String,
        http: reqwest::Client,
    },
    LiveKit,
}

/// The agent name the LiveKit Agents worker registers under (agent.py reads BENCH_AGENT_NAME).
const AGENT_NAME: &str = "callfleet-bench";

/// A LiveKit access token (HS256 JWT) to join `room` as `identity`, whose room configuration
/// dispatches the agent `AGENT_NAME` to the room.
fn dispatch_token(key: &str, secret: &str, room: &str, identity: &str) -> Res<String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = serde_json::json!({
        "iss": key, "sub": identity, "nbf": now, "exp": now + 6 * 3600,
        "video": {"roomJoin": true, "room": room, "canPublish": true, "canSubscribe": true},
        "roomConfig": {"agents": [{"agentName": AGENT_NAME}]},
    });
    let signing = format!(
        "{}.{}",
        b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64.encode(claims.to_string())
    );
    Ok(format!(
        "{signing}.{}",
        b64.encode(hmac_sha256(secret.as_bytes(), signing.as_bytes()))
    ))
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

mod tempdir {
    /// A scratch directory for the system's data and logs, kept for a look afterwards.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> std::io::Result<Dir> {
            let p = std::env::temp_dir().join(format!("cf-vs-lk-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p)?;
            Ok(Dir(p))
        }
    }
}

fn provider_env(f: &Fakes) -> Vec<(&'static str, String)> {
    vec![
        ("DEEPGRAM_API_KEY", TEST_KEY.into()),
        ("DEEPGRAM_URL", f.stt.url()),
        ("CARTESIA_API_KEY", TEST_KEY.into()),
        ("CARTESIA_URL", f.tts.url()),
        ("OPENAI_API_KEY", TEST_KEY.into()),
        ("OPENAI_BASE_URL", f.llm.url()),
    ]
}

async fn start(o: &Opts, f: &Fakes, system: System, workers: usize, tag: &str) -> Res<Running> {
    let data = tempdir::Dir::new(&format!(
        "{tag}-{}",
        match system {
            System::Callfleet => "callfleet",
            System::LiveKitAgents => "lk",
        }
    ))?;
    match system {
        System::Callfleet => start_callfleet(o, f, workers, data, tag).await,
        System::LiveKitAgents => start_livekit_agents(o, f, workers, data).await,
    }
}

fn callfleet_cmd(
    o: &Opts,
    args: &[&str],
    data: &std::path::Path,
    prefix: &str,
    log: &str,
) -> Res<Command> {
    let mut c = Command::new(&o.callfleet_bin);
    c.args(args)
        .env("CALLFLEET_DATA", data)
        .env("CALLFLEET_ADMIN_KEY", "bench-admin")
        .env("REDIS_URL", &o.redis)
        .env("CALLFLEET_REDIS_PREFIX", prefix)
        .env("LIVEKIT_URL", &o.livekit_url)
        .env("LIVEKIT_API_KEY", &o.key)
        .env("LIVEKIT_API_SECRET", &o.secret)
        .env("CALLFLEET_ALLOW_DEV_SECRET", "1")
        .env("CALLFLEET_RATE_LIMIT", "0")
        // The kill test keeps the workers' info log (which call each took, the resumption).
        .env(
            "RUST_LOG",
            if prefix.contains(":kill:") {
                "info,sqlx=warn"
            } else {
                "warn"
            },
        )
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(data.join(format!("{log}.log")))?)
        .kill_on_drop(true);
    if let Some(m) = &o.models {
        c.env("CALLFLEET_MODELS", m);
    }
    Ok(c)
}

/// Reads `child`'s stdout until a line holds `needle` (returns it), then keeps draining.
async fn wait_stdout(child: &mut Child, needle: &str, limit: Duration) -> Res<String> {
    let out = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(out).lines();
    let found = tokio::time::timeout(limit, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(needle) {
                return Some(line);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or(format!("no line with {needle:?} within {limit:?}"))?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(found)
}

async fn start_callfleet(
    o: &Opts,
    f: &Fakes,
    workers: usize,
    data: tempdir::Dir,
    tag: &str,
) -> Res<Running> {
    let prefix = format!("cfvslk:{}:{tag}:", std::process::id());
    let dir = data.0.clone();
    let mut api = callfleet_cmd(
        o,
        &["api", "--http-addr", "127.0.0.1:0"],
        &dir,
        &prefix,
        "api",
    )?
    .spawn()?;
    let line = wait_stdout(&mut api, "admin API: ", Duration::from_secs(60)).await?;
    let base = line
        .split("admin API: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .ok_or("no API address")?
        .to_string();
    let mut procs = vec![("api".to_string(), api)];
    let mut d = callfleet_cmd(
        o,
        &["dispatcher", "--http-addr", "127.0.0.1:0"],
        &dir,
        &prefix,
        "dispatcher",
    )?
    .spawn()?;
    drain_stdout(&mut d);
    procs.push(("dispatcher".into(), d));
    for w in 0..workers {
        let id = format!("w{w}");
        let mut c = callfleet_cmd(
            o,
            &["agent", "--worker-id", &id, "--capacity", "500"],
            &dir,
            &prefix,
            &id,
        )?;
        c.envs(provider_env(f));
        let mut a = c.spawn()?;
        drain_stdout(&mut a);
        procs.push((id, a));
    }
    // The company, its key and the bot, through the admin API as a user makes them.
    let http = reqwest::Client::new();
    let company: serde_json::Value = http
        .post(format!("{base}/companies"))
        .bearer_auth("bench-admin")
        .json(
            &serde_json::json!({"name": "Bench", "timezone": "UTC", "max_concurrent_calls": 1000}),
        )
        .send()
        .await?
        .json()
        .await?;
    let company_id = company["id"]
        .as_str()
        .ok_or(format!("company: {company}"))?;
    let key: serde_json::Value = http
        .post(format!("{base}/companies/{company_id}/api-keys"))
        .bearer_auth("bench-admin")
        .send()
        .await?
        .json()
        .await?;
    let key = key["key"]
        .as_str()
        .ok_or(format!("key: {key}"))?
        .to_string();
    let config = std::fs::read_to_string(&o.bot)?;
    let bot: serde_json::Value = http
        .post(format!("{base}/bots"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"config": config}))
        .send()
        .await?
        .json()
        .await?;
    let bot = bot["id"].as_str().ok_or(format!("bot: {bot}"))?.to_string();
    // The workers register with the dispatcher through Redis.
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(Running {
        system: System::Callfleet,
        measured: (1..procs.len()).collect(),
        procs,
        placer: Placer::Callfleet {
            base,
            key,
            bot,
            http,
        },
        _data: data,
    })
}

fn drain_stdout(child: &mut Child) {
    if let Some(out) = child.stdout.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(_)) = lines.next_line().await {}
        });
    }
}

async fn start_livekit_agents(
    o: &Opts,
    f: &Fakes,
    workers: usize,
    data: tempdir::Dir,
) -> Res<Running> {
    let mut procs = Vec::new();
    for w in 0..workers {
        let log = data.0.join(format!("lk{w}.log"));
        let mut c = Command::new(&o.python);
        c.arg(&o.agent_py)
            .arg("start")
            .env("LIVEKIT_URL", &o.livekit_url)
            .env("LIVEKIT_API_KEY", &o.key)
            .env("LIVEKIT_API_SECRET", &o.secret)
            .env("BENCH_KEY", TEST_KEY)
            .env("BENCH_AGENT_NAME", AGENT_NAME)
            .env(
                "BENCH_DEEPGRAM_URL",
                f.stt.url().replacen("ws://", "http://", 1),
            )
            .env(
                "BENCH_CARTESIA_URL",
                f.tts.url().replacen("ws://", "http://", 1),
            )
            .env("BENCH_OPENAI_URL", f.llm.url())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let mut child = c.spawn()?;
        // It logs (JSON lines) on stdout or stderr depending on the version: watch both.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let file = Arc::new(Mutex::new(std::fs::File::create(log)?));
        let out = child.stdout.take().ok_or("no stdout")?;
        let err = child.stderr.take().ok_or("no stderr")?;
        fn watch(
            stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
            file: Arc<Mutex<std::fs::File>>,
            tx: tokio::sync::mpsc::UnboundedSender<()>,
        ) {
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(mut f) = file.lock() {
                        use std::io::Write;
                        let _ = writeln!(f, "{line}");
                    }
                    if line.contains("registered worker") {
                        let _ = tx.send(());
                    }
                }
            });
        }
        watch(out, file.clone(), tx.clone());
        watch(err, file, tx);
        tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .map_err(|_| {
                format!(
                    "LiveKit Agents worker {w} did not register within 120 s (log: {})",
                    data.0.display()
                )
            })?
            .ok_or("the LiveKit Agents worker's output ended before it registered")?;
        procs.push((format!("lk{w}"), child));
    }
    // Let the idle job processes it keeps warm start, as they would before traffic.
    tokio::time::sleep(Duration::from_secs(if o.smoke { 2 } else { 8 })).await;
    Ok(Running {
        system: System::LiveKitAgents,
        measured: (0..procs.len()).collect(),
        procs,
        placer: Placer::LiveKit,
        _data: data,
    })
}

impl Running {
    /// A call: (livekit url, token) for the caller.
    async fn place(&self, o: &Opts, run: &str, i: usize) -> Res<(String, String)> {
        match &self.placer {
            Placer::Callfleet {
                base,
                key,
                bot,
                http,
            } => {
                let r = http
                    .post(format!("{base}/bots/{bot}/sessions"))
                    .bearer_auth(key)
                    .send()
                    .await?;
                let status = r.status();
                let v: serde_json::Value = r.json().await?;
                if status.as_u16() != 201 {
                    return Err(format!("session: {status} {v}").into());
                }
                Ok((
                    v["url"].as_str().unwrap_or(&o.livekit_url).to_string(),
                    v["token"].as_str().ok_or("no token")?.to_string(),
                ))
            }
            // Explicit dispatch, as LiveKit documents it: the caller's token asks livekit-server
            // to dispatch the agent named `AGENT_NAME` to the room it creates.
            Placer::LiveKit => Ok((
                o.livekit_url.clone(),
                dispatch_token(
                    &o.key,
                    &o.secret,
                    &format!("lkvs-{run}-{i}"),
                    &format!("caller-{i}"),
                )?,
            )),
        }
    }

    fn roots(&self) -> Vec<u32> {
        self.measured
            .iter()
            .filter_map(|&i| self.procs[i].1.id())
            .collect()
    }

    fn alive(&mut self) -> bool {
        self.measured
            .clone()
            .into_iter()
            .all(|i| matches!(self.procs[i].1.try_wait(), Ok(None)))
    }

    /// SIGKILL to worker `w`'s whole process tree (a crashed machine or an OOM-killed pod).
    fn kill_worker(&mut self, w: usize) {
        let idx = match self.system {
            System::Callfleet => 2 + w,
            System::LiveKitAgents => w,
        };
        if let Some(pid) = self.procs[idx].1.id() {
            for p in tree(&[pid]) {
                unsafe_kill(p);
            }
        }
    }

    async fn stop(mut self) {
        for (_, c) in self.procs.iter_mut().rev() {
            if let Some(pid) = c.id() {
                // SIGTERM first (drain), then whatever is left of the tree.
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status();
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        for (_, c) in self.procs.iter_mut() {
            if let Some(pid) = c.id() {
                for p in tree(&[pid]) {
                    unsafe_kill(p);
                }
            }
            let _ = c.kill().await;
        }
    }
}

fn unsafe_kill(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

// ------------------------------------------------------------------- process measurement

/// `roots` and all their descendants.
fn tree(roots: &[u32]) -> Vec<u32> {
    let mut parent: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Some(ppid) = stat(pid).map(|s| s.ppid) {
                parent.push((pid, ppid));
            }
        }
    }
    let mut out: Vec<u32> = roots.to_vec();
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        for &(c, pp) in &parent {
            if pp == p && !out.contains(&c) {
                out.push(c);
            }
        }
        i += 1;
    }
    out
}

struct Stat {
    ppid: u32,
    /// utime + stime + cutime + cstime, in clock ticks.
    ticks: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Some(Stat {
        ppid: n(1) as u32,
        ticks: n(11) + n(12) + n(13) + n(14),
    })
}

fn kib_field(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[derive(Clone, Copy, Default, Debug)]
struct Mem {
    rss_kib: u64,
    pss_kib: u64,
    procs: usize,
}

fn memory(pids: &[u32]) -> Mem {
    let mut m = Mem::default();
    for &p in pids {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{p}/status")) else {
            continue;
        };
        m.rss_kib += kib_field(&status, "VmRSS:");
        let rollup = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).unwrap_or_default();
        m.pss_kib += kib_field(&rollup, "Pss:");
        m.procs += 1;
    }
    m
}

/// Samples the agent side every 500 ms: peak memory, and CPU ticks with processes that exit
/// counted up to their last sample (their parent's cutime takes them over once reaped).
struct Sampler {
    peak: Arc<Mutex<Mem>>,
    ticks: Arc<Mutex<BTreeMap<u32, u64>>>,
    stop: tokio_util::sync::CancellationToken,
}

impl Sampler {
    fn start(roots: Vec<u32>) -> Sampler {
        let peak = Arc::new(Mutex::new(Mem::default()));
        let ticks = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = tokio_util::sync::CancellationToken::new();
        let (p, t, s) = (peak.clone(), ticks.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let pids = tree(&roots);
                let m = memory(&pids);
                if let Ok(mut peak) = p.lock() {
                    if m.pss_kib > peak.pss_kib {
                        *peak = m;
                    }
                }
                if let Ok(mut t) = t.lock() {
                    for &pid in &pids {
                        if let Some(st) = stat(pid) {
                            t.insert(pid, st.ticks);
                        }
                    }
                }
                tokio::select! {
                    () = s.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        });
        Sampler { peak, ticks, stop }
    }

    fn finish(self, before: &BTreeMap<u32, u64>) -> (Mem, u64) {
        self.stop.cancel();
        let peak = self.peak.lock().map(|m| *m).unwrap_or_default();
        let ticks = self.ticks.lock().map(|t| t.clone()).unwrap_or_default();
        let used: u64 = ticks
            .iter()
            .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
            .sum();
        (peak, used)
    }
}

fn ticks_now(roots: &[u32]) -> BTreeMap<u32, u64> {
    tree(roots)
        .into_iter()
        .filter_map(|p| stat(p).map(|s| (p, s.ticks)))
        .collect()
}

// -------------------------------------------------------------------------------- callers

/// What one caller heard.
#[derive(Debug, Default, Clone)]
struct Heard {
    joined: Option<Instant>,
    /// (when, duration, track) of every loud agent frame; the track indexes `tracks`.
    loud: Vec<(Instant, Duration, usize)>,
    /// Each agent track heard: (sid, participant identity, when it ended: unsubscribed or its
    /// participant left). A track's last frames (a decoder concealing the loss of a dead sender)
    /// are not the agent speaking: frames from 0.5 s before its end on are left out.
    tracks: Vec<(String, String, Option<Instant>)>,
    /// (start, end of speech) of each utterance the caller said.
    said: Vec<(Instant, Instant)>,
    agent_left: Vec<Instant>,
    agent_tracks: Vec<Instant>,
    error: Option<String>,
}

struct Utterance {
    samples: Vec<i16>,
    rate: u32,
    /// From the start of the recording to the end of its last voiced 10 ms.
    speech: Duration,
}

fn utterance(path: &std::path::Path) -> Res<Utterance> {
    let (samples, rate) = read_wav(&std::fs::read(path)?)?;
    let window = (rate / 100).max(1) as usize;
    let last = samples
        .chunks(window)
        .rposition(|w| callfleet_testkit::audio::rms(w) > 500.0)
        .ok_or("the utterance is silent")?;
    Ok(Utterance {
        speech: Duration::from_millis((last as u64 + 1) * 10),
        samples,
        rate,
    })
}

/// 16-bit PCM mono WAV (what espeak-ng writes): (samples, rate).
fn read_wav(bytes: &[u8]) -> Res<(Vec<i16>, u32)> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a WAV file".into());
    }
    let (mut at, mut rate, mut format_ok) = (12, 0u32, false);
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]])
            as usize;
        let body = &bytes[at + 8..(at + 8 + len).min(bytes.len())];
        if id == b"fmt " && body.len() >= 16 {
            let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
            rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
            format_ok = u16_at(0) == 1 && u16_at(2) == 1 && u16_at(14) == 16;
        } else if id == b"data" {
            if !format_ok {
                return Err("the WAV is not 16-bit PCM mono".into());
            }
            let samples = body
                .chunks_exact(2)
                .map(|p| i16::from_le_bytes([p[0], p[1]]))
                .collect();
            return Ok((samples, rate));
        }
        at += 8 + len + (len & 1);
    }
    Err("the WAV has no data".into())
}

/// One caller: joins, speaks `UTTERANCE` at each offset of `schedule` (from joining), leaves at
/// `leave_at`.
async fn caller(
    url: String,
    token: String,
    speech: Arc<Utterance>,
    schedule: Vec<Duration>,
    leave_at: Duration,
    heard: Arc<Mutex<Heard>>,
) {
    let options = RoomOptions {
        opus_complexity: 0,
        ..RoomOptions::default()
    };
    let (room, mut events) = match Room::connect(&url, &token, options).await {
        Ok(j) => j,
        Err(e) => {
            if let Ok(mut h) = heard.lock() {
                h.error = Some(format!("join: {e}"));
            }
            return;
        }
    };
    let joined = Instant::now();
    if let Ok(mut h) = heard.lock() {
        h.joined = Some(joined);
    }
    let mic = match room.publish_audio("mic", speech.rate).await {
        Ok(t) => t,
        Err(e) => {
            if let Ok(mut h) = heard.lock() {
                h.error = Some(format!("publish: {e}"));
            }
            room.leave().await;
            return;
        }
    };
    let ears = tokio::spawn({
        let heard = heard.clone();
        let me = room.identity().to_string();
        async move {
            while let Some(event) = events.recv().await {
                match event {
                    RoomEvent::TrackSubscribed {
                        mut stream,
                        participant,
                        track_sid,
                        ..
                    } => {
                        let mut track = 0;
                        if let Ok(mut h) = heard.lock() {
                            h.agent_tracks.push(Instant::now());
                            track = h.tracks.len();
                            h.tracks.push((track_sid, participant.identity, None));
                        }
                        let heard = heard.clone();
                        tokio::spawn(async move {
                            while let Some(frame) = stream.recv().await {
                                if callfleet_testkit::audio::rms(&frame.samples) > LOUD {
                                    let d = Duration::from_micros(
                                        frame.samples.len() as u64 * 1_000_000
                                            / u64::from(frame.sample_rate.max(1)),
                                    );
                                    if let Ok(mut h) = heard.lock() {
                                        h.loud.push((Instant::now(), d, track));
                                    }
                                }
                            }
                        });
                    }
                    RoomEvent::ParticipantLeft { identity } if identity != me => {
                        if let Ok(mut h) = heard.lock() {
                            let now = Instant::now();
                            h.agent_left.push(now);
                            for t in h.tracks.iter_mut().filter(|t| t.1 == identity) {
                                t.2.get_or_insert(now);
                            }
                        }
                    }
                    RoomEvent::TrackUnsubscribed { track_sid, .. } => {
                        if let Ok(mut h) = heard.lock() {
                            let now = Instant::now();
                            for t in h.tracks.iter_mut().filter(|t| t.0 == track_sid) {
                                t.2.get_or_insert(now);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    });
    for at in schedule {
        tokio::time::sleep_until((joined + at).into()).await;
        let start = Instant::now();
        mic.push(&AudioFrame::new(speech.samples.clone(), speech.rate));
        if let Ok(mut h) = heard.lock() {
            h.said.push((start, start + speech.speech));
        }
    }
    tokio::time::sleep_until((joined + leave_at).into()).await;
    ears.abort();
    room.leave().await;
}

impl Heard {
    /// The loud frames that are the agent speaking (see `tracks`).
    fn speech(&self) -> Vec<(Instant, Duration)> {
        self.loud
            .iter()
            .filter(|(t, _, track)| {
                self.tracks
                    .get(*track)
                    .and_then(|tr| tr.2)
                    .is_none_or(|end| *t + Duration::from_millis(500) < end)
            })
            .map(|(t, d, _)| (*t, *d))
            .collect()
    }

    /// The first agent speech on a track subscribed after `since`.
    fn first_on_new_track(&self, since: Instant) -> Option<Instant> {
        let new: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| self.agent_tracks.get(i).is_some_and(|t| *t >= since))
            .collect();
        self.loud
            .iter()
            .filter(|(_, _, track)| new.contains(track))
            .map(|(t, _, _)| *t)
            .min()
    }
}

/// Agent utterances as (start, end), and the hiccups inside them.
fn utterances(loud: &[(Instant, Duration)]) -> (Vec<(Instant, Instant)>, usize) {
    let mut sorted = loud.to_vec();
    sorted.sort_by_key(|(t, _)| *t);
    let mut out: Vec<(Instant, Instant)> = Vec::new();
    let mut late = 0;
    for (t, d) in sorted {
        match out.last_mut() {
            Some((_, end)) if t.saturating_duration_since(*end) < UTTERANCE_GAP => {
                if t.saturating_duration_since(*end) > LATE_GAP {
                    late += 1;
                }
                *end = t.max(*end) + d;
            }
            _ => out.push((t, t + d)),
        }
    }
    (out, late)
}

#[derive(Default, Debug, Clone)]
struct CallResult {
    greeting: Option<Duration>,
    v2v: Vec<f64>,
    late: usize,
    missing: usize,
    completed: bool,
    error: Option<String>,
}

fn judge(h: &Heard) -> CallResult {
    let mut r = CallResult {
        error: h.error.clone(),
        ..CallResult::default()
    };
    let Some(joined) = h.joined else {
        r.missing = 1 + 3;
        return r;
    };
    let (agent, late) = utterances(&h.speech());
    r.late = late;
    r.greeting = agent
        .first()
        .map(|(s, _)| s.saturating_duration_since(joined))
        .filter(|d| *d < ANSWER_WITHIN + Duration::from_secs(4));
    if r.greeting.is_none() {
        r.missing += 1;
    }
    let mut answered = 0;
    for (start, end) in &h.said {
        let reply = agent
            .iter()
            .find(|(s, _)| s >= start && s.saturating_duration_since(*end) < ANSWER_WITHIN);
        match reply {
            Some((s, _)) => {
                answered += 1;
                let v = if s >= end {
                    s.duration_since(*end).as_secs_f64()
                } else {
                    -(end.duration_since(*s).as_secs_f64())
                };
                r.v2v.push(v * 1000.0);
            }
            None => r.missing += 1,
        }
    }
    r.completed = r.greeting.is_some() && answered == h.said.len() && r.error.is_none();
    r
}

// ---------------------------------------------------------------------------------- levels

#[derive(Debug, Clone)]
struct Row {
    system: System,
    calls: usize,
    completed: usize,
    greeting: Vec<f64>,
    v2v: Vec<f64>,
    cpu: f64,
    peak: Mem,
    idle: Mem,
    late: usize,
    missing: usize,
    expected: usize,
    alive: bool,
    errors: Vec<String>,
}

fn pct(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let i = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    Some(s[i.min(s.len() - 1)])
}

fn schedule(smoke: bool) -> (Vec<Duration>, Duration) {
    if smoke {
        (vec![Duration::from_secs(6)], Duration::from_secs(13))
    } else {
        (
            vec![
                Duration::from_secs(6),
                Duration::from_secs(14),
                Duration::from_secs(22),
            ],
            Duration::from_secs(30),
        )
    }
}

async fn level(o: &Opts, sys: &mut Running, speech: &Arc<Utterance>, n: usize, run: &str) -> Row {
    let roots = sys.roots();
    let idle = memory(&tree(&roots));
    let before = ticks_now(&roots);
    let sampler = Sampler::start(roots.clone());
    let began = Instant::now();
    let (sched, leave) = schedule(o.smoke);
    let mut calls = Vec::new();
    let mut errors = Vec::new();
    for i in 0..n {
        let heard = Arc::new(Mutex::new(Heard::default()));
        match sys.place(o, run, i).await {
            Ok((url, token)) => {
                calls.push((
                    heard.clone(),
                    tokio::spawn(caller(
                        url,
                        token,
                        speech.clone(),
                        sched.clone(),
                        leave,
                        heard,
                    )),
                ));
            }
            Err(e) => errors.push(format!("placing call {i}: {e}")),
        }
        // Calls arrive at 20 a second, not all in one instant.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut results = Vec::new();
    for (heard, task) in calls {
        let _ = tokio::time::timeout(leave + Duration::from_secs(30), task).await;
        let h = heard.lock().map(|h| h.clone()).unwrap_or_default();
        results.push(judge(&h));
    }
    let wall = began.elapsed().as_secs_f64();
    let (peak, ticks) = sampler.finish(&before);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
    let cpu = ticks as f64 / 100.0 / wall / cores * 100.0;
    for r in &results {
        if let Some(e) = &r.error {
            errors.push(e.clone());
        }
    }
    let alive = sys.alive();
    // Let the calls end on the agent side before the next level's baseline.
    if !o.smoke {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    Row {
        system: sys.system,
        calls: n,
        completed: results.iter().filter(|r| r.completed).count(),
        greeting: results
            .iter()
            .filter_map(|r| r.greeting.map(|g| g.as_secs_f64() * 1000.0))
            .collect(),
        v2v: results.iter().flat_map(|r| r.v2v.clone()).collect(),
        cpu,
        peak,
        idle,
        late: results.iter().map(|r| r.late).sum(),
        missing: results.iter().map(|r| r.missing).sum(),
        expected: n * (1 + sched.len()),
        alive,
        errors,
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.0}"))
}

fn table(rows: &[Row]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| system | calls | completed | greeting p50 / p95 ms | voice-to-voice p50 / p95 / p99 ms | agent CPU % | RSS sum MiB | PSS MiB | PSS MiB per call | late / missing agent audio |"
    );
    let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let mib = |k: u64| k as f64 / 1024.0;
        let per_call =
            (r.peak.pss_kib.saturating_sub(r.idle.pss_kib)) as f64 / 1024.0 / r.calls.max(1) as f64;
        let _ = writeln!(
            t,
            "| {} | {} | {}{} | {} / {} | {} / {} / {} | {:.0} | {:.0} ({} procs) | {:.0} | {:.1} | {} / {} of {} |",
            r.system.name(),
            r.calls,
            r.completed,
            if r.alive { "" } else { " (agent side died)" },
            ms(pct(&r.greeting, 50.0)),
            ms(pct(&r.greeting, 95.0)),
            ms(pct(&r.v2v, 50.0)),
            ms(pct(&r.v2v, 95.0)),
            ms(pct(&r.v2v, 99.0)),
            r.cpu,
            mib(r.peak.rss_kib),
            r.peak.procs,
            mib(r.peak.pss_kib),
            per_call,
            r.late,
            r.missing,
            r.expected,
        );
    }
    t
}

// ------------------------------------------------------------------------------- kill test

async fn kill_test(
    o: &Opts,
    f: &Fakes,
    system: System,
    speech: &Arc<Utterance>,
    n: usize,
) -> Res<String> {
    let mut sys = start(o, f, system, 2, "kill").await?;
    let run = format!("kill{}", std::process::id());
    let sched: Vec<Duration> = (0..5).map(|i| Duration::from_secs(6 + 8 * i)).collect();
    let leave = Duration::from_secs(46);
    let mut calls = Vec::new();
    let first = Instant::now();
    for i in 0..n {
        let heard = Arc::new(Mutex::new(Heard::default()));
        let (url, token) = sys.place(o, &run, i).await?;
        calls.push((
            heard.clone(),
            tokio::spawn(caller(
                url,
                token,
                speech.clone(),
                sched.clone(),
                leave,
                heard,
            )),
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Mid-call: after every caller's first turn was answered, while the second is ahead.
    tokio::time::sleep_until((first + Duration::from_millis(11_500)).into()).await;
    let killed = Instant::now();
    sys.kill_worker(0);
    let mut out = String::new();
    let _ = writeln!(out, "\n{}: {n} calls on two workers, worker 0's process tree SIGKILLed {:.1} s after the first call joined\n", system.name(), killed.duration_since(first).as_secs_f64());
    let _ = writeln!(out, "| caller | agent left (s after kill) | new agent track | its first audio | turns after the kill answered |");
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|");
    let mut affected = 0;
    let mut recovered = Vec::new();
    for (i, (heard, task)) in calls.into_iter().enumerate() {
        let _ = tokio::time::timeout(leave + Duration::from_secs(30), task).await;
        let h = heard.lock().map(|h| h.clone()).unwrap_or_default();
        let after = |t: &Instant| (*t >= killed).then(|| t.duration_since(killed).as_secs_f64());
        let left = h.agent_left.iter().find_map(after);
        // A new agent track for a caller who had one already: an agent taking the call over.
        let had_agent = h.agent_tracks.iter().any(|t| *t < killed);
        let track = h.agent_tracks.iter().find_map(after).filter(|_| had_agent);
        let (agent, _) = utterances(&h.speech());
        let again = h
            .first_on_new_track(killed)
            .filter(|_| had_agent)
            .and_then(|t| after(&t));
        let turns_after: Vec<_> = h.said.iter().filter(|(s, _)| *s >= killed).collect();
        let answered = turns_after
            .iter()
            .filter(|(s, e)| {
                agent
                    .iter()
                    .any(|(a, _)| a >= s && a.saturating_duration_since(*e) < ANSWER_WITHIN)
            })
            .count();
        let fmt = |v: Option<f64>| v.map_or("never".to_string(), |v| format!("{v:.1}"));
        if left.is_some() || track.is_some() {
            affected += 1;
            if let Some(a) = again {
                recovered.push(a);
            }
        }
        let _ = writeln!(
            out,
            "| {i} | {} | {} | {} | {answered} of {} |",
            left.map_or("–".to_string(), |v| format!("{v:.1}")),
            fmt(track),
            fmt(again),
            turns_after.len()
        );
    }
    let secs = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1}"));
    let _ = writeln!(
        out,
        "\n{}: {affected} of {n} callers lost their agent (it left, or another took the call over); {} of them heard a new agent (its first audio after {} s to {} s).",
        system.name(),
        recovered.len(),
        secs(pct(&recovered, 0.0)),
        secs(pct(&recovered, 100.0)),
    );
    sys.stop().await;
    Ok(out)
}

// ------------------------------------------------------------------------------------ main

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vs_livekit_agents: {e}");
            std::process::exit(2);
        }
    };
    match runtime.block_on(run()) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("vs_livekit_agents: {e}");
            std::process::exit(2);
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn run() -> Res<bool> {
    let o = opts()?;
    let f = fakes().await;
    let speech = Arc::new(utterance(&o.utterance_wav)?);
    let mut rows = Vec::new();
    let mut report = String::new();
    let _ = writeln!(report, "{}", o.header);
    let _ = writeln!(report, "load average at the start: {}\n", loadavg());
    let mut ok = true;
    for &system in &o.systems {
        let mut levels = o.levels.clone();
        if system == System::Callfleet {
            levels.extend(o.extra_callfleet.iter().copied());
        }
        eprintln!("== {}: starting", system.name());
        let mut sys = start(&o, &f, system, 1, "levels").await?;
        for (li, &n) in levels.iter().enumerate() {
            if !sys.alive() {
                eprintln!(
                    "== {}: the agent side has exited; no more levels",
                    system.name()
                );
                break;
            }
            eprintln!(
                "== {}: {n} calls (load average {})",
                system.name(),
                loadavg()
            );
            let row = level(
                &o,
                &mut sys,
                &speech,
                n,
                &format!("{}{li}", std::process::id()),
            )
            .await;
            for e in row.errors.iter().take(3) {
                eprintln!("   {e}");
            }
            eprintln!(
                "{}",
                table(std::slice::from_ref(&row))
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            let held = row.completed == row.calls;
            rows.push(row);
            if o.smoke {
                ok &= held;
            }
            // Extra levels only while the system holds.
            if !held && li + 1 >= o.levels.len() {
                break;
            }
        }
        sys.stop().await;
    }
    let _ = writeln!(report, "{}", table(&rows));
    if o.kill_at > 0 {
        for &system in &o.systems {
            eprintln!("== {}: kill test at {} calls", system.name(), o.kill_at);
            match kill_test(&o, &f, system, &speech, o.kill_at).await {
                Ok(t) => report.push_str(&t),
                Err(e) => {
                    let _ = writeln!(report, "\n{}: kill test failed to run: {e}", system.name());
                }
            }
        }
    }
    let _ = writeln!(report, "\nload average at the end: {}", loadavg());
    println!("{report}");
    if let Some(out) = &o.out {
        std::fs::write(out, &report)?;
        eprintln!("written to {}", out.display());
    }
    Ok(ok)
}
