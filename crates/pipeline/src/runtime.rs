//! The pipeline's one task per call: it owns the STT and TTS sessions (opened at call start),
//! the turn detector, the splitter and the playout queue, and runs the responder in a task of
//! its own so a reply can be cancelled the moment the caller barges in.

use crate::end_of_turn::{EndOfTurnModel, RecentAudio};
use crate::metrics::{PipelineMetrics, TurnTimer};
use crate::phrases::{self, PhraseCache};
use crate::responder::{Reply, Responder, ResponderError};
use crate::splitter::{SentenceSplitter, SplitRules};
use crate::turn::{TurnAction, TurnConfig, TurnDetector, TurnInput};
use crate::vad::{EnergyVad, Vad, VadSmoother};
use callfleet_core::domain::{Speaker, Turn, TurnMetrics};
use callfleet_core::scenario::CallResult;
use callfleet_core::BotConfig;
use callfleet_providers::{
    heard_prefix, unheard_rest, SpeechToText, SttEvent, SttOptions, SttSession, TextToSpeech,
    TtsEvent, TtsOptions, TtsSession, UtteranceId, SPOKEN_CHARS_PER_SEC,
};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

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
    Hangup,
}

/// What the pipeline sends toward the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum CallOutput {
    /// One frame at `output_rate`, paced in real time.
    Audio(Vec<i16>),
    /// Drop whatever audio is still buffered downstream: the caller barged in.
    Clear,
    Transcript(Turn),
    Metrics(TurnMetrics),
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
            transcript: Vec::new(),
            turn_metrics: Vec::new(),
            overhead: Vec::new(),
            end: None,
            pending_end: None,
            last_final: None,
            finalizes: VecDeque::new(),
            last_finalize: None,
            speech_began: None,
        };
        call.prepare_apology();
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

// ---------------------------------------------------------------------------------------------
// The responder's task

enum Request {
    Respond { turn: u64, text: String },
    Interrupted { said: String, heard: String },
    Finish(oneshot::Sender<Option<CallResult>>),
}

enum ResponderEvent {
    Piece {
        turn: u64,
        text: String,
    },
    Done {
        turn: u64,
        result: Result<Reply, ResponderError>,
    },
}

fn spawn_responder(
    mut responder: Box<dyn Responder>,
) -> (
    mpsc::UnboundedSender<Request>,
    mpsc::UnboundedReceiver<ResponderEvent>,
    mpsc::UnboundedSender<u64>,
) {
    let (req_tx, mut req_rx) = mpsc::unbounded_channel::<Request>();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (cancel_tx, mut cancel_rx) = mpsc::unbounded_channel::<u64>();
    tokio::spawn(async move {
        while let Some(req) = req_rx.recv().await {
            match req {
                Request::Respond { turn, text } => {
                    let (piece_tx, mut piece_rx) = mpsc::unbounded_channel();
                    let reply = responder.respond(&text, piece_tx);
                    tokio::pin!(reply);
                    loop {
                        tokio::select! {
                            biased;
                            cancel = cancel_rx.recv() => {
                                // Dropping the reply's future cancels the LLM request with it.
                                if cancel == Some(turn) || cancel.is_none() {
                                    break;
                                }
                            }
                            Some(piece) = piece_rx.recv() => {
                                let _ = ev_tx.send(ResponderEvent::Piece { turn, text: piece });
                            }
                            result = &mut reply => {
                                while let Ok(piece) = piece_rx.try_recv() {
                                    let _ = ev_tx.send(ResponderEvent::Piece { turn, text: piece });
                                }
                                let _ = ev_tx.send(ResponderEvent::Done { turn, result });
                                break;
                            }
                        }
                    }
                }
                Request::Interrupted { said, heard } => responder.interrupted(&said, &heard),
                Request::Finish(tx) => {
                    let _ = tx.send(responder.finish());
                    return;
                }
            }
        }
    });
    (req_tx, ev_rx, cancel_tx)
}

// ---------------------------------------------------------------------------------------------
// One call's state

/// The agent's current utterance.
struct Speaking {
    /// The responder turn it answers; `None` for the greeting and other phrases.
    turn: Option<u64>,
    utterance: Option<UtteranceId>,
    /// Text sent to the synthesizer so far.
    text: String,
    text_complete: bool,
    tts_done: bool,
    samples_in: u64,
    samples_played: u64,
    started_playing: bool,
    ends_call: bool,
    /// Keep the audio under this cache key once complete.
    cache_key: Option<String>,
    collected: Vec<i16>,
    timer: TurnTimer,
    apologized: bool,
}

impl Speaking {
    fn new(turn: Option<u64>) -> Self {
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
        }
    }
}

struct Call {
    config: PipelineConfig,
    vad: Box<dyn Vad>,
    smoother: VadSmoother,
    detector: TurnDetector,
    turn_model: Option<Arc<Mutex<Box<dyn EndOfTurnModel>>>>,
    /// The caller's last seconds, for the end-of-turn model (kept only with one).
    recent_audio: RecentAudio,
    /// The model's verdicts, by request.
    verdict_tx: mpsc::UnboundedSender<(u64, Option<f32>)>,
    verdicts: mpsc::UnboundedReceiver<(u64, Option<f32>)>,
    splitter: SentenceSplitter,
    stt: Option<SttSession>,
    tts: Option<TtsSession>,
    tts_failed: bool,
    metrics: Option<PipelineMetrics>,
    phrases: PhraseCache,
    start: Instant,
    output: mpsc::Sender<CallOutput>,
    requests: mpsc::UnboundedSender<Request>,
    events: mpsc::UnboundedReceiver<ResponderEvent>,
    cancels: mpsc::UnboundedSender<u64>,
    language: String,
    /// Audio waiting for its frame slot.
    queue: VecDeque<i16>,
    next_frame: Option<Instant>,
    speaking: Option<Speaking>,
    turn_id: u64,
    user_turns: u32,
    /// What an interruption cut off, said again if it was a false alarm.
    resumable: Option<String>,
    /// Utterances synthesized only to fill the phrase cache.
    caching: HashMap<UtteranceId, (String, Vec<i16>)>,
    transcript: Vec<Turn>,
    turn_metrics: Vec<TurnMetrics>,
    overhead: Vec<Duration>,
    /// End the call now.
    end: Option<CallEnd>,
    /// End it once the current utterance has been heard.
    pending_end: Option<CallEnd>,
    /// When the recognizer's last final result arrived.
    last_final: Option<Duration>,
    /// When the flushes not yet answered were asked for (the VAD heard the caller stop), oldest
    /// first, and the last one asked.
    finalizes: VecDeque<Duration>,
    last_finalize: Option<Duration>,
    /// When the VAD last heard the caller start speaking.
    speech_began: Option<Duration>,
}

/// Unanswered flushes remembered; a recognizer that leaves some unanswered cannot grow the list.
const MAX_UNANSWERED_FLUSHES: usize = 8;

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
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn at(&self, offset: Duration) -> Instant {
        self.start + offset
    }

    fn apology_key(&self) -> String {
        PhraseCache::key(
            &self.config.bot_id,
            self.config.tts.voice.as_deref(),
            self.config.output_rate,
            phrases::apology(&self.language),
        )
    }

    /// Synthesizes the apology in the background if no call has yet, so it is ready before it
    /// is needed.
    fn prepare_apology(&mut self) {
        let key = self.apology_key();
        if self.phrases.get(&key).is_some() {
            return;
        }
        let Some(tts) = &self.tts else { return };
        let id = tts.start();
        if tts.push_text(id, phrases::apology(&self.language)).is_ok() && tts.finish(id).is_ok() {
            self.caching.insert(id, (key, Vec::new()));
        }
    }

    /// Says `text`; `cache` keeps (and reuses) its audio per bot, voice and text.
    fn say_phrase(&mut self, text: String, cache: bool, ends_call: bool) {
        self.stop_speaking();
        let mut s = Speaking::new(None);
        s.text = text.clone();
        s.text_complete = true;
        s.ends_call = ends_call;
        let key = PhraseCache::key(
            &self.config.bot_id,
            self.config.tts.voice.as_deref(),
            self.config.output_rate,
            &text,
        );
        if let Some(audio) = self.phrases.get(&key).filter(|_| cache) {
            self.queue.extend(audio.iter());
            s.samples_in = audio.len() as u64;
            s.tts_done = true;
        } else if let Some(tts) = self.tts.as_ref().filter(|_| !self.tts_failed) {
            let id = tts.start();
            let _ = tts.push_text(id, text);
            let _ = tts.finish(id);
            s.utterance = Some(id);
            s.cache_key = cache.then_some(key);
        } else {
            self.speaking = Some(s);
            self.apologize();
            return;
        }
        self.speaking = Some(s);
    }

    /// Replaces what the agent is saying with the apology (cached, else a tone).
    fn apologize(&mut self) {
        let audio = self
            .phrases
            .get(&self.apology_key())
            .map(|a| a.to_vec())
            .unwrap_or_else(|| phrases::comfort_tone(self.config.output_rate));
        if let Some(m) = &self.metrics {
            m.apologized(&self.config.bot_id);
        }
        let s = self.speaking.get_or_insert_with(|| Speaking::new(None));
        if let (Some(tts), Some(id)) = (&self.tts, s.utterance.take()) {
            let _ = tts.cancel(id);
        }
        let unplayed = s.samples_in.saturating_sub(s.samples_played) as usize;
        let keep = self.queue.len().saturating_sub(unplayed);
        self.queue.truncate(keep);
        s.text = phrases::apology(&self.language).to_string();
        s.samples_in = s.samples_played + audio.len() as u64;
        s.text_complete = true;
        s.tts_done = true;
        s.apologized = true;
        self.queue.extend(audio);
    }

    fn apologize_and_end(&mut self) {
        self.speaking = Some(Speaking::new(None));
        self.apologize();
        if let Some(s) = &mut self.speaking {
            s.ends_call = true;
        }
        self.end_after_speaking(CallEnd::ProvidersFailed);
    }

    fn end_after_speaking(&mut self, end: CallEnd) {
        if let Some(s) = &mut self.speaking {
            s.ends_call = true;
        }
        self.pending_end = Some(end);
    }

    /// Cancels the current utterance without recording anything (it was superseded).
    fn stop_speaking(&mut self) {
        if let Some(s) = self.speaking.take() {
            if let Some(turn) = s.turn {
                let _ = self.cancels.send(turn);
            }
            if let (Some(tts), Some(id)) = (&self.tts, s.utterance) {
                let _ = tts.cancel(id);
            }
            self.queue.clear();
            self.next_frame = None;
        }
    }

    async fn emit(&mut self, out: CallOutput) -> Result<(), PipelineError> {
        self.output
            .send(out)
            .await
            .map_err(|_| PipelineError::OutputClosed)
    }

    async fn run(
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

impl Call {
    fn frame_ready(&self) -> bool {
        let n = self.config.frame_samples();
        if self.queue.len() >= n {
            return true;
        }
        // A short last frame goes out once nothing more is coming.
        !self.queue.is_empty() && self.speaking.as_ref().is_none_or(|s| s.tts_done)
    }

    async fn play_frame(&mut self) -> Result<(), PipelineError> {
        let n = self.config.frame_samples().min(self.queue.len());
        let mut frame: Vec<i16> = self.queue.drain(..n).collect();
        frame.resize(self.config.frame_samples(), 0);
        let now_i = Instant::now();
        // Frames keep a steady 20 ms cadence from the first one; after an underrun the clock
        // restarts rather than bursting to catch up.
        let next = match self.next_frame {
            Some(t) if t + Duration::from_millis(self.config.frame_ms as u64) > now_i => t,
            _ => now_i,
        };
        self.next_frame = Some(next + Duration::from_millis(self.config.frame_ms as u64));
        let now = self.now();
        let mut first = false;
        if let Some(s) = &mut self.speaking {
            s.samples_played += n as u64;
            if !s.started_playing {
                s.started_playing = true;
                s.timer.first_frame_out = Some(now);
                first = true;
            }
        }
        self.emit(CallOutput::Audio(frame)).await?;
        if first {
            let actions = self.detector.handle(now, TurnInput::AgentSpeaking(true));
            self.act(actions).await?;
        }
        if self.queue.is_empty() {
            self.next_frame = None;
            self.maybe_finish_utterance().await?;
        }
        Ok(())
    }

    /// Records a fully heard utterance and what follows it.
    async fn maybe_finish_utterance(&mut self) -> Result<(), PipelineError> {
        let done = self
            .speaking
            .as_ref()
            .is_some_and(|s| s.text_complete && s.tts_done && self.queue.is_empty());
        if !done {
            return Ok(());
        }
        let Some(s) = self.speaking.take() else {
            return Ok(());
        };
        let now = self.now();
        if !s.text.trim().is_empty() {
            let turn = Turn {
                speaker: Speaker::Bot,
                text: s.text.trim().to_string(),
                at_ms: now.as_millis() as u64,
                interrupted: false,
            };
            self.transcript.push(turn.clone());
            self.emit(CallOutput::Transcript(turn)).await?;
        }
        if s.turn.is_some() {
            self.record_metrics(&s.timer).await?;
        }
        let mut actions = Vec::new();
        if !s.started_playing {
            actions.extend(self.detector.handle(now, TurnInput::AgentSpeaking(true)));
        }
        actions.extend(self.detector.handle(now, TurnInput::AgentSpeaking(false)));
        let out_of_turns = s.turn.is_some()
            && self
                .config
                .max_turns
                .is_some_and(|max| self.user_turns >= max);
        if s.ends_call || out_of_turns {
            self.end = Some(self.pending_end.take().unwrap_or(CallEnd::BotEnded));
            return Ok(());
        }
        self.act(actions).await
    }

    async fn record_metrics(&mut self, timer: &TurnTimer) -> Result<(), PipelineError> {
        let m = timer.metrics(self.user_turns);
        if let Some(p) = &self.metrics {
            p.observe_turn(&self.config.bot_id, &m);
        }
        if let Some(o) = timer.own_overhead() {
            self.overhead.push(o);
        }
        self.turn_metrics.push(m.clone());
        self.emit(CallOutput::Metrics(m)).await
    }

    async fn caller_audio(&mut self, samples: Vec<i16>) -> Result<(), PipelineError> {
        let ms = (samples.len() as u64 * 1000 / self.config.input_rate.max(1) as u64) as u32;
        let p = self
            .vad
            .speech_probability(&samples, self.config.input_rate);
        let voiced = p >= self.config.vad_threshold;
        if self.turn_model.is_some() {
            self.recent_audio
                .push(&samples, self.config.input_rate, voiced);
        }
        let was_speaking = self.smoother.is_speaking();
        let speaking = self.smoother.push(p, ms);
        let now = self.now();
        if speaking && !was_speaking {
            self.speech_began = Some(now);
        }
        if let Some(stt) = &mut self.stt {
            if stt.send_audio(samples).is_err() {
                tracing::warn!("STT session closed; the caller can no longer be heard.");
            }
            if was_speaking && !speaking && self.config.finalize_on_silence {
                let _ = stt.finalize().await;
                self.last_finalize = Some(now);
                self.finalizes.push_back(now);
                if self.finalizes.len() > MAX_UNANSWERED_FLUSHES {
                    self.finalizes.pop_front();
                }
            }
        }
        let actions = self
            .detector
            .handle(now, TurnInput::Vad { speaking, voiced });
        self.act(actions).await
    }

    async fn stt_event(
        &mut self,
        ev: Option<Result<SttEvent, callfleet_providers::SttError>>,
    ) -> Result<(), PipelineError> {
        let now = self.now();
        let input = match ev {
            Some(Ok(SttEvent::Transcript(t))) if t.is_final => {
                self.last_final = Some(now);
                // A flush we asked for on VAD silence is as good as the recognizer's endpoint.
                // But an endpoint followed by more of the caller's speech ended a pause, not the
                // turn: a recognizer busy transcribing answers late, and its "Hello." arrives
                // while the caller is already saying the rest (or has said it). A flush's
                // answer is late if the caller spoke again after that flush was asked; the
                // recognizer's own endpoint, if the caller has spoken again since the last
                // flush and was heard just now, within the silence it claims. The speech after
                // gets its own flush and endpoint.
                let began_after = |at: Option<Duration>| matches!((at, self.speech_began), (Some(at), Some(began)) if began > at);
                let resumed = if t.from_finalize {
                    began_after(self.finalizes.pop_front())
                } else {
                    let silent_for = self
                        .detector
                        .last_voiced()
                        .map_or(now, |v| now.saturating_sub(v));
                    began_after(self.last_finalize)
                        && silent_for.as_millis() * 2 < u128::from(self.config.stt.endpointing_ms)
                };
                TurnInput::Final {
                    text: t.text,
                    speech_final: (t.speech_final || t.from_finalize) && !resumed,
                }
            }
            Some(Ok(SttEvent::Transcript(t))) => TurnInput::Interim { text: t.text },
            Some(Ok(SttEvent::UtteranceEnd)) => TurnInput::UtteranceEnd,
            Some(Ok(SttEvent::SpeechStarted)) | Some(Ok(SttEvent::Reconnected)) => return Ok(()),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "Speech-to-text failed for good; apologizing and ending the call.");
                self.stt = None;
                self.apologize_and_end();
                return Ok(());
            }
            None => {
                self.stt = None;
                return Ok(());
            }
        };
        let actions = self.detector.handle(now, input);
        self.act(actions).await
    }

    async fn tts_event(
        &mut self,
        ev: Option<Result<TtsEvent, callfleet_providers::TtsError>>,
    ) -> Result<(), PipelineError> {
        let now = self.now();
        match ev {
            Some(Ok(TtsEvent::Audio { id, samples })) => {
                if let Some((_, buf)) = self.caching.get_mut(&id) {
                    buf.extend_from_slice(&samples);
                    return Ok(());
                }
                let rate = self
                    .tts
                    .as_ref()
                    .map_or(self.config.output_rate, TtsSession::sample_rate);
                // A fallback provider may not offer the rate asked for.
                let samples = if rate == self.config.output_rate {
                    samples
                } else {
                    crate::wav::resample(&samples, rate, self.config.output_rate)
                };
                let Some(s) = self.speaking.as_mut().filter(|s| s.utterance == Some(id)) else {
                    return Ok(());
                };
                s.timer.tts_first_audio.get_or_insert(now);
                s.samples_in += samples.len() as u64;
                if s.cache_key.is_some() {
                    s.collected.extend_from_slice(&samples);
                }
                self.queue.extend(samples);
            }
            Some(Ok(TtsEvent::Done { id })) => {
                if let Some((key, buf)) = self.caching.remove(&id) {
                    self.phrases.insert(key, buf);
                    return Ok(());
                }
                let Some(s) = self.speaking.as_mut().filter(|s| s.utterance == Some(id)) else {
                    return Ok(());
                };
                s.tts_done = true;
                if let Some(key) = s.cache_key.take() {
                    if s.text_complete {
                        self.phrases.insert(key, std::mem::take(&mut s.collected));
                    }
                }
                if self.queue.is_empty() {
                    self.maybe_finish_utterance().await?;
                }
            }
            Some(Ok(TtsEvent::Failed { id, error })) => {
                self.caching.remove(&id);
                if self
                    .speaking
                    .as_ref()
                    .is_some_and(|s| s.utterance == Some(id))
                {
                    tracing::warn!(error = %error, "TTS failed mid-reply; apologizing.");
                    self.apologize();
                }
            }
            Some(Err(error)) => {
                tracing::warn!(error = %error, "Every TTS provider failed; apologizing and ending the call.");
                self.tts_failed = true;
                self.tts = None;
                self.apologize_and_end();
            }
            None => {
                self.tts_failed = true;
                self.tts = None;
                self.apologize_and_end();
            }
        }
        Ok(())
    }

    /// Sends text of the current responder turn to the synthesizer.
    fn speak_piece(&mut self, piece: String) {
        let now = self.now();
        let Some(s) = &mut self.speaking else { return };
        if s.apologized {
            return;
        }
        let Some(tts) = self.tts.as_ref().filter(|_| !self.tts_failed) else {
            return;
        };
        let id = *s.utterance.get_or_insert_with(|| tts.start());
        s.timer.tts_request.get_or_insert(now);
        s.text.push_str(&piece);
        let _ = tts.push_text(id, piece);
    }

    async fn responder_event(&mut self, ev: ResponderEvent) -> Result<(), PipelineError> {
        let now = self.now();
        let current = self.speaking.as_ref().and_then(|s| s.turn);
        match ev {
            ResponderEvent::Piece { turn, text } if Some(turn) == current => {
                if let Some(s) = &mut self.speaking {
                    s.timer.first_text.get_or_insert(now);
                }
                for piece in self.splitter.push(&text) {
                    self.speak_piece(piece);
                }
            }
            ResponderEvent::Done { turn, result } if Some(turn) == current => {
                if let Some(rest) = self.splitter.finish() {
                    self.speak_piece(rest);
                }
                match result {
                    Ok(reply) => {
                        let actions = self
                            .detector
                            .handle(now, TurnInput::Collecting(reply.collecting_digits));
                        if let Some(s) = &mut self.speaking {
                            s.text_complete = true;
                            s.ends_call = reply.ends_call;
                            s.timer.first_text.get_or_insert(now);
                            match (s.utterance, &self.tts) {
                                (Some(id), Some(tts)) => {
                                    let _ = tts.finish(id);
                                }
                                // Nothing to say (an empty reply): done at once.
                                _ => s.tts_done = true,
                            }
                        }
                        self.act(actions).await?;
                        if self.queue.is_empty() {
                            self.maybe_finish_utterance().await?;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "The responder failed; apologizing.");
                        let said_something =
                            self.speaking.as_ref().is_some_and(|s| s.samples_in > 0);
                        if said_something {
                            if let Some(s) = &mut self.speaking {
                                s.text_complete = true;
                                if let (Some(id), Some(tts)) = (s.utterance, &self.tts) {
                                    let _ = tts.finish(id);
                                }
                            }
                        } else {
                            self.apologize();
                        }
                    }
                }
            }
            // A cancelled turn's leftovers.
            _ => {}
        }
        Ok(())
    }

    async fn act(&mut self, actions: Vec<TurnAction>) -> Result<(), PipelineError> {
        for action in actions {
            let now = self.now();
            match action {
                TurnAction::EndOfTurn { text, via } => {
                    let judgement = self.detector.take_judgement();
                    tracing::debug!(?via, ?judgement, text = %text, "End of turn.");
                    self.stop_speaking();
                    self.resumable = None;
                    self.user_turns += 1;
                    let turn = Turn {
                        speaker: Speaker::User,
                        text: text.clone(),
                        at_ms: now.as_millis() as u64,
                        interrupted: false,
                    };
                    self.transcript.push(turn.clone());
                    self.emit(CallOutput::Transcript(turn)).await?;
                    self.turn_id += 1;
                    let mut s = Speaking::new(Some(self.turn_id));
                    s.timer.last_voiced = self.detector.last_voiced();
                    s.timer.stt_final = self.last_final;
                    s.timer.end_of_turn = Some(now);
                    s.timer.endpoint = Some(via.as_str());
                    s.timer.judgement = judgement;
                    self.speaking = Some(s);
                    self.splitter = SentenceSplitter::new(self.config.split);
                    let _ = self.requests.send(Request::Respond {
                        turn: self.turn_id,
                        text,
                    });
                }
                TurnAction::Interrupt => self.interrupt().await?,
                TurnAction::Resume => match self.resumable.take() {
                    Some(rest) => self.say_phrase(rest, false, false),
                    None => {
                        self.detector.handle(now, TurnInput::AgentSpeaking(true));
                        self.detector.handle(now, TurnInput::AgentSpeaking(false));
                    }
                },
                TurnAction::Reprompt => {
                    self.say_phrase(phrases::reprompt(&self.language).to_string(), true, false)
                }
                TurnAction::PredictEndOfTurn { request } => self.predict_end_of_turn(request),
                TurnAction::Hangup => {
                    self.say_phrase(phrases::goodbye(&self.language).to_string(), true, true);
                    self.pending_end = Some(CallEnd::SilenceTimeout);
                }
            }
        }
        Ok(())
    }

    /// Runs the end-of-turn model off the executor; its verdict comes back through `verdicts`.
    fn predict_end_of_turn(&self, request: u64) {
        let Some(model) = self.turn_model.clone() else {
            let _ = self.verdict_tx.send((request, None));
            return;
        };
        let audio = self.recent_audio.to_speech_end();
        let tx = self.verdict_tx.clone();
        tokio::task::spawn_blocking(move || {
            let verdict = match model.lock() {
                Ok(mut m) => m.complete_probability(&audio),
                Err(_) => Err("the model panicked on an earlier call".to_string()),
            };
            let probability = match verdict {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(error = %e, "The end-of-turn model failed; endpointing without it this time.");
                    None
                }
            };
            tracing::debug!(request, ?probability, "End-of-turn verdict.");
            let _ = tx.send((request, probability));
        });
    }

    /// Barge-in: cancel the reply, then its synthesis, then the queued audio — in that order —
    /// and record what the caller actually heard.
    async fn interrupt(&mut self) -> Result<(), PipelineError> {
        let Some(s) = self.speaking.take() else {
            return Ok(());
        };
        if let Some(turn) = s.turn {
            let _ = self.cancels.send(turn);
        }
        if let (Some(tts), Some(id)) = (&self.tts, s.utterance) {
            let _ = tts.cancel(id);
        }
        self.queue.clear();
        self.next_frame = None;
        self.emit(CallOutput::Clear).await?;
        let said = s.text.trim().to_string();
        let chars = said.chars().count();
        let heard_chars = if s.tts_done && s.samples_in > 0 {
            (chars as f64 * s.samples_played as f64 / s.samples_in as f64) as usize
        } else {
            (s.samples_played as f64 / self.config.output_rate as f64 * SPOKEN_CHARS_PER_SEC)
                as usize
        };
        let heard = heard_prefix(&said, heard_chars).to_string();
        let rest = unheard_rest(&said, heard_chars as f64 / SPOKEN_CHARS_PER_SEC);
        self.resumable = (!rest.is_empty()).then_some(rest);
        let now = self.now();
        let turn = Turn {
            speaker: Speaker::Bot,
            text: heard.clone(),
            at_ms: now.as_millis() as u64,
            interrupted: true,
        };
        self.transcript.push(turn.clone());
        self.emit(CallOutput::Transcript(turn)).await?;
        let _ = self.requests.send(Request::Interrupted { said, heard });
        if let Some(m) = &self.metrics {
            m.interrupted(&self.config.bot_id);
        }
        if s.turn.is_some() {
            self.record_metrics(&s.timer).await?;
        }
        Ok(())
    }
}
