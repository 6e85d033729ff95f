//! Voice activity detection. [`Vad`] is the seam where a trained model (Silero via ONNX, in the
//! local-engines crate) slots in; [`EnergyVad`] is the dependency-free fallback: loudness above
//! an adaptive noise floor, with onset and hangover so syllable gaps do not flip it.

/// Judges frames of 16-bit mono PCM.
pub trait Vad: Send {
    /// The probability that `frame` (any length, usually 20 ms) holds speech.
    fn speech_probability(&mut self, frame: &[i16], sample_rate: u32) -> f32;
    /// Forgets the state carried between frames (a new call, a reconnect).
    fn reset(&mut self) {}
}

/// Turns per-frame probabilities into a stable speaking / not speaking.
#[derive(Debug, Clone)]
pub struct VadSmoother {
    threshold: f32,
    /// Speech this long (in frames' audio time) switches to speaking.
    onset_ms: u32,
    /// Silence this long switches back.
    hangover_ms: u32,
    speaking: bool,
    run_ms: u32,
}

impl VadSmoother {
    pub fn new(threshold: f32, onset_ms: u32, hangover_ms: u32) -> Self {
        VadSmoother {
            threshold,
            onset_ms,
            hangover_ms,
            speaking: false,
            run_ms: 0,
        }
    }

    /// Feeds one frame's probability and duration; returns whether the caller is speaking.
    pub fn push(&mut self, probability: f32, frame_ms: u32) -> bool {
        let voiced = probability >= self.threshold;
        if voiced == self.speaking {
            self.run_ms = 0;
        } else {
            self.run_ms += frame_ms;
            let needed = if voiced {
                self.onset_ms
            } else {
                self.hangover_ms
            };
            if self.run_ms >= needed {
                self.speaking = voiced;
                self.run_ms = 0;
            }
        }
        self.speaking
    }

    pub fn is_speaking(&self) -> bool {
        self.speaking
    }
}

impl Default for VadSmoother {
    fn default() -> Self {
        VadSmoother::new(0.5, 40, 200)
    }
}

/// Loudness against a slowly adapting noise floor.
#[derive(Debug, Clone)]
pub struct EnergyVad {
    noise_floor: f64,
    /// Speech must be this many times louder than the floor (in RMS).
    ratio: f64,
    /// And at least this loud, so digital silence with a tiny floor does not make hiss speech.
    min_rms: f64,
}

impl Default for EnergyVad {
    fn default() -> Self {
        EnergyVad {
            noise_floor: 100.0,
            ratio: 3.0,
            min_rms: 300.0,
        }
    }
}

impl EnergyVad {
    pub fn new() -> Self {
        Self::default()
    }
}

pub(crate) fn rms(frame: &[i16]) -> f64 {
    if frame.is_empty() {
        return 0.0;
    }
    (frame.iter().map(|&s| (s as f64) * (s as f64)).sum::<f64>() / frame.len() as f64).sqrt()
}

impl Vad for EnergyVad {
    fn speech_probability(&mut self, frame: &[i16], _sample_rate: u32) -> f32 {
        let level = rms(frame);
        let threshold = (self.noise_floor * self.ratio).max(self.min_rms);
        let p = if level <= threshold {
            0.0
        } else {
            ((level / threshold - 1.0) * 2.0).clamp(0.0, 1.0) as f32 * 0.5 + 0.5
        };
        // The floor follows quiet frames quickly and loud ones very slowly, so a long sentence
        // does not raise it to the speaker's own level.
        let rate = if level < self.noise_floor {
            0.2
        } else if p < 0.5 {
            0.05
        } else {
            0.001
        };
        self.noise_floor = (self.noise_floor + (level - self.noise_floor) * rate).max(1.0);
        p
    }

    fn reset(&mut self) {
        *self = EnergyVad {
            ratio: self.ratio,
            min_rms: self.min_rms,
            ..EnergyVad::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, amp: f32) -> Vec<i16> {
        (0..n)
            .map(|i| ((i as f32 * 0.08).sin() * amp) as i16)
            .collect()
    }

    #[test]
    fn energy_vad_hears_speech_over_noise() {
        let mut vad = EnergyVad::new();
        let cases = [
            (0.0, false),
            (150.0, false),
            (6000.0, true),
            (200.0, false),
            (3000.0, true),
        ];
        for (amp, want) in cases {
            let p = vad.speech_probability(&tone(320, amp), 16000);
            assert_eq!(p >= 0.5, want, "amplitude {amp}: p={p}");
        }
    }

    #[test]
    fn smoother_needs_onset_and_hangover() {
        let mut s = VadSmoother::new(0.5, 40, 100);
        // 20 ms frames: p per frame → speaking after it.
        let frames = [
            (1.0, false),
            (1.0, true),
            (0.0, true),
            (1.0, true),
            (0.0, true),
            (0.0, true),
            (0.0, true),
            (0.0, true),
            (0.0, false),
        ];
        for (i, (p, want)) in frames.iter().enumerate() {
            assert_eq!(s.push(*p, 20), *want, "frame {i}");
        }
    }
}
