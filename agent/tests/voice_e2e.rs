//! A voice call end to end on a real livekit-server: LiveKit's Python SDK is the caller (it
//! publishes espeak-ng speech and records what it hears), the agent worker runs the call through
//! the pipeline with protocol-exact fake Deepgram (STT) and Cartesia (TTS) servers. The caller
//! must hear the greeting and a reply, and the stored record must show it was understood. The
//! bot records its calls: the two-channel recording in the store holds the caller's speech on
//! the left and the bot's greeting and reply on the right.
//!
//! Needs a livekit-server (CALLFLEET_LIVEKIT_URL), the Python SDK (CALLFLEET_PYTHON) and
//! espeak-ng; `scripts/test` sets them up. Under CI a missing piece fails the test.

mod support;

use callfleet_agent::{VoiceSession, Worker, WorkerConfig};
use callfleet_core::domain::{CallDirection, Speaker};
use callfleet_core::secret::Secret;
use callfleet_core::BotConfig;
use callfleet_fleet::{FileQueue, FleetBus, Job, MemoryBus, PostCallQueue, MESSAGE_VERSION};
use callfleet_providers::ProviderEnv;
use callfleet_recording::{recording_key, DirStore, RecordingStore};
use callfleet_testkit::{FakeCartesia, FakeDeepgram, SttScript, TEST_KEY};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::{espeak_wav, livekit_env, missing, settings, LiveKitEnv};
use tokio_util::sync::CancellationToken;

const BOT: &str = r#"
language: en
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
recording: {enabled: true, retention_days: 3}
"#;

fn read_wav(path: &Path) -> Vec<i16> {
    let bytes = std::fs::read(path).expect("recorded WAV");
    // The recorder writes a plain 44-byte RIFF header, 16-bit mono.
    bytes[44..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Stretches of sound at least 200 ms long, separated by at least 300 ms of quiet.
fn bursts(samples: &[i16], rate: usize) -> usize {
    let window = rate / 20;
    let loud: Vec<bool> = samples
        .chunks(window)
        .map(|w| {
            (w.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt() > 800.0
        })
        .collect();
    let (mut count, mut run, mut quiet) = (0, 0, 100);
    for is_loud in loud {
        if is_loud {
            run += 1;
            if run == 4 && quiet >= 6 {
                count += 1;
            }
            if run >= 4 {
                quiet = 0;
            }
        } else {
            run = 0;
            quiet += 1;
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_hears_the_greeting_and_an_answer() {
    let Some(LiveKitEnv { url, python }) = livekit_env("voice end-to-end") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let speech = dir.path().join("caller.wav");
    if !espeak_wav(&speech, "I would like to book an appointment") {
        return missing("voice end-to-end", "espeak-ng is not installed");
    }

    let stt = FakeDeepgram::start(SttScript {
        transcripts: vec!["I would like to book an appointment".into()],
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
    let livekit = settings(&url);
    let bus: Arc<dyn FleetBus> = Arc::new(MemoryBus::new());
    let queue = Arc::new(FileQueue::open(&dir.path().join("queue")).unwrap());
    let store: Arc<dyn RecordingStore> = Arc::new(DirStore::new(&dir.path().join("store")));
    let worker = Worker::new(
        bus.clone(),
        queue.clone(),
        Arc::new(VoiceSession::new(livekit, providers).with_recordings(store.clone())),
        WorkerConfig::new("w1", 2),
    );
    let (drain, force) = (CancellationToken::new(), CancellationToken::new());
    let running = tokio::spawn(worker.run(drain.clone(), force.clone()));

    let room = format!("voice-{}", std::process::id());
    let config = BotConfig::parse_any(BOT).unwrap();
    let job = Job {
        v: MESSAGE_VERSION,
        call_id: format!("call_voice_{}", std::process::id()),
        room: room.clone(),
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
    };
    bus.assign("w1", &job).await.unwrap();

    let recordings = dir.path().join("rec");
    std::fs::create_dir_all(&recordings).unwrap();
    let peer = tokio::process::Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/rtc/tests/py/peer.py"))
        .args(["--url", &url, "--room", &room, "--identity", "caller"])
        .arg("--publish-wav")
        .arg(&speech)
        .args([
            "--publish-delay",
            "3",
            "--record-seconds",
            "9",
            "--leave-after",
            "10",
            "--duration",
            "12",
        ])
        .arg("--record-dir")
        .arg(&recordings)
        .output()
        .await
        .expect("run the Python caller");
    assert!(
        peer.status.success(),
        "caller failed: {}",
        String::from_utf8_lossy(&peer.stderr)
    );

    let record = queue
        .pop("test", Duration::from_secs(15))
        .await
        .unwrap()
        .expect("the call ended and was queued")
        .record;
    drain.cancel();
    running.await.unwrap().unwrap();

    let said: Vec<(Speaker, &str)> = record
        .transcript
        .iter()
        .map(|t| (t.speaker, t.text.as_str()))
        .collect();
    assert_eq!(
        said.first(),
        Some(&(Speaker::Bot, "Hi! How can I help?")),
        "{said:?}"
    );
    assert!(
        said.contains(&(Speaker::User, "I would like to book an appointment")),
        "the caller was understood: {said:?}"
    );
    assert!(
        said.iter()
            .any(|(s, t)| *s == Speaker::Bot && t.contains("Your full name?")),
        "and answered: {said:?}"
    );
    assert!(stt.log().audio_ms > 1000, "the caller's audio reached STT");
    assert!(!record.metrics.is_empty(), "per-turn metrics are kept");

    let recorded = std::fs::read_dir(&recordings)
        .unwrap()
        .next()
        .expect("the caller recorded the agent")
        .unwrap()
        .path();
    let heard = bursts(&read_wav(&recorded), 48_000);
    assert!(
        heard >= 2,
        "the caller heard the greeting and the answer as audio ({heard} bursts)"
    );

    // The agent's own recording of the call, stored before the record was queued.
    let wav = store
        .get(&recording_key("cmp", &record.id))
        .await
        .unwrap()
        .expect("the call was recorded");
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 2, "two channels");
    let rate = u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]) as usize;
    let (mut caller, mut bot) = (Vec::new(), Vec::new());
    for frame in wav[44..].chunks_exact(4) {
        caller.push(i16::from_le_bytes([frame[0], frame[1]]));
        bot.push(i16::from_le_bytes([frame[2], frame[3]]));
    }
    let (caller_bursts, bot_bursts) = (bursts(&caller, rate), bursts(&bot, rate));
    assert!(
        caller_bursts >= 1,
        "the caller's speech is on the left ({caller_bursts})"
    );
    assert!(
        bot_bursts >= 2,
        "the greeting and the reply are on the right ({bot_bursts})"
    );
}
