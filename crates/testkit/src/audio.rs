//! Caller audio for tests: "speech" is a loud tone the fake recognizer and the energy VAD both
//! hear as speech; silence is zeros.

/// `ms` of a 200 Hz tone at a speaking level.
pub fn speech(ms: u32, sample_rate: u32) -> Vec<i16> {
    tone(ms, sample_rate, 200.0, 6000)
}

pub fn silence(ms: u32, sample_rate: u32) -> Vec<i16> {
    vec![0; (sample_rate as u64 * ms as u64 / 1000) as usize]
}

pub fn tone(ms: u32, sample_rate: u32, hz: f32, amplitude: i16) -> Vec<i16> {
    let n = (sample_rate as u64 * ms as u64 / 1000) as usize;
    (0..n)
        .map(|i| {
            ((i as f32 * hz * std::f32::consts::TAU / sample_rate as f32).sin() * amplitude as f32)
                as i16
        })
        .collect()
}

/// Cuts audio into frames of `ms` (the last one may be shorter).
pub fn frames(samples: &[i16], ms: u32, sample_rate: u32) -> Vec<Vec<i16>> {
    let n = ((sample_rate * ms / 1000) as usize).max(1);
    samples.chunks(n).map(<[i16]>::to_vec).collect()
}

/// Root mean square level, the fakes' idea of loudness.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples
        .iter()
        .map(|&s| (s as f64) * (s as f64))
        .sum::<f64>()
        / samples.len() as f64)
        .sqrt()
}
