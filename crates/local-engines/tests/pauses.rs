//! A caller who pauses inside what they say, through the live path a real call takes — the
//! pipeline's runtime with Whisper cutting utterances itself, the energy VAD or Silero VAD with
//! Smart Turn — fed 20 ms frames on tokio's paused clock. The caller says a greeting, pauses
//! 200–700 ms, then a request (espeak-ng's voice, English through tiny.en and Russian through
//! base), and every word of the request must reach the transcript and be answered.
//!
//! Model work runs on the blocking pool, which holds the paused clock still, so on its own the
//! recognizer would answer in no time at all. On a live call it takes a while, and on a loaded
//! machine up to a second per utterance — long enough for its "Hello." to arrive when the caller
//! is already saying the rest, or for the rest to arrive while the bot is answering "Hello.".
//! So each case also runs with the recognizer's answers held back (`Delayed`) by that much.
#![cfg(feature = "engines")]

mod common;

use callfleet_core::domain::{Speaker, Turn, TurnMetrics};
use callfleet_core::scenario::BoxFuture;
use callfleet_local_engines::{
    models_dir, OnnxOptions, SileroVad, SmartTurn, WhisperConfig, WhisperModel, WhisperStt,
};
use callfleet_pipeline::responder::{Reply, ResponderError};
use callfleet_pipeline::{run_recorded_call, Pipeline, PipelineConfig, Providers, Responder};
use callfleet_providers::*;
use common::{espeak_16k, have_espeak, require, words};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// A recognizer whose every transcript comes `latency` late, as from a busy machine; nothing
/// else changes (Whisper's cuts are counted in audio, not time).
struct Delayed {
    inner: WhisperStt,
    latency: Duration,
}

impl SpeechToText for Delayed {
    fn name(&self) -> &str {
        "whisper"
    }

    fn open(&self, options: SttOptions) -> BoxFuture<'_, Result<SttSession, SttError>> {
        Box::pin(async move {
            let mut inner = self.inner.open(options).await?;
            let latency = self.latency;
            let (cmd_tx, mut cmd_rx) = mpsc::channel(STT_QUEUE_FRAMES);
            let (ev_tx, ev_rx) = mpsc::channel(64);
            let task = tokio::spawn(async move {
                let mut closing = false;
                loop {
                    tokio::select! {
                        cmd = cmd_rx.recv(), if !closing => match cmd {
                            Some(SttCommand::Audio(samples)) => { let _ = inner.send_audio(samples); }
                            Some(SttCommand::Finalize) => { let _ = inner.finalize().await; }
                            Some(SttCommand::Close) | None => {
                                closing = true;
                                let _ = inner.close().await;
                            }
                        },
                        ev = inner.recv() => {
                            let Some(ev) = ev else { return };
                            if matches!(ev, Ok(SttEvent::Transcript(_))) {
                                tokio::time::sleep(latency).await;
                            }
                            if ev_tx.send(ev).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
            Ok(SttSession::new(
                "whisper",
                cmd_tx,
                ev_rx,
                TaskGuard::new(task),
            ))
        })
    }
}

/// Speaks any text as a quiet tone, 60 ms a letter (the bot's voice is not under test).
struct ToneTts;

impl TextToSpeech for ToneTts {
    fn name(&self) -> &str {
        "tone"
    }

    fn open(&self, options: TtsOptions) -> BoxFuture<'_, Result<TtsSession, TtsError>> {
        Box::pin(async move {
            let rate = options.sample_rate;
            let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel();
            let (ev_tx, ev_rx) = mpsc::channel(1024);
            let task = tokio::spawn(async move {
                while let Some(cmd) = cmd_rx.recv().await {
                    let ev = match cmd {
                        TtsCommand::Text { id, text } => {
                            let n = text.chars().filter(|c| c.is_alphanumeric()).count();
                            let samples = (0..n * rate as usize * 60 / 1000)
                                .map(|i| ((i % 40) as i16 - 20) * 50)
                                .collect();
                            TtsEvent::Audio { id, samples }
                        }
                        TtsCommand::Finish { id } => TtsEvent::Done { id },
                        _ => continue,
                    };
                    if ev_tx.send(Ok(ev)).await.is_err() {
                        return;
                    }
                }
            });
            Ok(TtsSession::new(
                "tone",
                rate,
                cmd_tx,
                ev_rx,
                TaskGuard::new(task),
            ))
        })
    }
}

/// Answers "You said: <text>." after 200 ms.
struct Echo;

impl Responder for Echo {
    fn greeting(&mut self) -> String {
        "Hi.".into()
    }

    fn language(&self) -> String {
        "en".into()
    }

    fn respond<'a>(
        &'a mut self,
        text: &'a str,
        pieces: mpsc::UnboundedSender<String>,
    ) -> BoxFuture<'a, Result<Reply, ResponderError>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let reply = format!("You said: {text}.");
            let _ = pieces.send(reply.clone());
            Ok(Reply {
                text: reply,
                ends_call: false,
                collecting_digits: false,
            })
        })
    }
}

struct Language {
    code: &'static str,
    voice: &'static str,
    model: WhisperModel,
    greeting: &'static str,
    request: &'static str,
}

const EN: Language = Language {
    code: "en",
    voice: "en-us",
    model: WhisperModel::TinyEn,
    greeting: "Hello.",
    request: "I would like to book an appointment, please.",
};

const RU: Language = Language {
    code: "ru",
    voice: "ru",
    model: WhisperModel::Base,
    greeting: "Здравствуйте.",
    request: "Я хочу записаться на приём, пожалуйста.",
};

/// A faint hiss, as a line carries between words.
fn quiet(ms: usize) -> Vec<i16> {
    (0..16 * ms)
        .map(|i| ((i * 7919 % 61) as i16) - 30)
        .collect()
}

/// espeak-ng's speech without the silence it puts around it.
fn spoken(text: &str, voice: &str) -> Vec<i16> {
    let audio = espeak_16k(text, voice);
    let loud = |s: &i16| s.unsigned_abs() > 300;
    let from = audio.iter().position(loud).unwrap_or(0);
    let to = audio.iter().rposition(loud).map_or(audio.len(), |i| i + 1);
    audio[from..to].to_vec()
}

#[derive(Clone, Copy, Debug)]
enum Turns {
    /// The energy VAD, no end-of-turn model.
    Energy,
    /// Silero VAD and Smart Turn.
    SileroSmartTurn,
}

/// Everything a case needs, or `None` (skip locally, fail under CI) when a model is missing.
fn ready(lang: &Language) -> Option<WhisperStt> {
    let models = models_dir();
    let dir = models.join(lang.model.dir_name());
    let whisper = if dir.join(lang.model.ggml_file()).is_file() {
        dir.join(lang.model.ggml_file())
    } else {
        dir.join("model.bin")
    };
    let onnx = [
        &callfleet_local_engines::onnx::ONNXRUNTIME,
        &callfleet_local_engines::onnx::SILERO_VAD,
        &callfleet_local_engines::onnx::SMART_TURN,
    ];
    if !require(&whisper, &format!("Whisper {}", lang.model.dir_name()))
        || !onnx
            .iter()
            .all(|m| require(&m.path(&models), &format!("{}/{}", m.dir, m.file)))
        || !have_espeak()
    {
        return None;
    }
    let mut config = WhisperConfig::new(models);
    config.model = Some(lang.model);
    config.threads = 2;
    Some(WhisperStt::new(config))
}

struct Heard {
    turns: Vec<Turn>,
    metrics: Vec<TurnMetrics>,
}

async fn call(
    stt: &WhisperStt,
    lang: &Language,
    turns: Turns,
    pause_ms: usize,
    latency_ms: u64,
) -> Heard {
    let mut audio = quiet(1000);
    audio.extend(spoken(lang.greeting, lang.voice));
    audio.extend(quiet(pause_ms));
    audio.extend(spoken(lang.request, lang.voice));
    audio.extend(quiet(6000));
    let providers = Providers {
        stt: Arc::new(Delayed {
            inner: stt.clone(),
            latency: Duration::from_millis(latency_ms),
        }),
        tts: Arc::new(ToneTts),
    };
    let mut config = PipelineConfig::new("pauses");
    config.stt.language = Some(lang.code.into());
    let mut pipeline = Pipeline::new(config, providers);
    if let Turns::SileroSmartTurn = turns {
        let models = models_dir();
        let vad = SileroVad::load(&models, OnnxOptions::default()).expect("Silero VAD loads");
        let model = SmartTurn::load(&models, OnnxOptions::default()).expect("Smart Turn loads");
        pipeline = pipeline
            .with_vad(Box::new(vad))
            .with_turn_model(Box::new(model));
    }
    let done = run_recorded_call(
        pipeline,
        Box::new(Echo),
        &audio,
        Duration::from_secs(4),
        |_| {},
    )
    .await
    .expect("the call runs");
    Heard {
        turns: done.report.transcript,
        metrics: done.report.metrics,
    }
}

fn lines(turns: &[Turn]) -> Vec<String> {
    turns
        .iter()
        .map(|t| {
            let cut = if t.interrupted { " (cut off)" } else { "" };
            format!("{:?}{cut} @{}: {}", t.speaker, t.at_ms, t.text)
        })
        .collect()
}

/// Whether `want`'s words appear in `got`'s, in order (other words may come between).
fn in_order(want: &[String], got: &[String]) -> bool {
    let mut got = got.iter();
    want.iter().all(|w| got.any(|g| g == w))
}

/// The request's words are all in what the caller said and in what the bot answered (its last
/// reply, heard to the end, answers the caller's last turn). Where the recognizer cannot spell
/// the words (base on espeak-ng's Russian: WER over 1, words misspelt or split), as many words
/// as were said must be there: a lost request leaves one or two.
fn check(case: &str, lang: &Language, heard: &Heard, spelt: bool) {
    let said: Vec<String> = heard
        .turns
        .iter()
        .filter(|t| t.speaker == Speaker::User)
        .flat_map(|t| words(&t.text))
        .collect();
    let request = words(lang.request);
    let lines = lines(&heard.turns);
    if spelt {
        assert!(
            in_order(&request, &said),
            "{case}: the request is not all in the transcript: {lines:#?}"
        );
    } else {
        let all = words(lang.greeting).len() + request.len();
        assert!(
            said.len() + 2 >= all,
            "{case}: {} words heard of {all}: {lines:#?}",
            said.len()
        );
    }
    let last_user = heard
        .turns
        .iter()
        .rposition(|t| t.speaker == Speaker::User)
        .expect("the caller was heard");
    let answer = heard.turns[last_user + 1..]
        .iter()
        .find(|t| t.speaker == Speaker::Bot);
    let want = format!("You said: {}.", heard.turns[last_user].text);
    assert!(
        answer.is_some_and(|a| !a.interrupted && a.text == want),
        "{case}: the caller's last turn is not answered: {lines:#?}"
    );
    println!("{case}: ok\n  {}", lines.join("\n  "));
    for m in &heard.metrics {
        println!("  {m:?}");
    }
}

async fn every_case(lang: &Language, spelt: bool) {
    let Some(stt) = ready(lang) else { return };
    // Base (Russian) is slow on two cores: fewer cases, still both ends of each range.
    let (pauses, latencies): (&[usize], &[u64]) = if spelt {
        (&[200, 450, 700], &[0, 500, 1000])
    } else {
        (&[200, 700], &[0, 1000])
    };
    for turns in [Turns::Energy, Turns::SileroSmartTurn] {
        for &pause_ms in pauses {
            for &latency_ms in latencies {
                let case = format!(
                    "{} {turns:?}, pause {pause_ms} ms, recognizer {latency_ms} ms",
                    lang.code
                );
                let heard = call(&stt, lang, turns, pause_ms, latency_ms).await;
                check(&case, lang, &heard, spelt);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn english_words_after_a_pause_reach_the_transcript_and_are_answered() {
    every_case(&EN, true).await;
}

#[tokio::test(start_paused = true)]
async fn russian_words_after_a_pause_reach_the_transcript_and_are_answered() {
    every_case(&RU, false).await;
}

#[tokio::test(start_paused = true)]
async fn what_smart_turn_said_is_stored_with_each_turn() {
    let Some(stt) = ready(&EN) else { return };
    // "Hello." is recognized when the caller is already saying the rest; the turn's metrics say
    // how it ended and, for the endpoint that ended it, what the model said and when: a turn
    // held to the max delay shows the model's doubt about the whole request, asked once its
    // words had arrived (the doubt about "Hello. I w…" is not kept).
    let heard = call(&stt, &EN, Turns::SileroSmartTurn, 450, 1000).await;
    check("en, late recognizer", &EN, &heard, true);
    let max = PipelineConfig::new("pauses")
        .turn
        .max_endpointing
        .as_millis();
    for m in &heard.metrics {
        assert_eq!(m.endpoint.as_deref(), Some("stt"), "{m:?}");
        let p = m
            .end_of_turn_probability
            .expect("the model's verdict is stored");
        let answered = m.end_of_turn_answered_ms.expect("when it answered");
        assert!(
            m.end_of_turn_asked_ms.is_some_and(|a| a <= answered),
            "{m:?}"
        );
        let end = m.end_of_utterance_ms.expect("the end of the turn");
        assert!(u128::from(end) < max || p < 0.5, "{m:?}");
    }
}
