//! Speed of the offline speech and language engines on this machine:
//! `cargo bench -p callfleet-local-engines --features whisper,llm,espeak --bench speech_llm`.
//! Prints Whisper's real-time factor (compute time / audio time; tiny.en and base, 1 and 2
//! threads), the local LLM's time to first token and tokens per second (1 and 2 threads), and
//! espeak-ng's real-time factor. Models missing from the models dir are skipped with a note.

use callfleet_local_engines::{
    models_dir, EspeakConfig, EspeakTts, LocalLlm, LocalLlmConfig, WhisperConfig, WhisperModel,
    WhisperStt,
};
use callfleet_providers::{
    ChatMessage, ChatRequest, LanguageModel, LlmEvent, TextToSpeech, TtsEvent, TtsOptions,
};
use std::time::Instant;

const EN: &str = "Hello, I would like to book an appointment for a haircut tomorrow morning, if you have a free slot.";
const RU: &str =
    "Здравствуйте, я хочу записаться на стрижку завтра утром, если у вас есть свободное время.";

fn espeak_16k(text: &str, voice: &str) -> Vec<i16> {
    callfleet_local_engines::espeak_speech(text, voice, 16_000).expect("espeak-ng speaks")
}

fn whisper() {
    for (model, text, voice, lang) in [
        (WhisperModel::TinyEn, EN, "en-us", "en"),
        (WhisperModel::Base, EN, "en-us", "en"),
        (WhisperModel::Base, RU, "ru", "ru"),
    ] {
        let dir = models_dir().join(model.dir_name());
        if !dir.join(model.ggml_file()).is_file() && !dir.join("model.bin").is_file() {
            println!("whisper {}: model missing, skipped", model.dir_name());
            continue;
        }
        let stt = WhisperStt::new(WhisperConfig::new(models_dir()));
        let audio = espeak_16k(text, voice);
        stt.transcribe(model, &audio, Some(lang), 2)
            .expect("warm-up");
        for threads in [1, 2] {
            let runs = 3;
            let (mut compute, mut secs) = (0.0, 0.0);
            for _ in 0..runs {
                let t = stt.transcribe(model, &audio, Some(lang), threads).unwrap();
                compute += t.compute_secs;
                secs += t.audio_secs;
            }
            println!("whisper {:<15} {lang} threads {threads}: {:.2} s utterance, {:.3} s to transcribe, RTF {:.3}", model.dir_name(), secs / runs as f64, compute / runs as f64, compute / secs);
        }
    }
}

async fn llm() {
    for threads in [1, 2] {
        let mut config = LocalLlmConfig::smollm2(&models_dir());
        if !config.model_file.is_file() {
            println!("llm: {} missing, skipped", config.model_file.display());
            return;
        }
        config.threads = threads;
        let llm = LocalLlm::new(config);
        llm.warm_up().await;
        let request = ChatRequest {
            messages: vec![
                ChatMessage::system(
                    "You are a salon receptionist. Opening hours: 9 to 18, Monday to Saturday.",
                ),
                ChatMessage::user("Tell me about your salon and what services you offer."),
            ],
            tools: Vec::new(),
            temperature: Some(0.0),
            max_tokens: Some(128),
        };
        let (mut ttft, mut rate) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let started = Instant::now();
            let mut stream = llm.stream(request.clone()).await.unwrap();
            let (mut first, mut n) = (None, 0usize);
            while let Some(ev) = stream.recv().await {
                if let LlmEvent::Token(_) = ev.unwrap() {
                    n += 1;
                    first.get_or_insert_with(|| started.elapsed());
                }
            }
            let first = first.unwrap_or_default();
            ttft.push(first.as_secs_f64());
            rate.push((n.saturating_sub(1)) as f64 / (started.elapsed() - first).as_secs_f64());
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "llm smollm2-135m threads {threads}: first token {:.0} ms, {:.1} tokens/s",
            mean(&ttft) * 1000.0,
            mean(&rate)
        );
    }
}

async fn espeak() {
    let tts = EspeakTts::new(EspeakConfig::default());
    for (lang, text) in [("en", EN), ("ru", RU)] {
        let Ok(mut s) = tts
            .open(TtsOptions {
                language: Some(lang.into()),
                sample_rate: 16_000,
                ..TtsOptions::default()
            })
            .await
        else {
            println!("espeak: espeak-ng missing, skipped");
            return;
        };
        let started = Instant::now();
        let id = s.start();
        s.push_text(id, text).unwrap();
        s.finish(id).unwrap();
        let mut samples = 0usize;
        let mut first = None;
        while let Some(ev) = s.recv().await {
            match ev.unwrap() {
                TtsEvent::Audio { samples: a, .. } => {
                    first.get_or_insert_with(|| started.elapsed());
                    samples += a.len();
                }
                TtsEvent::Done { .. } => break,
                TtsEvent::Failed { error, .. } => panic!("{error}"),
            }
        }
        let secs = samples as f64 / 16_000.0;
        println!(
            "espeak {lang}: {secs:.2} s of audio in {:.3} s (first audio {:.0} ms), RTF {:.3}",
            started.elapsed().as_secs_f64(),
            first.unwrap_or_default().as_secs_f64() * 1000.0,
            started.elapsed().as_secs_f64() / secs
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tokio::task::spawn_blocking(whisper).await.unwrap();
    llm().await;
    espeak().await;
}
