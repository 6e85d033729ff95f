//! A voice caller on LiveKit's Python SDK (tests/py/voice_caller.py): it joins with a token,
//! speaks WAV files when told, and reports what it hears — the agent's audio (stretches of
//! sound) and the live transcript — as JSON events, read here.

use super::Proc;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Caller {
    events: mpsc::Receiver<serde_json::Value>,
    /// Every event read so far, shown when a wait fails.
    pub seen: Vec<serde_json::Value>,
    say: ChildStdin,
    process: Proc,
}

/// Writes `text` spoken by espeak-ng (American English) to `wav`; false when espeak-ng is missing.
pub fn espeak_wav(wav: &Path, text: &str) -> bool {
    let spoken = Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(wav)
        .arg(text)
        .status();
    matches!(spoken, Ok(s) if s.success())
}

impl Caller {
    /// Joins the room at `url` with `token` as the caller.
    pub fn join(python: &Path, url: &str, token: &str) -> Caller {
        let mut child = Command::new(python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/voice_caller.py"))
            .args(["--url", url, "--token", token])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the Python caller");
        let say = child.stdin.take().expect("piped stdin");
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let event: serde_json::Value =
                    serde_json::from_str(&line).unwrap_or_else(|_| panic!("caller printed {line}"));
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        Caller {
            events,
            seen: Vec::new(),
            say,
            process: Proc(child),
        }
    }

    /// The next event `want` accepts; everything read on the way is kept in `seen`.
    pub fn wait(
        &mut self,
        what: &str,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
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

    /// The text of the next transcript turn of `speaker` (`user` or `bot`).
    pub fn transcript(&mut self, speaker: &str) -> String {
        let event = self.wait(&format!("a {speaker} transcript"), |e| {
            e["event"] == "transcript" && e["speaker"] == speaker
        });
        event["text"].as_str().unwrap_or_default().to_string()
    }

    /// The agent's next reply: its words (from the live transcript, sent as it speaks or once
    /// it has spoken) and when its voice reached the caller (unix seconds).
    pub fn reply(&mut self) -> (String, f64) {
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
        (text.expect("set above"), voice.expect("set above"))
    }

    /// Speaks the WAV at `wav` once the agent has been quiet for a moment (no barge-in).
    pub fn say(&mut self, wav: &Path) {
        writeln!(self.say, "say {}", wav.display()).expect("tell the caller to speak");
    }

    /// Hangs up and waits for the caller to leave and exit.
    pub fn leave(mut self) -> ExitStatus {
        writeln!(self.say, "leave").expect("tell the caller to leave");
        self.wait("the caller to leave", |e| e["event"] == "done");
        self.process.0.wait().expect("the caller exits")
    }
}
