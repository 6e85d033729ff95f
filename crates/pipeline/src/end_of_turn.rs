//! The seam for an audio-native end-of-turn model (Smart Turn via ONNX, in the local-engines
//! crate): from how the caller's last seconds sound — intonation, a word cut short, a trailing
//! "and…" — it judges whether they have finished. The turn detector asks for its verdict at the
//! recognizer's endpoint; see [`crate::turn`].

use std::time::Duration;

/// How much of the caller's most recent audio the model is given.
pub const END_OF_TURN_AUDIO: Duration = Duration::from_secs(8);

/// The model's input rate.
pub const END_OF_TURN_RATE: u32 = 16_000;

/// Silence kept after the caller's last voiced frame: the model judges the speech and a short
/// pause after it (as Smart Turn is run at a VAD's stop), not however long the recognizer took
/// to reach its endpoint.
pub const END_OF_TURN_TRAILING_SILENCE: Duration = Duration::from_millis(200);

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
    /// Samples pushed since the call started, and how many of them up to the end of the last
    /// voiced frame.
    pushed: u64,
    voiced_end: u64,
    /// Converts a caller whose frames are not at 16 kHz, as one stream.
    resampler: Option<callfleet_audio::Resampler>,
}

impl RecentAudio {
    const CAPACITY: usize = (END_OF_TURN_RATE as u64 * END_OF_TURN_AUDIO.as_secs()) as usize;

    /// One frame of the caller's audio; `voiced`: the VAD heard speech in it.
    pub(crate) fn push(&mut self, frame: &[i16], sample_rate: u32, voiced: bool) {
        let before = self.samples.len();
        if sample_rate == END_OF_TURN_RATE {
            self.samples.extend(frame.iter().copied());
        } else {
            let r = match &mut self.resampler {
                Some(r) if r.rates() == (sample_rate, END_OF_TURN_RATE) => r,
                slot => slot.insert(callfleet_audio::Resampler::new(
                    sample_rate,
                    END_OF_TURN_RATE,
                )),
            };
            let mut out = Vec::with_capacity(frame.len() * 2 + 2);
            r.process(frame, &mut out);
            self.samples.extend(out);
        }
        self.pushed += (self.samples.len() - before) as u64;
        if voiced {
            self.voiced_end = self.pushed;
        }
        let over = self.samples.len().saturating_sub(Self::CAPACITY);
        self.samples.drain(..over);
    }

    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> Vec<i16> {
        self.samples.iter().copied().collect()
    }

    /// The audio up to the caller's last voiced frame and [`END_OF_TURN_TRAILING_SILENCE`]
    /// after it (or up to now, if less has come since).
    pub(crate) fn to_speech_end(&self) -> Vec<i16> {
        let trailing =
            END_OF_TURN_RATE as u64 * END_OF_TURN_TRAILING_SILENCE.as_millis() as u64 / 1000;
        let end = (self.voiced_end + trailing).min(self.pushed);
        let keep = self
            .samples
            .len()
            .saturating_sub((self.pushed - end) as usize);
        self.samples.iter().take(keep).copied().collect()
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
            r.push(&[i as i16; 160], 8_000, true);
        }
        let s = r.snapshot();
        assert_eq!(s.len(), 128_000);
        // The 8 → 16 kHz converter lags by half its filter (47 samples, under 3 ms), so the
        // oldest samples kept are the end of frame 99.
        assert_eq!((s[0], s[100], s[s.len() - 1]), (99, 100, 499));
        assert_eq!(r.to_speech_end(), s);
    }

    #[test]
    fn the_model_is_shown_the_speech_and_a_short_pause_after_it() {
        let mut r = RecentAudio::default();
        // 1 s of speech, then 1.5 s of silence in 20 ms frames at 16 kHz.
        for _ in 0..50 {
            r.push(&[1000; 320], 16_000, true);
        }
        for _ in 0..75 {
            r.push(&[0; 320], 16_000, false);
        }
        let s = r.to_speech_end();
        assert_eq!(s.len(), 16_000 + 3_200);
        assert!(s[..16_000].iter().all(|&v| v == 1000));
        // Asked 100 ms after the speech: everything so far.
        let mut r = RecentAudio::default();
        for _ in 0..50 {
            r.push(&[1000; 320], 16_000, true);
        }
        for _ in 0..5 {
            r.push(&[0; 320], 16_000, false);
        }
        assert_eq!(r.to_speech_end().len(), 16_000 + 1_600);
    }
}
