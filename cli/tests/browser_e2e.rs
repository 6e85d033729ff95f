//! `callfleet dev` and its talk page in headless Chromium with a fake microphone: the page starts
//! a session, the in-process agent joins the LiveKit room, and the transcript on the page shows
//! the greeting and the bot's answer to what the caller types.
//!
//! Needs a livekit-server (CALLFLEET_LIVEKIT_URL), the Python SDK venv (CALLFLEET_PYTHON, for
//! aiohttp), Chromium (CALLFLEET_CHROMIUM, default /usr/bin/chromium) and espeak-ng;
//! `scripts/test` sets them up. Under CI a missing piece fails the test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn missing(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what} (CI is set, so this browser test fails instead of skipping)");
    }
    eprintln!("note: skipping the browser test: {what}");
}

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

#[test]
fn the_talk_page_shows_the_conversation() {
    let livekit =
        std::env::var("CALLFLEET_LIVEKIT_URL").unwrap_or_else(|_| "ws://127.0.0.1:7880".into());
    let host_port = livekit
        .split("://")
        .nth(1)
        .unwrap_or(&livekit)
        .trim_end_matches('/')
        .to_string();
    if host_port
        .parse()
        .ok()
        .is_none_or(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_err())
    {
        return missing(&format!("no livekit-server at {livekit}"));
    }
    let python = std::env::var_os("CALLFLEET_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/callfleet/venv/bin/python")
        });
    let chromium = std::env::var_os("CALLFLEET_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    if !python.exists() {
        return missing("no Python with the LiveKit SDK");
    }
    if !chromium.exists() {
        return missing(&format!("no Chromium at {}", chromium.display()));
    }
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("caller.wav");
    let spoken = Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(&wav)
        .arg("I would like to book an appointment")
        .status();
    if !matches!(spoken, Ok(s) if s.success()) {
        return missing("espeak-ng cannot make the fake microphone's WAV");
    }

    let data = dir.path().join("data");
    // The page's text conversation: with the offline models of the user cache (which `models
    // pull` fills and a data dir without models falls back to) the call would be spoken instead.
    let no_models = dir.path().join("no-models");
    std::fs::create_dir_all(&no_models).unwrap();
    let mut dev = Kill(
        Command::new(env!("CARGO_BIN_EXE_callfleet"))
            .args(["dev", "--http-addr", "127.0.0.1:0"])
            .env("CALLFLEET_DATA", &data)
            .env("CALLFLEET_MODELS", &no_models)
            .env("LIVEKIT_URL", &livekit)
            .env(
                "LIVEKIT_API_KEY",
                std::env::var("CALLFLEET_LIVEKIT_API_KEY").unwrap_or_else(|_| "devkey".into()),
            )
            .env(
                "LIVEKIT_API_SECRET",
                std::env::var("CALLFLEET_LIVEKIT_API_SECRET").unwrap_or_else(|_| "secret".into()),
            )
            .env_remove("CALLFLEET_ADMIN_KEY")
            .env_remove("DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start callfleet dev"),
    );
    let mut out = BufReader::new(dev.0.stdout.take().unwrap());
    let mut line = String::new();
    let base = loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "callfleet dev exited early"
        );
        if let Some(rest) = line.strip_prefix("admin API: ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let admin = std::fs::read_to_string(data.join("admin.key")).unwrap();
    let http = reqwest::blocking::Client::new();
    let company: serde_json::Value = http
        .post(format!("{base}/companies"))
        .bearer_auth(admin.trim())
        .json(&serde_json::json!({"name": "Clinic"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let key: serde_json::Value = http
        .post(format!(
            "{base}/companies/{}/api-keys",
            company["id"].as_str().unwrap()
        ))
        .bearer_auth(admin.trim())
        .send()
        .unwrap()
        .json()
        .unwrap();
    let key = key["key"].as_str().unwrap();
    let config = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../bots/clinic-en.yaml"),
    )
    .unwrap();
    let bot: serde_json::Value = http
        .post(format!("{base}/bots"))
        .bearer_auth(key)
        .json(&serde_json::json!({"config": config}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    // The page gets an embed key, which can start calls with this bot from this origin only.
    let embed: serde_json::Value = http
        .post(format!("{base}/embed-keys"))
        .bearer_auth(key)
        .json(&serde_json::json!({"bot_ids": [bot["id"]], "allowed_origins": [base]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let embed = embed["key"].as_str().expect("an embed key");
    let page = format!(
        "{base}/talk/{}#key={embed}&autostart=1",
        bot["id"].as_str().unwrap()
    );

    let output = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/browser_talk.py"))
        .arg("--chromium")
        .arg(&chromium)
        .arg("--url")
        .arg(&page)
        .arg("--wav")
        .arg(&wav)
        .args(["--expect", "Riverside Family Clinic"])
        .args([
            "--say",
            "I would like to book an appointment",
            "--then",
            "full name",
        ])
        .output()
        .expect("run the browser driver");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the page never showed the conversation: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let transcript = report["transcript"].as_str().unwrap();
    assert!(
        transcript.contains("Bot Hello, you've reached Riverside Family Clinic"),
        "{transcript}"
    );
    assert!(
        transcript.contains("You I would like to book an appointment"),
        "{transcript}"
    );
    assert_eq!(
        report["microphone"], true,
        "the fake microphone was published: {report}"
    );
}
