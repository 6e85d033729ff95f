//! Timing rules of a whole call on tokio's paused clock, with in-process providers (see
//! `support`): every wait is virtual, so a ten-second silence takes no time and the times in
//! the transcript are exact to the frame.

mod support;

use callfleet_core::domain::{Speaker, Turn};
use callfleet_pipeline::runtime::CallEnd;
use callfleet_pipeline::*;
use callfleet_testkit::audio::{silence, speech};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{EchoLlm, ScriptedStt, ScriptedTts};
use tokio::sync::mpsc;

struct Call {
    turns: Arc<Mutex<Vec<Turn>>>,
    input: mpsc::Sender<CallInput>,
    call: tokio::task::JoinHandle<Result<CallReport, PipelineError>>,
    started: tokio::time::Instant,
}

async fn start(transcripts: &[&str], tune: impl FnOnce(&mut PipelineConfig)) -> Call {
    let mut config = PipelineConfig::new("paced");
    config.stt.endpointing_ms = 100;
    tune(&mut config);
    let providers = Providers {
        stt: Arc::new(ScriptedStt::new(transcripts)),
        tts: Arc::new(ScriptedTts::new()),
    };
    let responder = Box::new(LlmResponder::new(
        Arc::new(EchoLlm {
            first_token_delay: Duration::from_millis(200),
        }),
        "",
        "Hello.",
        "en",
    ));
    let (in_tx, in_rx) = mpsc::channel(64);
    let (out_tx, mut out_rx) = mpsc::channel(64);
    let turns = Arc::new(Mutex::new(Vec::new()));
    let t = turns.clone();
    tokio::spawn(async move {
        while let Some(out) = out_rx.recv().await {
            if let CallOutput::Transcript(turn) = out {
                t.lock().unwrap().push(turn);
            }
        }
    });
    let started = tokio::time::Instant::now();
    let call = tokio::spawn(Pipeline::new(config, providers).run(responder, in_rx, out_tx));
    Call {
        turns,
        input: in_tx,
        call,
        started,
    }
}

impl Call {
    /// Plays audio in 20 ms frames at the virtual clock's pace.
    async fn play(&self, samples: Vec<i16>) {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for f in samples.chunks(320) {
            tick.tick().await;
            let _ = self.input.send(CallInput::Audio(f.to_vec())).await;
        }
    }

    fn said(&self) -> Vec<(Speaker, String)> {
        self.turns
            .lock()
            .unwrap()
            .iter()
            .map(|t| (t.speaker, t.text.clone()))
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn silence_timeout_reprompts_then_ends_after_the_configured_seconds() {
    let call = start(&[], |c| c.turn.silence_timeout = Duration::from_secs(10)).await;
    // The caller's line stays open and silent.
    let input = call.input.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            if input.send(CallInput::Audio(vec![0; 320])).await.is_err() {
                return;
            }
        }
    });
    let report = call.call.await.unwrap().unwrap();
    assert_eq!(report.end, CallEnd::SilenceTimeout);
    let at: Vec<u64> = report.transcript.iter().map(|t| t.at_ms).collect();
    // Greeting "Hello." = 5 letters × 70 ms; each timeout counts from the end of the bot's speech.
    let reprompt_audio = "Are you still there?"
        .chars()
        .filter(|c| !c.is_whitespace())
        .count() as u64
        * 70;
    let goodbye_audio = phrases::goodbye("en")
        .chars()
        .filter(|c| !c.is_whitespace())
        .count() as u64
        * 70;
    let expect = [
        360,
        360 + 10_000 + reprompt_audio,
        360 + 10_000 + reprompt_audio + 10_000 + goodbye_audio,
    ];
    for (got, want) in at.iter().zip(expect) {
        assert!(got.abs_diff(want) <= 60, "at {at:?}, want about {expect:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn short_speech_over_the_bot_is_answered_after_it_long_speech_interrupts() {
    let call = start(&["uh huh", "mm", "tell me more", "wait a moment"], |c| {
        c.turn.min_interruption_speech = Duration::from_millis(500)
    })
    .await;
    let talk = |speech_ms: u32, silence_ms: u32| {
        let mut v = speech(speech_ms, 16000);
        v.extend(silence(silence_ms, 16000));
        v
    };
    call.play(silence(600, 16000)).await;
    // The reply "You said: uh huh." starts ~300 ms after the caller stops and lasts ~1 s.
    call.play(talk(400, 500)).await;
    // 300 ms over it: too short to interrupt, but the caller's words are answered once it ends.
    call.play(talk(300, 1500)).await;
    call.play(talk(400, 500)).await;
    // 800 ms over "You said: tell me more.": interrupts once 500 ms of it are heard.
    let barge_in_at = tokio::time::Instant::now();
    call.play(talk(800, 2500)).await;
    let _ = call.input.send(CallInput::Hangup).await;
    let report = call.call.await.unwrap().unwrap();
    let said: Vec<(Speaker, &str, bool)> = report
        .transcript
        .iter()
        .map(|t| (t.speaker, t.text.as_str(), t.interrupted))
        .collect();
    assert_eq!(said.len(), 9, "{said:?}");
    assert_eq!(
        &said[..6],
        &[
            (Speaker::Bot, "Hello.", false),
            (Speaker::User, "uh huh", false),
            (Speaker::Bot, "You said: uh huh.", false),
            (Speaker::User, "mm", false),
            (Speaker::Bot, "You said: mm.", false),
            (Speaker::User, "tell me more", false),
        ]
    );
    let cut = &report.transcript[6];
    assert!(
        cut.interrupted && "You said: tell me more.".starts_with(&cut.text),
        "{cut:?}"
    );
    assert_eq!(
        &said[7..],
        &[
            (Speaker::User, "wait a moment", false),
            (Speaker::Bot, "You said: wait a moment.", false)
        ]
    );
    // The agent stopped 500 ms (+ the VAD's 40 ms onset) into the caller's speech.
    let speech_from = barge_in_at.duration_since(call.started).as_millis() as u64;
    assert!(
        (speech_from + 500..=speech_from + 560).contains(&cut.at_ms),
        "speech at {speech_from}, cut at {}",
        cut.at_ms
    );
}

#[tokio::test(start_paused = true)]
async fn dtmf_digits_make_a_turn() {
    let call = start(&[], |_| {}).await;
    call.play(silence(600, 16000)).await;
    for d in ['4', '2', '#'] {
        call.input.send(CallInput::Dtmf(d)).await.unwrap();
    }
    call.play(silence(2000, 16000)).await;
    let said = call.said();
    assert_eq!(said[1], (Speaker::User, "42".to_string()));
    assert_eq!(said[2], (Speaker::Bot, "You said: 42.".to_string()));
    let _ = call.input.send(CallInput::Hangup).await;
}

#[tokio::test(start_paused = true)]
async fn turn_metrics_add_up_on_a_virtual_clock() {
    let stt = ScriptedStt {
        final_delay: Duration::from_millis(100),
        ..ScriptedStt::new(&["hello"])
    };
    let tts = ScriptedTts {
        first_byte_delay: Duration::from_millis(90),
        ..ScriptedTts::new()
    };
    let mut config = PipelineConfig::new("paced");
    config.stt.endpointing_ms = 50;
    let pipeline = Pipeline::new(
        config,
        Providers {
            stt: Arc::new(stt),
            tts: Arc::new(tts),
        },
    );
    let responder = Box::new(LlmResponder::new(
        Arc::new(EchoLlm {
            first_token_delay: Duration::from_millis(200),
        }),
        "",
        "Hi.",
        "en",
    ));
    let mut caller = silence(400, 16000);
    caller.extend(speech(500, 16000));
    let report = run_recorded_call(
        pipeline,
        responder,
        &caller,
        Duration::from_millis(500),
        |_| {},
    )
    .await
    .unwrap()
    .report;
    let m = &report.metrics[0];
    // Endpoint 50 ms of audio + 100 ms thinking; LLM 200 ms; TTS 90 ms; frames of 20 ms.
    let within = |v: Option<u32>, lo: u32, hi: u32| v.is_some_and(|v| (lo..=hi).contains(&v));
    assert!(within(m.stt_final_ms, 150, 190), "{m:?}");
    assert!(within(m.end_of_utterance_ms, 150, 190), "{m:?}");
    assert!(within(m.llm_first_token_ms, 200, 205), "{m:?}");
    assert!(within(m.tts_first_byte_ms, 90, 95), "{m:?}");
    assert!(within(m.voice_to_voice_ms, 440, 500), "{m:?}");
}

#[tokio::test(start_paused = true)]
async fn the_call_ends_after_max_turns() {
    let call = start(&["one", "two"], |c| c.max_turns = Some(1)).await;
    let mut caller = silence(600, 16000);
    caller.extend(speech(400, 16000));
    caller.extend(silence(3000, 16000));
    call.play(caller).await;
    let report = call.call.await.unwrap().unwrap();
    assert_eq!(report.end, CallEnd::BotEnded);
    assert_eq!(
        report.transcript.last().map(|t| t.text.as_str()),
        Some("You said: one.")
    );
}
