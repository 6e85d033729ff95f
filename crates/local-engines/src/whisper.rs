//! Whisper (whisper.cpp through `whisper-rs`) as a [`SpeechToText`].
//!
//! Whisper is not a streaming recognizer, so a session cuts the call's audio into utterances
//! itself: an energy detector with an adaptive noise floor opens an utterance (`SpeechStarted`),
//! a pause of `endpointing_ms` closes it, and the utterance is transcribed on the blocking pool
//! and reported as one final `Transcript` with `speech_final`; `utterance_end_ms` of silence
//! after words gives `UtteranceEnd`. `Finalize` transcribes what was heard so far
//! (`from_finalize`), `Close` flushes and ends the events. This is the shape of Deepgram's events,
//! so the pipeline's turn-taking works unchanged. Time is counted in audio samples, so the
//! session behaves the same however fast frames arrive.
//!
//! Transcriptions share the machine's cores through one process-wide gate ([`CoreGate`]): a pass
//! holds as many cores as it has threads, so several calls' utterances queue for the cores
//! rather than run at once. whisper.cpp's worker threads spin while they wait for each other, and
//! oversubscribed they starve one another: on two cores, three 2-thread passes at once took 50
//! times longer than the same passes one after the other.
//!
//! Models: faster-whisper (CTranslate2) weights are fetched into the models dir and converted
//! once to ggml by [`crate::ct2::convert_ct2_to_ggml`] ([`WhisperModel::ensure_ggml`]).

use crate::ct2::convert_ct2_to_ggml;
use crate::EngineError;
use callfleet_audio::{resample, rms};
use callfleet_core::scenario::BoxFuture;
use callfleet_providers::*;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, Once, OnceLock};
use tokio::sync::mpsc;
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

const NAME: &str = "whisper";
const RATE: u32 = 16_000;
/// A pause inside an utterance this long can separate two stretches of speech: a flush that
/// comes after the caller started again is cut there.
const MIN_GAP_MS: u32 = 120;

/// The Whisper models callfleet fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WhisperModel {
    /// `tiny.en`: English only, fastest.
    TinyEn,
    /// `base`: multilingual (Russian, English, …).
    Base,
}

impl WhisperModel {
    /// Its directory in the models dir (the CTranslate2 files and the converted ggml file).
    pub fn dir_name(self) -> &'static str {
        match self {
            WhisperModel::TinyEn => "whisper-tiny-en",
            WhisperModel::Base => "whisper-base",
        }
    }

    /// The ggml file whisper.cpp loads, inside [`Self::dir_name`].
    pub fn ggml_file(self) -> &'static str {
        match self {
            WhisperModel::TinyEn => "ggml-tiny.en.bin",
            WhisperModel::Base => "ggml-base.bin",
        }
    }

    pub fn multilingual(self) -> bool {
        self == WhisperModel::Base
    }

    /// `tiny.en`, `tiny-en`, `base`.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "tiny.en" | "tiny-en" | "whisper-tiny-en" => Some(WhisperModel::TinyEn),
            "base" | "whisper-base" => Some(WhisperModel::Base),
            _ => None,
        }
    }

    /// The model for a call's language: `tiny.en` for English, `base` for anything else.
    pub fn for_language(language: Option<&str>) -> Self {
        match language.map(|l| l.to_ascii_lowercase()) {
            Some(l) if l == "en" || l.starts_with("en-") => WhisperModel::TinyEn,
            _ => WhisperModel::Base,
        }
    }

    pub fn ggml_path(self, models: &Path) -> PathBuf {
        models.join(self.dir_name()).join(self.ggml_file())
    }

    /// The ggml file, converting the fetched CTranslate2 model (`model.bin`, `tokenizer.json`)
    /// first if it is not there yet.
    pub fn ensure_ggml(self, models: &Path) -> Result<PathBuf, EngineError> {
        let path = self.ggml_path(models);
        if path.is_file() {
            return Ok(path);
        }
        let dir = models.join(self.dir_name());
        tracing::info!(
            model = self.dir_name(),
            "Converting the CTranslate2 Whisper model to ggml."
        );
        convert_ct2_to_ggml(&dir, &path)?;
        Ok(path)
    }
}

/// How the Whisper recognizer runs.
#[derive(Debug, Clone)]
pub struct WhisperConfig {
    pub models_dir: PathBuf,
    /// A fixed model; `None` picks one per call by [`WhisperModel::for_language`].
    pub model: Option<WhisperModel>,
    /// whisper.cpp threads per transcription (1 by default: on small machines several engines
    /// share the cores).
    pub threads: usize,
    /// Shrink the encoder's audio context to the utterance's length (much faster for short
    /// utterances).
    pub shorten_audio_ctx: bool,
    /// The energy detector: a frame is speech when its RMS (full scale 1.0) is above both this
    /// and `noise_ratio` times the running noise floor.
    pub min_speech_rms: f32,
    pub noise_ratio: f32,
    /// Voice needed before an utterance opens.
    pub min_speech_ms: u32,
    /// Audio kept from before the detector fired.
    pub preroll_ms: u32,
    /// An utterance this long is transcribed without waiting for a pause.
    pub max_utterance_ms: u32,
}

impl WhisperConfig {
    pub fn new(models_dir: impl Into<PathBuf>) -> Self {
        WhisperConfig {
            models_dir: models_dir.into(),
            model: None,
            threads: 1,
            shorten_audio_ctx: true,
            min_speech_rms: 0.01,
            noise_ratio: 3.0,
            min_speech_ms: 60,
            preroll_ms: 250,
            max_utterance_ms: 25_000,
        }
    }
}

impl Default for WhisperConfig {
    fn default() -> Self {
        WhisperConfig::new(crate::models_dir())
    }
}

/// Whisper recognizer; loaded models are shared by all sessions and clones.
#[derive(Clone)]
pub struct WhisperStt {
    config: WhisperConfig,
    contexts: Arc<Mutex<HashMap<WhisperModel, Arc<WhisperContext>>>>,
}

impl std::fmt::Debug for WhisperStt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperStt")
            .field("config", &self.config)
            .finish()
    }
}

fn quiet_whisper_logs() {
    static ONCE: Once = Once::new();
    // whisper.cpp prints its loading chatter to stderr unless a hook takes it.
    ONCE.call_once(whisper_rs::install_logging_hooks);
}

/// A transcription and how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcription {
    pub text: String,
    /// Mean token probability.
    pub confidence: f32,
    pub audio_secs: f64,
    pub compute_secs: f64,
}

impl WhisperStt {
    pub fn new(config: WhisperConfig) -> Self {
        WhisperStt {
            config,
            contexts: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn config(&self) -> &WhisperConfig {
        &self.config
    }

    /// Loads (converting on first use) a model, or returns the loaded one.
    pub fn load(&self, model: WhisperModel) -> Result<Arc<WhisperContext>, EngineError> {
        if let Some(ctx) = self.contexts.lock().unwrap().get(&model) {
            return Ok(ctx.clone());
        }
        quiet_whisper_logs();
        let path = model.ensure_ggml(&self.config.models_dir)?;
        let mut params = WhisperContextParameters::default();
        params.use_gpu(false);
        let ctx = WhisperContext::new_with_params(&path, params)
            .map_err(|e| EngineError::Load(format!("{}: {e}", path.display())))?;
        let ctx = Arc::new(ctx);
        self.contexts.lock().unwrap().insert(model, ctx.clone());
        Ok(ctx)
    }

    /// The model a call in `language` uses.
    pub fn model_for(&self, language: Option<&str>) -> WhisperModel {
        match (self.config.model, language) {
            (Some(m), _) => m,
            // English with only the multilingual model fetched: use it.
            (None, lang) => {
                let m = WhisperModel::for_language(lang);
                if m == WhisperModel::TinyEn
                    && !self.has_model(m)
                    && self.has_model(WhisperModel::Base)
                {
                    WhisperModel::Base
                } else {
                    m
                }
            }
        }
    }

    fn has_model(&self, m: WhisperModel) -> bool {
        let dir = self.config.models_dir.join(m.dir_name());
        dir.join(m.ggml_file()).is_file() || dir.join("model.bin").is_file()
    }

    /// Transcribes 16 kHz mono audio (blocking; call from `spawn_blocking`). `language`: `en`,
    /// `ru`, … or `None` to detect (multilingual models only).
    pub fn transcribe(
        &self,
        model: WhisperModel,
        samples: &[i16],
        language: Option<&str>,
        threads: usize,
    ) -> Result<Transcription, EngineError> {
        let ctx = self.load(model)?;
        transcribe_with(
            &ctx,
            model,
            samples,
            language,
            threads,
            self.config.shorten_audio_ctx,
        )
    }
}

fn run_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Run(e.to_string())
}

fn transcribe_with(
    ctx: &WhisperContext,
    model: WhisperModel,
    samples: &[i16],
    language: Option<&str>,
    threads: usize,
    shorten: bool,
) -> Result<Transcription, EngineError> {
    let mut t = run_whisper(ctx, model, samples, language, threads, shorten)?;
    // A shortened context sometimes makes Whisper loop ("… slot. Please call me … slot. …"):
    // more words than anyone says in that time means the pass is redone on the full context.
    let words = t.text.split_whitespace().count() as f64;
    if shorten && words > t.audio_secs * 4.5 + 3.0 {
        tracing::debug!(
            provider = NAME,
            words,
            audio_s = t.audio_secs,
            "Implausibly many words; transcribing again with the full audio context."
        );
        let first = t.compute_secs;
        t = run_whisper(ctx, model, samples, language, threads, false)?;
        t.compute_secs += first;
    }
    Ok(t)
}

/// A counting semaphore over the process's cores, for blocking code: whisper.cpp passes take
/// as many cores as they run threads and wait while too few are free.
#[derive(Debug)]
pub struct CoreGate {
    cores: usize,
    free: Mutex<usize>,
    freed: Condvar,
}

/// Cores held by one pass; given back when dropped.
#[derive(Debug)]
pub struct CoreLease<'a> {
    gate: &'a CoreGate,
    cores: usize,
}

impl CoreGate {
    pub fn new(cores: usize) -> Self {
        let cores = cores.max(1);
        CoreGate {
            cores,
            free: Mutex::new(cores),
            freed: Condvar::new(),
        }
    }

    /// The gate all Whisper passes in this process share: one permit per core.
    pub fn process() -> &'static CoreGate {
        static GATE: OnceLock<CoreGate> = OnceLock::new();
        GATE.get_or_init(|| {
            CoreGate::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
        })
    }

    /// Blocks until `threads` cores (at most all of them) are free, and holds them.
    pub fn acquire(&self, threads: usize) -> CoreLease<'_> {
        let want = threads.clamp(1, self.cores);
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free < want {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= want;
        CoreLease {
            gate: self,
            cores: want,
        }
    }

    /// Cores not held now.
    #[cfg(test)]
    fn free(&self) -> usize {
        *self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for CoreLease<'_> {
    fn drop(&mut self) {
        let mut free = self.gate.free.lock().unwrap_or_else(|e| e.into_inner());
        *free += self.cores;
        self.gate.freed.notify_all();
    }
}

fn run_whisper(
    ctx: &WhisperContext,
    model: WhisperModel,
    samples: &[i16],
    language: Option<&str>,
    threads: usize,
    shorten: bool,
) -> Result<Transcription, EngineError> {
    let audio_secs = samples.len() as f64 / RATE as f64;
    // whisper.cpp skips input under a second: pad short utterances with silence.
    let min_len = RATE as usize * 11 / 10;
    let mut audio: Vec<f32> = samples.iter().map(|&s| s as f32 / 32768.0).collect();
    if audio.len() < min_len {
        audio.resize(min_len, 0.0);
    }
    let gate = CoreGate::process();
    let threads = threads.clamp(1, gate.cores);
    let _cores = gate.acquire(threads);
    // Compute time starts once the cores are ours: time queued for them is not the model's.
    let started = std::time::Instant::now();
    let mut state = ctx.create_state().map_err(run_err)?;
    let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
    params.set_n_threads(threads as i32);
    params.set_no_context(true);
    params.set_single_segment(false);
    params.set_no_timestamps(true);
    params.set_print_special(false);
    params.set_print_progress(false);
    params.set_print_realtime(false);
    params.set_print_timestamps(false);
    params.set_suppress_blank(true);
    params.set_suppress_nst(true);
    params.set_temperature(0.0);
    params.set_temperature_inc(0.2);
    let lang = match language.map(|l| l.split(['-', '_']).next().unwrap_or(l).to_ascii_lowercase())
    {
        _ if !model.multilingual() => Some("en".to_string()),
        Some(l) if l != "multi" && !l.is_empty() => Some(l),
        _ => None,
    };
    params.set_language(Some(lang.as_deref().unwrap_or("auto")));
    if shorten {
        // The encoder's context is 50 frames a second; keep a margin (2.5 s) past the audio: too
        // tight a context makes Whisper repeat itself.
        let frames = (audio.len() as f64 / RATE as f64 * 50.0).ceil() as i32 + 128;
        let ctx_frames = ((frames + 63) / 64 * 64).clamp(256, 1500);
        params.set_audio_ctx(ctx_frames);
    }
    state.full(params, &audio).map_err(run_err)?;
    let mut text = String::new();
    let (mut p_sum, mut p_n) = (0.0f32, 0usize);
    for seg in state.as_iter() {
        let s = seg.to_str_lossy().map_err(run_err)?;
        text.push_str(&s);
        for i in 0..seg.n_tokens() {
            if let Some(tok) = seg.get_token(i) {
                p_sum += tok.token_probability();
                p_n += 1;
            }
        }
    }
    Ok(Transcription {
        text: clean_transcript(&text),
        confidence: if p_n == 0 { 0.0 } else { p_sum / p_n as f32 },
        audio_secs,
        compute_secs: started.elapsed().as_secs_f64(),
    })
}

/// Whisper's text without its non-speech annotations (`[BLANK_AUDIO]`, `(music)`, `*sigh*`),
/// with whitespace collapsed and a sentence repeated back to back said once: Whisper (tiny.en
/// most) can loop on a phrase ("Good morning. Good morning. Good morning. you have reached…"),
/// and a caller saying the same sentence twice in one breath loses nothing by it.
pub fn clean_transcript(text: &str) -> String {
    drop_repeated_sentences(&without_annotations(text))
}

/// `text` less each sentence that repeats the one before it (letters and digits compared,
/// case-insensitively).
fn drop_repeated_sentences(text: &str) -> String {
    let key = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let mut sentences: Vec<&str> = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if matches!(c, '.' | '!' | '?' | '…') {
            let end = i + c.len_utf8();
            if text[end..].starts_with(' ') || end == text.len() {
                sentences.push(text[start..end].trim());
                start = end;
            }
        }
    }
    if start < text.len() {
        sentences.push(text[start..].trim());
    }
    let mut out: Vec<&str> = Vec::new();
    for s in sentences.into_iter().filter(|s| !s.is_empty()) {
        let repeat = out.last().is_some_and(|last| {
            let k = key(s);
            !k.is_empty() && key(last) == k
        });
        if !repeat {
            out.push(s);
        }
    }
    out.join(" ")
}

fn without_annotations(text: &str) -> String {
    let mut out = String::new();
    let mut depth: Option<char> = None;
    for c in text.chars() {
        match (depth, c) {
            (None, '[') => depth = Some(']'),
            (None, '(') => depth = Some(')'),
            (Some(close), c) if c == close => depth = None,
            (Some(_), _) => {}
            (None, c) => out.push(c),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl SpeechToText for WhisperStt {
    fn name(&self) -> &str {
        NAME
    }

    fn open(&self, options: SttOptions) -> BoxFuture<'_, Result<SttSession, SttError>> {
        let this = self.clone();
        Box::pin(async move {
            let model = this.model_for(options.language.as_deref());
            // Load up front (on the blocking pool) so a missing model fails at call start and
            // a fallback can take over.
            let loader = this.clone();
            tokio::task::spawn_blocking(move || loader.load(model))
                .await
                .map_err(|e| SttError::Connect {
                    provider: NAME.into(),
                    message: e.to_string(),
                })?
                .map_err(|e| SttError::Connect {
                    provider: NAME.into(),
                    message: e.to_string(),
                })?;
            let (cmd_tx, cmd_rx) = mpsc::channel(STT_QUEUE_FRAMES);
            let (ev_tx, ev_rx) = mpsc::channel(64);
            let session = Session::new(this, model, options);
            let task = tokio::spawn(session.run(cmd_rx, ev_tx));
            Ok(SttSession::new(NAME, cmd_tx, ev_rx, TaskGuard::new(task)))
        })
    }
}

/// The detector's view of the audio, in 10 ms windows at the session's rate.
struct Detector {
    window: usize,
    pending: Vec<i16>,
    noise_floor: f32,
    min_rms: f32,
    ratio: f32,
}

impl Detector {
    /// Speech flags for each complete window in `samples` (leftovers wait for the next call).
    fn push(&mut self, samples: &[i16], out: &mut Vec<(Vec<i16>, bool)>) {
        self.pending.extend_from_slice(samples);
        while self.pending.len() >= self.window {
            let w: Vec<i16> = self.pending.drain(..self.window).collect();
            let level = rms(&w);
            let speech = level > self.min_rms && level > self.noise_floor * self.ratio;
            if !speech {
                // Follow the floor down fast, up slowly.
                let k = if level < self.noise_floor { 0.3 } else { 0.02 };
                self.noise_floor = (self.noise_floor + k * (level - self.noise_floor)).max(1e-4);
            }
            out.push((w, speech));
        }
    }
}

struct Session {
    stt: WhisperStt,
    model: WhisperModel,
    language: Option<String>,
    rate: u32,
    endpointing: usize,
    utterance_end: usize,
    min_speech: usize,
    preroll: usize,
    max_utterance: usize,
    detector: Detector,
    /// Recent audio while idle (the pre-roll), whole utterance while in speech.
    preroll_buf: VecDeque<i16>,
    utterance: Vec<i16>,
    in_speech: bool,
    voiced_run: usize,
    silence_run: usize,
    /// Where in `utterance` the last pause of at least `min_gap` ended (speech resumed).
    resumed_at: Option<usize>,
    min_gap: usize,
    /// Samples of silence since the last words were reported, while an `UtteranceEnd` is owed.
    since_words: Option<usize>,
}

type Events = mpsc::Sender<Result<SttEvent, SttError>>;

impl Session {
    fn new(stt: WhisperStt, model: WhisperModel, o: SttOptions) -> Self {
        let rate = o.sample_rate.max(8000);
        let ms = |v: u32| (rate as usize) * v as usize / 1000;
        let c = stt.config.clone();
        Session {
            stt,
            model,
            language: o.language,
            rate,
            endpointing: ms(o.endpointing_ms.max(100)),
            utterance_end: ms(o.utterance_end_ms.max(o.endpointing_ms)),
            min_speech: ms(c.min_speech_ms),
            preroll: ms(c.preroll_ms),
            max_utterance: ms(c.max_utterance_ms),
            detector: Detector {
                window: ms(10),
                pending: Vec::new(),
                noise_floor: 0.003,
                min_rms: c.min_speech_rms,
                ratio: c.noise_ratio,
            },
            preroll_buf: VecDeque::new(),
            utterance: Vec::new(),
            in_speech: false,
            voiced_run: 0,
            silence_run: 0,
            resumed_at: None,
            min_gap: ms(MIN_GAP_MS),
            since_words: None,
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<SttCommand>, events: Events) {
        let mut windows = Vec::new();
        while let Some(cmd) = commands.recv().await {
            let ok = match cmd {
                SttCommand::Audio(samples) => {
                    windows.clear();
                    self.detector.push(&samples, &mut windows);
                    let mut ok = true;
                    for (w, speech) in std::mem::take(&mut windows) {
                        if !self.window(w, speech, &events).await {
                            ok = false;
                            break;
                        }
                    }
                    ok
                }
                SttCommand::Finalize => self.flush(true, false, &events).await,
                SttCommand::Close => {
                    let _ = self.flush(false, true, &events).await;
                    return;
                }
            };
            if !ok {
                return;
            }
        }
        let _ = self.flush(false, true, &events).await;
    }

    /// One 10 ms window; false when the events receiver is gone or the recognizer failed.
    async fn window(&mut self, w: Vec<i16>, speech: bool, events: &Events) -> bool {
        let n = w.len();
        if !self.in_speech {
            self.preroll_buf.extend(w);
            while self.preroll_buf.len() > self.preroll {
                self.preroll_buf.pop_front();
            }
            self.voiced_run = if speech { self.voiced_run + n } else { 0 };
            if let Some(gap) = self.since_words.as_mut() {
                *gap += n;
                if *gap >= self.utterance_end {
                    self.since_words = None;
                    if events.send(Ok(SttEvent::UtteranceEnd)).await.is_err() {
                        return false;
                    }
                }
            }
            if self.voiced_run >= self.min_speech {
                self.in_speech = true;
                self.silence_run = 0;
                self.resumed_at = None;
                self.utterance = self.preroll_buf.drain(..).collect();
                return events.send(Ok(SttEvent::SpeechStarted)).await.is_ok();
            }
            return true;
        }
        self.utterance.extend(w);
        if speech {
            if self.silence_run >= self.min_gap {
                self.resumed_at = Some(self.utterance.len() - n);
            }
            self.silence_run = 0;
        } else {
            self.silence_run += n;
        }
        if self.silence_run >= self.endpointing {
            let trailing = self.silence_run;
            return self.finish_utterance(true, false, trailing, events).await;
        }
        if self.utterance.len() >= self.max_utterance {
            // Too long to wait for a pause: report this stretch, keep listening.
            let sent = self.transcribe_and_send(false, false, events).await;
            self.utterance.clear();
            return sent;
        }
        true
    }

    /// Ends the current utterance (if any) with a final transcript.
    async fn finish_utterance(
        &mut self,
        speech_final: bool,
        from_finalize: bool,
        trailing_silence: usize,
        events: &Events,
    ) -> bool {
        let ok = self
            .transcribe_and_send(speech_final, from_finalize, events)
            .await;
        self.in_speech = false;
        self.voiced_run = 0;
        self.silence_run = 0;
        self.resumed_at = None;
        self.utterance.clear();
        self.preroll_buf.clear();
        if let Some(gap) = self.since_words.as_mut() {
            *gap = trailing_silence;
        }
        ok
    }

    /// `Finalize` (or the end): transcribe what was heard so far.
    async fn flush(&mut self, from_finalize: bool, closing: bool, events: &Events) -> bool {
        let mut ok = true;
        if from_finalize && self.in_speech && self.silence_run < self.min_gap {
            // Only speech begun just before the flush: the caller's VAD asks for one a moment
            // (its hangover) after it last heard them.
            let recent = |at: usize| self.utterance.len() - at <= 3 * self.min_gap;
            if let Some(at) = self.resumed_at.filter(|&at| recent(at)) {
                // The flush was asked for at a pause, but the caller has started again since
                // (the flush reached us after their next word began): cutting here would split
                // that word between two utterances and lose it. Transcribe up to the pause and
                // keep the new speech, with a little of the pause before it, as an utterance
                // still open.
                let rest = self
                    .utterance
                    .split_off(at.saturating_sub(self.min_gap / 2));
                let trailing = std::mem::take(&mut self.silence_run);
                ok = self.transcribe_and_send(false, true, events).await;
                self.utterance = rest;
                self.silence_run = trailing;
                self.resumed_at = None;
                return ok;
            }
        }
        if self.in_speech {
            ok = self
                .finish_utterance(!from_finalize, from_finalize, 0, events)
                .await;
        } else if from_finalize {
            // Nothing pending: answer the flush with an empty final, as a streaming service does.
            let t = Transcript {
                text: String::new(),
                is_final: true,
                speech_final: false,
                from_finalize: true,
                confidence: 0.0,
            };
            ok = events.send(Ok(SttEvent::Transcript(t))).await.is_ok();
        }
        if closing && self.since_words.take().is_some() {
            ok = ok && events.send(Ok(SttEvent::UtteranceEnd)).await.is_ok();
        }
        ok
    }

    async fn transcribe_and_send(
        &mut self,
        speech_final: bool,
        from_finalize: bool,
        events: &Events,
    ) -> bool {
        let mut audio = std::mem::take(&mut self.utterance);
        // Drop most of the trailing silence: it costs encoder time and invites hallucinations.
        let keep_tail = (self.rate as usize) * 200 / 1000;
        if self.silence_run > keep_tail {
            audio.truncate(audio.len().saturating_sub(self.silence_run - keep_tail));
        }
        if self.rate != RATE {
            audio = resample(&audio, self.rate, RATE);
        }
        let stt = self.stt.clone();
        let (model, language, threads) =
            (self.model, self.language.clone(), self.stt.config.threads);
        let result = tokio::task::spawn_blocking(move || {
            stt.transcribe(model, &audio, language.as_deref(), threads)
        })
        .await;
        let t = match result {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                let _ = events
                    .send(Err(SttError::Protocol {
                        provider: NAME.into(),
                        message: e.to_string(),
                    }))
                    .await;
                return false;
            }
            Err(e) => {
                let _ = events
                    .send(Err(SttError::Protocol {
                        provider: NAME.into(),
                        message: e.to_string(),
                    }))
                    .await;
                return false;
            }
        };
        tracing::debug!(provider = NAME, audio_s = t.audio_secs, compute_s = t.compute_secs, text = %t.text, "Transcribed an utterance.");
        if !t.text.is_empty() {
            self.since_words = Some(0);
        }
        let tr = Transcript {
            text: t.text,
            is_final: true,
            speech_final,
            from_finalize,
            confidence: t.confidence,
        };
        events.send(Ok(SttEvent::Transcript(tr))).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_core_gate_queues_passes_beyond_the_cores() {
        let gate = Arc::new(CoreGate::new(2));
        let all = gate.acquire(8); // more threads than cores: clamped to all of them
        assert_eq!(gate.free(), 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                let one = gate.acquire(1);
                tx.send(gate.free()).unwrap();
                drop(one);
            })
        };
        // The second pass cannot start while the first holds every core.
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(50))
            .is_err());
        drop(all);
        assert_eq!(rx.recv().unwrap(), 1, "it holds one core of two");
        waiter.join().unwrap();
        assert_eq!(gate.free(), 2);
    }

    #[test]
    fn annotations_are_dropped() {
        let cases = [
            (" Hello there. ", "Hello there."),
            ("[BLANK_AUDIO]", ""),
            (" (music) Yes, please. [laughs]", "Yes, please."),
            ("Привет,  мир", "Привет, мир"),
        ];
        for (input, want) in cases {
            assert_eq!(clean_transcript(input), want, "{input:?}");
        }
    }

    #[test]
    fn a_sentence_looped_back_to_back_is_said_once() {
        let cases = [
            (
                "Good morning. Good morning. Good morning. you have reached the dental clinic.",
                "Good morning. you have reached the dental clinic.",
            ),
            ("Hello? hello! Yes, please.", "Hello? Yes, please."),
            // Not back to back, or not the same sentence: kept.
            ("Yes. No. Yes.", "Yes. No. Yes."),
            ("I said 10. I said 11.", "I said 10. I said 11."),
            (
                "Version 2.5 is out. Version 2.5 is out",
                "Version 2.5 is out.",
            ),
            ("Да. Да. Хорошо", "Да. Хорошо"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(clean_transcript(input), want, "{input:?}");
        }
    }

    #[test]
    fn model_by_language() {
        let cases = [
            (Some("en"), WhisperModel::TinyEn),
            (Some("en-US"), WhisperModel::TinyEn),
            (Some("ru"), WhisperModel::Base),
            (Some("multi"), WhisperModel::Base),
            (None, WhisperModel::Base),
        ];
        for (lang, want) in cases {
            assert_eq!(WhisperModel::for_language(lang), want, "{lang:?}");
        }
        assert_eq!(WhisperModel::parse("tiny.en"), Some(WhisperModel::TinyEn));
        assert_eq!(
            WhisperModel::Base.ggml_path(Path::new("/m")),
            PathBuf::from("/m/whisper-base/ggml-base.bin")
        );
    }

    #[test]
    fn detector_follows_the_noise_floor() {
        let mut d = Detector {
            window: 160,
            pending: Vec::new(),
            noise_floor: 0.003,
            min_rms: 0.01,
            ratio: 3.0,
        };
        let mut out = Vec::new();
        // Quiet noise, then loud speech-level samples, then noise again.
        let noise: Vec<i16> = (0..1600)
            .map(|i| if i % 2 == 0 { 100 } else { -100 })
            .collect();
        let loud: Vec<i16> = (0..1600)
            .map(|i| if i % 2 == 0 { 6000 } else { -6000 })
            .collect();
        d.push(&noise, &mut out);
        d.push(&loud, &mut out);
        d.push(&noise[..1000], &mut out);
        let flags: Vec<bool> = out.iter().map(|(_, s)| *s).collect();
        assert_eq!(flags.len(), 26);
        assert!(
            flags[..10].iter().all(|s| !s)
                && flags[10..20].iter().all(|s| *s)
                && flags[20..].iter().all(|s| !s),
            "{flags:?}"
        );
        assert_eq!(d.pending.len(), 40);
    }
}
