//! The seam for an audio-native end-of-turn model (Smart Turn via ONNX, in the local-engines
//! crate): from how the caller's last seconds sound — intonation, a word cut short, a trailing
//! "and…" — it judges whether they have finished. The turn detector asks for its verdict at the
//! recognizer's endpoint; see [`crate::turn`].

use std::time::Duration;

/// How much of the caller's most recent audio the model is given.
pub const END_OF_TURN_AUDIO: Duration = Duration::from_secs(8);

/// The model's input rate.
pub const END_OF_TURN_RATE: u32 = 16_000;

/// Judges whether the caller has finished their turn. Called off the async executor (in
/// `spawn_blocking`), one call at a time.
pub trait EndOfTurnModel: Send {
    /// The probability that the caller has finished, from up to the last
    /// [`END_OF_TURN_AUDIO`] of their audio as 16 kHz mono (oldest first).
    fn complete_probability(&mut self, audio_16k: &[i16]) -> Result<f32, String>;
}

/// The caller's most recent audio at 16 kHz, at most [`END_OF_TURN_AUDIO`] of it.
#[derive(Debug, Clone, Default)]
pub(crate) struct RecentAudio {
    samples: std::collections::VecDeque<i16>,
}

impl RecentAudio {
    const CAPACITY: usize = (END_OF_TURN_RATE as u64 * END_OF_TURN_AUDIO.as_secs()) as usize;

    pub(crate) fn push(&mut self, frame: &[i16], sample_rate: u32) {
        if sample_rate == END_OF_TURN_RATE {
            self.samples.extend(frame.iter().copied());
        } else {
            self.samples
                .extend(crate::wav::resample(frame, sample_rate, END_OF_TURN_RATE));
        }
        let over = self.samples.len().saturating_sub(Self::CAPACITY);
        self.samples.drain(..over);
    }

    pub(crate) fn snapshot(&self) -> Vec<i16> {
        self.samples.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_eight_seconds_at_16_khz() {
        let mut r = RecentAudio::default();
        // 10 s at 8 kHz in 20 ms frames, each frame numbered: 8 s remain, the newest.
        for i in 0..500 {
            r.push(&[i as i16; 160], 8_000);
        }
        let s = r.snapshot();
        assert_eq!(s.len(), 128_000);
        assert_eq!((s[0], s[s.len() - 1]), (100, 499));
    }
}
