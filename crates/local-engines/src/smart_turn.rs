//! Smart Turn v3.2 (pipecat's audio-native end-of-turn model, a Whisper-encoder classifier) as
//! the pipeline's [`EndOfTurnModel`]. Preprocessing as pipecat does it: the last 8 s of 16 kHz
//! mono, zero-padded at the *start* when shorter, then Whisper log-mel features (80 × 800, see
//! [`crate::mel`]); the model's single output is already a sigmoid probability.

use crate::mel::{LogMel, N_MELS};
use crate::onnx::{self, OnnxOptions, SMART_TURN};
use crate::EngineError;
use callfleet_pipeline::EndOfTurnModel;
use ort::session::Session;
use ort::value::Tensor;
use std::path::Path;

/// Seconds of audio the model judges.
pub const SMART_TURN_SECONDS: usize = 8;
const SAMPLES: usize = SMART_TURN_SECONDS * 16_000;

pub struct SmartTurn {
    session: Session,
    mel: LogMel,
}

impl SmartTurn {
    /// Loads `smart-turn/smart-turn-v3.2-cpu.onnx` from a models dir (and ONNX Runtime).
    pub fn load(models: &Path, options: OnnxOptions) -> Result<Self, EngineError> {
        Ok(SmartTurn {
            session: onnx::session(models, &SMART_TURN, options)?,
            mel: LogMel::new(SAMPLES),
        })
    }

    /// The model's input for `audio_16k`: its last 8 s, zero-padded in front to 8 s.
    pub fn features(&self, audio_16k: &[i16]) -> Vec<f32> {
        let tail = &audio_16k[audio_16k.len().saturating_sub(SAMPLES)..];
        let mut x = vec![0f32; SAMPLES - tail.len()];
        x.extend(tail.iter().map(|&s| s as f32 / 32768.0));
        self.mel.compute(&x)
    }

    /// The probability that the speaker has finished their turn.
    pub fn predict(&mut self, audio_16k: &[i16]) -> Result<f32, EngineError> {
        let features = self.features(audio_16k);
        let frames = features.len() / N_MELS;
        let input =
            Tensor::from_array(([1usize, N_MELS, frames], features)).map_err(onnx::run_error)?;
        let outputs = self
            .session
            .run(ort::inputs! { "input_features" => input })
            .map_err(onnx::run_error)?;
        let (_, p) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(onnx::run_error)?;
        p.first()
            .copied()
            .ok_or_else(|| EngineError::Run("Smart Turn returned no value".into()))
    }
}

impl EndOfTurnModel for SmartTurn {
    fn complete_probability(&mut self, audio_16k: &[i16]) -> Result<f32, String> {
        if audio_16k.is_empty() {
            return Err("no audio to judge".into());
        }
        self.predict(audio_16k).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::testing::{available, espeak_16k};

    fn model() -> Option<SmartTurn> {
        available(
            "Smart Turn",
            SmartTurn::load(&crate::models_dir(), OnnxOptions::default()),
        )
    }

    /// `audio` up to its last loud sample, then 200 ms of silence, as the pipeline holds it at
    /// the recognizer's endpoint.
    fn at_endpoint(audio: &[i16]) -> Vec<i16> {
        let end = audio
            .iter()
            .rposition(|s| s.unsigned_abs() > 300)
            .map_or(0, |i| i + 1);
        let mut v = audio[..end].to_vec();
        v.extend(std::iter::repeat_n(0, 3_200));
        v
    }

    #[test]
    fn finished_sentences_score_higher_than_unfinished_ones() {
        let Some(mut model) = model() else { return };
        let complete = [
            "Thank you, that is all.",
            "I need a haircut.",
            "Can you call me back tomorrow?",
        ];
        // Cut mid-phrase. (A number cut short, "my phone number is five five five", is not here:
        // it may be a whole answer, and the model gives it 0.5–0.7.)
        let unfinished = [
            "Could you tell me the",
            "I want to",
            "My name is John and I",
        ];
        let mut score = |text: &str| -> Option<f32> {
            Some(
                model
                    .predict(&at_endpoint(&espeak_16k(text)?))
                    .expect("runs"),
            )
        };
        let mut done = Vec::new();
        let mut not_done = Vec::new();
        for t in complete {
            let Some(p) = score(t) else { return };
            done.push((t, p));
        }
        for t in unfinished {
            let Some(p) = score(t) else { return };
            not_done.push((t, p));
        }
        eprintln!("smart turn on espeak speech: finished {done:?}; unfinished {not_done:?}");
        let lowest_done = done.iter().map(|d| d.1).fold(f32::MAX, f32::min);
        let highest_not = not_done.iter().map(|d| d.1).fold(f32::MIN, f32::max);
        assert!(
            lowest_done > 0.5 && highest_not < 0.5,
            "finished {done:?}; unfinished {not_done:?}"
        );
    }

    #[test]
    fn short_audio_is_padded_in_front_and_long_audio_keeps_its_end() {
        let Some(model) = model() else { return };
        let short = vec![1000i16; 16_000];
        let f = model.features(&short);
        assert_eq!(f.len(), N_MELS * 800);
        let mut long = vec![0i16; 16_000 * 3];
        long.extend(vec![1000i16; SAMPLES]);
        // The end of the long audio is all that counts.
        assert_eq!(
            model.features(&long),
            model.features(&vec![1000i16; SAMPLES])
        );
        let mut m = model;
        assert!(m.complete_probability(&[]).is_err());
    }
}
