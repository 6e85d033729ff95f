//! Per-turn latencies: the instants of one turn (pure), turned into
//! [`TurnMetrics`](callfleet_core::domain::TurnMetrics) and exported to Prometheus by bot.

use crate::turn::Judgement;
use callfleet_core::domain::TurnMetrics;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use std::time::Duration;

/// When things happened in one turn, as offsets from the call's start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnTimer {
    /// The caller's voice last heard (VAD).
    pub last_voiced: Option<Duration>,
    /// The recognizer's last final result of the turn.
    pub stt_final: Option<Duration>,
    /// The turn was declared over.
    pub end_of_turn: Option<Duration>,
    /// The responder's first text.
    pub first_text: Option<Duration>,
    /// The first text reached the synthesizer.
    pub tts_request: Option<Duration>,
    /// The synthesizer's first audio.
    pub tts_first_audio: Option<Duration>,
    /// The first frame of the reply left for the caller.
    pub first_frame_out: Option<Duration>,
    /// How the turn was judged over (`stt`, `silence`, `dtmf`).
    pub endpoint: Option<&'static str>,
    /// What the end-of-turn model said about the endpoint that ended the turn.
    pub judgement: Option<Judgement>,
}

fn between(from: Option<Duration>, to: Option<Duration>) -> Option<u32> {
    let (from, to) = (from?, to?);
    Some(to.saturating_sub(from).as_millis().min(u32::MAX as u128) as u32)
}

impl TurnTimer {
    pub fn metrics(&self, turn: u32) -> TurnMetrics {
        TurnMetrics {
            turn,
            end_of_utterance_ms: between(self.last_voiced, self.end_of_turn),
            stt_final_ms: between(self.last_voiced, self.stt_final),
            llm_first_token_ms: between(self.end_of_turn, self.first_text),
            tts_first_byte_ms: between(self.tts_request, self.tts_first_audio),
            voice_to_voice_ms: between(self.last_voiced, self.first_frame_out),
            endpoint: self.endpoint.map(str::to_string),
            end_of_turn_asked_ms: self
                .judgement
                .and_then(|j| between(self.last_voiced, Some(j.asked))),
            end_of_turn_answered_ms: self
                .judgement
                .and_then(|j| between(self.last_voiced, j.answered)),
            end_of_turn_probability: self.judgement.and_then(|j| j.probability),
        }
    }

    /// What the pipeline itself added: from the turn's end to the first frame out, less the
    /// time spent waiting on the responder and the synthesizer.
    pub fn own_overhead(&self) -> Option<Duration> {
        let total = self.first_frame_out?.checked_sub(self.end_of_turn?)?;
        let llm = self.first_text?.checked_sub(self.end_of_turn?)?;
        let tts = self.tts_first_audio?.checked_sub(self.tts_request?)?;
        Some(total.saturating_sub(llm).saturating_sub(tts))
    }
}

/// The pipeline's Prometheus series.
#[derive(Clone)]
pub struct PipelineMetrics {
    latency: HistogramVec,
    turns: IntCounterVec,
    interruptions: IntCounterVec,
    apologies: IntCounterVec,
}

impl PipelineMetrics {
    /// Series registered in `registry` (the service's `/metrics`).
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self::unregistered()?;
        registry.register(Box::new(m.latency.clone()))?;
        registry.register(Box::new(m.turns.clone()))?;
        registry.register(Box::new(m.interruptions.clone()))?;
        registry.register(Box::new(m.apologies.clone()))?;
        Ok(m)
    }

    pub fn unregistered() -> Result<Self, prometheus::Error> {
        let buckets = vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0,
        ];
        Ok(PipelineMetrics {
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "callfleet_turn_latency_seconds",
                    "Latency of one stage of a bot's reply.",
                )
                .buckets(buckets),
                &["bot", "stage"],
            )?,
            turns: IntCounterVec::new(
                Opts::new("callfleet_turns_total", "Caller turns answered."),
                &["bot"],
            )?,
            interruptions: IntCounterVec::new(
                Opts::new(
                    "callfleet_interruptions_total",
                    "Replies cut off by the caller.",
                ),
                &["bot"],
            )?,
            apologies: IntCounterVec::new(
                Opts::new(
                    "callfleet_apologies_total",
                    "Replies replaced by the apology because providers failed.",
                ),
                &["bot"],
            )?,
        })
    }

    pub fn observe_turn(&self, bot: &str, m: &TurnMetrics) {
        self.turns.with_label_values(&[bot]).inc();
        let stages = [
            ("end_of_utterance", m.end_of_utterance_ms),
            ("stt_final", m.stt_final_ms),
            ("llm_first_token", m.llm_first_token_ms),
            ("tts_first_byte", m.tts_first_byte_ms),
            ("voice_to_voice", m.voice_to_voice_ms),
        ];
        for (stage, ms) in stages {
            if let Some(ms) = ms {
                self.latency
                    .with_label_values(&[bot, stage])
                    .observe(ms as f64 / 1000.0);
            }
        }
    }

    pub fn interrupted(&self, bot: &str) {
        self.interruptions.with_label_values(&[bot]).inc();
    }

    pub fn apologized(&self, bot: &str) {
        self.apologies.with_label_values(&[bot]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Option<Duration> {
        Some(Duration::from_millis(v))
    }

    #[test]
    fn turn_metrics_from_instants() {
        let cases = [
            (
                TurnTimer {
                    last_voiced: ms(1000),
                    stt_final: ms(1150),
                    end_of_turn: ms(1150),
                    first_text: ms(1350),
                    tts_request: ms(1351),
                    tts_first_audio: ms(1441),
                    first_frame_out: ms(1443),
                    endpoint: Some("stt"),
                    judgement: Some(Judgement {
                        asked: Duration::from_millis(1150),
                        answered: ms(1170),
                        probability: Some(0.75),
                    }),
                },
                TurnMetrics {
                    turn: 1,
                    end_of_utterance_ms: Some(150),
                    stt_final_ms: Some(150),
                    llm_first_token_ms: Some(200),
                    tts_first_byte_ms: Some(90),
                    voice_to_voice_ms: Some(443),
                    endpoint: Some("stt".into()),
                    end_of_turn_asked_ms: Some(150),
                    end_of_turn_answered_ms: Some(170),
                    end_of_turn_probability: Some(0.75),
                },
                Some(3),
            ),
            (
                TurnTimer {
                    end_of_turn: ms(5),
                    ..TurnTimer::default()
                },
                TurnMetrics {
                    turn: 1,
                    ..TurnMetrics::default()
                },
                None,
            ),
        ];
        for (timer, want, overhead) in cases {
            assert_eq!(timer.metrics(1), want);
            assert_eq!(timer.own_overhead().map(|d| d.as_millis() as u64), overhead);
        }
    }

    #[test]
    fn exported_with_bot_labels() {
        let registry = Registry::new();
        let m = PipelineMetrics::register(&registry).unwrap();
        m.observe_turn(
            "bot-1",
            &TurnMetrics {
                turn: 1,
                voice_to_voice_ms: Some(420),
                ..TurnMetrics::default()
            },
        );
        let families = registry.gather();
        let latency = families
            .iter()
            .find(|f| f.name() == "callfleet_turn_latency_seconds")
            .unwrap();
        let metric = &latency.get_metric()[0];
        let labels: Vec<(String, String)> = metric
            .get_label()
            .iter()
            .map(|l| (l.name().to_string(), l.value().to_string()))
            .collect();
        assert_eq!(
            labels,
            vec![
                ("bot".into(), "bot-1".into()),
                ("stage".into(), "voice_to_voice".into())
            ]
        );
    }
}
