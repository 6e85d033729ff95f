//! What LiveKit's own clients see of a callfleet agent, on a real livekit-server with LiveKit's
//! Python SDK as the caller (`cli/tests/py/voice_caller.py`): the agent's participant kind is
//! AGENT; during a spoken turn its `lk.agent.state` goes listening → thinking → speaking →
//! listening; each utterance, the caller's and the agent's, arrives as an `lk.transcription`
//! text stream with its final text, segment id and the track it came from (the caller's interims
//! reuse their segment's id); text typed into `lk.chat` during the voice call is a turn answered
//! by voice; and a chat call answers `lk.chat` text streams and legacy chat packets with text
//! streams.
//!
//! The agent worker runs the calls with protocol-exact fake Deepgram (STT) and Cartesia (TTS)
//! servers. Needs a livekit-server (CALLFLEET_LIVEKIT_URL), the Python SDK (CALLFLEET_PYTHON)
//! and espeak-ng; `scripts/test` sets them up. Under CI a missing piece fails the test.

mod support;

use callfleet_agent::{ChatSession, VoiceSession, Worker, WorkerConfig};
use callfleet_core::domain::CallDirection;
use callfleet_core::secret::Secret;
use callfleet_core::BotConfig;
use callfleet_fleet::{
    FileQueue, FleetBus, Job, MemoryBus, PostCallQueue, QueuedRecord, MESSAGE_VERSION,
};
use callfleet_providers::ProviderEnv;
use callfleet_testkit::{FakeCartesia, FakeDeepgram, SttScript, TEST_KEY};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::{api_key, api_secret, espeak_wav, livekit_env, missing, settings, LiveKitEnv};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const VOICE_BOT: &str = r#"
language: en
silence_timeout_sec: 60
greeting: "Hi! How can I help?"
fallback: "Sorry?"
scenarios:
  - name: booking
    trigger_keywords: [appointment, book]
    collect_fields:
      - {name: patient_name, prompt: "Your full name?"}
      - {name: phone, prompt: "Your phone?"}
providers:
  stt: {provider: deepgram}
  tts: {provider: cartesia, voice: test-voice}
"#;

/// The same bot with no speech providers: its calls run over chat.
const CHAT_BOT: &str = r#"
language: en
greeting: "Hi! How can I help?"
fallback: "Sorry?"
scenarios:
  - name: booking
    trigger_keywords: [appointment, book]
    collect_fields:
      - {name: patient_name, prompt: "Your full name?"}
      - {name: phone, prompt: "Your phone?"}
"#;

const LINE: &str = "I would like to book an appointment";

const TEST: &str = "LiveKit conventions end-to-end";

struct Setup {
    url: String,
    python: PathBuf,
    dir: tempfile::TempDir,
}

fn setup() -> Option<Setup> {
    let LiveKitEnv { url, python } = livekit_env(TEST)?;
    Some(Setup {
        url,
        python,
        dir: tempfile::tempdir().unwrap(),
    })
}

fn job(name: &str, config: &str) -> Job {
    let config = BotConfig::parse_any(config).unwrap();
    Job {
        v: MESSAGE_VERSION,
        call_id: format!("call_{name}_{}", std::process::id()),
        room: format!("{name}-{}", std::process::id()),
        company_id: "cmp".into(),
        bot_id: "bot".into(),
        config_version: 1,
        config: config.to_json(),
        direction: CallDirection::Web,
        caller_identity: Some("caller".into()),
        from_number: None,
        to_number: None,
        created_at: 0,
        attempt: 0,
        livekit_agent: None,
    }
}

/// LiveKit's Python SDK as the caller: its events, and commands to it.
struct Caller {
    events: mpsc::UnboundedReceiver<Value>,
    /// Every event read so far, shown when a wait fails.
    seen: Vec<Value>,
    stdin: ChildStdin,
    _child: Child,
}

impl Caller {
    fn join(s: &Setup, room: &str) -> Caller {
        let token =
            callfleet_rtc::participant_token(&api_key(), &api_secret(), room, "caller").unwrap();
        let mut child = tokio::process::Command::new(&s.python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/tests/py/voice_caller.py"))
            .args(["--url", &s.url, "--token", &token])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the Python caller");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let event: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("the caller printed {line}"));
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        Caller {
            events,
            seen: Vec::new(),
            stdin,
            _child: child,
        }
    }

    /// The next event `want` accepts (everything read on the way is kept in `seen`).
    async fn wait(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => {
                    self.seen.push(event.clone());
                    if want(&event) {
                        return event;
                    }
                }
                _ => panic!("waited for {what}; the caller saw: {:#?}", self.seen),
            }
        }
    }

    /// Reads events until everything seen so far satisfies `done`.
    async fn wait_seen(&mut self, what: &str, done: impl Fn(&[Value]) -> bool) {
        while !done(&self.seen) {
            self.wait(what, |_| true).await;
        }
    }

    async fn send(&mut self, command: &str) {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("tell the caller");
    }

    /// The events named `name` seen so far.
    /// Sends `command` (the caller speaks or types), waits for the bot's transcribed reply and
    /// for the agent to be listening again (`states` state changes seen in all); the reply.
    async fn voice_turn(&mut self, command: &str, states: usize) -> Value {
        self.send(command).await;
        let reply = self
            .wait(&format!("the reply to {command:?}"), |e| {
                e["event"] == "transcript" && e["speaker"] == "bot"
            })
            .await;
        self.wait_seen("listening after the reply", |seen| {
            seen.iter().filter(|e| e["event"] == "agent_state").count() >= states
        })
        .await;
        reply
    }

    fn seen(&self, name: &str) -> Vec<&Value> {
        self.seen.iter().filter(|e| e["event"] == name).collect()
    }
}

/// Runs a worker with `runner` until `job`'s call is queued; what the caller does meanwhile is
/// `converse`.
async fn run_call<F, Fut>(
    s: &Setup,
    runner: Arc<dyn callfleet_agent::CallRunner>,
    job: Job,
    converse: F,
) -> (Caller, QueuedRecord)
where
    F: FnOnce(Caller) -> Fut,
    Fut: std::future::Future<Output = Caller>,
{
    let bus: Arc<dyn FleetBus> = Arc::new(MemoryBus::new());
    let queue = Arc::new(FileQueue::open(&s.dir.path().join(&job.call_id)).unwrap());
    let worker = Worker::new(
        bus.clone(),
        queue.clone(),
        runner,
        WorkerConfig::new("w1", 2),
    );
    let (drain, force) = (CancellationToken::new(), CancellationToken::new());
    let running = tokio::spawn(worker.run(drain.clone(), force.clone()));
    bus.assign("w1", &job).await.unwrap();
    let caller = converse(Caller::join(s, &job.room)).await;
    let record = queue
        .pop("test", Duration::from_secs(20))
        .await
        .unwrap()
        .expect("the call ended and was queued");
    drain.cancel();
    running.await.unwrap().unwrap();
    (caller, record)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_clients_see_an_agent_its_state_and_both_sides_transcribed() {
    let Some(s) = setup() else { return };
    let speech = s.dir.path().join("caller.wav");
    if !espeak_wav(&speech, LINE) {
        return missing(TEST, "espeak-ng is not installed");
    }
    let stt = FakeDeepgram::start(SttScript {
        transcripts: vec![LINE.into()],
        ..SttScript::default()
    })
    .await;
    let tts = FakeCartesia::start().await;
    let providers = ProviderEnv {
        deepgram_key: Some(Secret::new(TEST_KEY)),
        deepgram_url: Some(stt.url()),
        cartesia_key: Some(Secret::new(TEST_KEY)),
        cartesia_url: Some(tts.url()),
        ..ProviderEnv::default()
    };
    let job = job("lkvoice", VOICE_BOT);
    let agent = format!("agent-{}", job.call_id);
    let session = Arc::new(VoiceSession::new(settings(&s.url), providers));
    let (caller, record) = run_call(&s, session, job, |mut caller| async {
        let seen = caller
            .wait("the agent", |e| {
                e["event"] == "participant" && e["identity"].as_str() != Some("caller")
            })
            .await;
        assert_eq!(seen["kind"], "PARTICIPANT_KIND_AGENT", "{seen}");
        assert_eq!(seen["attributes"]["lk.agent.state"], "initializing");
        caller
            .wait("the greeting", |e| {
                e["event"] == "transcript" && e["speaker"] == "bot"
            })
            .await;
        // Spoken, then typed in the chat during the voice call: each answered by voice and
        // transcription, the state back to listening after it (the attribute comes through
        // signalling, the transcription over the data channel: either may come first).
        let reply = caller
            .voice_turn(&format!("say {}", speech.display()), 6)
            .await;
        assert_eq!(reply["text"], "Your full name?");
        let reply = caller.voice_turn("chat Anna Smith", 9).await;
        assert_eq!(reply["text"], "Your phone?");
        caller.send("leave").await;
        caller
            .wait("the caller to leave", |e| e["event"] == "done")
            .await;
        caller
    })
    .await;

    let states: Vec<&str> = caller
        .seen("agent_state")
        .iter()
        .filter(|e| e["identity"] == agent.as_str())
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert_eq!(
        states,
        [
            "listening", // the conversation starts
            "speaking",  // the greeting
            "listening",
            "thinking", // the caller's turn ended
            "speaking", // the reply
            "listening",
            "thinking", // the chat message came
            "speaking",
            "listening"
        ],
        "{:#?}",
        caller.seen
    );

    let my_track = caller.seen("joined")[0]["track"]
        .as_str()
        .unwrap()
        .to_string();
    let agent_track = caller
        .seen("track_subscribed")
        .iter()
        .find(|e| e["identity"] == agent.as_str())
        .and_then(|e| e["track"].as_str())
        .expect("the agent's track")
        .to_string();
    let transcriptions = caller.seen("transcription");
    let attr = |e: &Value, k: &str| e["attributes"][k].as_str().unwrap_or_default().to_string();

    // The caller's words, on the caller's behalf: interims then the final, one segment.
    let mine: Vec<&&Value> = transcriptions
        .iter()
        .filter(|e| e["identity"] == "caller")
        .collect();
    // Each stream is read by a task of its own, so they may finish out of order: the final is
    // told by its attribute.
    let (finals, interims): (Vec<&&Value>, Vec<&&Value>) = mine
        .iter()
        .partition(|e| attr(e, "lk.transcription_final") == "true");
    assert_eq!(finals.len(), 1, "one final: {mine:#?}");
    let last = finals[0];
    assert_eq!(last["text"], LINE);
    assert_eq!(attr(last, "lk.transcription_final"), "true");
    assert_eq!(attr(last, "lk.transcribed_track_id"), my_track);
    assert!(!interims.is_empty(), "interim results: {mine:#?}");
    for interim in interims {
        assert_eq!(attr(interim, "lk.transcription_final"), "false");
        assert_eq!(
            attr(interim, "lk.segment_id"),
            attr(last, "lk.segment_id"),
            "interims reuse the segment's id"
        );
        assert!(LINE.starts_with(interim["text"].as_str().unwrap()));
    }

    // The agent's utterances: a stream each, final, naming its own track.
    let spoken: Vec<(String, String, String)> = transcriptions
        .iter()
        .filter(|e| e["identity"] == agent.as_str())
        .map(|e| {
            (
                e["text"].as_str().unwrap_or_default().to_string(),
                attr(e, "lk.transcription_final"),
                attr(e, "lk.transcribed_track_id"),
            )
        })
        .collect();
    let want = |text: &str| (text.to_string(), "true".to_string(), agent_track.clone());
    assert_eq!(
        spoken,
        [
            want("Hi! How can I help?"),
            want("Your full name?"),
            want("Your phone?")
        ]
    );
    // The agent's words came as they were played, a few at a time, not whole at the end.
    let pieces: Vec<String> = caller
        .seen("transcription_chunk")
        .iter()
        .filter(|e| e["identity"] == agent.as_str())
        .filter_map(|e| e["text"].as_str().map(str::to_string))
        .collect();
    assert!(pieces.len() > spoken.len(), "{pieces:?}");
    assert_eq!(
        pieces.concat(),
        "Hi! How can I help?Your full name?Your phone?",
        "{pieces:?}"
    );
    let segments: std::collections::HashSet<String> = transcriptions
        .iter()
        .map(|e| attr(e, "lk.segment_id"))
        .collect();
    assert_eq!(segments.len(), 4, "one segment per utterance");
    assert_eq!(
        record.record.fields.get("patient_name").map(String::as_str),
        Some("Anna Smith"),
        "the typed name was taken: {:?}",
        record.record.fields
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_call_answers_text_streams_and_legacy_chat_with_text_streams() {
    let Some(s) = setup() else { return };
    let job = job("lkchat", CHAT_BOT);
    let agent = format!("agent-{}", job.call_id);
    let session = Arc::new(ChatSession::new(settings(&s.url)));
    let (caller, record) = run_call(&s, session, job, |mut caller| async {
        let greeting = caller.wait("the greeting", |e| e["event"] == "chat").await;
        assert_eq!(greeting["text"], "Hi! How can I help?");
        caller.send(&format!("chat {LINE}")).await;
        let reply = caller.wait("a reply", |e| e["event"] == "chat").await;
        assert_eq!(
            (&reply["identity"], &reply["text"], &reply["via"]),
            (
                &Value::from(agent.as_str()),
                &Value::from("Your full name?"),
                &Value::from("stream")
            )
        );
        caller.send("chat-legacy Anna Smith").await;
        let reply = caller.wait("a reply", |e| e["event"] == "chat").await;
        assert_eq!(
            (&reply["text"], &reply["via"]),
            (&Value::from("Your phone?"), &Value::from("stream"))
        );
        caller.send("leave").await;
        caller
            .wait("the caller to leave", |e| e["event"] == "done")
            .await;
        caller
    })
    .await;
    // A chat call's agent publishes no track, and livekit-server batches the updates of such a
    // participant, passing on only the latest: "thinking" (microseconds here) need not be seen.
    // The call listens after each reply.
    let states: Vec<&str> = caller
        .seen("agent_state")
        .iter()
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert!(
        states.iter().all(|s| ["listening", "thinking"].contains(s))
            && states.last() == Some(&"listening"),
        "{states:?}"
    );
    assert_eq!(
        record.record.fields.get("patient_name").map(String::as_str),
        Some("Anna Smith"),
        "{:?}",
        record.record.fields
    );
}
