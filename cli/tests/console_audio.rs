//! `callfleet console --wav-in --wav-out`: a recorded caller through the voice pipeline with the
//! bot's providers — here protocol-exact fake Deepgram and Cartesia servers.

use callfleet_testkit::audio::{silence, speech};
use callfleet_testkit::{FakeCartesia, FakeDeepgram, SttScript, TEST_KEY};
use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_caller_is_heard_and_answered() {
    let stt = FakeDeepgram::start(SttScript { transcripts: vec!["what are your opening hours".into()], ..SttScript::default() }).await;
    let tts = FakeCartesia::start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let yaml = std::fs::read_to_string(root.join("bots/clinic-en.yaml")).unwrap();
    let bot = dir.path().join("bot.yaml");
    std::fs::write(&bot, format!("{yaml}\nproviders:\n  stt: {{provider: deepgram}}\n  tts: {{provider: cartesia}}\n")).unwrap();
    let mut caller = silence(5500, 16000);
    caller.extend(speech(800, 16000));
    caller.extend(silence(500, 16000));
    let wav_in = dir.path().join("in.wav");
    callfleet_pipeline::wav::write(&wav_in, &caller, 16000).unwrap();
    let wav_out = dir.path().join("out.wav");

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_callfleet"))
        .args(["console", "--json", "--bot"])
        .arg(&bot)
        .arg("--docs").arg(root.join("bots/docs/clinic-en"))
        .arg("--wav-in").arg(&wav_in)
        .arg("--wav-out").arg(&wav_out)
        .env("DEEPGRAM_API_KEY", TEST_KEY)
        .env("CARTESIA_API_KEY", TEST_KEY)
        .env("DEEPGRAM_URL", stt.url())
        .env("CARTESIA_URL", tts.url())
        .output()
        .await
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{text}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(text.starts_with("bot: Hello, you've reached Riverside Family Clinic"), "{text}");
    assert!(text.contains("caller: what are your opening hours"), "{text}");
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["turns"], 1);
    let reply = callfleet_pipeline::wav::read(&wav_out).unwrap();
    assert!(reply.samples.len() > 16000 * 6, "the bot's audio covers the greeting and the answer");
    assert!(stt.log().audio_ms > 5000, "the recording was streamed to STT");
}
