//! Whisper's log-mel features, as the Hugging Face `WhisperFeatureExtractor` computes them (and
//! pipecat's Smart Turn preprocessing after it): waveform normalised to zero mean and unit
//! variance, centred STFT (reflect padding, periodic Hann, n_fft 400, hop 160) → power → Slaney
//! mel filters (80 bands, 0–8 kHz, area-normalised) → log10 with a 1e-10 floor, the last frame
//! dropped, clamped to 8 below the maximum, then `(x + 4) / 4`. Math in f64 like numpy.

use std::f64::consts::PI;

pub const SAMPLE_RATE: u32 = 16_000;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
pub const N_MELS: usize = 80;
const MEL_FLOOR: f64 = 1e-10;
const NORM_EPS: f64 = 1e-7;

/// Computes the features of a fixed number of samples; the filters and FFT tables are built once.
#[derive(Debug, Clone)]
pub struct LogMel {
    samples: usize,
    window: Vec<f64>,
    /// Per mel band, its first FFT bin and the weights from there (the rest are zero: 391 of
    /// the 80 × 201 weights are not).
    bands: Vec<(usize, Vec<f64>)>,
    fft: Fft,
}

impl LogMel {
    /// Features for `samples` samples at 16 kHz (8 s = 128 000 for Smart Turn: 800 frames).
    pub fn new(samples: usize) -> Self {
        let window = (0..N_FFT)
            .map(|n| 0.5 - 0.5 * (2.0 * PI * n as f64 / N_FFT as f64).cos())
            .collect();
        let filters = slaney_filters(
            N_FFT / 2 + 1,
            N_MELS,
            0.0,
            SAMPLE_RATE as f64 / 2.0,
            SAMPLE_RATE,
        );
        let bands = (0..N_MELS)
            .map(|m| {
                let first = filters.iter().position(|row| row[m] != 0.0).unwrap_or(0);
                let last = filters.iter().rposition(|row| row[m] != 0.0).unwrap_or(0);
                (
                    first,
                    filters[first..=last].iter().map(|row| row[m]).collect(),
                )
            })
            .collect();
        LogMel {
            samples,
            window,
            bands,
            fft: Fft::new(N_FFT),
        }
    }

    /// Frames per band in the output.
    pub fn frames(&self) -> usize {
        self.samples / HOP
    }

    /// `[N_MELS][frames]`, mel-major, flattened. Shorter audio is zero-padded at the end and
    /// longer audio cut to its first `samples` (callers choose which end to keep beforehand).
    pub fn compute(&self, audio: &[f32]) -> Vec<f32> {
        let mut x: Vec<f64> = audio.iter().take(self.samples).map(|&s| s as f64).collect();
        x.resize(self.samples, 0.0);
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let scale = 1.0 / (var + NORM_EPS).sqrt();
        for v in &mut x {
            *v = (*v - mean) * scale;
        }

        let pad = N_FFT / 2;
        let padded = reflect_pad(&x, pad);
        let total_frames = 1 + (padded.len() - N_FFT) / HOP;
        let frames = self.frames().min(total_frames);
        let bins = N_FFT / 2 + 1;
        let mut out = vec![0f64; N_MELS * frames];
        let mut buf = vec![(0f64, 0f64); N_FFT];
        let mut scratch = vec![(0f64, 0f64); N_FFT];
        let mut power = vec![0f64; bins];
        for f in 0..frames {
            let start = f * HOP;
            for (i, slot) in buf.iter_mut().enumerate() {
                *slot = (padded[start + i] * self.window[i], 0.0);
            }
            self.fft.run(&mut buf, &mut scratch);
            for (k, p) in power.iter_mut().enumerate() {
                let (re, im) = buf[k];
                *p = re * re + im * im;
            }
            for (m, (first, weights)) in self.bands.iter().enumerate() {
                let v: f64 = weights
                    .iter()
                    .zip(&power[*first..])
                    .map(|(w, p)| w * p)
                    .sum();
                out[m * frames + f] = v.max(MEL_FLOOR).log10();
            }
        }
        let max = out.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        out.iter()
            .map(|&v| ((v.max(max - 8.0) + 4.0) / 4.0) as f32)
            .collect()
    }
}

fn reflect_pad(x: &[f64], pad: usize) -> Vec<f64> {
    let n = x.len();
    let mut out = Vec::with_capacity(n + 2 * pad);
    // numpy's "reflect": the edge sample is not repeated.
    out.extend((1..=pad).rev().map(|i| x[i.min(n - 1)]));
    out.extend_from_slice(x);
    out.extend((0..pad).map(|i| x[n.saturating_sub(2 + i)]));
    out
}

fn hz_to_mel(hz: f64) -> f64 {
    const MIN_LOG_HZ: f64 = 1000.0;
    const MIN_LOG_MEL: f64 = 15.0;
    if hz >= MIN_LOG_HZ {
        MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() * (27.0 / 6.4f64.ln())
    } else {
        3.0 * hz / 200.0
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    const MIN_LOG_HZ: f64 = 1000.0;
    const MIN_LOG_MEL: f64 = 15.0;
    if mel >= MIN_LOG_MEL {
        MIN_LOG_HZ * ((6.4f64.ln() / 27.0) * (mel - MIN_LOG_MEL)).exp()
    } else {
        200.0 * mel / 3.0
    }
}

/// Triangular filters between mel-spaced edges, each scaled to unit area (Slaney).
fn slaney_filters(bins: usize, mels: usize, fmin: f64, fmax: f64, rate: u32) -> Vec<[f64; N_MELS]> {
    assert_eq!(
        mels, N_MELS,
        "the filter rows are sized for Whisper's 80 bands"
    );
    let (lo, hi) = (hz_to_mel(fmin), hz_to_mel(fmax));
    let edges: Vec<f64> = (0..mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (mels + 1) as f64))
        .collect();
    let nyquist = (rate / 2) as f64;
    (0..bins)
        .map(|k| {
            let f = nyquist * k as f64 / (bins - 1) as f64;
            let mut row = [0f64; N_MELS];
            for (m, w) in row.iter_mut().enumerate() {
                let down = (f - edges[m]) / (edges[m + 1] - edges[m]);
                let up = (edges[m + 2] - f) / (edges[m + 2] - edges[m + 1]);
                let enorm = 2.0 / (edges[m + 2] - edges[m]);
                *w = down.min(up).max(0.0) * enorm;
            }
            row
        })
        .collect()
}

/// A complex FFT of one size by recursive mixed-radix decimation in time: 400 = 2⁴·5², so each
/// frame costs a few thousand butterflies instead of a 400×201 DFT.
#[derive(Debug, Clone)]
struct Fft {
    n: usize,
    /// `e^{-2πik/n}` for k in 0..n.
    twiddles: Vec<(f64, f64)>,
}

fn smallest_factor(n: usize) -> usize {
    (2..=n).find(|&p| n.is_multiple_of(p)).unwrap_or(n)
}

fn cmul(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    (a.0 * b.0 - a.1 * b.1, a.0 * b.1 + a.1 * b.0)
}

impl Fft {
    fn new(n: usize) -> Self {
        let twiddles = (0..n)
            .map(|k| (-2.0 * PI * k as f64 / n as f64).sin_cos())
            .map(|(s, c)| (c, s))
            .collect();
        Fft { n, twiddles }
    }

    /// Transforms `data` in place; `scratch` is the same length.
    fn run(&self, data: &mut [(f64, f64)], scratch: &mut [(f64, f64)]) {
        debug_assert_eq!(data.len(), self.n);
        scratch.copy_from_slice(data);
        self.step(scratch, 0, 1, data, self.n);
    }

    /// `out[..n]` = DFT of `input[offset], input[offset + stride], …` (n of them).
    fn step(
        &self,
        input: &[(f64, f64)],
        offset: usize,
        stride: usize,
        out: &mut [(f64, f64)],
        n: usize,
    ) {
        if n == 1 {
            out[0] = input[offset];
            return;
        }
        let p = smallest_factor(n);
        let m = n / p;
        // p sub-transforms of the interleaved subsequences, stored one after another.
        for r in 0..p {
            self.step(
                input,
                offset + r * stride,
                stride * p,
                &mut out[r * m..(r + 1) * m],
                m,
            );
        }
        // Combine: X[k + q·m] = Σ_r W_n^{r(k + q·m)} · Y_r[k].
        let tw_step = self.n / n;
        let mut tmp = [(0f64, 0f64); 8];
        let mut sums = vec![(0f64, 0f64); if p > 8 { p } else { 0 }];
        for k in 0..m {
            let ys: &mut [(f64, f64)] = if p <= 8 { &mut tmp[..p] } else { &mut sums[..] };
            for (r, y) in ys.iter_mut().enumerate() {
                *y = out[r * m + k];
            }
            for q in 0..p {
                let idx = k + q * m;
                let mut acc = (0.0, 0.0);
                for (r, y) in ys.iter().enumerate() {
                    let w = self.twiddles[(r * idx * tw_step) % self.n];
                    let t = cmul(*y, w);
                    acc.0 += t.0;
                    acc.1 += t.1;
                }
                out[idx] = acc;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_dft(x: &[(f64, f64)]) -> Vec<(f64, f64)> {
        let n = x.len();
        (0..n)
            .map(|k| {
                x.iter().enumerate().fold((0.0, 0.0), |acc, (j, v)| {
                    let (s, c) = (-2.0 * PI * (j * k) as f64 / n as f64).sin_cos();
                    let t = cmul(*v, (c, s));
                    (acc.0 + t.0, acc.1 + t.1)
                })
            })
            .collect()
    }

    #[test]
    fn fft_matches_the_dft_definition() {
        for n in [1, 2, 5, 8, 25, 400, 7 * 3] {
            let x: Vec<(f64, f64)> = (0..n)
                .map(|i| ((i as f64 * 0.37).sin(), (i as f64 * 0.11).cos()))
                .collect();
            let mut data = x.clone();
            let mut scratch = vec![(0.0, 0.0); n];
            Fft::new(n).run(&mut data, &mut scratch);
            for (a, b) in data.iter().zip(naive_dft(&x)) {
                assert!(
                    (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9,
                    "n={n}: {a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn slaney_filters_match_whisper() {
        // (bin, band, weight) of the filterbank pipecat vendors from transformers (numpy).
        let f = slaney_filters(201, 80, 0.0, 8000.0, 16000);
        let cases = [
            (1, 0, 0.024_862_593_98),
            (1, 1, 0.001_990_821_89),
            (2, 1, 0.022_871_772_10),
            (2, 2, 0.003_981_643_78),
            (98, 62, 0.002_730_846_69),
            (199, 79, 0.000_448_759_03),
            (100, 60, 0.0),
            (3, 0, 0.0),
        ];
        for (bin, band, want) in cases {
            assert!(
                (f[bin][band] - want).abs() < 1e-6,
                "bin {bin} band {band}: {} vs {want}",
                f[bin][band]
            );
        }
    }

    #[test]
    fn reflect_padding_like_numpy() {
        assert_eq!(
            reflect_pad(&[1.0, 2.0, 3.0, 4.0], 2),
            vec![3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0]
        );
    }

    #[test]
    fn a_tone_lights_its_own_band() {
        let mel = LogMel::new(16_000);
        let frames = mel.frames();
        assert_eq!(frames, 100);
        let tone: Vec<f32> = (0..16_000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin() * 0.3)
            .collect();
        let feats = mel.compute(&tone);
        assert_eq!(feats.len(), N_MELS * frames);
        let band_energy = |m: usize| feats[m * frames..(m + 1) * frames].iter().sum::<f32>();
        let loudest = (0..N_MELS)
            .max_by(|&a, &b| band_energy(a).total_cmp(&band_energy(b)))
            .expect("80 bands");
        // 1 kHz is mel 15 on the Slaney scale; the edges step 45.2/81 mel, so band ~26 or ~27.
        assert!((25..=28).contains(&loudest), "loudest band {loudest}");
        // Clamped to 8 (log10 units) below the loudest, i.e. 2 after scaling.
        let (lo, hi) = feats
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert!(hi - lo <= 2.0 + 1e-5, "{lo}..{hi}");
    }

    #[test]
    fn features_match_pipecats_numpy_reference() {
        // 1 s of zeros, then 440 Hz + a rising 3 kHz + a faint chirp; (band, frame, value) from
        // pipecat's `compute_whisper_log_mel_features` on the same float32 signal.
        let x: Vec<f32> = (0..128_000)
            .map(|i| {
                if i < 16_000 {
                    return 0.0;
                }
                let t = i as f64;
                let tau = 2.0 * PI;
                (0.3 * (tau * 440.0 * t / 16_000.0).sin()
                    + 0.1 * (tau * 3000.0 * t / 16_000.0).sin() * (t / 128_000.0)
                    + 0.01 * (tau * 97.0 * t / 16_000.0 + t * t / 1e9).sin()) as f32
            })
            .collect();
        let mel = LogMel::new(128_000);
        let f = mel.compute(&x);
        let cases = [
            (2, 368, 0.902_512_55),
            (6, 698, -0.159_822_39),
            (2, 762, 0.903_401_6),
            (9, 755, 1.395_046_4),
            (10, 309, 1.584_395_6),
            (1, 249, 0.909_909_9),
            (0, 0, -0.326_130_66),
            (13, 99, 0.573_563_3),
            (13, 100, 1.337_827_8),
        ];
        for (band, frame, want) in cases {
            let got = f[band * 800 + frame];
            assert!(
                (got - want).abs() < 1e-4,
                "band {band} frame {frame}: {got} vs {want}"
            );
        }
    }
}
