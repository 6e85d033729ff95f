//! The local engines built from a bot's `providers:` through `build_chains_with`: each engine,
//! a chain mixing cloud and local (`cartesia` without its key → `piper`), shared models, the
//! per-call Silero VAD / Smart Turn pair, Piper speech round-tripped through Whisper, and the
//! reasons given when models are missing.
#![cfg(feature = "engines")]

mod common;

use callfleet_audio::rms;
use callfleet_core::config::Providers;
use callfleet_local_engines::{models_dir, LocalFactory};
use callfleet_providers::{
    build_chains_with, call_chains, ProviderEnv, SpeechToText, SttEvent, SttOptions, TextToSpeech,
    TtsEvent, TtsOptions,
};
use std::time::{Duration, Instant};

fn providers(json: serde_json::Value) -> Providers {
    serde_json::from_value(json).expect("a providers section")
}

/// Whether every model the factory can use is here (skip locally, fail under CI).
fn models_present(factory: &LocalFactory) -> bool {
    let missing: Vec<String> = factory
        .status()
        .into_iter()
        .filter_map(|s| s.ready.err().map(|why| format!("{}: {why}", s.engine)))
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "models missing under CI: {missing:?}"
    );
    eprintln!("note: skipping: {missing:?}");
    false
}

async fn speak(tts: &dyn TextToSpeech, text: &str) -> Vec<i16> {
    let mut session = tts
        .open(TtsOptions {
            language: Some("en".into()),
            sample_rate: 16_000,
            ..TtsOptions::default()
        })
        .await
        .expect("session");
    let id = session.start();
    session.push_text(id, text).unwrap();
    session.finish(id).unwrap();
    let mut audio = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(60), session.recv())
            .await
            .expect("audio in time")
        {
            Some(Ok(TtsEvent::Audio { samples, .. })) => audio.extend(samples),
            Some(Ok(TtsEvent::Done { .. })) => return audio,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_local_provider_is_built_from_config_and_chains_mix_with_the_cloud() {
    let factory = LocalFactory::new(models_dir());
    if !models_present(&factory) {
        return;
    }
    let config = providers(serde_json::json!({
        "stt": {"provider": "whisper", "model": "tiny.en", "fallback": [{"provider": "whisper", "model": "base"}]},
        "llm": {"provider": "local-llm"},
        "tts": {"provider": "cartesia", "fallback": [{"provider": "piper"}, {"provider": "espeak"}]},
    }));
    let started = Instant::now();
    let chains = build_chains_with(&config, &ProviderEnv::default(), Some(&factory));
    eprintln!(
        "built in {:?}: {:?}; skipped {:?}",
        started.elapsed(),
        chains.chosen,
        chains.skipped
    );
    assert_eq!(
        chains.chosen,
        vec![
            "stt: whisper → whisper",
            "llm: local-llm",
            "tts: piper → espeak"
        ]
    );
    assert_eq!(
        chains.skipped,
        vec!["cartesia: CARTESIA_API_KEY is not set"]
    );

    // The chain speaks through Piper (cartesia had no key).
    let tts = chains.tts.expect("a TTS chain");
    let audio = speak(tts.as_ref(), "Hello, this is the clinic.").await;
    assert!(
        audio.len() > 16_000 / 2 && rms(&audio) > 0.01,
        "{} samples, rms {}",
        audio.len(),
        rms(&audio)
    );

    // The voice is loaded once per factory: building again is instant.
    let again = Instant::now();
    let chains = build_chains_with(&config, &ProviderEnv::default(), Some(&factory));
    assert!(chains.tts.is_some());
    assert!(
        again.elapsed() < Duration::from_millis(50),
        "rebuilt in {:?}",
        again.elapsed()
    );

    // With no cloud key, a bot naming nothing runs on the local defaults.
    let chains = call_chains(
        &Providers::default(),
        "ru",
        &ProviderEnv::default(),
        Some(&factory),
    );
    assert_eq!(
        chains.chosen,
        vec!["stt: whisper", "llm: local-llm", "tts: espeak"]
    );
    let keyed = ProviderEnv::from_lookup(|n| (n == "DEEPGRAM_API_KEY").then(|| "k".into()));
    let chains = call_chains(&Providers::default(), "ru", &keyed, Some(&factory));
    assert!(
        chains.stt.is_none(),
        "with a key the bot's own choices stand"
    );
}

/// What a streaming recognizer makes of `audio` (16 kHz), fed in 20 ms frames between pauses:
/// its final transcripts joined.
async fn hear(stt: &dyn SpeechToText, audio: &[i16]) -> String {
    let mut session = stt
        .open(SttOptions {
            language: Some("en".into()),
            ..SttOptions::default()
        })
        .await
        .expect("session");
    let pause = vec![0i16; 16_000 / 2];
    for frame in pause
        .iter()
        .chain(audio)
        .chain(&pause)
        .copied()
        .collect::<Vec<_>>()
        .chunks(320)
    {
        session.send_audio(frame.to_vec()).unwrap();
    }
    session.close().await.unwrap();
    let mut text = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(120), session.recv())
        .await
        .expect("transcripts in time")
    {
        if let SttEvent::Transcript(t) = ev.expect("no recognizer error") {
            if t.is_final {
                text.push(t.text);
            }
        }
    }
    text.join(" ")
}

/// Piper speaks, Whisper listens, both built from a bot's `providers:` and used through the
/// same traits a call uses: the words come back (WER printed per sentence).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piper_speech_round_trips_through_whisper() {
    let factory = LocalFactory::new(models_dir());
    if !models_present(&factory) {
        return;
    }
    let config = providers(
        serde_json::json!({"stt": {"provider": "whisper", "model": "tiny.en"}, "tts": {"provider": "piper"}}),
    );
    let chains = build_chains_with(&config, &ProviderEnv::default(), Some(&factory));
    assert_eq!(chains.chosen, vec!["stt: whisper", "tts: piper"]);
    let (stt, tts) = (chains.stt.expect("whisper"), chains.tts.expect("piper"));
    let sentences = [
        "Good morning, you have reached the dental clinic.",
        "We are open from nine in the morning until six in the evening.",
        "Would you like to book an appointment for Tuesday?",
        "Please tell me your name and phone number.",
    ];
    let mut total = 0.0;
    for text in sentences {
        let audio = speak(tts.as_ref(), text).await;
        let heard = hear(stt.as_ref(), &audio).await;
        let w = common::wer(text, &heard);
        println!("piper → whisper tiny.en: WER {w:.2}\n  ref: {text}\n  hyp: {heard}");
        assert!(w <= 0.5, "{text:?} came back as {heard:?}");
        total += w;
    }
    let mean = total / sentences.len() as f64;
    println!(
        "piper → whisper tiny.en: mean WER {mean:.3} over {} sentences",
        sentences.len()
    );
    assert!(mean <= 0.2, "mean WER {mean}");
}

#[test]
fn each_call_gets_silero_and_the_shared_smart_turn() {
    let factory = LocalFactory::new(models_dir());
    if !models_present(&factory) {
        return;
    }
    let mut vad = factory.vad().expect("Silero");
    let silence = vec![0i16; 320];
    assert!(vad.speech_probability(&silence, 16_000) < 0.5);
    let mut turn = factory.turn_model().expect("Smart Turn");
    let p = turn
        .complete_probability(&vec![0i16; 16_000])
        .expect("a judgement");
    assert!((0.0..=1.0).contains(&p));
    let started = Instant::now();
    let _second = factory.turn_model().expect("Smart Turn again");
    assert!(
        started.elapsed() < Duration::from_millis(20),
        "the session is shared, not reopened"
    );
}

#[test]
fn missing_models_are_left_out_with_the_command_that_fetches_them() {
    let empty = tempfile::tempdir().unwrap();
    let factory = LocalFactory::new(empty.path());
    let config = providers(serde_json::json!({
        "stt": {"provider": "whisper"},
        "llm": {"provider": "local-llm"},
        "tts": {"provider": "piper"},
    }));
    let chains = build_chains_with(&config, &ProviderEnv::default(), Some(&factory));
    assert!(chains.stt.is_none() && chains.llm.is_none() && chains.tts.is_none());
    assert_eq!(chains.skipped.len(), 3, "{:?}", chains.skipped);
    for why in &chains.skipped {
        assert!(why.contains("callfleet models pull"), "{why}");
    }
    assert!(factory
        .vad()
        .err()
        .expect("no Silero without its model")
        .contains("callfleet models pull"));
    let bad = providers(
        serde_json::json!({"tts": {"provider": "piper", "voice": "en_GB-alan"}, "stt": {"provider": "whisper", "model": "large"}}),
    );
    let chains = build_chains_with(&bad, &ProviderEnv::default(), Some(&factory));
    assert!(
        chains
            .skipped
            .iter()
            .any(|s| s.contains("unknown Whisper model")),
        "{:?}",
        chains.skipped
    );
    assert!(
        chains
            .skipped
            .iter()
            .any(|s| s.contains("not available locally")),
        "{:?}",
        chains.skipped
    );
}
