//! The audio math the rest of the workspace shares: 16-bit PCM WAV files ([`wav`]), the one
//! sample-rate converter ([`Resampler`] for live frames, [`resample`] for whole signals) and
//! levels ([`rms`]). The rtc crate converts decoded and published tracks with it, the pipeline
//! the fallback TTS and end-of-turn audio, the local engines their models' rates, and the agent
//! its recordings. Pure: nothing here touches the network, and only [`wav::read`] and
//! [`wav::write`] the file system.

mod resample;
pub mod wav;

pub use resample::{resample, resample_f32, Resampler};

/// Root-mean-square level of 16-bit samples, in full-scale units (0..1).
pub fn rms(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| (s as f64 / 32768.0).powi(2)).sum();
    (sum / samples.len() as f64).sqrt() as f32
}
