//! Just enough WAV and resampling for the speech engines: reading the 16-bit PCM that
//! `espeak-ng --stdout` writes (whose RIFF sizes may be placeholders, since it streams), and
//! converting between sample rates with a windowed-sinc filter.

/// Mono 16-bit PCM and its rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Pcm {
    pub sample_rate: u32,
    pub samples: Vec<i16>,
}

impl Pcm {
    pub fn duration_secs(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate.max(1) as f64
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavError {
    #[error("not a RIFF/WAVE file")]
    NotWav,
    #[error("unsupported WAV encoding: format {format}, {bits} bits")]
    Unsupported { format: u16, bits: u16 },
    #[error("WAV has no fmt or data chunk")]
    Incomplete,
}

/// Parses a PCM WAV (16-bit integer, any channel count, mixed down to mono). A data chunk whose
/// size is a streaming placeholder (`0xFFFFFFFF`, 0) runs to the end of the bytes.
pub fn parse_wav(bytes: &[u8]) -> Result<Pcm, WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWav);
    }
    let mut pos = 12;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = pos + 8;
        if id == b"fmt " {
            let f = bytes.get(body..body + 16).ok_or(WavError::Incomplete)?;
            let format = u16::from_le_bytes([f[0], f[1]]);
            let channels = u16::from_le_bytes([f[2], f[3]]);
            let rate = u32::from_le_bytes(f[4..8].try_into().unwrap());
            let bits = u16::from_le_bytes([f[14], f[15]]);
            fmt = Some((format, channels, rate, bits));
        } else if id == b"data" {
            let (format, channels, rate, bits) = fmt.ok_or(WavError::Incomplete)?;
            if !(format == 1 || format == 0xFFFE) || bits != 16 {
                return Err(WavError::Unsupported { format, bits });
            }
            let end = if size == 0 || size == u32::MAX as usize || body + size > bytes.len() { bytes.len() } else { body + size };
            let channels = channels.max(1) as usize;
            let frames = bytes[body..end].chunks_exact(2 * channels);
            let samples = frames
                .map(|f| {
                    let sum: i32 = f.chunks_exact(2).map(|s| i16::from_le_bytes([s[0], s[1]]) as i32).sum();
                    (sum / channels as i32) as i16
                })
                .collect();
            return Ok(Pcm { sample_rate: rate, samples });
        }
        pos = body + size + (size & 1);
    }
    Err(WavError::Incomplete)
}

/// Writes 16-bit mono PCM as a WAV file's bytes (for debugging and tests).
pub fn wav_bytes(pcm: &Pcm) -> Vec<u8> {
    let data_len = (pcm.samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&pcm.sample_rate.to_le_bytes());
    out.extend_from_slice(&(pcm.sample_rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in &pcm.samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Resamples with a Hann-windowed sinc whose cut-off is the lower rate's Nyquist frequency, so
/// downsampling does not alias. Offline (whole buffers): fine for utterances and sentences.
pub fn resample(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    resample_f32(&samples.iter().map(|&s| s as f32).collect::<Vec<_>>(), from, to)
        .into_iter()
        .map(|x| x.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16)
        .collect()
}

/// [`resample`] on float samples (any scale).
pub fn resample_f32(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || input.is_empty() || from == 0 || to == 0 {
        return input.to_vec();
    }
    const HALF_TAPS: f64 = 16.0;
    let ratio = to as f64 / from as f64;
    let cutoff = ratio.min(1.0) * 0.95;
    let radius = HALF_TAPS / cutoff;
    let n_out = ((input.len() as f64) * ratio).round() as usize;
    let mut out = Vec::with_capacity(n_out);
    for j in 0..n_out {
        let centre = j as f64 / ratio;
        let lo = ((centre - radius).ceil().max(0.0)) as usize;
        let hi = ((centre + radius).floor() as usize).min(input.len() - 1);
        let (mut acc, mut norm) = (0.0f64, 0.0f64);
        for (i, &x) in input.iter().enumerate().take(hi + 1).skip(lo) {
            let t = i as f64 - centre;
            let arg = std::f64::consts::PI * t * cutoff;
            let sinc = if arg.abs() < 1e-9 { 1.0 } else { arg.sin() / arg };
            let window = 0.5 + 0.5 * (std::f64::consts::PI * t / radius).cos();
            let w = sinc * window;
            acc += w * x as f64;
            norm += w;
        }
        out.push(if norm.abs() > 1e-9 { (acc / norm) as f32 } else { 0.0 });
    }
    out
}

/// Root-mean-square level of 16-bit samples, in full-scale units (0..1).
pub fn rms(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| (s as f64 / 32768.0).powi(2)).sum();
    (sum / samples.len() as f64).sqrt() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_round_trip_and_streaming_sizes() {
        let pcm = Pcm { sample_rate: 22_050, samples: vec![0, 1, -2, 300, i16::MIN, i16::MAX] };
        let mut bytes = wav_bytes(&pcm);
        assert_eq!(parse_wav(&bytes).unwrap(), pcm);
        // espeak-ng --stdout leaves the sizes as placeholders.
        bytes[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_wav(&bytes).unwrap(), pcm);
        assert_eq!(parse_wav(b"nope"), Err(WavError::NotWav));
    }

    fn tone(rate: u32, hz: f64, secs: f64) -> Vec<i16> {
        (0..(rate as f64 * secs) as usize).map(|i| (8000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64).sin()) as i16).collect()
    }

    #[test]
    fn resampling_keeps_tones_in_band_and_drops_those_above() {
        // 22.05 kHz → 16 kHz: a 440 Hz tone keeps its level and length, a 10 kHz tone (above the
        // new Nyquist) is filtered out instead of aliasing.
        let low = resample(&tone(22_050, 440.0, 1.0), 22_050, 16_000);
        assert_eq!(low.len(), 16_000);
        let level = rms(&low[1000..15_000]);
        assert!((level - 8000.0 / 32768.0 / 2f32.sqrt()).abs() < 0.01, "{level}");
        let high = resample(&tone(22_050, 10_000.0, 1.0), 22_050, 16_000);
        assert!(rms(&high[1000..15_000]) < 0.01, "{}", rms(&high[1000..15_000]));
        // Upsampling 16 → 24 kHz keeps the tone too.
        let up = resample(&tone(16_000, 440.0, 0.5), 16_000, 24_000);
        assert_eq!(up.len(), 12_000);
        assert!((rms(&up[1000..11_000]) - 8000.0 / 32768.0 / 2f32.sqrt()).abs() < 0.01);
    }
}
