//! The end-of-turn model in a whole call, on tokio's paused clock: a scripted model stands in for
//! Smart Turn (the real one is tested in local-engines) and answers set probabilities. A caller
//! who pauses mid-sentence is not cut off; one who has finished is answered at the min delay.

mod support;

use callfleet_core::domain::{Speaker, Turn};
use callfleet_pipeline::*;
use callfleet_testkit::audio::{silence, speech};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{EchoLlm, ScriptedStt, ScriptedTts};
use tokio::sync::mpsc;

/// Answers the probabilities it was given, in order, and remembers how much audio it was shown
/// and how loud its last second was.
struct ScriptedTurnModel {
    answers: VecDeque<f32>,
    seen: Arc<Mutex<Vec<(usize, bool)>>>,
}

impl EndOfTurnModel for ScriptedTurnModel {
    fn complete_probability(&mut self, audio_16k: &[i16]) -> Result<f32, String> {
        let tail = &audio_16k[audio_16k.len().saturating_sub(16_000)..];
        let heard_speech = tail.iter().any(|s| s.unsigned_abs() > 1000);
        self.seen
            .lock()
            .unwrap()
            .push((audio_16k.len(), heard_speech));
        self.answers
            .pop_front()
            .ok_or_else(|| "no answer scripted".to_string())
    }
}

struct Outcome {
    turns: Vec<Turn>,
    /// When the caller's last speech ended, from the call's start.
    speech_end_ms: u64,
    seen: Vec<(usize, bool)>,
}

/// A call where the caller says each `(speech_ms, pause_ms)` part in turn after 600 ms of quiet,
/// then stays silent for 4 s; `model` answers in order (no model: `None`).
async fn call(transcripts: &[&str], parts: &[(u32, u32)], model: Option<&[f32]>) -> Outcome {
    let mut config = PipelineConfig::new("turn-model");
    config.stt.endpointing_ms = 100;
    let providers = Providers {
        stt: Arc::new(ScriptedStt::new(transcripts)),
        tts: Arc::new(ScriptedTts::new()),
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut pipeline = Pipeline::new(config, providers);
    if let Some(answers) = model {
        pipeline = pipeline.with_turn_model(Box::new(ScriptedTurnModel {
            answers: answers.iter().copied().collect(),
            seen: seen.clone(),
        }));
    }
    let responder = Box::new(LlmResponder::new(
        Arc::new(EchoLlm {
            first_token_delay: Duration::from_millis(200),
        }),
        "",
        "Hi.",
        "en",
    ));
    let (in_tx, in_rx) = mpsc::channel(64);
    let (out_tx, mut out_rx) = mpsc::channel(64);
    tokio::spawn(async move { while out_rx.recv().await.is_some() {} });
    let running = tokio::spawn(pipeline.run(responder, in_rx, out_tx));

    let mut audio = silence(600, 16_000);
    let mut speech_end_ms = 0;
    for &(speech_ms, pause_ms) in parts {
        audio.extend(speech(speech_ms, 16_000));
        speech_end_ms = audio.len() as u64 / 16;
        audio.extend(silence(pause_ms, 16_000));
    }
    audio.extend(silence(4000, 16_000));
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for frame in audio.chunks(320) {
        tick.tick().await;
        in_tx.send(CallInput::Audio(frame.to_vec())).await.unwrap();
    }
    in_tx.send(CallInput::Hangup).await.unwrap();
    // The first frame goes in at once, so the caller's times are the call's.
    let report = running.await.unwrap().unwrap();
    let seen = seen.lock().unwrap().clone();
    Outcome {
        turns: report.transcript,
        speech_end_ms,
        seen,
    }
}

fn user_turns(turns: &[Turn]) -> Vec<(&str, u64)> {
    turns
        .iter()
        .filter(|t| t.speaker == Speaker::User)
        .map(|t| (t.text.as_str(), t.at_ms))
        .collect()
}

const NUMBER: [&str; 2] = ["my phone number is five five five", "one two three four"];

#[tokio::test(start_paused = true)]
async fn a_caller_pausing_mid_sentence_is_not_cut_off() {
    // 700 ms of pause between the two halves: the recognizer endpoints after 100 ms of it.
    let parts = [(1200, 700), (1000, 0)];
    let o = call(&NUMBER, &parts, Some(&[0.1, 0.9])).await;
    let said = user_turns(&o.turns);
    assert_eq!(said.len(), 1, "{said:?}");
    assert_eq!(
        said[0].0,
        "my phone number is five five five one two three four"
    );
    // The model was asked at both endpoints, each time with the speech just heard.
    assert_eq!(o.seen.len(), 2, "{:?}", o.seen);
    assert!(
        o.seen
            .iter()
            .all(|&(n, loud)| n > 16_000 && n <= 128_000 && loud),
        "{:?}",
        o.seen
    );
    // Finished at the second endpoint: 100 ms of audio after the speech (+ a frame or two).
    let at = said[0].1;
    assert!(
        (o.speech_end_ms + 80..=o.speech_end_ms + 160).contains(&at),
        "speech ended {}, turn at {at}",
        o.speech_end_ms
    );
    let reply = o
        .turns
        .iter()
        .find(|t| t.speaker == Speaker::Bot && t.text.starts_with("You said"));
    assert_eq!(
        reply.map(|t| t.text.as_str()),
        Some("You said: my phone number is five five five one two three four.")
    );

    // Without the model the same caller is cut off at the pause.
    let o = call(&NUMBER, &parts, None).await;
    let said: Vec<&str> = user_turns(&o.turns).into_iter().map(|(t, _)| t).collect();
    assert_eq!(said, NUMBER.to_vec());
}

#[tokio::test(start_paused = true)]
async fn a_finished_caller_is_answered_at_the_min_delay() {
    let o = call(&["thank you that is all"], &[(1500, 0)], Some(&[0.95])).await;
    let said = user_turns(&o.turns);
    assert_eq!(said.len(), 1, "{said:?}");
    let complete_at = said[0].1;
    assert!(
        (o.speech_end_ms + 80..=o.speech_end_ms + 160).contains(&complete_at),
        "speech ended {}, turn at {complete_at}",
        o.speech_end_ms
    );

    // Judged unfinished and then silent: the turn ends anyway, at the max delay (2.5 s).
    let o = call(&["thank you that is all"], &[(1500, 0)], Some(&[0.05])).await;
    let said = user_turns(&o.turns);
    assert_eq!(said.len(), 1, "{said:?}");
    let doubted_at = said[0].1;
    assert!(
        (o.speech_end_ms + 2450..=o.speech_end_ms + 2540).contains(&doubted_at),
        "speech ended {}, turn at {doubted_at}",
        o.speech_end_ms
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_model_leaves_endpointing_as_without_one() {
    // The model has no answer (an error): the turn ends at the min delay.
    let o = call(&["hello there"], &[(800, 0)], Some(&[])).await;
    let said = user_turns(&o.turns);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        (o.speech_end_ms + 80..=o.speech_end_ms + 160).contains(&said[0].1),
        "speech ended {}, turn at {}",
        o.speech_end_ms,
        said[0].1
    );
}
