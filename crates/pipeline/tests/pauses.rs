//! A caller who pauses inside what they say — "Hello." then 200–700 ms of quiet, then "I would
//! like to book an appointment, please." — on tokio's paused clock, through the whole pipeline.
//! The recognizer behaves as Whisper's session does on a busy machine: it cuts the audio into
//! utterances itself (a pause ends one, a flush ends one at once), and each transcription takes
//! a while, during which the recognizer hears nothing new. Whatever the pause, the delay and the
//! end-of-turn model, every word must reach the transcript and be answered.
//! (The same with Whisper, Silero VAD and Smart Turn: local-engines' `tests/pauses.rs`.)

mod support;

use callfleet_core::domain::{Speaker, Turn};
use callfleet_core::scenario::BoxFuture;
use callfleet_pipeline::*;
use callfleet_providers::*;
use callfleet_testkit::audio::{rms, silence, speech};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{EchoLlm, ScriptedTts};
use tokio::sync::mpsc;

/// Hears loud audio as speech and cuts it into utterances like Whisper's session; each final
/// carries the words placed before its cut (`(ms, word)`: where the word is in the recording),
/// `latency` after the cut.
struct TimedWordsStt {
    words: Vec<(u32, String)>,
    latency: Duration,
}

impl SpeechToText for TimedWordsStt {
    fn name(&self) -> &str {
        "timed-words"
    }

    fn open(&self, options: SttOptions) -> BoxFuture<'_, Result<SttSession, SttError>> {
        let (words, latency) = (self.words.clone(), self.latency);
        Box::pin(async move {
            let (cmd_tx, mut cmd_rx) = mpsc::channel(STT_QUEUE_FRAMES);
            let (ev_tx, ev_rx) = mpsc::channel(256);
            let task = tokio::spawn(async move {
                let window = (options.sample_rate / 100) as usize;
                let mut carry: Vec<i16> = Vec::new();
                let (mut heard_ms, mut silent_ms, mut in_speech) = (0u32, 0u32, false);
                let mut next = 0;
                // The words said before `cut_ms`, as a final `latency` later.
                let mut say = |cut_ms: u32, speech_final: bool, from_finalize: bool| {
                    let mut text = Vec::new();
                    while next < words.len() && words[next].0 < cut_ms {
                        text.push(words[next].1.clone());
                        next += 1;
                    }
                    Transcript {
                        text: text.join(" "),
                        is_final: true,
                        speech_final,
                        from_finalize,
                        confidence: 1.0,
                    }
                };
                while let Some(cmd) = cmd_rx.recv().await {
                    let t = match cmd {
                        SttCommand::Audio(samples) => {
                            carry.extend(samples);
                            let mut endpoint = None;
                            while carry.len() >= window {
                                let w: Vec<i16> = carry.drain(..window).collect();
                                heard_ms += 10;
                                if rms(&w) > 500.0 {
                                    in_speech = true;
                                    silent_ms = 0;
                                } else if in_speech {
                                    silent_ms += 10;
                                    if silent_ms >= options.endpointing_ms {
                                        in_speech = false;
                                        endpoint = Some(heard_ms);
                                    }
                                }
                            }
                            match endpoint {
                                Some(at) => say(at, true, false),
                                None => continue,
                            }
                        }
                        SttCommand::Finalize => {
                            in_speech = false;
                            say(heard_ms, false, true)
                        }
                        SttCommand::Close => return,
                    };
                    // Busy transcribing: nothing else is heard meanwhile.
                    tokio::time::sleep(latency).await;
                    if ev_tx.send(Ok(SttEvent::Transcript(t))).await.is_err() {
                        return;
                    }
                }
            });
            Ok(SttSession::new(
                "timed-words",
                cmd_tx,
                ev_rx,
                TaskGuard::new(task),
            ))
        })
    }
}

/// Always gives the same probability that the caller has finished.
struct ConstantTurnModel(f32);

impl EndOfTurnModel for ConstantTurnModel {
    fn complete_probability(&mut self, _audio: &[i16]) -> Result<f32, String> {
        Ok(self.0)
    }
}

const GREETING: &str = "Hello.";
const REQUEST: &str = "I would like to book an appointment, please.";

fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The caller's audio (after 600 ms of quiet: "Hello." 500 ms, `pause_ms`, the request in two
/// parts with a comma's pause between, then quiet) and where each word lies in it.
fn caller(pause_ms: u32) -> (Vec<i16>, Vec<(u32, String)>) {
    let mut audio = silence(600, 16_000);
    let mut placed = Vec::new();
    let mut part = |audio: &mut Vec<i16>, text: &str, ms: u32, pause: u32| {
        let start = audio.len() as u32 / 16;
        let w = words(text);
        for (i, word) in w.iter().enumerate() {
            placed.push((
                start + ms * (2 * i as u32 + 1) / (2 * w.len() as u32),
                word.clone(),
            ));
        }
        audio.extend(speech(ms, 16_000));
        audio.extend(silence(pause, 16_000));
    };
    part(&mut audio, GREETING, 500, pause_ms);
    part(
        &mut audio,
        "I would like to book an appointment,",
        1600,
        250,
    );
    part(&mut audio, "please.", 300, 4000);
    (audio, placed)
}

/// One call's report.
async fn call(pause_ms: u32, latency_ms: u64, model: Option<f32>) -> CallReport {
    let (audio, placed) = caller(pause_ms);
    let providers = Providers {
        stt: Arc::new(TimedWordsStt {
            words: placed,
            latency: Duration::from_millis(latency_ms),
        }),
        tts: Arc::new(ScriptedTts::new()),
    };
    let mut pipeline = Pipeline::new(PipelineConfig::new("pauses"), providers);
    if let Some(p) = model {
        pipeline = pipeline.with_turn_model(Box::new(ConstantTurnModel(p)));
    }
    let responder = Box::new(LlmResponder::new(
        Arc::new(EchoLlm {
            first_token_delay: Duration::from_millis(200),
        }),
        "",
        "Hi.",
        "en",
    ));
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = heard.clone();
    let done = run_recorded_call(
        pipeline,
        responder,
        &audio,
        Duration::from_secs(4),
        move |t| h.lock().unwrap().push(t.clone()),
    )
    .await
    .unwrap();
    assert_eq!(*heard.lock().unwrap(), done.report.transcript);
    done.report
}

/// Every word of the greeting and the request is in what the caller said, in order, and the
/// bot's last reply answers the caller's last turn and was heard to its end.
fn check_every_word_heard_and_answered(case: &str, turns: &[Turn]) {
    let said: Vec<String> = turns
        .iter()
        .filter(|t| t.speaker == Speaker::User)
        .flat_map(|t| words(&t.text))
        .collect();
    let want = words(&format!("{GREETING} {REQUEST}"));
    let lines: Vec<String> = turns
        .iter()
        .map(|t| {
            format!(
                "{:?}{}: {}",
                t.speaker,
                if t.interrupted { " (cut off)" } else { "" },
                t.text
            )
        })
        .collect();
    assert_eq!(said, want, "{case}: {lines:#?}");
    let last_user = turns.iter().rposition(|t| t.speaker == Speaker::User);
    let answer = last_user.and_then(|i| turns[i + 1..].iter().find(|t| t.speaker == Speaker::Bot));
    let want_answer = last_user.map(|i| format!("You said: {}.", turns[i].text));
    assert!(
        answer.is_some_and(|a| !a.interrupted && Some(&a.text) == want_answer.as_ref()),
        "{case}: the last turn is not answered: {lines:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn words_after_a_pause_always_reach_the_transcript_and_are_answered() {
    for model in [None, Some(0.9), Some(0.2)] {
        for pause_ms in [200, 350, 500, 700] {
            for latency_ms in [0, 250, 500, 800, 1200] {
                let case =
                    format!("pause {pause_ms} ms, recognizer {latency_ms} ms, model {model:?}");
                let report = call(pause_ms, latency_ms, model).await;
                check_every_word_heard_and_answered(&case, &report.transcript);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_late_final_does_not_end_the_turn_while_the_caller_goes_on() {
    // "Hello." is recognized 800 ms after its flush, when the caller is saying the rest: with
    // or without a model, one turn holds everything.
    for model in [None, Some(0.9)] {
        let report = call(350, 800, model).await;
        let turns = &report.transcript;
        let said: Vec<&str> = turns
            .iter()
            .filter(|t| t.speaker == Speaker::User)
            .map(|t| t.text.as_str())
            .collect();
        assert_eq!(
            said,
            ["hello i would like to book an appointment please"],
            "{model:?}: {turns:#?}"
        );
        // The stored metrics say how the turn ended: at the recognizer's endpoint, and with a
        // model, what it said about the whole sentence — well before the max delay.
        let m = &report.metrics[0];
        assert_eq!(m.endpoint.as_deref(), Some("stt"), "{m:?}");
        assert_eq!(m.end_of_turn_probability, model, "{m:?}");
        assert_eq!(
            m.end_of_turn_answered_ms.is_some(),
            model.is_some(),
            "{m:?}"
        );
        let max = PipelineConfig::new("pauses")
            .turn
            .max_endpointing
            .as_millis();
        assert!(
            m.end_of_utterance_ms.is_some_and(|ms| u128::from(ms) < max),
            "{m:?}"
        );
    }
}
