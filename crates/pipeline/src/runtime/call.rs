//! One call's state and its loop: the call wakes on the caller's audio or keys, the next frame
//! due, the recognizer, the synthesizer, the responder, the end-of-turn model's verdict or the
//! turn detector's deadline, and hands each to its part — `listen` (the caller), `turns` (what
//! the turn detector decides), `reply` (the responder), `speak` (the synthesizer and phrases)
//! and `playout` (frames out, and what is recorded once an utterance has been heard).

use super::reply::{Request, ResponderEvent};
use super::{CallEnd, CallInput, CallOutput, PipelineConfig, PipelineError};
use crate::end_of_turn::{EndOfTurnModel, RecentAudio};
use crate::metrics::{PipelineMetrics, TurnTimer};
use crate::phrases::PhraseCache;
use crate::splitter::SentenceSplitter;
use crate::turn::{TurnDetector, TurnInput};
use crate::vad::{Vad, VadSmoother};
use callfleet_core::domain::{Turn, TurnMetrics};
use callfleet_providers::{
    heard_prefix, SttEvent, SttSession, TtsEvent, TtsSession, UtteranceId, SPOKEN_CHARS_PER_SEC,
};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The agent's current utterance.
pub(super) struct Speaking {
    /// The responder turn it answers; `None` for the greeting and other phrases.
    pub(super) turn: Option<u64>,
    pub(super) utterance: Option<UtteranceId>,
    /// Text sent to the synthesizer so far.
    pub(super) text: String,
    pub(super) text_complete: bool,
    pub(super) tts_done: bool,
    pub(super) samples_in: u64,
    pub(super) samples_played: u64,
    pub(super) started_playing: bool,
    pub(super) ends_call: bool,
    /// Keep the audio under this cache key once complete.
    pub(super) cache_key: Option<String>,
    pub(super) collected: Vec<i16>,
    pub(super) timer: TurnTimer,
    pub(super) apologized: bool,
    /// Bytes of the utterance's text already given out as played (`CallOutput::Saying`).
    pub(super) shown: usize,
}

impl Speaking {
    pub(super) fn new(turn: Option<u64>) -> Self {
        Speaking {
            turn,
            utterance: None,
            text: String::new(),
            text_complete: false,
            tts_done: false,
            samples_in: 0,
            samples_played: 0,
            started_playing: false,
            ends_call: false,
            cache_key: None,
            collected: Vec::new(),
            timer: TurnTimer::default(),
            apologized: false,
            shown: 0,
        }
    }

    /// What of the utterance the caller has heard by now: its text in proportion to the audio
    /// played once the whole of it is synthesized, by speaking rate before; whole words only.
    pub(super) fn heard(&self, output_rate: u32) -> &str {
        let said = self.text.trim();
        let chars = said.chars().count();
        let heard_chars = if self.tts_done && self.samples_in > 0 {
            (chars as f64 * self.samples_played as f64 / self.samples_in as f64) as usize
        } else {
            (self.samples_played as f64 / output_rate as f64 * SPOKEN_CHARS_PER_SEC) as usize
        };
        heard_prefix(said, heard_chars)
    }
}

/// One call's state, owned by the pipeline's task.
pub(super) struct Call {
    pub(super) config: PipelineConfig,
    pub(super) vad: Box<dyn Vad>,
    pub(super) smoother: VadSmoother,
    pub(super) detector: TurnDetector,
    pub(super) turn_model: Option<Arc<Mutex<Box<dyn EndOfTurnModel>>>>,
    /// The caller's last seconds, for the end-of-turn model (kept only with one).
    pub(super) recent_audio: RecentAudio,
    /// The model's verdicts, by request.
    pub(super) verdict_tx: mpsc::UnboundedSender<(u64, Option<f32>)>,
    pub(super) verdicts: mpsc::UnboundedReceiver<(u64, Option<f32>)>,
    pub(super) splitter: SentenceSplitter,
    pub(super) stt: Option<SttSession>,
    pub(super) tts: Option<TtsSession>,
    pub(super) tts_failed: bool,
    pub(super) metrics: Option<PipelineMetrics>,
    pub(super) phrases: PhraseCache,
    pub(super) start: Instant,
    pub(super) output: mpsc::Sender<CallOutput>,
    pub(super) requests: mpsc::UnboundedSender<Request>,
    pub(super) events: mpsc::UnboundedReceiver<ResponderEvent>,
    pub(super) cancels: mpsc::UnboundedSender<u64>,
    pub(super) language: String,
    /// Audio waiting for its frame slot.
    pub(super) queue: VecDeque<i16>,
    pub(super) next_frame: Option<Instant>,
    pub(super) speaking: Option<Speaking>,
    pub(super) turn_id: u64,
    pub(super) user_turns: u32,
    /// What an interruption cut off, said again if it was a false alarm.
    pub(super) resumable: Option<String>,
    /// Utterances synthesized only to fill the phrase cache.
    pub(super) caching: HashMap<UtteranceId, (String, Vec<i16>)>,
    /// Each utterance's audio converted to the call's rate as one stream, while a synthesizer
    /// speaks at another.
    pub(super) converters: HashMap<UtteranceId, callfleet_audio::Resampler>,
    pub(super) transcript: Vec<Turn>,
    pub(super) turn_metrics: Vec<TurnMetrics>,
    pub(super) overhead: Vec<Duration>,
    /// End the call now.
    pub(super) end: Option<CallEnd>,
    /// End it once the current utterance has been heard.
    pub(super) pending_end: Option<CallEnd>,
    /// When the recognizer's last final result arrived.
    pub(super) last_final: Option<Duration>,
    /// When the flushes not yet answered were asked for (the VAD heard the caller stop), oldest
    /// first, and the last one asked.
    pub(super) finalizes: VecDeque<Duration>,
    pub(super) last_finalize: Option<Duration>,
    /// When the VAD last heard the caller start speaking.
    pub(super) speech_began: Option<Duration>,
    /// The lowest confidence of the recognizer's finals since the last turn ended: how sure it
    /// was of the words the next turn hands the responder.
    pub(super) heard_confidence: Option<f32>,
}

/// Unanswered flushes remembered; a recognizer that leaves some unanswered cannot grow the list.
pub(super) const MAX_UNANSWERED_FLUSHES: usize = 8;

async fn recv_stt(
    stt: &mut Option<SttSession>,
) -> Option<Result<SttEvent, callfleet_providers::SttError>> {
    match stt {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_tts(
    tts: &mut Option<TtsSession>,
) -> Option<Result<TtsEvent, callfleet_providers::TtsError>> {
    match tts {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Call {
    pub(super) fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn at(&self, offset: Duration) -> Instant {
        self.start + offset
    }

    pub(super) async fn emit(&mut self, out: CallOutput) -> Result<(), PipelineError> {
        self.output
            .send(out)
            .await
            .map_err(|_| PipelineError::OutputClosed)
    }

    pub(super) async fn run(
        &mut self,
        mut input: mpsc::Receiver<CallInput>,
    ) -> Result<CallEnd, PipelineError> {
        loop {
            if let Some(end) = self.end {
                return Ok(end);
            }
            let deadline = self.detector.next_deadline().map(|d| self.at(d));
            let frame_due = if self.frame_ready() {
                Some(self.next_frame.unwrap_or_else(Instant::now))
            } else {
                None
            };
            tokio::select! {
                biased;
                frame = input.recv() => match frame {
                    Some(CallInput::Audio(samples)) => self.caller_audio(samples).await?,
                    Some(CallInput::Dtmf(d)) => {
                        let now = self.now();
                        let actions = self.detector.handle(now, TurnInput::Dtmf(d));
                        self.act(actions).await?;
                    }
                    Some(CallInput::Text(text)) => self.typed(text).await?,
                    Some(CallInput::Hangup) | None => return Ok(CallEnd::CallerHungUp),
                },
                _ = sleep_until(frame_due) => self.play_frame().await?,
                ev = recv_stt(&mut self.stt) => self.stt_event(ev).await?,
                ev = recv_tts(&mut self.tts) => self.tts_event(ev).await?,
                Some(ev) = self.events.recv() => self.responder_event(ev).await?,
                Some((request, probability)) = self.verdicts.recv() => {
                    let now = self.now();
                    let actions = self.detector.handle(now, TurnInput::EndOfTurnVerdict { request, probability });
                    self.act(actions).await?;
                }
                _ = sleep_until(deadline) => {
                    let now = self.now();
                    let actions = self.detector.poll(now);
                    self.act(actions).await?;
                }
            }
        }
    }
}
