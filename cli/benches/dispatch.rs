//! Time from a room's creation to the agent's first audio at the caller, in each dispatch mode,
//! on a real livekit-server and Redis with `callfleet api`, `callfleet dispatcher` and two agent
//! workers (one `--dispatch callfleet`, one `--dispatch livekit`), fake Deepgram and Cartesia, and
//! LiveKit's Python SDK as the caller (tests/py/voice_caller.py). Prints figures; asserts nothing
//! about them.
//!
//! - callfleet: `POST /bots/{id}/sessions` creates the room and places the agent; the caller joins
//!   with the returned token.
//! - livekit: the caller joins with a token whose room configuration dispatches the agent name
//!   (the room is created by that join).
//!
//! Both figures are from just before the room is created (the request, or the caller's join) to
//! the first sound of the greeting at the caller; "join →" is from the caller's own join.
//! Rounds: CALLFLEET_BENCH_ROUNDS (default 5). Run by `scripts/bench-dispatch`.

#[path = "../tests/support/mod.rs"]
mod support;

use callfleet_testkit::{FakeCartesia, FakeDeepgram, SttScript, TEST_KEY};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::caller::Caller;
use support::{browser_session, company_with_bot, free_port, wait_logged, Stack};

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

fn token_with_agent(python: &Path, room: &str, agent: &str, metadata: &str) -> String {
    let script = r#"
import sys
from livekit import api
room, agent, metadata = sys.argv[1:4]
print(api.AccessToken("devkey", "secret").with_identity("caller").with_grants(
    api.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True, can_publish_data=True)
).with_room_config(api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name=agent, metadata=metadata)])).to_jwt())
"#;
    let out = Command::new(python)
        .args(["-c", script, room, agent, metadata])
        .output()
        .expect("run Python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// (room creation → first audio, caller's join → first audio), in seconds.
fn first_audio(caller: &mut Caller, created: f64) -> (f64, f64) {
    let joined = caller.wait("the caller to join", |e| e["event"] == "joined")["t"]
        .as_f64()
        .unwrap_or(created);
    let heard = caller.wait("the greeting", |e| e["event"] == "audio_start")["t"]
        .as_f64()
        .unwrap_or(joined);
    (heard - created, heard - joined)
}

fn summary(name: &str, figures: &[(f64, f64)]) {
    let stat = |pick: fn(&(f64, f64)) -> f64| {
        let mut v: Vec<f64> = figures.iter().map(pick).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        (v[0], v[v.len() / 2], v[v.len() - 1])
    };
    let (lo, med, hi) = stat(|f| f.0);
    let (jlo, jmed, jhi) = stat(|f| f.1);
    println!(
        "{name:<9} room created → first audio: median {:.0} ms (min {:.0}, max {:.0});  caller's join → first audio: median {:.0} ms (min {:.0}, max {:.0})  [{} calls]",
        med * 1e3, lo * 1e3, hi * 1e3, jmed * 1e3, jlo * 1e3, jhi * 1e3, figures.len()
    );
}

fn main() {
    let Some(env) = support::env("dispatch bench") else {
        return;
    };
    let rounds: usize = std::env::var("CALLFLEET_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
        .max(1);
    let dir = support::TestDir::new();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let stt = runtime.block_on(FakeDeepgram::start(SttScript::default()));
    let tts = runtime.block_on(FakeCartesia::start());
    let agent_name = format!("cf-bench-{}", std::process::id());
    let dispatcher_port = free_port();
    let common = vec![
        ("DEEPGRAM_API_KEY", TEST_KEY.to_string()),
        ("DEEPGRAM_URL", stt.url()),
        ("CARTESIA_API_KEY", TEST_KEY.to_string()),
        ("CARTESIA_URL", tts.url()),
        ("CALLFLEET_VAD", "energy".to_string()),
        ("RUST_LOG", "warn".to_string()),
    ];
    let mut livekit_mode = common.clone();
    livekit_mode.extend([
        ("CALLFLEET_DISPATCH", "livekit".to_string()),
        ("CALLFLEET_AGENT_NAME", agent_name.clone()),
        (
            "CALLFLEET_DISPATCHER_URL",
            format!("http://127.0.0.1:{dispatcher_port}"),
        ),
    ]);
    let stack = Stack::start(
        &env,
        dir.path(),
        "cfbench",
        &format!("127.0.0.1:{dispatcher_port}"),
        &[],
    );
    let base = &stack.base;
    let _callfleet_worker = stack.agent("bench-cf", &[], &common);
    let _livekit_worker = stack.agent("bench-lk", &[], &livekit_mode);
    stack.wait_workers(&["bench-cf"], Duration::from_secs(30));
    wait_logged(
        &stack.log("bench-lk"),
        "registered with LiveKit's agent dispatch",
        Duration::from_secs(30),
    );
    let http = reqwest::blocking::Client::new();
    let clinic = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../bots/clinic-en.yaml"),
    )
    .expect("the clinic bot");
    let config = format!("{clinic}\nproviders:\n  stt: {{provider: deepgram}}\n  tts: {{provider: cartesia, voice: test-voice}}\n");
    let (key, bot_id) = company_with_bot(&http, base, &config);
    let metadata = serde_json::json!({ "bot_id": bot_id }).to_string();

    let (mut callfleet_figures, mut livekit_figures) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let created = unix_now();
        let session = browser_session(&http, base, &key, &bot_id);
        let mut caller = Caller::join(
            &env.python,
            session["url"].as_str().expect("url"),
            session["token"].as_str().expect("token"),
        );
        callfleet_figures.push(first_audio(&mut caller, created));
        caller.leave();

        let room = format!("bench-lk-{}-{round}", std::process::id());
        let token = token_with_agent(&env.python, &room, &agent_name, &metadata);
        let created = unix_now();
        let mut caller = Caller::join(&env.python, &env.livekit, &token);
        livekit_figures.push(first_audio(&mut caller, created));
        caller.leave();
        // Let both workers' calls end before the next round.
        std::thread::sleep(Duration::from_secs(2));
    }
    println!("time from room creation to the agent's first audio at the caller:");
    summary("callfleet", &callfleet_figures);
    summary("livekit", &livekit_figures);
}
