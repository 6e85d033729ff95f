//! A configured bot (the scenario engine) answering a recorded caller through the fakes, as the
//! console's audio mode runs it.

use callfleet_audio::wav;
use callfleet_core::scenario::{CallContext, ScenarioEngine};
use callfleet_core::secret::Secret;
use callfleet_core::BotConfig;
use callfleet_pipeline::*;
use callfleet_providers::cartesia::CartesiaTts;
use callfleet_providers::deepgram::DeepgramStt;
use callfleet_testkit::audio::{silence, speech};
use callfleet_testkit::*;
use std::sync::Arc;
use std::time::Duration;

/// The clinic bot through the fakes: a caller who asks to book and then says "John Smith",
/// heard with `confidence`. Returns the bot, the transcript lines and the call.
async fn clinic_call(confidence: f64) -> (BotConfig, Vec<String>, RecordedCall) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bots/clinic-en.yaml");
    let bot = BotConfig::parse_any(&std::fs::read_to_string(path).unwrap()).unwrap();
    let stt = FakeDeepgram::start(SttScript {
        transcripts: vec![
            "I'd like to book an appointment".into(),
            "John Smith".into(),
        ],
        confidence,
        ..SttScript::default()
    })
    .await;
    let tts = FakeCartesia::start().await;
    let mut config = PipelineConfig::for_bot("clinic", &bot);
    config.stt.endpointing_ms = 200;
    let pipeline = Pipeline::new(
        config,
        Providers {
            stt: Arc::new(DeepgramStt::new(Secret::new(TEST_KEY)).with_base_url(stt.url())),
            tts: Arc::new(CartesiaTts::new(Secret::new(TEST_KEY)).with_base_url(tts.url())),
        },
    );
    let engine = ScenarioEngine::new(Arc::new(bot.clone()), CallContext::for_bot_now(&bot));
    // Greeting (~4.5 s of fake audio) plays while the caller waits, then two answers.
    let mut caller = silence(5500, 16000);
    caller.extend(speech(700, 16000));
    caller.extend(silence(5000, 16000));
    caller.extend(speech(600, 16000));
    let mut lines = Vec::new();
    let call = run_recorded_call(
        pipeline,
        Box::new(ScenarioResponder::new(engine)),
        &caller,
        Duration::from_millis(1500),
        |t| lines.push(format!("{:?}: {}", t.speaker, t.text)),
    )
    .await
    .unwrap();
    (bot, lines, call)
}

#[tokio::test]
async fn a_recorded_caller_books_with_the_scenario_engine() {
    let (bot, lines, call) = clinic_call(0.98).await;
    // The caller's recording: 11.8 s at 16 kHz.
    let caller_len = (5500 + 700 + 5000 + 600) * 16;
    assert_eq!(
        lines,
        vec![
            format!("Bot: {}", bot.greeting),
            "User: I'd like to book an appointment".to_string(),
            "Bot: May I have the patient's full name?".to_string(),
            "User: John Smith".to_string(),
            "Bot: Which department: general practice, pediatrics, dermatology or cardiology?"
                .to_string(),
        ]
    );
    let result = call.report.result.expect("the engine's result");
    assert_eq!(
        result.fields.get("patient_name").map(String::as_str),
        Some("John Smith")
    );
    // The reply track covers the call and is not silent.
    assert!(
        call.reply.len() >= caller_len * 9 / 10,
        "{} vs {caller_len}",
        call.reply.len(),
    );
    assert!(call.reply.iter().any(|&s| s.abs() > 1000));
    // Written and read back as a WAV file.
    let dir = std::env::temp_dir().join(format!("callfleet-recorded-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("reply.wav");
    wav::write(&out, &call.reply, 16000).unwrap();
    assert_eq!(wav::read(&out).unwrap().samples.len(), call.reply.len());
    let _ = std::fs::remove_dir_all(dir);
}

/// The recognizer's confidence reaches the engine: a name it was unsure of is not stored, and
/// the bot asks for it again.
#[tokio::test]
async fn a_name_the_recognizer_was_unsure_of_is_asked_again() {
    let (bot, lines, call) = clinic_call(0.3).await;
    let result = call.report.result.expect("the engine's result");
    assert_eq!(result.fields.get("patient_name"), None, "{lines:#?}");
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert_eq!(lines[0], format!("Bot: {}", bot.greeting));
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("Bot:") && last.contains("full name"),
        "{lines:#?}"
    );
}
