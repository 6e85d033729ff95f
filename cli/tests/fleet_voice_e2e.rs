//! A voice call through the whole fleet, as separate processes on a real livekit-server and
//! Redis: `callfleet api` (browser session), `callfleet dispatcher`, two `callfleet agent`
//! workers speaking to protocol-exact fake Deepgram (STT) and Cartesia (TTS) servers, and
//! LiveKit's Python SDK as the caller (tests/py/voice_caller.py), which speaks espeak-ng speech
//! and reports what it hears: the agent's audio and its live transcript.
//!
//! The caller hears the greeting, is understood, and hears each reply as audio. Mid-call the
//! worker holding the call is killed with SIGKILL: the other worker must answer again (as
//! audio) with the conversation intact. The survivor is then sent SIGTERM: it must finish the
//! call and exit. The stored record must hold the fields from both workers.
//!
//! Needs what tests/support names, plus espeak-ng; `scripts/test` sets them up.

mod support;

use callfleet_testkit::{FakeCartesia, FakeDeepgram, SttScript, TEST_KEY};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::caller::{espeak_wav, Caller};
use support::{browser_session, company_with_bot, holder, stored_call, wait_exit, Stack};

/// What the caller says, in order; the fake recognizer hears each stretch of speech as the next.
const LINES: [&str; 7] = [
    "I would like to book an appointment",
    "Anna Smith",
    "general practice",
    "next Monday at 10 am",
    "+1 415 555 0100",
    "no thanks",
    "yes",
];

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_voice_call_survives_its_worker_being_killed() {
    let Some(env) = support::env("voice fleet end-to-end") else {
        return;
    };
    let dir = support::TestDir::new();
    let speech = dir.path().join("caller.wav");
    if !espeak_wav(&speech, "this is the caller speaking") {
        return support::missing::<()>("voice fleet end-to-end", "espeak-ng is not installed")
            .unwrap_or(());
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let script = SttScript {
        transcripts: LINES.iter().map(|l| l.to_string()).collect(),
        ..SttScript::default()
    };
    let stt = runtime.block_on(FakeDeepgram::start(script));
    let tts = runtime.block_on(FakeCartesia::start());
    let providers = [
        ("DEEPGRAM_API_KEY", TEST_KEY.to_string()),
        ("DEEPGRAM_URL", stt.url()),
        ("CARTESIA_API_KEY", TEST_KEY.to_string()),
        ("CARTESIA_URL", tts.url()),
        // This test is about failover; turn-taking with the trained models is tested in the
        // pipeline. The fake recognizer maps stretches of sound to lines, which the energy VAD's
        // plain endpointing keeps one to one.
        ("CALLFLEET_VAD", "energy".to_string()),
    ];

    let stack = Stack::start(&env, dir.path(), "cfvoice", "127.0.0.1:0", &[]);
    let (base, log) = (&stack.base, |name: &str| stack.log(name));
    let mut workers = vec![
        ("w-a", stack.agent("w-a", &["--capacity", "10"], &providers)),
        ("w-b", stack.agent("w-b", &["--capacity", "10"], &providers)),
    ];
    stack.wait_workers(&["w-a", "w-b"], Duration::from_secs(30));

    let http = reqwest::blocking::Client::new();
    let clinic = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../bots/clinic-en.yaml"),
    )
    .unwrap();
    let config = format!("{clinic}\nproviders:\n  stt: {{provider: deepgram}}\n  tts: {{provider: cartesia, voice: test-voice}}\n");
    let (key, bot_id) = company_with_bot(&http, base, &config);
    let session = browser_session(&http, base, &key, &bot_id);
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
    let mut replies = vec![greeting];
    let mut survivor = None;
    for (i, line) in LINES.iter().enumerate() {
        if i == 3 {
            // Kill -9 whichever worker holds the call, between two of the caller's turns.
            caller.wait("the agent to finish speaking", |e| {
                e["event"] == "audio_end"
            });
            std::thread::sleep(Duration::from_millis(500));
            let at = holder(&workers, log, &call_id).expect("a worker took the call");
            let (name, mut proc) = workers.remove(at);
            proc.0.kill().unwrap();
            proc.0.wait().unwrap();
            let killed_at = unix_now();
            let (back, voice) = caller.reply();
            let heard_after = voice - killed_at;
            eprintln!(
                "killed {name}; the caller heard the agent again {heard_after:.2} s later: {back}"
            );
            assert!(
                back.starts_with("Sorry, we got cut off"),
                "the new worker says it is back: {back}"
            );
            assert!(
                back.contains("department") || back.contains("day"),
                "and repeats where it was: {back}"
            );
            replies.push(back);
        }
        if i == 5 {
            // The survivor now holds the call: ask it to stop; it must drain, not drop it.
            let (name, proc) = workers.pop().expect("one worker left");
            assert!(Command::new("kill")
                .args(["-TERM", &proc.pid()])
                .status()
                .unwrap()
                .success());
            eprintln!("sent SIGTERM to {name}");
            survivor = Some(proc);
        }
        caller.say(&speech);
        let heard = caller.transcript("user");
        assert_eq!(
            heard, *line,
            "the fake recognizer's words come back as the caller's turn"
        );
        let (reply, _) = caller.reply();
        replies.push(reply);
    }
    caller.wait("the end of the last reply", |e| e["event"] == "audio_end");
    assert!(caller.leave().success());
    assert!(
        replies.last().unwrap().contains("You're booked"),
        "{replies:#?}"
    );

    let mut survivor = survivor.expect("the surviving worker was asked to drain");
    let exit = wait_exit(
        &mut survivor,
        Duration::from_secs(20),
        "a drained worker exits once its calls end",
    );
    assert!(exit.success(), "drained worker exit status: {exit}");
    assert!(
        stt.log().connections >= 2,
        "each worker opened its own recognizer connection"
    );

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
    let users: Vec<&str> = record["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["speaker"] == "user")
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert_eq!(users, LINES, "the whole conversation is in the record");
}
