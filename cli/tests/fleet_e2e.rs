//! The fleet end to end, as separate processes on a real livekit-server and Redis: `callfleet api`
//! (browser sessions), `callfleet dispatcher` (failover, post-call), two `callfleet agent` workers,
//! and LiveKit's Python SDK as the caller (tests/py/chat_caller.py). Mid-call the worker running
//! the call is killed with SIGKILL; the other worker must take the call over with the
//! conversation intact, and the finished call must be stored. The surviving worker is then sent
//! SIGTERM mid-call: it must finish the call (drain) and exit by itself once the caller is gone.
//! A second test runs a chat call of a bot with a language model (a fake Ollama) and no speech
//! providers: the engine must route through that model.
//!
//! Needs: CALLFLEET_TEST_REDIS_URL, a livekit-server (CALLFLEET_LIVEKIT_URL, default
//! ws://127.0.0.1:7880, keys devkey/secret) and the Python SDK (CALLFLEET_PYTHON) — `scripts/test`
//! sets all of them up. Under CI a missing piece fails the test.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{browser_session, company_with_bot, holder, stored_call, wait_exit, Stack};

#[test]
fn a_call_survives_its_worker_being_killed() {
    let Some(env) = support::env("fleet end-to-end") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A chat call: with offline models on the machine (the user cache `models pull` fills) the
    // agents would speak instead, so they are pointed at an empty models dir.
    let no_models = tempfile::tempdir().unwrap();
    let chat_only = [("CALLFLEET_MODELS", no_models.path().display().to_string())];
    let stack = Stack::start(&env, dir.path(), "cfe2e", "127.0.0.1:0", &[]);
    let (base, log) = (&stack.base, |name: &str| stack.log(name));
    let mut workers = vec![
        ("w-a", stack.agent("w-a", &["--capacity", "10"], &chat_only)),
        ("w-b", stack.agent("w-b", &["--capacity", "10"], &chat_only)),
    ];
    stack.wait_workers(&["w-a", "w-b"], Duration::from_secs(30));

    let http = reqwest::blocking::Client::new();
    let config = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../bots/clinic-en.yaml"),
    )
    .unwrap();
    let (key, bot_id) = company_with_bot(&http, base, &config);
    let session = browser_session(&http, base, &key, &bot_id);
    let call_id = session["call_id"].as_str().unwrap().to_string();

    let lines = "I would like to book an appointment|Anna Smith|general practice|next Monday at 10 am|+1 415 555 0100|no thanks|yes";
    let mut caller = Command::new(&env.python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/chat_caller.py"))
        .args([
            "--url",
            session["url"].as_str().unwrap(),
            "--token",
            session["token"].as_str().unwrap(),
        ])
        .args(["--lines", lines, "--pause-after", "3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the Python caller");
    let mut caller_in = caller.stdin.take().unwrap();
    let caller_out = BufReader::new(caller.stdout.take().unwrap());
    let mut heard = Vec::new();
    let mut killed_at = None;
    let mut failover = None;
    let mut drained = None;
    for line in caller_out.lines() {
        let line = line.unwrap();
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("caller printed {line}"));
        match event["event"].as_str() {
            Some("chat") => {
                let text = event["text"].as_str().unwrap().to_string();
                if let (Some(at), None) = (killed_at, failover) {
                    failover = Some(Instant::now().duration_since(at));
                    // The survivor now holds the call: ask it to stop; it must drain, not drop it.
                    let (name, survivor) = workers.pop().expect("one worker left");
                    let pid = survivor.0.id().to_string();
                    assert!(Command::new("kill")
                        .args(["-TERM", &pid])
                        .status()
                        .unwrap()
                        .success());
                    eprintln!("sent SIGTERM to {name}");
                    drained = Some(survivor);
                }
                heard.push(text);
            }
            Some("paused") => {
                // Kill -9 whichever worker holds the call.
                let holder = holder(&workers, log, &call_id).expect("a worker took the call");
                let (name, mut proc) = workers.remove(holder);
                proc.0.kill().unwrap();
                proc.0.wait().unwrap();
                eprintln!("killed {name}");
                killed_at = Some(Instant::now());
                writeln!(caller_in, "continue").unwrap();
            }
            Some("done") => break,
            _ => {}
        }
    }
    let status = caller.wait().unwrap();
    assert!(
        status.success(),
        "the caller finished its script; heard: {heard:#?}"
    );
    let mut survivor = drained.expect("the surviving worker was asked to drain");
    let exit = wait_exit(
        &mut survivor,
        Duration::from_secs(20),
        "a drained worker exits once its calls end",
    );
    assert!(exit.success(), "drained worker exit status: {exit}");
    eprintln!(
        "failover: the caller heard the agent again {:?} after the kill",
        failover.unwrap()
    );
    assert!(
        heard[0].contains("Riverside Family Clinic"),
        "greeting: {heard:?}"
    );
    let back = heard
        .iter()
        .position(|t| t.starts_with("Sorry, we got cut off"))
        .expect("the new worker says it is back");
    assert!(
        heard[back].contains("department") || heard[back].contains("day"),
        "and repeats where it was: {}",
        heard[back]
    );
    assert!(
        heard.last().unwrap().contains("You're booked"),
        "{heard:#?}"
    );

    // Post-call (in the dispatcher) stores the call; the fields span both workers.
    let record = stored_call(&http, base, &key, &call_id, &log("dispatcher"));
    assert_eq!(
        record["fields"]["patient_name"], "Anna Smith",
        "collected before the kill"
    );
    assert_eq!(record["fields"]["department"], "general practice");
    assert_eq!(
        record["fields"]["phone"], "+14155550100",
        "collected after the kill"
    );
    assert_eq!(record["outcome"]["kind"], "BOOKING");
    assert_eq!(record["direction"], "web");
}

/// A bot with a language model but no speech providers runs its call over chat with that model:
/// a request no keyword catches is routed by the LLM (a protocol-exact fake Ollama here).
#[test]
fn a_chat_call_routes_through_the_bots_language_model() {
    let Some(env) = support::env("chat with an LLM end-to-end") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ollama = runtime.block_on(callfleet_testkit::FakeOllama::start());
    ollama.push_reply(callfleet_testkit::LlmReply::text("appointment"));
    let dir = tempfile::tempdir().unwrap();
    // The bot's LLM, not the offline models the machine may hold, answers this chat call.
    let no_models = tempfile::tempdir().unwrap();
    let stack = Stack::start(&env, dir.path(), "cfllm", "127.0.0.1:0", &[]);
    let base = &stack.base;
    let _worker = stack.agent(
        "w-llm",
        &[],
        &[
            ("OLLAMA_URL", ollama.url()),
            ("CALLFLEET_MODELS", no_models.path().display().to_string()),
        ],
    );
    stack.wait_workers(&["w-llm"], Duration::from_secs(30));

    let http = reqwest::blocking::Client::new();
    let mut config = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../bots/clinic-en.yaml"),
    )
    .unwrap();
    config.push_str("\nproviders:\n  llm: {provider: ollama, model: llama3.2}\n");
    let (key, bot_id) = company_with_bot(&http, base, &config);
    let session = browser_session(&http, base, &key, &bot_id);
    let output = Command::new(&env.python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/chat_caller.py"))
        .args([
            "--url",
            session["url"].as_str().unwrap(),
            "--token",
            session["token"].as_str().unwrap(),
        ])
        .args(["--lines", "My tooth hurts and I need someone to look at it"])
        .output()
        .expect("run the Python caller");
    let heard: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "chat")
        .map(|e| e["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        output.status.success(),
        "the caller finished; heard {heard:#?}"
    );
    assert_eq!(heard.len(), 2, "greeting and one reply: {heard:#?}");
    assert!(
        heard[1].contains("patient's full name"),
        "the LLM routed the request to booking: {heard:#?}"
    );
    let requests = ollama.requests();
    assert!(
        requests.iter().any(|r| r["messages"][0]["content"]
            .as_str()
            .is_some_and(|c| c.contains("You route a phone caller's request"))),
        "the engine asked the bot's model: {requests:#?}"
    );
    assert_eq!(requests[0]["model"], "llama3.2");
}
