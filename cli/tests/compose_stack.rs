//! The production stack as docker-compose.yml declares it, without Docker (none runs here).
//!
//! The test reads docker-compose.yml, livekit.yaml and the Dockerfile's runtime `ENV`, and plays
//! each service the way compose would start it, with hostnames mapped to loopback:
//! - `${VAR}` is substituted from a test `.env` (compose's own rules: `:-`, `:?`, `$$`), and
//!   `env_file: .env` hands every variable of that `.env` to the service;
//! - every `host:port` naming a service becomes `127.0.0.1:<that service's real port>`, and a
//!   listen address `0.0.0.0:port` becomes the service's own loopback port. A service reachable
//!   only on its container's loopback (no `0.0.0.0`) is not reachable at all: another service
//!   pointing at it fails the test;
//! - absolute paths live in the service's own directory (its container), or in the named volume
//!   mounted there.
//!
//! Infrastructure: Redis runs compose's own command (so its password is real), livekit-server
//! runs with livekit.yaml (its Redis and its webhook URLs mapped; loopback networking) and the
//! keys compose gives it, PostgreSQL is the test server with compose's user and database, Qdrant
//! is the gRPC fake (`callfleet_testkit::qdrant`), and the speech providers are the fake Deepgram
//! and Cartesia named in the `.env`. The models volume is not filled (`models pull` needs the
//! network), so both the API and the agents embed with the same model-free fallback.
//!
//! Each callfleet service (`api`, `dispatcher`, `agent` × replicas) is the built `callfleet`
//! binary run with exactly the command and environment compose gives it, started in `depends_on`
//! order, each waited for through its own healthcheck. Then, through those processes only: a
//! company, a bot with a document and a phone number; a browser session; LiveKit's Python SDK as
//! the caller hears the greeting, asks a question answered from the document and hears the
//! answer; hangs up; the call is stored with its transcript and outcome. LiveKit's own webhooks
//! must have reached the dispatcher, and a signed webhook sent where livekit.yaml points (a SIP
//! call to the bot's number) is accepted and places an agent; a forged one is refused. The
//! agents' and dispatcher's `/metrics` count the call's turns and the webhooks.
//!
//! Needs what tests/support names, plus PostgreSQL (CALLFLEET_TEST_POSTGRES_URL, psql),
//! redis-server, livekit-server (scripts/install-livekit-server.sh) and espeak-ng; `scripts/test`
//! sets them up.

mod support;

use callfleet_core::yaml::{to_json, Limits};
use callfleet_testkit::qdrant::FakeQdrant;
use callfleet_testkit::{FakeCartesia, FakeDeepgram, SttScript, TEST_KEY};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::caller::{espeak_wav, Caller};
use support::{browser_session, company_with_bot, missing, stored_call, Proc, TestDir};

const TEST: &str = "compose stack";
/// The question the caller asks; the fake recognizer hears it as this text.
const QUESTION: &str = "Are you open on Saturday?";
/// The document the bot answers from, and what its answer must say.
const DOCUMENT: &str = "Riverside Family Clinic is open on Saturday from 9 am to 1 pm.";
const ANSWER: &str = "9 am to 1 pm";
/// Services compose runs that this test does not (their ports lead nowhere).
const NOT_RUN: &[&str] = &["ollama", "livekit-sip"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut value = to_json(&text, &Limits::CONFIG)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    apply_merge_keys(&mut value);
    value
}

/// YAML merge keys (`<<: *anchor`), which compose honours.
fn apply_merge_keys(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(merged) = map.remove("<<") {
                let sources = match merged {
                    Value::Array(list) => list,
                    other => vec![other],
                };
                for source in sources {
                    let Value::Object(source) = source else {
                        panic!("a merge key must name a mapping")
                    };
                    for (k, v) in source {
                        map.entry(k).or_insert(v);
                    }
                }
            }
            map.values_mut().for_each(apply_merge_keys);
        }
        Value::Array(list) => list.iter_mut().for_each(apply_merge_keys),
        _ => {}
    }
}

/// Compose's variable substitution in one string.
fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(braced) = rest.strip_prefix('{') {
            let end = braced
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in {text:?}"));
            let expr = &braced[..end];
            rest = &braced[end + 1..];
            let name_end = expr
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expr.len());
            let (name, op) = expr.split_at(name_end);
            let value = vars.get(name).filter(|v| !v.is_empty());
            let set = vars.get(name);
            let substituted = if let Some(default) = op.strip_prefix(":-") {
                value.cloned().unwrap_or_else(|| default.to_string())
            } else if let Some(default) = op.strip_prefix('-') {
                set.cloned().unwrap_or_else(|| default.to_string())
            } else if let Some(message) = op.strip_prefix(":?") {
                value
                    .cloned()
                    .unwrap_or_else(|| panic!("compose refuses to start: {name}: {message}"))
            } else if let Some(message) = op.strip_prefix('?') {
                set.cloned()
                    .unwrap_or_else(|| panic!("compose refuses to start: {name}: {message}"))
            } else {
                assert!(op.is_empty(), "unsupported substitution ${{{expr}}}");
                set.cloned().unwrap_or_default()
            };
            out.push_str(&substituted);
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            out.push_str(vars.get(&rest[..end]).map_or("", String::as_str));
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

fn interpolate_all(value: &mut Value, vars: &BTreeMap<String, String>) {
    match value {
        Value::String(s) => *s = interpolate(s, vars),
        Value::Array(list) => list.iter_mut().for_each(|v| interpolate_all(v, vars)),
        Value::Object(map) => map.values_mut().for_each(|v| interpolate_all(v, vars)),
        _ => {}
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Array(list) => list.iter().map(scalar).collect(),
        Value::Null => Vec::new(),
        other => vec![scalar(other)],
    }
}

/// The `ENV` of the Dockerfile's last stage (the image the callfleet services run).
fn image_env() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let last_stage = text.rsplit("\nFROM ").next().unwrap_or(&text);
    let mut env = BTreeMap::new();
    for line in last_stage.lines() {
        if let Some(rest) = line.trim().strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("ENV {pair}: only KEY=VALUE is understood here"));
                env.insert(k.to_string(), v.to_string());
            }
        }
    }
    env
}

/// A `.env` file's variables.
fn parse_dotenv(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The environment compose gives `service`: its `env_file`s, then `environment`.
fn service_env(service: &Value, dotenv: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let files = match &service["env_file"] {
        Value::Array(list) => list.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    };
    for file in files {
        let path = match &file {
            Value::Object(o) => scalar(&o["path"]),
            other => scalar(other),
        };
        assert_eq!(path, ".env", "the test knows the .env file only");
        env.extend(dotenv.clone());
    }
    match &service["environment"] {
        Value::Object(map) => {
            for (k, v) in map {
                env.insert(k.clone(), scalar(v));
            }
        }
        Value::Array(list) => {
            for item in list {
                let item = scalar(item);
                let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                env.insert(k.to_string(), v.to_string());
            }
        }
        Value::Null => {}
        other => panic!("environment: {other}"),
    }
    env
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Where each service's ports really are on this machine, and its container's files.
struct Network {
    /// (service or replica, container port) → loopback port.
    ports: HashMap<(String, u16), u16>,
    /// Service names, the longest first (so `livekit-sip` is not read as `livekit`).
    hosts: Vec<String>,
    root: PathBuf,
}

impl Network {
    /// `value` as seen from `owner` (a service or one replica of it), with `owner_service`'s
    /// volumes mounted: service hosts and listen addresses mapped to loopback ports, absolute
    /// paths to files on this machine.
    fn map(&self, owner: &str, service: &Value, name: &str, value: &str) -> String {
        if value.starts_with('/') {
            return self.path(owner, service, value).display().to_string();
        }
        let mut out = value.to_string();
        let mut hosts = self.hosts.clone();
        hosts.push("0.0.0.0".into());
        for host in hosts {
            let mut from = 0;
            while let Some(found) = out[from..].find(&format!("{host}:")) {
                let at = from + found;
                let before_ok = out[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'));
                let digits: String = out[at + host.len() + 1..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if !before_ok || digits.is_empty() {
                    from = at + host.len() + 1;
                    continue;
                }
                let port: u16 = digits.parse().expect("a port number");
                let target = if host == "0.0.0.0" {
                    owner
                } else {
                    host.as_str()
                };
                let real = self.ports.get(&(target.to_string(), port)).unwrap_or_else(|| {
                    panic!(
                        "{owner}'s {name} = {value:?} points at {host}:{port}, where nothing in the \
                         stack listens so that other containers can reach it (a service listening on \
                         its container's 127.0.0.1 is unreachable; it must listen on 0.0.0.0)"
                    )
                });
                let replacement = format!("127.0.0.1:{real}");
                out.replace_range(at..at + host.len() + 1 + digits.len(), &replacement);
                from = at + replacement.len();
            }
        }
        out
    }

    /// A container path: in the named volume (or bind mount) mounted there, else in the
    /// container's own files.
    fn path(&self, owner: &str, service: &Value, path: &str) -> PathBuf {
        for mount in strings(&service["volumes"]) {
            let mut parts = mount.split(':');
            let (source, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if let Some(rest) = path
                .strip_prefix(target)
                .filter(|r| r.is_empty() || r.starts_with('/'))
            {
                let base = if let Some(file) = source.strip_prefix("./") {
                    repo().join(file)
                } else {
                    self.root.join("volumes").join(source)
                };
                let rest = rest.trim_start_matches('/');
                return if rest.is_empty() {
                    base
                } else {
                    base.join(rest)
                };
            }
        }
        self.root
            .join("containers")
            .join(owner)
            .join(path.trim_start_matches('/'))
    }

    fn register_listeners(&mut self, owner: &str, env: &BTreeMap<String, String>) {
        for value in env.values() {
            let mut rest = value.as_str();
            while let Some(at) = rest.find("0.0.0.0:") {
                rest = &rest[at + 8..];
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(port) = digits.parse::<u16>() {
                    self.ports
                        .entry((owner.to_string(), port))
                        .or_insert_with(free_port);
                }
            }
        }
    }
}

/// "10m", "90s", "1m30s", "1h" → duration.
fn compose_duration(text: &str) -> Duration {
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().unwrap_or_else(|_| panic!("duration {text}"));
        number.clear();
        total += n * match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => panic!("duration {text}"),
        };
    }
    assert!(number.is_empty(), "duration {text} needs a unit");
    Duration::from_secs(total)
}

/// The locked qdrant-client's (major, minor).
fn qdrant_client_version() -> (u32, u32) {
    let lock = std::fs::read_to_string(repo().join("Cargo.lock")).expect("Cargo.lock");
    let at = lock
        .find("name = \"qdrant-client\"")
        .expect("qdrant-client in Cargo.lock");
    let version = lock[at..]
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("its version");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

/// What compose declares beyond wiring: pinned images, restart policies, healthchecks that
/// `depends_on` waits on, a Redis password, time for agents to drain.
fn check_declarations(services: &serde_json::Map<String, Value>) {
    for (name, service) in services {
        let image = scalar(&service["image"]);
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest" && !tag.contains('/'),
            "{name}: image {image:?} is not pinned to a version"
        );
        let one_shot = service["restart"] == "no";
        if !one_shot {
            let restart = scalar(&service["restart"]);
            assert!(
                ["always", "unless-stopped"].contains(&restart.as_str())
                    || restart.starts_with("on-failure"),
                "{name}: a long-running service needs a restart policy, has {restart:?}"
            );
        }
        match &service["depends_on"] {
            Value::Null => {}
            Value::Object(deps) => {
                for (dep, how) in deps {
                    let condition = scalar(&how["condition"]);
                    let target = &services[dep];
                    let wanted = if !target["healthcheck"].is_null() {
                        "service_healthy"
                    } else if target["restart"] == "no" {
                        "service_completed_successfully"
                    } else {
                        "service_started"
                    };
                    assert_eq!(
                        condition, wanted,
                        "{name} depends on {dep}: it must wait for {wanted}"
                    );
                }
            }
            other => panic!("{name}: depends_on {other} waits for nothing; name a condition"),
        }
    }
    let image = |name: &str| scalar(&services[name]["image"]);
    assert_eq!(image("livekit-sip"), "livekit/sip:v1.8.0");
    let qdrant = image("qdrant");
    let server: Vec<u32> = qdrant
        .rsplit_once(":v")
        .map(|(_, v)| v.split('.').map(|p| p.parse().unwrap()).collect())
        .expect("qdrant/qdrant:vX.Y.Z");
    let (major, minor) = qdrant_client_version();
    assert!(
        server[0] == major && server[1].abs_diff(minor) <= 1,
        "{qdrant}: qdrant-client {major}.{minor} supports servers one minor version apart"
    );
    let redis = strings(&services["redis"]["command"]);
    assert!(
        redis.iter().any(|a| a == "--requirepass"),
        "Redis carries the fleet's jobs and records: it needs a password ({redis:?})"
    );
    let grace = compose_duration(&scalar(&services["callfleet-agent"]["stop_grace_period"]));
    assert!(
        grace >= Duration::from_secs(120),
        "agents drain their calls on SIGTERM: stop_grace_period {grace:?} is too short"
    );
}

/// The test's `.env`: the secrets, the providers' fakes.
fn dotenv_text(livekit_port: u16, deepgram: &str, cartesia: &str) -> String {
    format!(
        "LIVEKIT_PUBLIC_URL=ws://localhost:{livekit_port}\n\
         LIVEKIT_API_SECRET=compose-test-secret-0123456789abcdef0123456789abcdef\n\
         CALLFLEET_ADMIN_KEY=e2e-admin\n\
         POSTGRES_PASSWORD=compose-test-pg\n\
         REDIS_PASSWORD=compose-test-redis\n\
         DEEPGRAM_API_KEY={TEST_KEY}\n\
         DEEPGRAM_URL={deepgram}\n\
         CARTESIA_API_KEY={TEST_KEY}\n\
         CARTESIA_URL={cartesia}\n"
    )
}

fn psql(admin_url: &str, sql: &str) {
    let psql = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(
            std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .map(|d| d.path().join("bin")),
        )
        .map(|d| d.join("psql"))
        .find(|p| p.exists())
        .expect("psql");
    let status = Command::new(psql)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-d", admin_url, "-c", sql])
        .status()
        .expect("run psql");
    assert!(status.success(), "psql {sql}");
}

fn wait_until(what: &str, log: &Path, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "waited 60 s for {what}; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn get(url: &str) -> Option<(u16, String)> {
    let reply = reqwest::blocking::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .ok()?;
    Some((reply.status().as_u16(), reply.text().unwrap_or_default()))
}

/// The URL a service's `curl` healthcheck asks, on this machine.
fn health_url(net: &Network, owner: &str, service: &Value) -> String {
    let test = strings(&service["healthcheck"]["test"]);
    assert!(
        test.first().map(String::as_str) == Some("CMD")
            && test.get(1).map(String::as_str) == Some("curl"),
        "{owner}: the test runs `CMD curl …` healthchecks, not {test:?}"
    );
    let url = test
        .iter()
        .find(|a| a.starts_with("http://"))
        .expect("a URL in the healthcheck");
    // Inside the container, 127.0.0.1 is the service itself.
    let inside = url.replacen("127.0.0.1:", "0.0.0.0:", 1);
    net.map(owner, service, "healthcheck", &inside)
}

/// The value of a Prometheus sample (`name{labels}`), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn signed_webhook(body: &str, key: &str, secret: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body));
    livekit_api::access_token::AccessToken::with_api_key(key, secret)
        .with_sha256(&hash)
        .to_jwt()
        .expect("sign the webhook")
}

fn multipart_file(name: &str, text: &str) -> (String, Vec<u8>) {
    let boundary = "compose-stack-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: text/plain\r\n\r\n{text}\r\n--{boundary}--\r\n"
    );
    (
        format!("multipart/form-data; boundary={boundary}"),
        body.into_bytes(),
    )
}

#[test]
fn the_stack_as_compose_declares_it_takes_a_call() {
    let compose = read_yaml(&repo().join("docker-compose.yml"));
    let raw_services = compose["services"]
        .as_object()
        .expect("services in docker-compose.yml")
        .clone();

    let Some(env) = support::env(TEST) else {
        return;
    };
    let Some(pg_url) = std::env::var("CALLFLEET_TEST_POSTGRES_URL")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        return missing::<()>(TEST, "CALLFLEET_TEST_POSTGRES_URL is not set").unwrap_or(());
    };
    let livekit_bin = std::env::var_os("CALLFLEET_LIVEKIT_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/callfleet/bin/livekit-server")
        });
    if !livekit_bin.exists() {
        return missing::<()>(
            TEST,
            &format!("no livekit-server at {}", livekit_bin.display()),
        )
        .unwrap_or(());
    }
    let dir = TestDir::new();
    let speech = dir.path().join("question.wav");
    if !espeak_wav(&speech, "are you open on saturday") {
        return missing::<()>(TEST, "espeak-ng is not installed").unwrap_or(());
    }

    // The fakes, on a runtime that lives as long as the test.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stt = runtime.block_on(FakeDeepgram::start(SttScript {
        transcripts: vec![QUESTION.to_string()],
        ..SttScript::default()
    }));
    let tts = runtime.block_on(FakeCartesia::start());
    let (_qdrant, qdrant_addr) = runtime.block_on(FakeQdrant::start());

    let pg_port: u16 = pg_url
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("a port in CALLFLEET_TEST_POSTGRES_URL");
    let (redis_port, livekit_port) = (free_port(), free_port());
    let dotenv = parse_dotenv(&dotenv_text(livekit_port, &stt.url(), &tts.url()));
    // Kept for reading, beside (never above) the containers' directories: dotenv looks for a
    // .env in every parent of a process's working directory.
    let project = dir.path().join("compose-project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join(".env"),
        dotenv_text(livekit_port, &stt.url(), &tts.url()),
    )
    .unwrap();

    let mut services = raw_services.clone();
    for service in services.values_mut() {
        interpolate_all(service, &dotenv);
    }
    check_declarations(&services);

    let mut hosts: Vec<String> = services.keys().cloned().collect();
    hosts.sort_by_key(|h| std::cmp::Reverse(h.len()));
    let mut net = Network {
        ports: HashMap::new(),
        hosts,
        root: dir.path().to_path_buf(),
    };
    net.ports.insert(("postgres".into(), 5432), pg_port);
    net.ports.insert(("redis".into(), 6379), redis_port);
    net.ports
        .insert(("qdrant".into(), 6334), qdrant_addr.port());
    net.ports.insert(("livekit".into(), 7880), livekit_port);
    for name in NOT_RUN {
        net.ports.insert((name.to_string(), 11434), free_port());
    }
    let log = |name: &str| dir.path().join(format!("{name}.log"));

    // PostgreSQL: the user and database the postgres service creates, fresh.
    let pg_env = service_env(&services["postgres"], &dotenv);
    let (user, db) = (&pg_env["POSTGRES_USER"], &pg_env["POSTGRES_DB"]);
    psql(
        &pg_url,
        &format!(
            "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{user}') THEN CREATE ROLE {user} LOGIN; END IF; END$$;"
        ),
    );
    psql(
        &pg_url,
        &format!(
            "ALTER ROLE {user} PASSWORD '{}'",
            pg_env["POSTGRES_PASSWORD"]
        ),
    );
    psql(
        &pg_url,
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
    psql(&pg_url, &format!("CREATE DATABASE {db} OWNER {user}"));

    // Redis: compose's command, on a loopback port.
    let redis_command = strings(&services["redis"]["command"]);
    let redis_dir = dir.path().join("volumes/redisdata");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let _redis = Proc(
        Command::new(&redis_command[0])
            .args(&redis_command[1..])
            .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--dir"])
            .arg(&redis_dir)
            .stdout(std::fs::File::create(log("redis")).unwrap())
            .spawn()
            .expect("start redis-server"),
    );
    wait_until("Redis", &log("redis"), || {
        let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", redis_port)) else {
            return false;
        };
        conn.write_all(b"PING\r\n").unwrap();
        let mut answer = [0u8; 7];
        conn.read_exact(&mut answer).unwrap();
        assert_eq!(
            &answer, b"-NOAUTH",
            "compose's Redis answers without a password"
        );
        true
    });

    // livekit-server: compose's command and keys, livekit.yaml with its Redis and webhooks
    // mapped, on loopback.
    let livekit = &services["livekit"];
    let mut lk_args = strings(&livekit["command"]);
    let config_at = lk_args
        .iter()
        .position(|a| a == "--config")
        .expect("livekit runs with --config")
        + 1;
    let config_file = net.path("livekit", livekit, &lk_args[config_at]);
    let mut config = read_yaml(&config_file);
    let livekit_yaml = config.clone();
    config["port"] = json!(livekit_port);
    config["bind_addresses"] = json!(["127.0.0.1"]);
    let rtc = config["rtc"].as_object_mut().expect("rtc in livekit.yaml");
    rtc.remove("port_range_start");
    rtc.remove("port_range_end");
    rtc.insert("tcp_port".into(), json!(free_port()));
    rtc.insert("udp_port".into(), json!(free_port()));
    rtc.insert("use_external_ip".into(), json!(false));
    rtc.insert("enable_loopback_candidate".into(), json!(true));
    rtc.insert("interfaces".into(), json!({"includes": ["lo"]}));
    rtc.insert("ips".into(), json!({"includes": ["127.0.0.1/8"]}));
    let redis_address = scalar(&config["redis"]["address"]);
    config["redis"]["address"] =
        json!(net.map("livekit", livekit, "redis.address", &redis_address));
    let webhook_urls: Vec<String> = strings(&config["webhook"]["urls"]);
    let lk_env = service_env(livekit, &dotenv);
    let mapped_config = dir.path().join("livekit.yaml");
    lk_args[config_at] = mapped_config.display().to_string();
    // The dispatcher's port exists once its listen address is known: register the callfleet
    // services' listeners first.
    let callfleet: Vec<String> = services
        .iter()
        .filter(|(_, s)| strings(&s["command"]).first().map(String::as_str) == Some("callfleet"))
        .map(|(n, _)| n.clone())
        .collect();
    let mut instances: Vec<(String, String)> = Vec::new(); // (instance, service)
    for name in &callfleet {
        let service = &services[name];
        let replicas = service["deploy"]["replicas"].as_u64().unwrap_or(1);
        for i in 1..=replicas {
            let instance = if replicas == 1 {
                name.clone()
            } else {
                format!("{name}-{i}")
            };
            net.register_listeners(&instance, &service_env(service, &dotenv));
            instances.push((instance, name.clone()));
        }
    }
    let webhook_targets: Vec<String> = webhook_urls
        .iter()
        .map(|u| net.map("livekit", livekit, "webhook.urls", u))
        .collect();
    config["webhook"]["urls"] = json!(webhook_targets);
    std::fs::write(&mapped_config, config.to_string()).unwrap();
    let _livekit = Proc(
        Command::new(&livekit_bin)
            .args(&lk_args)
            .args(["--node-ip", "127.0.0.1"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(&lk_env)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log("livekit")).unwrap())
            .spawn()
            .expect("start livekit-server"),
    );
    wait_until("livekit-server", &log("livekit"), || {
        get(&format!("http://127.0.0.1:{livekit_port}/"))
            .is_some_and(|(status, body)| status == 200 && body.trim() == "OK")
    });

    // The models volume, as callfleet-models would fill it: the one-shot runs `models pull`
    // (not here: it downloads), into the path its CALLFLEET_MODELS names, and every service
    // that waits for it reads the models from the same volume.
    let models = &services["callfleet-models"];
    assert_eq!(strings(&models["command"]), ["callfleet", "models", "pull"]);
    let image = image_env();
    let models_dir = |instance: &str, service: &Value| {
        let mut env = image.clone();
        env.extend(service_env(service, &dotenv));
        let at = env
            .get("CALLFLEET_MODELS")
            .unwrap_or_else(|| panic!("{instance} has no CALLFLEET_MODELS"));
        net.path(instance, service, at)
    };
    let pulled_into = models_dir("callfleet-models", models);
    assert!(
        pulled_into.starts_with(dir.path().join("volumes")),
        "models pull writes into a volume, not into its own container: {}",
        pulled_into.display()
    );
    std::fs::create_dir_all(&pulled_into).unwrap();

    // Start the callfleet services in depends_on order; each must pass its own healthcheck.
    let mut procs: Vec<(String, Proc)> = Vec::new();
    let mut started: Vec<String> = vec!["callfleet-models".into()];
    let mut health: BTreeMap<String, String> = BTreeMap::new();
    while started.len() < callfleet.len() {
        let next = callfleet
            .iter()
            .find(|name| {
                !started.contains(name)
                    && services[name.as_str()]["depends_on"]
                        .as_object()
                        .is_none_or(|deps| {
                            deps.keys()
                                .all(|d| !callfleet.contains(d) || started.contains(d))
                        })
            })
            .expect("depends_on has no cycle")
            .clone();
        let service = &services[next.as_str()];
        if service["depends_on"]["callfleet-models"].is_object() {
            assert_eq!(
                models_dir(&next, service),
                pulled_into,
                "{next} waits for the models but reads them elsewhere"
            );
        }
        for (instance, _) in instances.iter().filter(|(_, s)| *s == next) {
            let command = strings(&service["command"]);
            let mut env = image.clone();
            env.extend(service_env(service, &dotenv));
            let env: BTreeMap<String, String> = env
                .iter()
                .map(|(k, v)| (k.clone(), net.map(instance, service, k, v)))
                .collect();
            // The image's WORKDIR, empty: no .env but the environment compose gives.
            let workdir = net.path(instance, service, "/app");
            std::fs::create_dir_all(&workdir).unwrap();
            let home = net.path(instance, service, "/root");
            std::fs::create_dir_all(&home).unwrap();
            let process = Proc(
                Command::new(env!("CARGO_BIN_EXE_callfleet"))
                    .args(&command[1..])
                    .current_dir(&workdir)
                    .env_clear()
                    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                    .env("HOME", &home)
                    .envs(&env)
                    .stdout(std::fs::File::create(log(&format!("{instance}.out"))).unwrap())
                    .stderr(std::fs::File::create(log(instance)).unwrap())
                    .spawn()
                    .expect("start callfleet"),
            );
            procs.push((instance.clone(), process));
            let url = health_url(&net, instance, service);
            let mut exited = None;
            wait_until(
                &format!("{instance}'s healthcheck {url}"),
                &log(instance),
                || {
                    if let Some((_, p)) = procs.iter_mut().find(|(n, _)| n == instance) {
                        exited = p.0.try_wait().unwrap();
                    }
                    assert!(
                        exited.is_none(),
                        "{instance} exited ({exited:?}) before it was healthy; its log:\n{}",
                        std::fs::read_to_string(log(instance)).unwrap_or_default()
                    );
                    get(&url).is_some_and(|(status, _)| status == 200)
                },
            );
            health.insert(instance.clone(), url);
        }
        started.push(next);
    }

    // Outside `dev` the development LiveKit secret is refused at start, with the reason.
    let agent = &services["callfleet-agent"];
    let mut dev_secret = image.clone();
    dev_secret.extend(service_env(agent, &dotenv));
    dev_secret.insert("LIVEKIT_API_SECRET".into(), "secret".into());
    let refused_dir = net.path("callfleet-agent-refused", agent, "/app");
    std::fs::create_dir_all(&refused_dir).unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_callfleet"))
        .args(&strings(&agent["command"])[1..])
        .current_dir(&refused_dir)
        .env_clear()
        .envs(&dev_secret)
        .output()
        .expect("run callfleet agent");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("LIVEKIT_API_SECRET is the development default"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // Through the API as compose publishes it.
    let api = &services["callfleet-api"];
    let published = strings(&api["ports"]);
    let api_port: u16 = published
        .iter()
        .find_map(|p| p.rsplit(':').next()?.parse().ok())
        .expect("the API publishes a port");
    let base = format!(
        "http://127.0.0.1:{}",
        net.ports[&("callfleet-api".to_string(), api_port)]
    );
    let http = reqwest::blocking::Client::new();
    let clinic = std::fs::read_to_string(repo().join("bots/clinic-en.yaml")).unwrap();
    let config = format!("{clinic}\nproviders:\n  stt: {{provider: deepgram}}\n  tts: {{provider: cartesia, voice: test-voice}}\n");
    let (key, bot_id) = company_with_bot(&http, &base, &config);
    let (content_type, body) = multipart_file("hours.txt", DOCUMENT);
    let uploaded = http
        .post(format!("{base}/bots/{bot_id}/knowledge"))
        .bearer_auth(&key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(
        uploaded.status(),
        202,
        "{}",
        uploaded.text().unwrap_or_default()
    );
    let document: Value = uploaded.json().unwrap();
    let document_id = document["id"].as_str().unwrap().to_string();
    wait_until("the document to be indexed", &log("callfleet-api"), || {
        let doc: Value = http
            .get(format!("{base}/bots/{bot_id}/knowledge/{document_id}"))
            .bearer_auth(&key)
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_ne!(doc["status"], "failed", "{doc}");
        doc["status"] == "ready"
    });
    // Numbers are given by the admin key (a company routes only numbers it was given).
    let number = http
        .post(format!("{base}/bots/{bot_id}/phone-numbers"))
        .bearer_auth("e2e-admin")
        .json(&json!({"number": "+1 415 555 0199"}))
        .send()
        .unwrap();
    assert_eq!(
        number.status(),
        201,
        "{}",
        number.text().unwrap_or_default()
    );

    let session = browser_session(&http, &base, &key, &bot_id);
    assert_eq!(
        session["url"], dotenv["LIVEKIT_PUBLIC_URL"],
        "browsers are handed LiveKit as they reach it (LIVEKIT_PUBLIC_URL)"
    );
    let call_id = session["call_id"].as_str().unwrap().to_string();

    let mut caller = Caller::join(
        &env.python,
        session["url"].as_str().unwrap(),
        session["token"].as_str().unwrap(),
    );
    let (greeting, _) = caller.reply();
    assert!(
        greeting.contains("Riverside Family Clinic"),
        "greeting: {greeting}"
    );
    caller.wait("the greeting to end", |e| e["event"] == "audio_end");
    caller.say(&speech);
    assert_eq!(caller.transcript("user"), QUESTION);
    let (answer, _) = caller.reply();
    assert!(
        answer.contains(ANSWER),
        "the answer comes from the document through Qdrant: {answer}"
    );
    caller.wait("the answer to end", |e| e["event"] == "audio_end");
    assert!(caller.leave().success());

    let record = stored_call(&http, &base, &key, &call_id, &log("callfleet-dispatcher"));
    assert_eq!(record["status"], "completed", "{record}");
    let transcript = record["transcript"].as_array().expect("a transcript");
    assert!(
        transcript
            .iter()
            .any(|t| t["speaker"] == "user" && t["text"] == QUESTION),
        "{record}"
    );
    assert!(
        transcript
            .iter()
            .any(|t| t["speaker"] == "bot" && t["text"].as_str().unwrap_or("").contains(ANSWER)),
        "{record}"
    );
    assert!(
        record["outcome"]["kind"]
            .as_str()
            .is_some_and(|k| !k.is_empty()),
        "{record}"
    );

    // The agent that took the call counts its turns at its /metrics.
    let turns = format!("callfleet_turns_total{{bot=\"{bot_id}\"}}");
    let counted: f64 = health
        .iter()
        .filter(|(instance, _)| instance.starts_with("callfleet-agent"))
        .filter_map(|(_, url)| get(url))
        .filter_map(|(_, metrics)| sample(&metrics, &turns))
        .sum();
    assert!(
        counted >= 1.0,
        "the agents' /metrics count the call's turns"
    );

    // LiveKit's own webhooks reached the dispatcher where livekit.yaml sends them.
    let dispatcher_metrics = &health["callfleet-dispatcher"];
    let webhooks = |status: &str| {
        get(dispatcher_metrics)
            .and_then(|(_, m)| {
                sample(
                    &m,
                    &format!("callfleet_dispatcher_webhooks_total{{status=\"{status}\"}}"),
                )
            })
            .unwrap_or(0.0)
    };
    wait_until(
        "LiveKit's webhooks at the dispatcher",
        &log("livekit"),
        || webhooks("200") >= 1.0,
    );
    assert_eq!(
        webhooks("401"),
        0.0,
        "LiveKit's webhooks are signed with the keys compose gives"
    );

    // A SIP call's webhook, signed as LiveKit signs it, placed on an agent; a forged one refused.
    let (lk_key, lk_secret) = lk_env["LIVEKIT_KEYS"]
        .split_once(':')
        .map(|(k, s)| (k.trim().to_string(), s.trim().to_string()))
        .expect("LIVEKIT_KEYS is `key: secret`");
    assert_eq!(
        scalar(&livekit_yaml["webhook"]["api_key"]),
        lk_key,
        "LiveKit signs webhooks with a key it has"
    );
    let sip_room = format!("sip-{}", std::process::id());
    let event = json!({
        "event": "participant_joined", "id": "EV_compose", "createdAt": 1,
        "room": {"sid": "RM_compose", "name": sip_room},
        "participant": {"sid": "PA_compose", "identity": "sip_caller", "kind": "SIP",
            "attributes": {"sip.phoneNumber": "+14155550100", "sip.trunkPhoneNumber": "+14155550199"}}
    })
    .to_string();
    let deliver = |auth: &str| {
        http.post(&webhook_targets[0])
            .header("content-type", "application/webhook+json")
            .header("authorization", auth)
            .body(event.clone())
            .send()
            .unwrap()
            .status()
    };
    let forged = signed_webhook(&event, &lk_key, "not-the-secret");
    assert_eq!(deliver(&forged), 401);
    assert_eq!(deliver(&signed_webhook(&event, &lk_key, &lk_secret)), 200);
    wait_until(
        "an agent to take the SIP call",
        &log("callfleet-dispatcher"),
        || {
            instances
                .iter()
                .filter(|(_, s)| s == "callfleet-agent")
                .any(|(instance, _)| {
                    std::fs::read_to_string(log(instance))
                        .unwrap_or_default()
                        .contains(&sip_room)
                })
        },
    );
    assert_eq!(
        webhooks("401"),
        1.0,
        "the forged webhook is counted as refused"
    );
    drop(procs);
}
