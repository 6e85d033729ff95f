//! How good and how fast the sample-rate converter is, next to the three it replaced (kept here,
//! verbatim in substance, only to be measured against):
//!
//!   cargo bench -p callfleet-audio --bench resampler
//!
//! For each conversion the calls make (48 kHz Opus ↔ 16/8 kHz recognizers, 22.05 kHz espeak-ng
//! and Piper → 16 kHz, 24 kHz TTS → 8 kHz recordings), and each converter:
//! - `alias dB`: the worst level left of a tone swept from the target's Nyquist frequency up to
//!   the source's, relative to the tone (lower is better; it is what folds back into the band);
//! - `SNR dB`: a 1 kHz tone's level over everything else in the output (distortion, noise and
//!   images; higher is better);
//! - `3 kHz dB`: the level of an in-band 3 kHz tone (0 is flat; telephone speech reaches 3.4 kHz);
//! - `Msamples/s`: input samples converted per second, in 20 ms frames, on one core.

use std::time::Instant;

use callfleet_audio::{resample, Resampler};

fn tone(rate: u32, hz: f64, secs: f64) -> Vec<i16> {
    (0..(f64::from(rate) * secs) as usize)
        .map(|i| {
            (10_000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin()) as i16
        })
        .collect()
}

fn power(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum::<f64>() / x.len().max(1) as f64
}

/// The output's middle, so that edges (zero padding, filter start-up) do not count.
fn middle(x: &[i16]) -> Vec<f64> {
    let skip = x.len() / 8;
    x[skip..x.len() - skip]
        .iter()
        .map(|&s| f64::from(s))
        .collect()
}

/// Level of `hz` in `x` (least-squares fit of a sine and cosine) and of what is left.
fn fit(x: &[f64], rate: u32, hz: f64) -> (f64, f64) {
    let w = 2.0 * std::f64::consts::PI * hz / f64::from(rate);
    let (mut ss, mut sc, mut cc, mut xs, mut xc) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, &v) in x.iter().enumerate() {
        let (s, c) = (w * i as f64).sin_cos();
        ss += s * s;
        sc += s * c;
        cc += c * c;
        xs += v * s;
        xc += v * c;
    }
    let det = ss * cc - sc * sc;
    let a = (xs * cc - xc * sc) / det;
    let b = (xc * ss - xs * sc) / det;
    let residual: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let (s, c) = (w * i as f64).sin_cos();
            v - a * s - b * c
        })
        .collect();
    ((a * a + b * b) / 2.0, power(&residual))
}

fn db(ratio: f64) -> f64 {
    10.0 * ratio.max(1e-30).log10()
}

type Convert = fn(&[i16], u32, u32) -> Vec<i16>;

fn polyphase_new(x: &[i16], from: u32, to: u32) -> Vec<i16> {
    // As the calls use it: a live stream in 20 ms frames.
    let mut r = Resampler::new(from, to);
    let mut out = Vec::new();
    for frame in x.chunks((from / 50) as usize) {
        r.process(frame, &mut out);
    }
    out
}

fn measure(name: &str, convert: Convert, from: u32, to: u32) {
    let reference = 10_000.0f64.powi(2) / 2.0;
    // Aliasing: tones above the target's Nyquist frequency.
    let nyquist_to = f64::from(to) / 2.0;
    let nyquist_from = f64::from(from) / 2.0;
    let mut alias = f64::NEG_INFINITY;
    if to < from {
        let mut hz = nyquist_to * 1.01;
        while hz < nyquist_from * 0.98 {
            let out = convert(&tone(from, hz, 0.25), from, to);
            alias = alias.max(db(power(&middle(&out)) / reference));
            hz += (nyquist_from - nyquist_to) / 23.0;
        }
    }
    let out = convert(&tone(from, 1000.0, 0.5), from, to);
    let (signal, rest) = fit(&middle(&out), to, 1000.0);
    let snr = db(signal / rest);
    let out = convert(&tone(from, 3000.0, 0.5), from, to);
    let (at3k, _) = fit(&middle(&out), to, 3000.0);
    let input = tone(from, 440.0, 10.0);
    let started = Instant::now();
    let mut n = 0usize;
    while started.elapsed().as_secs_f64() < 0.5 {
        n += convert(&input, from, to).len().min(1) * input.len();
    }
    let speed = n as f64 / started.elapsed().as_secs_f64() / 1e6;
    let alias = if alias.is_finite() {
        format!("{alias:8.1}")
    } else {
        format!("{:>8}", "-")
    };
    println!(
        "{from:>6} -> {to:<6} {name:<22} {alias} {snr:8.1} {:9.2} {speed:11.1}",
        db(at3k / reference)
    );
}

fn main() {
    println!(
        "{:>16} {:<22} {:>8} {:>8} {:>9} {:>11}",
        "conversion", "converter", "alias dB", "SNR dB", "3 kHz dB", "Msamples/s"
    );
    for (from, to) in [
        (48_000, 16_000),
        (48_000, 8_000),
        (16_000, 48_000),
        (22_050, 16_000),
        (24_000, 8_000),
        (16_000, 8_000),
    ] {
        let taps = Resampler::new(from, to).taps();
        measure(&format!("polyphase ({taps} taps)"), polyphase_new, from, to);
        measure("  whole-signal", resample, from, to);
        measure("old rtc 24-tap FIR", old::rtc_fir, from, to);
        measure("old pipeline linear", old::linear, from, to);
        measure("old pipeline sinc", old::sinc, from, to);
    }
}

/// The converters this crate replaced, for comparison only.
mod old {
    pub fn linear(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
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

    pub fn sinc(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
        const HALF_TAPS: f64 = 16.0;
        let input: Vec<f32> = samples.iter().map(|&s| s as f32).collect();
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
                acc += sinc * window * x as f64;
                norm += sinc * window;
            }
            out.push(if norm.abs() > 1e-9 {
                (acc / norm) as f32
            } else {
                0.0
            });
        }
        out.into_iter()
            .map(|x| x.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16)
            .collect()
    }

    /// The rtc crate's streaming FIR (24 taps a phase, Blackman), in 20 ms frames.
    pub fn rtc_fir(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
        fn gcd(a: u32, b: u32) -> u32 {
            if b == 0 {
                a
            } else {
                gcd(b, a % b)
            }
        }
        let g = gcd(from, to);
        let (up, down) = ((to / g) as usize, (from / g) as usize);
        let taps = 24usize;
        let n = taps * up;
        let cutoff = 0.5 * 0.92 * f64::from(from.min(to)) / (f64::from(from) * up as f64);
        let centre = (n as f64 - 1.0) / 2.0;
        let filter: Vec<f32> = (0..n)
            .map(|j| {
                let x = j as f64 - centre;
                let sinc = if x.abs() < 1e-9 {
                    2.0 * cutoff
                } else {
                    (2.0 * std::f64::consts::PI * cutoff * x).sin() / (std::f64::consts::PI * x)
                };
                let w = j as f64 / (n as f64 - 1.0);
                let blackman = 0.42 - 0.5 * (2.0 * std::f64::consts::PI * w).cos()
                    + 0.08 * (4.0 * std::f64::consts::PI * w).cos();
                (sinc * blackman * up as f64) as f32
            })
            .collect();
        let mut buf = vec![0.0f32; taps - 1];
        let mut t = (taps - 1) * up;
        let mut out = Vec::new();
        for frame in samples.chunks((from / 50) as usize) {
            buf.extend(frame.iter().map(|&s| f32::from(s)));
            loop {
                let i = t / up;
                if i >= buf.len() {
                    break;
                }
                let p = t % up;
                let mut acc = 0.0f32;
                for k in 0..taps {
                    acc += filter[p + k * up] * buf[i - k];
                }
                out.push(acc.round().clamp(-32768.0, 32767.0) as i16);
                t += down;
            }
            let consumed = (t / up).saturating_sub(taps - 1);
            buf.drain(..consumed.min(buf.len()));
            t -= consumed * up;
        }
        out
    }
}
