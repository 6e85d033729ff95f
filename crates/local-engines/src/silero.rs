//! Silero VAD v5 through ONNX Runtime as the pipeline's [`Vad`]. The model judges fixed windows
//! (512 samples at 16 kHz, 256 at 8 kHz) with the previous window's last 64 (32) samples
//! prepended as context and an LSTM state `[2, 1, 128]` carried from call to call; the pipeline
//! hands it 20 ms frames, so frames are buffered into windows and each frame is answered with
//! the latest window's probability.
//!
//! The state is handed to the model with every window, so one ONNX session can serve any number
//! of calls: a worker loads [`SileroSessions`] once and each call's [`SileroVad`] keeps only its
//! state, context and buffers (a session of its own cost each call ~10 MiB).

use crate::onnx::{self, OnnxOptions, SILERO_VAD};
use crate::EngineError;
use callfleet_audio::Resampler;
use callfleet_pipeline::vad::{EnergyVad, Vad};
use ort::session::Session;
use ort::value::Tensor;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const STATE_LEN: usize = 2 * 128;

/// The model's own rates; any other input rate is converted to 16 kHz first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModelRate {
    K8,
    K16,
}

impl ModelRate {
    fn hz(self) -> i64 {
        match self {
            ModelRate::K8 => 8_000,
            ModelRate::K16 => 16_000,
        }
    }

    fn window(self) -> usize {
        match self {
            ModelRate::K8 => 256,
            ModelRate::K16 => 512,
        }
    }

    fn context(self) -> usize {
        match self {
            ModelRate::K8 => 32,
            ModelRate::K16 => 64,
        }
    }
}

/// Silero sessions shared by the calls of a process. A session runs one window at a time, so
/// there are a few (one per core, at most four): a call takes whichever is free.
pub struct SileroSessions {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
}

impl SileroSessions {
    /// Loads `count` sessions (at least one) of `silero-vad/silero_vad.onnx`.
    pub fn load(
        models: &Path,
        options: OnnxOptions,
        count: usize,
    ) -> Result<Arc<Self>, EngineError> {
        let sessions = (0..count.max(1))
            .map(|_| onnx::session(models, &SILERO_VAD, options).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(SileroSessions {
            sessions,
            next: AtomicUsize::new(0),
        }))
    }

    /// One session per core, at most four.
    pub fn for_this_machine(models: &Path, options: OnnxOptions) -> Result<Arc<Self>, EngineError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::load(models, options, cores.min(4))
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Runs `f` on a free session, else waits for one (a window takes well under a millisecond).
    fn with_session<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            if let Ok(mut session) = self.sessions[(start + i) % n].try_lock() {
                return f(&mut session);
            }
        }
        // A session poisoned by a panicking call is still a loaded model: its state is ours.
        let mut session = self.sessions[start]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        f(&mut session)
    }
}

pub struct SileroVad {
    sessions: Arc<SileroSessions>,
    /// The input rate the carried state belongs to.
    input_rate: Option<u32>,
    model_rate: ModelRate,
    /// Samples at the model's rate waiting for a full window.
    pending: Vec<f32>,
    /// Converts an input rate the model has no shortcut for, as one stream.
    converter: Option<Resampler>,
    context: Vec<f32>,
    state: Vec<f32>,
    latest: f32,
    /// Judges frames if the model fails at run time, so a call never goes deaf.
    fallback: Option<EnergyVad>,
}

impl SileroVad {
    /// Loads `silero-vad/silero_vad.onnx` from a models dir (and ONNX Runtime with it), as a
    /// session of its own.
    pub fn load(models: &Path, options: OnnxOptions) -> Result<Self, EngineError> {
        Ok(SileroVad::shared(SileroSessions::load(models, options, 1)?))
    }

    /// A VAD for one call on the process's sessions.
    pub fn shared(sessions: Arc<SileroSessions>) -> Self {
        SileroVad {
            sessions,
            input_rate: None,
            model_rate: ModelRate::K16,
            pending: Vec::new(),
            converter: None,
            context: vec![0.0; ModelRate::K16.context()],
            state: vec![0.0; STATE_LEN],
            latest: 0.0,
            fallback: None,
        }
    }

    /// Samples per model window at the model's rate for `input_rate` (512 unless 8 kHz).
    pub fn window_samples(input_rate: u32) -> usize {
        model_rate(input_rate).window()
    }

    /// Feeds one frame of 16-bit mono PCM at `sample_rate`; returns the probability of the
    /// latest complete window (0 until the first one).
    pub fn process(&mut self, frame: &[i16], sample_rate: u32) -> Result<f32, EngineError> {
        if sample_rate == 0 {
            return Err(EngineError::Run("Silero VAD: sample rate 0".into()));
        }
        if self.input_rate != Some(sample_rate) {
            self.reset_state();
            self.input_rate = Some(sample_rate);
            self.model_rate = model_rate(sample_rate);
            self.context = vec![0.0; self.model_rate.context()];
        }
        to_model_rate(frame, sample_rate, &mut self.converter, &mut self.pending);
        let window = self.model_rate.window();
        let mut consumed = 0;
        while self.pending.len() - consumed >= window {
            let chunk: Vec<f32> = self.pending[consumed..consumed + window].to_vec();
            self.latest = self.infer(&chunk)?;
            consumed += window;
        }
        self.pending.drain(..consumed);
        Ok(self.latest)
    }

    fn infer(&mut self, window: &[f32]) -> Result<f32, EngineError> {
        let ctx = self.model_rate.context();
        let mut input = Vec::with_capacity(ctx + window.len());
        input.extend_from_slice(&self.context);
        input.extend_from_slice(window);
        let len = input.len();
        self.context.copy_from_slice(&input[len - ctx..]);
        let input = Tensor::from_array(([1usize, len], input)).map_err(onnx::run_error)?;
        let state =
            Tensor::from_array(([2usize, 1, 128], self.state.clone())).map_err(onnx::run_error)?;
        let sr = Tensor::from_array(((), vec![self.model_rate.hz()])).map_err(onnx::run_error)?;
        let state_out = &mut self.state;
        self.sessions.with_session(|session| {
            let outputs = session
                .run(ort::inputs! { "input" => input, "state" => state, "sr" => sr })
                .map_err(onnx::run_error)?;
            let (_, p) = outputs["output"]
                .try_extract_tensor::<f32>()
                .map_err(onnx::run_error)?;
            let (_, new_state) = outputs["stateN"]
                .try_extract_tensor::<f32>()
                .map_err(onnx::run_error)?;
            if new_state.len() != STATE_LEN || p.is_empty() {
                return Err(EngineError::Run(format!(
                    "Silero VAD: unexpected outputs ({} state values)",
                    new_state.len()
                )));
            }
            state_out.copy_from_slice(new_state);
            Ok(p[0])
        })
    }

    fn reset_state(&mut self) {
        self.pending.clear();
        self.converter = None;
        self.context.iter_mut().for_each(|v| *v = 0.0);
        self.state.iter_mut().for_each(|v| *v = 0.0);
        self.latest = 0.0;
    }
}

fn model_rate(input_rate: u32) -> ModelRate {
    if input_rate == 8_000 {
        ModelRate::K8
    } else {
        ModelRate::K16
    }
}

/// Appends `frame` as floats at the model's rate: 8 and 16 kHz as they are, whole multiples of
/// 16 kHz (32, 48 kHz) by averaging each group (a box low-pass before decimating), anything else
/// through `converter`, one stream for the call.
fn to_model_rate(frame: &[i16], rate: u32, converter: &mut Option<Resampler>, out: &mut Vec<f32>) {
    let scale = 1.0 / 32768.0;
    if rate == 8_000 || rate == 16_000 {
        out.extend(frame.iter().map(|&s| s as f32 * scale));
    } else if rate.is_multiple_of(16_000) {
        let k = (rate / 16_000) as usize;
        out.extend(
            frame
                .chunks(k)
                .map(|g| g.iter().map(|&s| s as f32).sum::<f32>() / g.len() as f32 * scale),
        );
    } else {
        let converter = match converter {
            Some(c) if c.rates() == (rate, 16_000) => c,
            slot => slot.insert(Resampler::new(rate, 16_000)),
        };
        let mut converted = Vec::with_capacity(frame.len() * 16_000 / rate as usize + 2);
        converter.process(frame, &mut converted);
        out.extend(converted.iter().map(|&s| s as f32 * scale));
    }
}

impl Vad for SileroVad {
    fn speech_probability(&mut self, frame: &[i16], sample_rate: u32) -> f32 {
        if let Some(energy) = &mut self.fallback {
            return energy.speech_probability(frame, sample_rate);
        }
        match self.process(frame, sample_rate) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "Silero VAD failed; this call falls back to the energy VAD.");
                let mut energy = EnergyVad::new();
                let p = energy.speech_probability(frame, sample_rate);
                self.fallback = Some(energy);
                p
            }
        }
    }

    fn reset(&mut self) {
        self.reset_state();
        self.input_rate = None;
        self.fallback = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::testing::{available, espeak_16k};

    fn vad() -> Option<SileroVad> {
        available(
            "Silero VAD",
            SileroVad::load(&crate::models_dir(), OnnxOptions::default()),
        )
    }

    /// Per-frame probabilities over 20 ms frames.
    fn run(vad: &mut SileroVad, audio: &[i16], rate: u32) -> Vec<f32> {
        let frame = (rate / 50) as usize;
        audio
            .chunks(frame)
            .map(|f| vad.process(f, rate).expect("runs"))
            .collect()
    }

    fn mean(v: &[f32]) -> f32 {
        v.iter().sum::<f32>() / v.len().max(1) as f32
    }

    #[test]
    fn rates_map_to_model_windows() {
        let cases = [(8_000, 256), (16_000, 512), (48_000, 512), (24_000, 512)];
        for (rate, want) in cases {
            assert_eq!(SileroVad::window_samples(rate), want, "{rate}");
        }
        let mut out = Vec::new();
        to_model_rate(
            &[300, 600, 900, -300, -600, -900],
            48_000,
            &mut None,
            &mut out,
        );
        assert_eq!(out, vec![600.0 / 32768.0, -600.0 / 32768.0]);
    }

    #[test]
    fn hears_espeak_speech_and_not_silence_or_noise() {
        let Some(mut vad) = vad() else { return };
        let Some(speech) =
            espeak_16k("Hello, I would like to book a table for two people tomorrow evening.")
        else {
            return;
        };
        let p_speech = run(&mut vad, &speech, 16_000);
        let loud = p_speech.iter().filter(|&&p| p >= 0.5).count() as f32 / p_speech.len() as f32;
        vad.reset();
        let silence = vec![0i16; 32_000];
        let p_silence = run(&mut vad, &silence, 16_000);
        vad.reset();
        // Quiet hiss, deterministic.
        let mut seed = 12345u32;
        let noise: Vec<i16> = (0..32_000)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (seed >> 16) as i16 % 200
            })
            .collect();
        let p_noise = run(&mut vad, &noise, 16_000);
        eprintln!(
            "silero: speech mean {:.3} (voiced {:.0}%), silence max {:.3}, noise max {:.3}",
            mean(&p_speech),
            loud * 100.0,
            p_silence.iter().cloned().fold(0.0, f32::max),
            p_noise.iter().cloned().fold(0.0, f32::max)
        );
        assert!(
            loud > 0.5,
            "espeak speech voiced in only {:.0}% of frames",
            loud * 100.0
        );
        assert!(p_silence.iter().all(|&p| p < 0.1), "silence: {p_silence:?}");
        assert!(p_noise.iter().all(|&p| p < 0.5), "noise: {p_noise:?}");
    }

    #[test]
    fn the_same_speech_is_heard_at_8_and_48_khz() {
        let Some(mut vad) = vad() else { return };
        let Some(speech) = espeak_16k("Please call me back on Monday morning.") else {
            return;
        };
        for rate in [8_000u32, 48_000] {
            vad.reset();
            let audio = callfleet_audio::resample(&speech, 16_000, rate);
            let p = run(&mut vad, &audio, rate);
            let voiced = p.iter().filter(|&&p| p >= 0.5).count() as f32 / p.len() as f32;
            eprintln!("silero at {rate} Hz: voiced {:.0}%", voiced * 100.0);
            assert!(voiced > 0.5, "{rate} Hz: voiced {:.0}%", voiced * 100.0);
        }
    }

    #[test]
    fn frames_shorter_than_a_window_answer_the_latest_window() {
        let Some(mut vad) = vad() else { return };
        // 320-sample frames: the first completes no window and answers 0.
        assert_eq!(vad.process(&[0; 320], 16_000).expect("runs"), 0.0);
        let p = vad.process(&[0; 320], 16_000).expect("runs");
        assert!(p < 0.1);
    }

    /// Calls sharing the sessions, their windows interleaved, hear exactly what each hears alone:
    /// the state is the call's own.
    #[test]
    fn calls_sharing_sessions_hear_what_they_hear_alone() {
        let Some(sessions) = available(
            "Silero VAD",
            SileroSessions::load(&crate::models_dir(), OnnxOptions::default(), 1),
        ) else {
            return;
        };
        let Some(speech) = espeak_16k("Could you book me in for Friday afternoon?") else {
            return;
        };
        let silence = vec![0i16; speech.len()];
        let alone = |audio: &[i16]| {
            let mut vad = SileroVad::shared(sessions.clone());
            run(&mut vad, audio, 16_000)
        };
        let (speech_alone, silence_alone) = (alone(&speech), alone(&silence));
        let mut a = SileroVad::shared(sessions.clone());
        let mut b = SileroVad::shared(sessions.clone());
        let (mut pa, mut pb) = (Vec::new(), Vec::new());
        for (fa, fb) in speech.chunks(320).zip(silence.chunks(320)) {
            pa.push(a.process(fa, 16_000).expect("runs"));
            pb.push(b.process(fb, 16_000).expect("runs"));
        }
        assert_eq!(pa, speech_alone);
        assert_eq!(pb, silence_alone);
        assert!(pa.iter().any(|&p| p >= 0.5), "the speech is heard: {pa:?}");
    }
}
