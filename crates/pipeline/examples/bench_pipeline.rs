//! Pipeline latency bench (run it with `scripts/bench-pipeline`).
//!
//! Two runs of one call with many turns against the protocol-exact fakes over loopback:
//! 1. zero-latency fakes: the pipeline's own overhead per turn — end of turn to the first reply
//!    frame, less the time spent waiting on the LLM and the TTS (target p50 ≤ 5 ms, p99 ≤ 20 ms);
//! 2. realistic fake delays (STT final 150 ms after speech ends, LLM first token 200 ms, TTS first
//!    byte 90 ms): voice-to-voice, last caller voice to first reply frame (target p50 ≤ 480 ms).

use callfleet_core::secret::Secret;
use callfleet_pipeline::*;
use callfleet_providers::cartesia::CartesiaTts;
use callfleet_providers::deepgram::DeepgramStt;
use callfleet_providers::ollama::Ollama;
use callfleet_testkit::audio::speech;
use callfleet_testkit::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

struct Delays {
    /// The fake recognizer's thinking time after it hears the endpoint.
    stt_final: Duration,
    llm_token_interval: Duration,
    llm_first_token: Duration,
    tts_first_byte: Duration,
}

struct Run {
    overhead_ms: Vec<f64>,
    v2v_ms: Vec<f64>,
    eou_ms: Vec<f64>,
    stt_ms: Vec<f64>,
}

async fn run(turns: usize, d: Delays) -> Run {
    let stt_fake = FakeDeepgram::start(SttScript {
        transcripts: vec!["hi there".into(); turns],
        final_delay: d.stt_final,
        ..SttScript::default()
    })
    .await;
    let tts_fake = FakeCartesia::start().await;
    tts_fake.update_script(|s| {
        s.first_byte_delay = d.tts_first_byte;
        // Short replies keep the bench quick; the rate does not change the latencies.
        s.ms_per_char = 15;
    });
    let llm_fake = FakeOllama::start().await;
    llm_fake.set_echo_delays(d.llm_first_token, d.llm_token_interval);

    let key = || Secret::new(TEST_KEY);
    let mut config = PipelineConfig::new("bench");
    // The fake's endpoint comes this much audio after the last word; the rest of the STT delay
    // is its thinking time, so the final lands `stt_final` after the speech ends.
    config.stt.endpointing_ms = 10;
    config.turn.silence_timeout = Duration::from_secs(60);
    let providers = Providers {
        stt: Arc::new(DeepgramStt::new(key()).with_base_url(stt_fake.url())),
        tts: Arc::new(CartesiaTts::new(key()).with_base_url(tts_fake.url())),
    };
    let llm = Arc::new(Ollama::new(llm_fake.url(), "bench"));
    let responder = Box::new(LlmResponder::new(llm, "Be brief.", "Hi.", "en"));
    let (in_tx, in_rx) = mpsc::channel(64);
    let (out_tx, mut out_rx) = mpsc::channel(256);
    let call = tokio::spawn(Pipeline::new(config, providers).run(responder, in_rx, out_tx));

    // The caller: speaks, then stays silent until the reply has been heard, and again.
    let (turn_done_tx, mut turn_done_rx) = mpsc::unbounded_channel::<()>();
    let drain = tokio::spawn(async move {
        let mut bots = 0;
        while let Some(out) = out_rx.recv().await {
            if let CallOutput::Transcript(t) = out {
                if t.speaker == callfleet_core::domain::Speaker::Bot {
                    bots += 1;
                    if bots > 1 {
                        let _ = turn_done_tx.send(());
                    }
                }
            }
        }
    });
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    // Let the greeting play.
    for _ in 0..50 {
        tick.tick().await;
        let _ = in_tx.send(CallInput::Audio(vec![0; 320])).await;
    }
    for _ in 0..turns {
        for frame in speech(300, 16000).chunks(320) {
            tick.tick().await;
            let _ = in_tx.send(CallInput::Audio(frame.to_vec())).await;
        }
        loop {
            tick.tick().await;
            let _ = in_tx.send(CallInput::Audio(vec![0; 320])).await;
            if turn_done_rx.try_recv().is_ok() {
                break;
            }
        }
        // A beat of silence between turns, as people leave.
        for _ in 0..5 {
            tick.tick().await;
            let _ = in_tx.send(CallInput::Audio(vec![0; 320])).await;
        }
    }
    let _ = in_tx.send(CallInput::Hangup).await;
    let report = call.await.expect("the call task").expect("the call");
    drain.abort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Run {
        overhead_ms: report.overhead.iter().map(|d| ms(*d)).collect(),
        v2v_ms: report
            .metrics
            .iter()
            .filter_map(|m| m.voice_to_voice_ms.map(f64::from))
            .collect(),
        eou_ms: report
            .metrics
            .iter()
            .filter_map(|m| m.end_of_utterance_ms.map(f64::from))
            .collect(),
        stt_ms: report
            .metrics
            .iter()
            .filter_map(|m| m.stt_final_ms.map(f64::from))
            .collect(),
    }
}

fn pct(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn line(name: &str, v: &[f64]) {
    println!(
        "  {name:<34} p50 {:>7.2} ms   p99 {:>7.2} ms   (n={})",
        pct(v, 0.5),
        pct(v, 0.99),
        v.len()
    );
}

#[tokio::main]
async fn main() {
    let turns: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(40);
    println!("callfleet pipeline bench — {turns} turns per run, fakes over loopback\n");

    let zero = run(
        turns,
        Delays {
            stt_final: Duration::ZERO,
            llm_token_interval: Duration::ZERO,
            llm_first_token: Duration::ZERO,
            tts_first_byte: Duration::ZERO,
        },
    )
    .await;
    println!("zero-latency fakes:");
    line("pipeline overhead per turn", &zero.overhead_ms);
    line("voice-to-voice (incl. endpointing)", &zero.v2v_ms);
    println!("  target: overhead p50 <= 5 ms, p99 <= 20 ms\n");

    let real = run(
        turns,
        // The fake hears the endpoint ~45 ms after the last voiced frame (10 ms windows, 20 ms
        // frames), so 105 ms of thinking puts the final 150 ms after the speech, as measured below.
        Delays {
            stt_final: Duration::from_millis(105),
            llm_token_interval: Duration::from_millis(5),
            llm_first_token: Duration::from_millis(200),
            tts_first_byte: Duration::from_millis(90),
        },
    )
    .await;
    println!("realistic fakes (STT final 150 ms, LLM first token 200 ms, TTS first byte 90 ms):");
    line("STT final after speech", &real.stt_ms);
    line("end of utterance", &real.eou_ms);
    line("voice-to-voice", &real.v2v_ms);
    println!("  target: voice-to-voice p50 <= 480 ms");
}
