//! `callfleet agent --dispatch livekit` through the whole fleet, as separate processes on a real
//! livekit-server and Redis: `callfleet api`, `callfleet dispatcher`, and two agent workers of
//! capacity 1 registered under one agent name with LiveKit's agent dispatch, speaking to
//! protocol-exact fake Deepgram and Cartesia. LiveKit's Python SDK is the caller.
//!
//! - A caller whose token carries a room configuration naming the agent (`roomConfig.agents`,
//!   minted with LiveKit's Python SDK, the bot in its metadata) gets a callfleet agent and hears
//!   its greeting as audio.
//! - `CreateDispatch` through the AgentDispatch API gets one too — on the other worker, since
//!   the first is full (capacity 1: it reports itself FULL and declines).
//! - The worker holding the first call is killed with SIGKILL: the dispatcher re-dispatches its
//!   room through LiveKit and the other worker resumes it from the checkpoint — the caller hears
//!   "we got cut off" (how long after the kill is printed, not asserted).
//! - The calls are stored through post-call processing like any other.

mod support;

use callfleet_core::secret::Secret;
use callfleet_livekit_admin::LiveKitApi;
use callfleet_testkit::{FakeCartesia, FakeDeepgram, SttScript, TEST_KEY};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::caller::{espeak_wav, Caller};
use support::{
    api_base, callfleet, company_with_bot, free_port, stored_call, wait_exit, wait_logged, Proc,
    Stack,
};

/// What a worker logs once LiveKit has accepted its registration (its readiness).
const REGISTERED: &str = "registered with LiveKit's agent dispatch";

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A caller's token for `room` minted with LiveKit's Python SDK, with a room configuration
/// dispatching `agent_name` with `metadata` when given.
fn python_token(python: &Path, room: &str, identity: &str, agent: Option<(&str, &str)>) -> String {
    let script = r#"
import sys
from livekit import api
room, identity, agent, metadata = sys.argv[1:5]
token = api.AccessToken("devkey", "secret").with_identity(identity).with_grants(
    api.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True, can_publish_data=True))
if agent:
    token = token.with_room_config(api.RoomConfiguration(
        agents=[api.RoomAgentDispatch(agent_name=agent, metadata=metadata)]))
print(token.to_jwt())
"#;
    let (agent, metadata) = agent.unwrap_or(("", ""));
    let out = Command::new(python)
        .args(["-c", script, room, identity, agent, metadata])
        .env(
            "LIVEKIT_API_KEY",
            std::env::var("CALLFLEET_LIVEKIT_API_KEY").unwrap_or_else(|_| "devkey".into()),
        )
        .output()
        .expect("run Python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `text` without ANSI colour codes.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Which worker admitted `room` (its log says so), and the call id it runs it as.
fn admitted(
    workers: &[(&str, Proc)],
    log: impl Fn(&str) -> PathBuf,
    room: &str,
) -> Option<(usize, String)> {
    workers.iter().enumerate().find_map(|(i, (name, _))| {
        let text = plain(&std::fs::read_to_string(log(name)).unwrap_or_default());
        let line = text
            .lines()
            .find(|l| l.contains("LiveKit job admitted") && l.contains(room))?;
        let call = line.split("call_id=").nth(1)?.split_whitespace().next()?;
        Some((i, call.trim_matches('"').to_string()))
    })
}

fn wait_admitted(
    workers: &[(&str, Proc)],
    log: impl Fn(&str) -> PathBuf + Copy,
    room: &str,
) -> (usize, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = admitted(workers, log, room) {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no worker admitted {room}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn livekit_dispatches_reach_callfleet_workers_and_a_dead_workers_room_is_dispatched_again() {
    let Some(env) = support::env("LiveKit dispatch end-to-end") else {
        return;
    };
    let dir = support::TestDir::new();
    let speech = dir.path().join("caller.wav");
    if !espeak_wav(&speech, "this is the caller speaking") {
        return support::missing::<()>("LiveKit dispatch end-to-end", "espeak-ng is not installed")
            .unwrap_or(());
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stt = runtime.block_on(FakeDeepgram::start(SttScript {
        transcripts: vec!["I would like to book an appointment".into()],
        ..SttScript::default()
    }));
    let tts = runtime.block_on(FakeCartesia::start());
    let agent_name = format!("cf-e2e-{}", std::process::id());
    let dispatcher_port = free_port();
    let dispatcher_url = format!("http://127.0.0.1:{dispatcher_port}");
    let providers = [
        ("DEEPGRAM_API_KEY", TEST_KEY.to_string()),
        ("DEEPGRAM_URL", stt.url()),
        ("CARTESIA_API_KEY", TEST_KEY.to_string()),
        ("CARTESIA_URL", tts.url()),
        ("CALLFLEET_VAD", "energy".to_string()),
        ("CALLFLEET_DISPATCH", "livekit".to_string()),
        ("CALLFLEET_AGENT_NAME", agent_name.clone()),
        ("CALLFLEET_DISPATCHER_URL", dispatcher_url.clone()),
    ];
    let stack = Stack::start(
        &env,
        dir.path(),
        "cflkd",
        &format!("127.0.0.1:{dispatcher_port}"),
        &[],
    );
    let (base, log) = (&stack.base, |name: &str| stack.log(name));
    let mut workers: Vec<(&str, Proc)> = ["lk-a", "lk-b"]
        .into_iter()
        .map(|name| (name, stack.agent(name, &["--capacity", "1"], &providers)))
        .collect();
    for (name, _) in &workers {
        wait_logged(&log(name), REGISTERED, Duration::from_secs(30));
    }

    let http = reqwest::blocking::Client::new();
    let clinic = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../bots/clinic-en.yaml"),
    )
    .unwrap();
    let config = format!("{clinic}\nproviders:\n  stt: {{provider: deepgram}}\n  tts: {{provider: cartesia, voice: test-voice}}\n");
    let (key, bot_id) = company_with_bot(&http, base, &config);
    let metadata = serde_json::json!({ "bot_id": bot_id }).to_string();

    // (a) A token with a room configuration: LiveKit dispatches the agent as the caller joins.
    let room_a = format!("lk-token-{}", std::process::id());
    let token = python_token(
        &env.python,
        &room_a,
        "caller-a",
        Some((&agent_name, &metadata)),
    );
    let mut caller_a = Caller::join(&env.python, &env.livekit, &token);
    let (greeting, _) = caller_a.reply();
    assert!(
        greeting.contains("Riverside Family Clinic"),
        "greeting: {greeting}"
    );
    let (holder_a, call_a) = wait_admitted(&workers, log, &room_a);

    // (b) CreateDispatch: the other worker takes it, the first being full.
    let room_b = format!("lk-api-{}", std::process::id());
    let livekit = LiveKitApi::new(
        &env.livekit,
        "devkey",
        Secret::new(
            std::env::var("CALLFLEET_LIVEKIT_API_SECRET").unwrap_or_else(|_| "secret".into()),
        ),
    )
    .unwrap();
    runtime
        .block_on(livekit.create_dispatch(&room_b, &agent_name, &metadata))
        .expect("CreateDispatch");
    let mut caller_b = Caller::join(
        &env.python,
        &env.livekit,
        &python_token(&env.python, &room_b, "caller-b", None),
    );
    let (greeting, _) = caller_b.reply();
    assert!(
        greeting.contains("Riverside Family Clinic"),
        "greeting: {greeting}"
    );
    let (holder_b, call_b) = wait_admitted(&workers, log, &room_b);
    assert_ne!(
        holder_a, holder_b,
        "the full worker declined; the other took the dispatch"
    );
    caller_b.say(&speech);
    assert_eq!(
        caller_b.transcript("user"),
        "I would like to book an appointment"
    );
    let _ = caller_b.reply();
    assert!(caller_b.leave().success());
    let record = stored_call(&http, base, &key, &call_b, &log("dispatcher"));
    assert_eq!(record["room"], room_b.as_str());
    assert_eq!(record["bot_id"], bot_id.as_str());

    // Failover: the worker holding call a dies; LiveKit dispatches its room again (asked by the
    // dispatcher) and the other worker, free again, resumes the call from its checkpoint.
    let (name, mut proc) = workers.remove(holder_a);
    // Let the other worker's call end and free its slot.
    let freed = std::time::Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string(log(workers[0].0))
        .unwrap_or_default()
        .contains("call finished")
    {
        assert!(std::time::Instant::now() < freed, "call b never finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    proc.0.kill().unwrap();
    proc.0.wait().unwrap();
    let killed_at = unix_now();
    let (back, voice) = caller_a.reply();
    eprintln!(
        "killed {name}; the caller heard the agent again {:.2} s later: {back}",
        voice - killed_at
    );
    assert!(
        back.starts_with("Sorry, we got cut off"),
        "the new worker says it is back: {back}"
    );
    let survivor = std::fs::read_to_string(log(workers[0].0)).unwrap_or_default();
    assert!(
        survivor.contains(&call_a),
        "the survivor runs the same call, so its checkpoint followed"
    );

    // Drain: SIGTERM the survivor mid-call. It tells LiveKit it is full, takes no new dispatch,
    // finishes the call and exits.
    let name = workers[0].0;
    assert!(Command::new("kill")
        .args(["-TERM", &workers[0].1.pid()])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !plain(&std::fs::read_to_string(log(name)).unwrap_or_default())
        .contains("draining: LiveKit sees this worker as full")
    {
        assert!(std::time::Instant::now() < deadline, "{name} did not drain");
        std::thread::sleep(Duration::from_millis(100));
    }
    let room_c = format!("lk-drain-{}", std::process::id());
    runtime
        .block_on(livekit.create_dispatch(&room_c, &agent_name, &metadata))
        .expect("CreateDispatch");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        admitted(&workers, log, &room_c).is_none(),
        "a draining worker takes no new job"
    );
    assert!(caller_a.leave().success());
    let exit = wait_exit(
        &mut workers[0].1,
        Duration::from_secs(20),
        "a drained worker exits once its call ends",
    );
    assert!(exit.success(), "drained worker exit status: {exit}");
    let record = stored_call(&http, base, &key, &call_a, &log("dispatcher"));
    assert_eq!(record["room"], room_a.as_str());
}

/// The LiveKit-only quick start: `callfleet dev --dispatch livekit` beside a livekit-server, and a
/// caller whose token's room configuration names the agent hears the bot.
#[test]
fn callfleet_dev_takes_calls_from_livekit_dispatch() {
    let Some(env) = support::env("LiveKit dispatch under callfleet dev") else {
        return;
    };
    let dir = support::TestDir::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stt = runtime.block_on(FakeDeepgram::start(SttScript::default()));
    let tts = runtime.block_on(FakeCartesia::start());
    let agent_name = format!("cf-dev-{}", std::process::id());
    let extra = [
        ("DEEPGRAM_API_KEY", TEST_KEY.to_string()),
        ("DEEPGRAM_URL", stt.url()),
        ("CARTESIA_API_KEY", TEST_KEY.to_string()),
        ("CARTESIA_URL", tts.url()),
        ("CALLFLEET_VAD", "energy".to_string()),
        ("CALLFLEET_DISPATCH", "livekit".to_string()),
        ("CALLFLEET_AGENT_NAME", agent_name.clone()),
    ];
    let log = dir.path().join("dev.log");
    let mut dev = callfleet(
        &["dev", "--http-addr", "127.0.0.1:0"],
        &dir.path().join("data"),
        &env,
        "unused:",
        &log,
        &extra,
    );
    let base = api_base(&mut dev);
    wait_logged(&log, REGISTERED, Duration::from_secs(30));
    let http = reqwest::blocking::Client::new();
    let clinic = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../bots/clinic-en.yaml"),
    )
    .unwrap();
    let config = format!("{clinic}\nproviders:\n  stt: {{provider: deepgram}}\n  tts: {{provider: cartesia, voice: test-voice}}\n");
    let (key, bot_id) = company_with_bot(&http, &base, &config);
    let room = format!("lk-dev-{}", std::process::id());
    let metadata = serde_json::json!({ "bot_id": bot_id }).to_string();
    let token = python_token(&env.python, &room, "caller", Some((&agent_name, &metadata)));
    let mut caller = Caller::join(&env.python, &env.livekit, &token);
    let (greeting, _) = caller.reply();
    assert!(
        greeting.contains("Riverside Family Clinic"),
        "greeting: {greeting}"
    );
    assert!(caller.leave().success());
    let (_, call_id) = {
        let text = plain(&std::fs::read_to_string(&log).unwrap_or_default());
        let line = text
            .lines()
            .find(|l| l.contains("LiveKit job admitted") && l.contains(&room))
            .expect("dev admitted the room")
            .to_string();
        let call = line
            .split("call_id=")
            .nth(1)
            .and_then(|c| c.split_whitespace().next())
            .expect("a call id")
            .to_string();
        (line, call)
    };
    let record = stored_call(&http, &base, &key, &call_id, &log);
    assert_eq!(record["room"], room.as_str());
}
