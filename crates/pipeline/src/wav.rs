//! 16-bit PCM WAV files, sample-rate conversion and levels: for the console's audio mode, the
//! local speech engines (which read `espeak-ng --stdout`) and fixtures. Parsing and encoding work
//! on bytes; only [`read`] and [`write`] touch the file system.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a WAV file: {0}")]
    Format(&'static str),
    #[error("unsupported WAV: {0} (16-bit PCM only)")]
    Unsupported(String),
}

/// Mono samples and their rate; stereo is mixed down.
#[derive(Debug, Clone, PartialEq)]
pub struct Pcm {
    pub samples: Vec<i16>,
    pub sample_rate: u32,
}

impl Pcm {
    pub fn duration_secs(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate.max(1) as f64
    }
}

/// Parses a 16-bit PCM WAV (any channel count, mixed down to mono). A data chunk whose size is a
/// streaming placeholder (0 or `0xFFFFFFFF`, as `espeak-ng --stdout` writes) or runs past the
/// bytes takes the rest of them.
pub fn parse(bytes: &[u8]) -> Result<Pcm, WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::Format("no RIFF/WAVE header"));
    }
    let mut at = 12;
    let mut format: Option<(u16, u16, u32, u16)> = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let mut len =
            u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]])
                as usize;
        if id == b"data" && (len == 0 || len == u32::MAX as usize) {
            len = bytes.len() - (at + 8);
        }
        let body = &bytes[at + 8..(at + 8 + len).min(bytes.len())];
        match id {
            b"fmt " if body.len() >= 16 => {
                let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
                let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                format = Some((u16_at(0), u16_at(2), rate, u16_at(14)));
            }
            b"data" => {
                let (tag, channels, rate, bits) =
                    format.ok_or(WavError::Format("data before fmt"))?;
                // 0xFFFE is WAVE_FORMAT_EXTENSIBLE, which ffmpeg and sox write for plain PCM too.
                if !(tag == 1 || tag == 0xFFFE) || bits != 16 || channels == 0 {
                    return Err(WavError::Unsupported(format!(
                        "format {tag}, {bits} bits, {channels} channels"
                    )));
                }
                let frames = body.chunks_exact(2 * channels as usize);
                let samples = frames
                    .map(|f| {
                        let sum: i32 = f
                            .chunks_exact(2)
                            .map(|s| i16::from_le_bytes([s[0], s[1]]) as i32)
                            .sum();
                        (sum / channels as i32) as i16
                    })
                    .collect();
                return Ok(Pcm {
                    samples,
                    sample_rate: rate,
                });
            }
            _ => {}
        }
        at += 8 + len + (len & 1);
    }
    Err(WavError::Format("no data chunk"))
}

pub fn encode(samples: &[i16], sample_rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

pub fn read(path: &Path) -> Result<Pcm, WavError> {
    parse(&std::fs::read(path)?)
}

pub fn write(path: &Path, samples: &[i16], sample_rate: u32) -> Result<(), WavError> {
    Ok(std::fs::write(path, encode(samples, sample_rate))?)
}

/// Linear-interpolation resampling: cheap enough for every frame of a call, and enough for speech
/// between the usual telephony and TTS rates. Recognizers fed whole utterances want
/// [`resample_sinc`], which does not alias when downsampling.
pub fn resample(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || samples.is_empty() || from == 0 || to == 0 {
        return samples.to_vec();
    }
    let n = (samples.len() as u64 * to as u64 / from as u64) as usize;
    let step = from as f64 / to as f64;
    (0..n)
        .map(|i| {
            let pos = i as f64 * step;
            let k = pos as usize;
            let frac = pos - k as f64;
            let a = samples[k.min(samples.len() - 1)] as f64;
            let b = samples[(k + 1).min(samples.len() - 1)] as f64;
            (a + (b - a) * frac).round() as i16
        })
        .collect()
}

/// Resamples with a Hann-windowed sinc whose cut-off is the lower rate's Nyquist frequency, so
/// downsampling does not alias. About 35 taps an output sample: for whole utterances and
/// sentences (speech engines), not the per-frame path.
pub fn resample_sinc(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    resample_sinc_f32(
        &samples.iter().map(|&s| s as f32).collect::<Vec<_>>(),
        from,
        to,
    )
    .into_iter()
    .map(|x| x.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16)
    .collect()
}

/// [`resample_sinc`] on float samples (any scale).
pub fn resample_sinc_f32(input: &[f32], from: u32, to: u32) -> Vec<f32> {
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
            let sinc = if arg.abs() < 1e-9 {
                1.0
            } else {
                arg.sin() / arg
            };
            let window = 0.5 + 0.5 * (std::f64::consts::PI * t / radius).cos();
            let w = sinc * window;
            acc += w * x as f64;
            norm += w;
        }
        out.push(if norm.abs() > 1e-9 {
            (acc / norm) as f32
        } else {
            0.0
        });
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
    fn round_trip_and_stereo_downmix() {
        let samples = vec![0, 1, -1, 32767, -32768];
        assert_eq!(
            parse(&encode(&samples, 16000)).unwrap(),
            Pcm {
                samples: samples.clone(),
                sample_rate: 16000
            }
        );
        let mut stereo = encode(&[100, 300, -100, -300], 8000);
        stereo[22] = 2; // channels
        assert_eq!(parse(&stereo).unwrap().samples, vec![200, -200]);
        assert!(matches!(parse(b"RIFF0000WAVE"), Err(WavError::Format(_))));
    }

    #[test]
    fn streaming_placeholder_sizes_run_to_the_end() {
        let pcm = Pcm {
            samples: vec![0, 1, -2, 300, i16::MIN, i16::MAX],
            sample_rate: 22_050,
        };
        let mut bytes = encode(&pcm.samples, pcm.sample_rate);
        for placeholder in [u32::MAX, 0, 1 << 30] {
            bytes[40..44].copy_from_slice(&placeholder.to_le_bytes());
            assert_eq!(parse(&bytes).unwrap(), pcm, "data size {placeholder:#x}");
        }
    }

    #[test]
    fn resampling_keeps_duration() {
        let cases = [
            (16000, 48000, 160, 480),
            (48000, 16000, 480, 160),
            (24000, 16000, 240, 160),
            (16000, 16000, 7, 7),
        ];
        for (from, to, n, want) in cases {
            assert_eq!(resample(&vec![5; n], from, to).len(), want, "{from}->{to}");
        }
    }

    fn tone(rate: u32, hz: f64, secs: f64) -> Vec<i16> {
        (0..(rate as f64 * secs) as usize)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn sinc_resampling_keeps_tones_in_band_and_drops_those_above() {
        // 22.05 kHz → 16 kHz: a 440 Hz tone keeps its level and length, a 10 kHz tone (above the
        // new Nyquist) is filtered out instead of aliasing.
        let sine_level = 8000.0 / 32768.0 / 2f32.sqrt();
        let low = resample_sinc(&tone(22_050, 440.0, 1.0), 22_050, 16_000);
        assert_eq!(low.len(), 16_000);
        assert!(
            (rms(&low[1000..15_000]) - sine_level).abs() < 0.01,
            "{}",
            rms(&low[1000..15_000])
        );
        let high = resample_sinc(&tone(22_050, 10_000.0, 1.0), 22_050, 16_000);
        assert!(
            rms(&high[1000..15_000]) < 0.01,
            "{}",
            rms(&high[1000..15_000])
        );
        // Upsampling 16 → 24 kHz keeps the tone too.
        let up = resample_sinc(&tone(16_000, 440.0, 0.5), 16_000, 24_000);
        assert_eq!(up.len(), 12_000);
        assert!((rms(&up[1000..11_000]) - sine_level).abs() < 0.01);
    }
}
