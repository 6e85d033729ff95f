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
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{api_base, callfleet, company_with_bot, holder, stored_call, wait_exit};

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

struct Caller {
    events: mpsc::Receiver<serde_json::Value>,
    seen: Vec<serde_json::Value>,
}

impl Caller {
    /// The next event `want` accepts; everything read on the way is kept in `seen`.
    fn wait(&mut self, what: &str, want: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self.events.recv_timeout(left).unwrap_or_else(|_| {
                panic!("waited 30 s for {what}; the caller saw: {:#?}", self.seen)
            });
            self.seen.push(event.clone());
            if want(&event) {
                return event;
            }
        }
    }

    fn transcript(&mut self, speaker: &str) -> String {
        let event = self.wait(&format!("a {speaker} transcript"), |e| {
            e["event"] == "transcript" && e["speaker"] == speaker
        });
        event["text"].as_str().unwrap_or_default().to_string()
    }

    /// The agent's next reply: its words (from the live transcript, sent as it speaks or once
    /// it has spoken) and when its voice reached the caller.
    fn reply(&mut self) -> (String, f64) {
        let (mut text, mut voice) = (None, None);
        while text.is_none() || voice.is_none() {
            let e = self.wait("the agent's reply", |e| {
                e["event"] == "audio_start" || (e["event"] == "transcript" && e["speaker"] == "bot")
            });
            if e["event"] == "audio_start" {
                voice = voice.or(e["t"].as_f64());
            } else {
                text = text.or(e["text"].as_str().map(str::to_string));
            }
        }
        (text.unwrap(), voice.unwrap())
    }
}

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
    let spoken = Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(&speech)
        .arg("this is the caller speaking")
        .status();
    if !matches!(spoken, Ok(s) if s.success()) {
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

    let data = dir.path().join("data");
    let prefix = format!("cfvoice:{}:", std::process::id());
    let log = |name: &str| dir.path().join(format!("{name}.log"));
    let mut api = callfleet(
        &["api", "--http-addr", "127.0.0.1:0"],
        &data,
        &env,
        &prefix,
        &log("api"),
        &[],
    );
    let base = api_base(&mut api);
    let _dispatcher = callfleet(
        &["dispatcher", "--http-addr", "127.0.0.1:0"],
        &data,
        &env,
        &prefix,
        &log("dispatcher"),
        &[],
    );
    let mut workers = vec![
        (
            "w-a",
            callfleet(
                &["agent", "--worker-id", "w-a", "--capacity", "10"],
                &data,
                &env,
                &prefix,
                &log("w-a"),
                &providers,
            ),
        ),
        (
            "w-b",
            callfleet(
                &["agent", "--worker-id", "w-b", "--capacity", "10"],
                &data,
                &env,
                &prefix,
                &log("w-b"),
                &providers,
            ),
        ),
    ];
    std::thread::sleep(Duration::from_secs(2));

    let http = reqwest::blocking::Client::new();
    let clinic = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../bots/clinic-en.yaml"),
    )
    .unwrap();
    let config = format!("{clinic}\nproviders:\n  stt: {{provider: deepgram}}\n  tts: {{provider: cartesia, voice: test-voice}}\n");
    let (key, bot_id) = company_with_bot(&http, &base, &config);
    let session = http
        .post(format!("{base}/bots/{bot_id}/sessions"))
        .bearer_auth(&key)
        .send()
        .unwrap();
    assert_eq!(
        session.status(),
        201,
        "{}",
        session.text().unwrap_or_default()
    );
    let session: serde_json::Value = session.json().unwrap();
    let call_id = session["call_id"].as_str().unwrap().to_string();

    let mut python = Command::new(&env.python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/voice_caller.py"))
        .args([
            "--url",
            session["url"].as_str().unwrap(),
            "--token",
            session["token"].as_str().unwrap(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the Python caller");
    let mut say = python.stdin.take().unwrap();
    let (tx, events) = mpsc::channel();
    let out = BufReader::new(python.stdout.take().unwrap());
    let mut python = support::Proc(python);
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let event: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|_| panic!("caller printed {line}"));
            if tx.send(event).is_err() {
                break;
            }
        }
    });
    let mut caller = Caller {
        events,
        seen: Vec::new(),
    };

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
        writeln!(say, "say {}", speech.display()).unwrap();
        let heard = caller.transcript("user");
        assert_eq!(
            heard, *line,
            "the fake recognizer's words come back as the caller's turn"
        );
        let (reply, _) = caller.reply();
        replies.push(reply);
    }
    caller.wait("the end of the last reply", |e| e["event"] == "audio_end");
    writeln!(say, "leave").unwrap();
    caller.wait("the caller to leave", |e| e["event"] == "done");
    assert!(python.0.wait().unwrap().success());
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

    let record = stored_call(&http, &base, &key, &call_id, &log("dispatcher"));
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
