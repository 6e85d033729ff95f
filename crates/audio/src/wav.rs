//! 16-bit PCM WAV files: for the console's audio mode, the local speech engines (which read
//! `espeak-ng --stdout`), recordings and fixtures. Parsing and encoding work on bytes; only
//! [`read`] and [`write`] touch the file system.

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

/// A mono 16-bit PCM WAV.
pub fn encode(samples: &[i16], sample_rate: u32) -> Vec<u8> {
    let mut out = header(1, sample_rate, samples.len());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// A two-channel 16-bit PCM WAV from `left` and `right` interleaved; the shorter channel is padded
/// with silence.
pub fn encode_stereo(left: &[i16], right: &[i16], sample_rate: u32) -> Vec<u8> {
    let frames = left.len().max(right.len());
    let mut out = header(2, sample_rate, frames);
    for i in 0..frames {
        out.extend_from_slice(&left.get(i).copied().unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&right.get(i).copied().unwrap_or(0).to_le_bytes());
    }
    out
}

/// The 44-byte header of a 16-bit PCM WAV of `frames` frames (its sizes capped at what the
/// format can state), with room reserved for the data.
fn header(channels: u16, sample_rate: u32, frames: usize) -> Vec<u8> {
    let block = 2 * u32::from(channels);
    let data_len = u32::try_from(frames as u64 * u64::from(block)).unwrap_or(u32::MAX - 36);
    let mut out = Vec::with_capacity(44 + frames * block as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len.min(u32::MAX - 36)).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * block).to_le_bytes()); // bytes per second
    out.extend_from_slice(&(block as u16).to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out
}

pub fn read(path: &Path) -> Result<Pcm, WavError> {
    parse(&std::fs::read(path)?)
}

pub fn write(path: &Path, samples: &[i16], sample_rate: u32) -> Result<(), WavError> {
    Ok(std::fs::write(path, encode(samples, sample_rate))?)
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
    fn stereo_is_left_then_right_and_mixes_down() {
        let wav = encode_stereo(&[100, 300, 500], &[-100], 8000);
        assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 2);
        assert_eq!(u32::from_le_bytes([wav[40], wav[41], wav[42], wav[43]]), 12);
        assert_eq!(wav.len(), 44 + 12);
        assert_eq!(parse(&wav).unwrap().samples, vec![0, 150, 250]);
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
}
