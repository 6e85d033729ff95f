//! The pipeline's one task per call: it owns the STT and TTS sessions (opened at call start),
//! the turn detector, the splitter and the playout queue, and runs the responder in a task of
//! its own so a reply can be cancelled the moment the caller barges in.
//!
//! Here: the pipeline's settings, inputs and outputs, and [`Pipeline::run`], which opens the
//! providers, greets and hands over to the call's loop (`call`). The call's parts: `listen`
//! (the caller's audio and the recognizer), `turns` (the turn detector's decisions, barge-in),
//! `reply` (the responder's task), `speak` (the synthesizer, phrases, the apology) and
//! `playout` (frames out, and what a heard utterance records).

use crate::end_of_turn::{EndOfTurnModel, RecentAudio};
use crate::metrics::PipelineMetrics;
use crate::phrases::PhraseCache;
use crate::responder::Responder;
use crate::splitter::{SentenceSplitter, SplitRules};
use crate::turn::{TurnConfig, TurnDetector};
use crate::vad::{EnergyVad, Vad, VadSmoother};
use callfleet_core::domain::{Turn, TurnMetrics};
use callfleet_core::scenario::CallResult;
use callfleet_core::BotConfig;
use callfleet_providers::{SpeechToText, SttOptions, TextToSpeech, TtsEvent, TtsOptions};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

mod call;
mod listen;
mod playout;
mod reply;
mod speak;
mod turns;

use call::Call;

/// How long [`Pipeline::prepare_phrase`] waits on the synthesizer.
const PREPARE_LIMIT: Duration = Duration::from_secs(10);
use reply::{spawn_responder, Request};

/// The providers a call streams through.
#[derive(Clone)]
pub struct Providers {
    pub stt: Arc<dyn SpeechToText>,
    pub tts: Arc<dyn TextToSpeech>,
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Labels metrics and keys the phrase cache.
    pub bot_id: String,
    /// Of the caller's frames.
    pub input_rate: u32,
    /// Of the frames out; the synthesizer is asked for this rate.
    pub output_rate: u32,
    pub frame_ms: u32,
    pub turn: TurnConfig,
    pub stt: SttOptions,
    pub tts: TtsOptions,
    pub split: SplitRules,
    /// Probability threshold, onset and hangover of the VAD smoother.
    pub vad_threshold: f32,
    pub vad_onset_ms: u32,
    pub vad_hangover_ms: u32,
    /// Ask the recognizer to finalize as soon as the VAD hears the caller stop, instead of
    /// waiting for its own endpointing (Deepgram's advice for voice agents).
    pub finalize_on_silence: bool,
    /// After the reply to this many caller turns, the call ends (the scenario engine also says
    /// so itself; this guards responders that do not count).
    pub max_turns: Option<u32>,
}

impl PipelineConfig {
    pub fn new(bot_id: impl Into<String>) -> Self {
        PipelineConfig {
            bot_id: bot_id.into(),
            input_rate: 16_000,
            output_rate: 16_000,
            frame_ms: 20,
            turn: TurnConfig::default(),
            stt: SttOptions::default(),
            tts: TtsOptions {
                sample_rate: 16_000,
                ..TtsOptions::default()
            },
            split: SplitRules::default(),
            vad_threshold: 0.5,
            vad_onset_ms: 40,
            vad_hangover_ms: 200,
            max_turns: None,
            finalize_on_silence: true,
        }
    }

    /// Language, voice and silence timeout from a bot's configuration.
    pub fn for_bot(bot_id: impl Into<String>, bot: &BotConfig) -> Self {
        let mut c = Self::new(bot_id);
        let stt = bot.providers.stt.as_ref();
        let tts = bot.providers.tts.as_ref();
        c.stt.language = stt.and_then(|s| s.language.clone()).or_else(|| {
            Some(if bot.languages.is_empty() {
                bot.language.clone()
            } else {
                "multi".into()
            })
        });
        c.stt.model = stt.and_then(|s| s.model.clone());
        c.tts.language = Some(bot.language.clone());
        c.tts.voice = tts
            .and_then(|t| t.voice.clone())
            .or_else(|| bot.voice_id.clone());
        c.tts.model = tts.and_then(|t| t.model.clone());
        c.turn.silence_timeout = Duration::from_secs(bot.silence_timeout_sec.max(1) as u64);
        c.max_turns = Some(bot.max_turns);
        c
    }

    fn frame_samples(&self) -> usize {
        (self.output_rate * self.frame_ms / 1000).max(1) as usize
    }
}

/// What the caller's side sends.
#[derive(Debug, Clone, PartialEq)]
pub enum CallInput {
    /// A frame of 16-bit mono PCM at `input_rate`.
    Audio(Vec<i16>),
    Dtmf(char),
    /// Text the caller typed (chat): a turn of its own, answered by voice; a reply being spoken
    /// stops for it.
    Text(String),
    Hangup,
}

/// What the pipeline sends toward the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum CallOutput {
    /// One frame at `output_rate`, paced in real time.
    Audio(Vec<i16>),
    /// Drop whatever audio is still buffered downstream: the caller barged in.
    Clear,
    /// The agent's words as the caller hears them: what of the utterance being played was
    /// heard since the last of these (whole words, the space before them kept), so that all of
    /// them together are the utterance's text as heard so far. Its `Transcript` follows.
    Saying(String),
    Transcript(Turn),
    Metrics(TurnMetrics),
    /// What the agent is doing now changed.
    State(AgentState),
    /// The recognizer's words for the caller's current segment: interim ones, each the whole
    /// segment so far, until the final one settles it (the next words start a new segment).
    Heard {
        text: String,
        is_final: bool,
    },
}

/// What the agent is doing, in the words of LiveKit's `lk.agent.state` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    /// Waiting for the caller (and hearing them).
    Listening,
    /// The caller's turn ended; the reply is being worked out.
    Thinking,
    /// The agent's audio is playing.
    Speaking,
}

impl AgentState {
    /// The attribute's value.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Listening => "listening",
            AgentState::Thinking => "thinking",
            AgentState::Speaking => "speaking",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEnd {
    CallerHungUp,
    BotEnded,
    SilenceTimeout,
    ProvidersFailed,
}

#[derive(Debug, Clone)]
pub struct CallReport {
    /// What was said and heard, barge-ins marked.
    pub transcript: Vec<Turn>,
    pub metrics: Vec<TurnMetrics>,
    /// The pipeline's own time per turn (end of turn to first frame, less provider waits).
    pub overhead: Vec<Duration>,
    pub result: Option<CallResult>,
    pub end: CallEnd,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("the caller's side went away")]
    OutputClosed,
    #[error("the call's task failed: {0}")]
    Task(String),
}

pub struct Pipeline {
    config: PipelineConfig,
    providers: Providers,
    vad: Box<dyn Vad>,
    metrics: Option<PipelineMetrics>,
    phrases: PhraseCache,
    turn_model: Option<Box<dyn EndOfTurnModel>>,
}

impl Pipeline {
    pub fn new(config: PipelineConfig, providers: Providers) -> Self {
        Pipeline {
            config,
            providers,
            vad: Box::new(EnergyVad::new()),
            metrics: None,
            phrases: PhraseCache::new(),
            turn_model: None,
        }
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    pub fn with_vad(mut self, vad: Box<dyn Vad>) -> Self {
        self.vad = vad;
        self
    }

    /// Judges the recognizer's endpoints with an end-of-turn model on the caller's last 8 s of
    /// audio: a caller it finds mid-sentence gets up to `max_endpointing` to go on.
    pub fn with_turn_model(mut self, model: Box<dyn EndOfTurnModel>) -> Self {
        self.turn_model = Some(model);
        self
    }

    pub fn with_metrics(mut self, metrics: PipelineMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Shares synthesized greetings and apologies with other calls.
    pub fn with_phrase_cache(mut self, cache: PhraseCache) -> Self {
        self.phrases = cache;
        self
    }

    /// Synthesizes `text` into the phrase cache ahead of the call — the greeting while the agent
    /// joins the room and waits for the caller — so [`Pipeline::run`] says it without waiting on
    /// the synthesizer. Already cached, or the synthesizer failing or silent for `PREPARE_LIMIT`,
    /// leaves the call to synthesize it as it would have.
    pub fn prepare_phrase(&self, text: String) -> impl std::future::Future<Output = ()> + Send {
        let key = PhraseCache::key(
            &self.config.bot_id,
            self.config.tts.voice.as_deref(),
            self.config.output_rate,
            &text,
        );
        let cached = self.phrases.get(&key).is_some();
        let (tts, phrases, rate) = (
            self.providers.tts.clone(),
            self.phrases.clone(),
            self.config.output_rate,
        );
        let options = TtsOptions {
            sample_rate: rate,
            ..self.config.tts.clone()
        };
        async move {
            if cached || text.trim().is_empty() {
                return;
            }
            let synthesize = async {
                let mut session = tts.open(options).await.ok()?;
                let id = session.start();
                session.push_text(id, text).ok()?;
                session.finish(id).ok()?;
                let mut audio = Vec::new();
                loop {
                    match session.recv().await? {
                        Ok(TtsEvent::Audio { id: i, samples }) if i == id => {
                            audio.extend_from_slice(&samples)
                        }
                        Ok(TtsEvent::Done { id: i }) if i == id => break,
                        Ok(TtsEvent::Failed { .. }) | Err(_) => return None,
                        Ok(_) => {}
                    }
                }
                Some(if session.sample_rate() == rate {
                    audio
                } else {
                    callfleet_audio::resample(&audio, session.sample_rate(), rate)
                })
            };
            match tokio::time::timeout(PREPARE_LIMIT, synthesize).await {
                Ok(Some(audio)) if !audio.is_empty() => phrases.insert(key, audio),
                _ => tracing::debug!(
                    "The phrase could not be prepared; the call will synthesize it."
                ),
            }
        }
    }

    /// Runs one call until the caller hangs up, the bot ends it, or silence does.
    pub async fn run(
        self,
        mut responder: Box<dyn Responder>,
        input: mpsc::Receiver<CallInput>,
        output: mpsc::Sender<CallOutput>,
    ) -> Result<CallReport, PipelineError> {
        let start = Instant::now();
        // Both connections open now, at call start, not at the first utterance.
        let stt_options = SttOptions {
            sample_rate: self.config.input_rate,
            ..self.config.stt.clone()
        };
        let tts_options = TtsOptions {
            sample_rate: self.config.output_rate,
            ..self.config.tts.clone()
        };
        let (stt, tts) = tokio::join!(
            self.providers.stt.open(stt_options),
            self.providers.tts.open(tts_options)
        );
        let greeting = responder.greeting();
        let language = responder.language();
        let (requests, events, cancels) = spawn_responder(responder);
        let detector = TurnDetector::new(self.config.turn.clone());
        let detector = if self.turn_model.is_some() {
            detector.with_turn_model()
        } else {
            detector
        };
        let (verdict_tx, verdicts) = mpsc::unbounded_channel();
        let mut call = Call {
            smoother: VadSmoother::new(
                self.config.vad_threshold,
                self.config.vad_onset_ms,
                self.config.vad_hangover_ms,
            ),
            detector,
            turn_model: self.turn_model.map(|m| Arc::new(Mutex::new(m))),
            recent_audio: RecentAudio::default(),
            verdict_tx,
            verdicts,
            splitter: SentenceSplitter::new(self.config.split),
            stt: stt
                .map_err(|e| tracing::warn!(error = %e, "No speech-to-text for this call."))
                .ok(),
            tts: tts
                .map_err(|e| tracing::warn!(error = %e, "No text-to-speech for this call."))
                .ok(),
            tts_failed: false,
            config: self.config,
            vad: self.vad,
            metrics: self.metrics,
            phrases: self.phrases,
            start,
            output,
            requests,
            events,
            cancels,
            language,
            queue: VecDeque::new(),
            next_frame: None,
            speaking: None,
            turn_id: 0,
            user_turns: 0,
            resumable: None,
            caching: HashMap::new(),
            converters: HashMap::new(),
            transcript: Vec::new(),
            turn_metrics: Vec::new(),
            overhead: Vec::new(),
            end: None,
            pending_end: None,
            last_final: None,
            finalizes: VecDeque::new(),
            last_finalize: None,
            speech_began: None,
            heard_confidence: None,
        };
        call.prepare_apology();
        call.emit(CallOutput::State(AgentState::Listening)).await?;
        if call.stt.is_none() || call.tts.is_none() {
            call.apologize_and_end();
        } else {
            call.say_phrase(greeting, true, false);
        }
        let end = call.run(input).await?;
        if let Some(stt) = &call.stt {
            let _ = stt.close().await;
        }
        let (tx, rx) = oneshot::channel();
        let _ = call.requests.send(Request::Finish(tx));
        let result = rx.await.ok().flatten();
        Ok(CallReport {
            transcript: call.transcript,
            metrics: call.turn_metrics,
            overhead: call.overhead,
            result,
            end,
        })
    }
}
