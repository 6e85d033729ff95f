//! The local engines as providers: [`LocalFactory`] implements `callfleet_providers::LocalEngines`,
//! so `build_chains_with` builds `whisper`, `local-llm`, `piper` and `espeak` from a bot's
//! `providers:` like any cloud provider, and gives each call its Silero VAD and Smart Turn model.
//!
//! Each model is loaded once per process and shared by every call: one `WhisperStt` per model
//! choice (its loaded contexts are shared by all sessions), one `LocalLlm`, one Piper voice, one
//! Smart Turn session behind a mutex (it carries no state between calls). Silero VAD carries its
//! LSTM state per call, so each call opens its own small session. Every engine runs one thread
//! by default: several run at once in a call, on machines with few cores.
//!
//! A missing model is never cached as a failure: `callfleet models pull` may fetch it while the
//! process runs.

use crate::{
    EngineError, EspeakConfig, EspeakTts, LocalLlm, LocalLlmConfig, OnnxOptions, PiperTts,
    SileroSessions, SileroVad, SmartTurn, WhisperConfig, WhisperModel, WhisperStt,
};
use callfleet_core::config::ProviderChoice;
use callfleet_core::scenario::BoxFuture;
use callfleet_pipeline::{EndOfTurnModel, Vad};
use callfleet_providers::{
    LanguageModel, LocalEngines, SpeechToText, TextToSpeech, TtsError, TtsOptions, TtsSession,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// What to run to fetch missing models.
pub const PULL_HINT: &str = "run `callfleet models pull`";

/// Builds local engines from provider choices, loading each model once.
pub struct LocalFactory {
    models: PathBuf,
    threads: usize,
    whisper: Mutex<HashMap<Option<WhisperModel>, WhisperStt>>,
    llm: OnceLock<LocalLlm>,
    piper: Mutex<Option<PiperTts>>,
    smart_turn: Mutex<Option<Arc<Mutex<SmartTurn>>>>,
    silero: Mutex<Option<Arc<SileroSessions>>>,
    espeak: OnceLock<Result<(), String>>,
}

impl std::fmt::Debug for LocalFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalFactory")
            .field("models", &self.models)
            .field("threads", &self.threads)
            .finish()
    }
}

/// Whether one engine can run, for the start-up summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineStatus {
    /// `whisper tiny.en`, `piper`, `silero-vad`, …
    pub engine: String,
    /// `Err(why)` when it cannot run (model files missing, program not installed).
    pub ready: Result<(), String>,
}

fn reason(e: EngineError) -> String {
    match e {
        EngineError::ModelMissing { dir, missing } => {
            format!("model files missing in {dir} ({missing}): {PULL_HINT}")
        }
        other => other.to_string(),
    }
}

impl LocalFactory {
    /// Engines reading models from `models` (see [`crate::models_dir`]), one thread each.
    pub fn new(models: impl Into<PathBuf>) -> Self {
        LocalFactory {
            models: models.into(),
            threads: 1,
            whisper: Mutex::new(HashMap::new()),
            llm: OnceLock::new(),
            piper: Mutex::new(None),
            smart_turn: Mutex::new(None),
            silero: Mutex::new(None),
            espeak: OnceLock::new(),
        }
    }

    /// The process's factory on [`crate::models_dir`]: every caller shares its loaded models.
    pub fn shared() -> Arc<LocalFactory> {
        static SHARED: OnceLock<Arc<LocalFactory>> = OnceLock::new();
        SHARED
            .get_or_init(|| Arc::new(LocalFactory::new(crate::models_dir())))
            .clone()
    }

    /// Threads per engine (whisper.cpp, the LLM's pool, ONNX Runtime's intra-op pool).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    pub fn models_dir(&self) -> &Path {
        &self.models
    }

    fn onnx(&self) -> OnnxOptions {
        OnnxOptions {
            intra_threads: self.threads,
        }
    }

    fn whisper_ready(&self, model: WhisperModel) -> Result<(), String> {
        let dir = self.models.join(model.dir_name());
        if dir.join(model.ggml_file()).is_file() || dir.join("model.bin").is_file() {
            Ok(())
        } else {
            Err(format!(
                "model files missing in {} ({} or model.bin): {PULL_HINT}",
                dir.display(),
                model.ggml_file()
            ))
        }
    }

    fn espeak_ready(&self) -> Result<(), String> {
        self.espeak
            .get_or_init(|| {
                match std::process::Command::new("espeak-ng")
                    .arg("--version")
                    .output()
                {
                    Ok(o) if o.status.success() => Ok(()),
                    Ok(o) => Err(format!(
                        "espeak-ng --version failed: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    )),
                    Err(e) => Err(format!(
                        "the espeak-ng program is not installed ({e}): apt-get install espeak-ng"
                    )),
                }
            })
            .clone()
    }

    fn piper(&self) -> Result<PiperTts, String> {
        loaded_once(&self.piper, || PiperTts::load(&self.models, self.onnx()))
    }

    fn smart_turn(&self) -> Result<Arc<Mutex<SmartTurn>>, String> {
        loaded_once(&self.smart_turn, || {
            SmartTurn::load(&self.models, self.onnx()).map(|m| Arc::new(Mutex::new(m)))
        })
    }

    /// A Silero VAD for one call: its state is the call's own, the sessions are the process's.
    pub fn vad(&self) -> Result<Box<dyn Vad>, String> {
        let sessions = loaded_once(&self.silero, || {
            SileroSessions::for_this_machine(&self.models, self.onnx())
        })?;
        Ok(Box::new(SileroVad::shared(sessions)))
    }

    /// Smart Turn for one call: the process's one session, shared.
    pub fn turn_model(&self) -> Result<Box<dyn EndOfTurnModel>, String> {
        Ok(Box::new(SharedSmartTurn(self.smart_turn()?)))
    }

    /// What each engine needs and whether it is there, for a summary at start-up.
    pub fn status(&self) -> Vec<EngineStatus> {
        let file = |dir: &str, file: &str| -> Result<(), String> {
            let path = self.models.join(dir).join(file);
            if path.is_file() {
                Ok(())
            } else {
                Err(format!("{} missing: {PULL_HINT}", path.display()))
            }
        };
        let onnx = |model: &crate::ModelFile| -> Result<(), String> {
            file(crate::onnx::ONNXRUNTIME.dir, crate::onnx::ONNXRUNTIME.file)?;
            file(model.dir, model.file)
        };
        let entry = |engine: &str, ready: Result<(), String>| EngineStatus {
            engine: engine.into(),
            ready,
        };
        vec![
            entry("whisper tiny.en", self.whisper_ready(WhisperModel::TinyEn)),
            entry("whisper base", self.whisper_ready(WhisperModel::Base)),
            entry(
                "local-llm (SmolLM2-135M)",
                file(crate::llm::SMOLLM2_DIR, crate::llm::SMOLLM2_FILE),
            ),
            entry(
                "piper (en_US-joe-medium)",
                onnx(&crate::onnx::PIPER_JOE).and(file(
                    crate::onnx::PIPER_JOE_CONFIG.dir,
                    crate::onnx::PIPER_JOE_CONFIG.file,
                )),
            ),
            entry("espeak", self.espeak_ready()),
            entry("silero-vad", onnx(&crate::onnx::SILERO_VAD)),
            entry("smart-turn", onnx(&crate::onnx::SMART_TURN)),
        ]
    }
}

/// The model in `slot`, loaded by `load` the first time it succeeds (a failure is not kept: the
/// files may be fetched while the process runs).
fn loaded_once<T: Clone>(
    slot: &Mutex<Option<T>>,
    load: impl FnOnce() -> Result<T, EngineError>,
) -> Result<T, String> {
    let mut slot = slot.lock().expect("model slot lock poisoned");
    if let Some(model) = slot.as_ref() {
        return Ok(model.clone());
    }
    let model = load().map_err(reason)?;
    *slot = Some(model.clone());
    Ok(model)
}

/// The shared Smart Turn session, one judgement at a time.
struct SharedSmartTurn(Arc<Mutex<SmartTurn>>);

impl EndOfTurnModel for SharedSmartTurn {
    fn complete_probability(&mut self, audio_16k: &[i16]) -> Result<f32, String> {
        let mut model = self
            .0
            .lock()
            .map_err(|_| "the Smart Turn session panicked earlier".to_string())?;
        model.complete_probability(audio_16k)
    }
}

/// A TTS that speaks with the voice its own choice names, or else by the call's language: the
/// call's voice (the bot's `voice_id`) belongs to the first provider of the chain, e.g. a
/// Cartesia voice id that espeak-ng would not know.
struct OwnVoice<T> {
    inner: T,
    voice: Option<String>,
}

impl<T: TextToSpeech> TextToSpeech for OwnVoice<T> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn open(&self, options: TtsOptions) -> BoxFuture<'_, Result<TtsSession, TtsError>> {
        self.inner.open(TtsOptions {
            voice: self.voice.clone(),
            ..options
        })
    }
}

impl LocalEngines for LocalFactory {
    fn stt(&self, choice: &ProviderChoice) -> Result<Arc<dyn SpeechToText>, String> {
        let model =
            match choice.model.as_deref() {
                None => None,
                Some(name) => Some(WhisperModel::parse(name).ok_or_else(|| {
                    format!("unknown Whisper model {name:?} (known: tiny.en, base)")
                })?),
            };
        match model {
            Some(m) => self.whisper_ready(m)?,
            // Chosen per call by language; one of them is enough to start.
            None => self
                .whisper_ready(WhisperModel::TinyEn)
                .or_else(|_| self.whisper_ready(WhisperModel::Base))?,
        }
        let mut engines = self.whisper.lock().expect("whisper map lock poisoned");
        let stt = engines.entry(model).or_insert_with(|| {
            let mut config = WhisperConfig::new(&self.models);
            config.model = model;
            config.threads = self.threads;
            WhisperStt::new(config)
        });
        Ok(Arc::new(stt.clone()))
    }

    fn llm(&self, choice: &ProviderChoice) -> Result<Arc<dyn LanguageModel>, String> {
        if let Some(name) = choice
            .model
            .as_deref()
            .filter(|m| !m.to_ascii_lowercase().contains("smollm2"))
        {
            return Err(format!(
                "model {name:?} is not available locally (only SmolLM2-135M is)"
            ));
        }
        let llm = self.llm.get_or_init(|| {
            let mut config = LocalLlmConfig::smollm2(&self.models);
            config.threads = self.threads;
            LocalLlm::new(config)
        });
        let file = &llm.config().model_file;
        if !file.is_file() {
            return Err(format!(
                "model file missing: {}: {PULL_HINT}",
                file.display()
            ));
        }
        Ok(Arc::new(llm.clone()))
    }

    fn tts(&self, choice: &ProviderChoice) -> Result<Arc<dyn TextToSpeech>, String> {
        match choice.provider.as_str() {
            "piper" => {
                if let Some(voice) = choice
                    .voice
                    .as_deref()
                    .filter(|v| !v.to_ascii_lowercase().contains("joe"))
                {
                    return Err(format!(
                        "voice {voice:?} is not available locally (only en_US-joe-medium is)"
                    ));
                }
                Ok(Arc::new(self.piper()?))
            }
            "espeak" => {
                self.espeak_ready()?;
                Ok(Arc::new(OwnVoice {
                    inner: EspeakTts::new(EspeakConfig::default()),
                    voice: choice.voice.clone(),
                }))
            }
            other => Err(format!("{other} is not a local text-to-speech engine")),
        }
    }
}
