//! Sample-rate conversion by a rational factor `to / from` (after dividing out their greatest
//! common divisor): the signal is conceptually upsampled by `up`, low-passed by one
//! Kaiser-windowed sinc and kept every `down`-th sample; only the outputs are computed, each as
//! the dot product of one polyphase branch with the most recent inputs.
//!
//! The low-pass passes up to 0.40 of the lower rate and stops (at least 75 dB down) from 0.50 of
//! it, the lower rate's Nyquist frequency: downsampling cannot alias into the audible band, and
//! upsampling leaves no images. Its length grows with the downsampling factor, so 48 → 8 kHz
//! costs more per output sample than 16 → 48 kHz. `benches/resampler.rs` prints the measured
//! rejection, distortion and speed.

/// Stop-band attenuation the filter is designed for, in dB.
const ATTENUATION_DB: f64 = 75.0;
/// Pass-band edge and stop-band edge as fractions of the lower rate.
const PASS_EDGE: f64 = 0.40;
const STOP_EDGE: f64 = 0.50;

/// A streaming converter: state is kept between calls, so a stream cut into frames of any length
/// converts as if it were whole. Causal: its output lags its input by half the filter (about
/// 1.5 ms at telephone rates), and each call returns every output sample the input so far
/// determines, so the total output after `n` input samples is `ceil(n * to / from)`.
pub struct Resampler {
    up: usize,
    down: usize,
    taps: usize,
    /// `up` branches of `taps` coefficients each, branch `p` reversed so that output at phase
    /// `p` is the dot product of the branch with `buf[i + 1 - taps ..= i]`.
    branches: Vec<f32>,
    /// Inputs, oldest first; the first `taps - 1` are history (zeros at the start).
    buf: Vec<f32>,
    /// Position of the next output on the upsampled grid, relative to `buf[0]`.
    t: usize,
    /// Where `t` starts: `(taps - 1) * up`, plus half the filter when the output is aligned.
    t0: usize,
    from: u32,
    to: u32,
}

impl Resampler {
    /// A converter for a live stream (frames in, frames out).
    pub fn new(from: u32, to: u32) -> Resampler {
        Resampler::build(from, to, false)
    }

    /// A converter whose output is time-aligned with its input (no lag): the first outputs wait
    /// for half a filter of lookahead, and [`Resampler::finish`] pads the end.
    fn aligned(from: u32, to: u32) -> Resampler {
        Resampler::build(from, to, true)
    }

    fn build(from: u32, to: u32, aligned: bool) -> Resampler {
        let (from, to) = (from.max(1), to.max(1));
        let g = gcd(from, to);
        let up = (to / g) as usize;
        let down = (from / g) as usize;
        let low = f64::from(from.min(to));
        // The filter runs at from * up; its transition band is (PASS_EDGE..STOP_EDGE) * low.
        let grid = f64::from(from) * up as f64;
        let transition = (STOP_EDGE - PASS_EDGE) * low / grid;
        let cutoff = 0.5 * (PASS_EDGE + STOP_EDGE) * low / grid;
        // Kaiser's estimate of the length for the attenuation and transition width.
        let length = (ATTENUATION_DB - 7.95) / (2.285 * 2.0 * std::f64::consts::PI * transition);
        let taps = ((length / up as f64).ceil() as usize).max(2);
        let n = taps * up;
        let beta = 0.1102 * (ATTENUATION_DB - 8.7);
        let centre = (n as f64 - 1.0) / 2.0;
        let i0_beta = bessel_i0(beta);
        let filter: Vec<f64> = (0..n)
            .map(|j| {
                let x = j as f64 - centre;
                let arg = 2.0 * cutoff * x;
                let sinc = if arg.abs() < 1e-12 {
                    1.0
                } else {
                    (std::f64::consts::PI * arg).sin() / (std::f64::consts::PI * arg)
                };
                let r = x / (centre.max(0.5));
                let window = bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / i0_beta;
                2.0 * cutoff * sinc * window
            })
            .collect();
        // Each branch sums to exactly one, so a constant input stays constant at every phase.
        let mut branches = vec![0.0f32; n];
        for p in 0..up {
            let sum: f64 = (0..taps).map(|k| filter[p + k * up]).sum();
            let norm = if sum.abs() > 1e-12 { 1.0 / sum } else { 0.0 };
            for k in 0..taps {
                branches[p * taps + (taps - 1 - k)] = (filter[p + k * up] * norm) as f32;
            }
        }
        let t0 = (taps - 1) * up + if aligned { n / 2 } else { 0 };
        Resampler {
            up,
            down,
            taps,
            branches,
            buf: vec![0.0; taps - 1],
            t: t0,
            t0,
            from,
            to,
        }
    }

    /// (from, to) in Hz.
    pub fn rates(&self) -> (u32, u32) {
        (self.from, self.to)
    }

    /// Multiply-adds per output sample (the filter branch's length).
    pub fn taps(&self) -> usize {
        self.taps
    }

    /// Converts the next 16-bit samples, appending the outputs they complete to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        if self.up == self.down {
            out.extend_from_slice(input);
            return;
        }
        self.buf.extend(input.iter().map(|&s| f32::from(s)));
        self.run(|y| out.push(y.round().clamp(-32768.0, 32767.0) as i16));
    }

    /// [`Resampler::process`] on float samples (any scale).
    pub fn process_f32(&mut self, input: &[f32], out: &mut Vec<f32>) {
        if self.up == self.down {
            out.extend_from_slice(input);
            return;
        }
        self.buf.extend_from_slice(input);
        self.run(|y| out.push(y));
    }

    fn run(&mut self, mut emit: impl FnMut(f32)) {
        loop {
            let i = self.t / self.up;
            if i >= self.buf.len() {
                break;
            }
            let p = self.t % self.up;
            let branch = &self.branches[p * self.taps..(p + 1) * self.taps];
            emit(dot(branch, &self.buf[i + 1 - self.taps..=i]));
            self.t += self.down;
        }
        let consumed = (self.t / self.up).saturating_sub(self.taps - 1);
        if consumed > 0 {
            let consumed = consumed.min(self.buf.len());
            self.buf.drain(..consumed);
            self.t -= consumed * self.up;
        }
    }

    /// Ends the stream: appends the outputs the filter's lag still holds (half a filter, the
    /// input followed by silence) and starts afresh, as at an utterance's end.
    pub fn flush(&mut self, out: &mut Vec<i16>) {
        if self.up != self.down {
            let tail = (self.taps * self.up / 2).div_ceil(self.up);
            self.process(&vec![0; tail], out);
        }
        self.reset();
    }

    /// Forgets the stream so far (a barge-in cleared what was queued).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.buf.resize(self.taps - 1, 0.0);
        self.t = self.t0;
    }
}

/// Converts a whole signal: `round(len * to / from)` samples, aligned in time with the input.
pub fn resample(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || samples.is_empty() || from == 0 || to == 0 {
        return samples.to_vec();
    }
    let n_out = output_len(samples.len(), from, to);
    let mut r = Resampler::aligned(from, to);
    let mut out = Vec::with_capacity(n_out + r.taps);
    r.process(samples, &mut out);
    let pad = vec![0i16; r.taps + 1];
    while out.len() < n_out {
        r.process(&pad, &mut out);
    }
    out.truncate(n_out);
    out
}

/// [`resample`] on float samples (any scale).
pub fn resample_f32(samples: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || samples.is_empty() || from == 0 || to == 0 {
        return samples.to_vec();
    }
    let n_out = output_len(samples.len(), from, to);
    let mut r = Resampler::aligned(from, to);
    let mut out = Vec::with_capacity(n_out + r.taps);
    r.process_f32(samples, &mut out);
    let pad = vec![0f32; r.taps + 1];
    while out.len() < n_out {
        r.process_f32(&pad, &mut out);
    }
    out.truncate(n_out);
    out
}

impl Clone for Resampler {
    fn clone(&self) -> Resampler {
        Resampler {
            up: self.up,
            down: self.down,
            taps: self.taps,
            branches: self.branches.clone(),
            buf: self.buf.clone(),
            t: self.t,
            t0: self.t0,
            from: self.from,
            to: self.to,
        }
    }
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("taps", &self.taps)
            .finish()
    }
}

fn output_len(len: usize, from: u32, to: u32) -> usize {
    ((len as u64 * u64::from(to) + u64::from(from) / 2) / u64::from(from)) as usize
}

/// A dot product in eight independent lanes, which the compiler keeps in vector registers.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

/// The modified Bessel function of the first kind, order zero (its power series).
fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term) = (1.0, 1.0);
    let q = x * x / 4.0;
    for k in 1..64 {
        term *= q / (k as f64 * k as f64);
        sum += term;
        if term < sum * 1e-16 {
            break;
        }
    }
    sum
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f64, secs: f64, amplitude: f64) -> Vec<i16> {
        (0..(f64::from(rate) * secs) as usize)
            .map(|i| {
                (amplitude * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    fn level(x: &[i16]) -> f64 {
        (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
    }

    const RATES: [(u32, u32); 9] = [
        (48_000, 16_000),
        (16_000, 48_000),
        (44_100, 48_000),
        (48_000, 8_000),
        (22_050, 16_000),
        (16_000, 8_000),
        (8_000, 16_000),
        (24_000, 16_000),
        (11_025, 48_000),
    ];

    #[test]
    fn a_stream_in_frames_keeps_length_and_level() {
        for (from, to) in RATES {
            let input = tone(from, 440.0, 1.0, 10_000.0);
            let mut r = Resampler::new(from, to);
            let mut out = Vec::new();
            for chunk in input.chunks(441) {
                r.process(chunk, &mut out);
            }
            // ceil(n * to / from) in all: every output the input determines.
            let want = (input.len() as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
            assert_eq!(out.len(), want, "{from}->{to}");
            let mid = level(&out[out.len() / 4..out.len() * 3 / 4]);
            assert!((mid - 7071.0).abs() < 30.0, "{from}->{to}: rms {mid}");
        }
    }

    #[test]
    fn frames_and_whole_signal_agree() {
        // Cutting the stream differently changes nothing.
        let input = tone(48_000, 1000.0, 0.2, 8000.0);
        let mut a = Resampler::new(48_000, 16_000);
        let mut b = Resampler::new(48_000, 16_000);
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        a.process(&input, &mut out_a);
        for chunk in input.chunks(7) {
            b.process(chunk, &mut out_b);
        }
        assert_eq!(out_a, out_b);
    }

    #[test]
    fn whole_signals_keep_length_and_stay_aligned() {
        let cases = [
            (16_000, 48_000, 160, 480),
            (48_000, 16_000, 480, 160),
            (24_000, 16_000, 240, 160),
            (22_050, 16_000, 22_050, 16_000),
            (16_000, 16_000, 7, 7),
            (8_000, 16_000, 1, 2),
        ];
        for (from, to, n, want) in cases {
            assert_eq!(resample(&vec![5; n], from, to).len(), want, "{from}->{to}");
        }
        // A click at 100 ms stays at 100 ms.
        let mut click = vec![0i16; 4800];
        click[2400] = 30_000;
        let out = resample(&click, 48_000, 16_000);
        let peak = (0..out.len())
            .max_by_key(|&i| out[i].unsigned_abs())
            .unwrap();
        assert_eq!(peak, 800);
        let out = resample(&click, 48_000, 44_100);
        let peak = (0..out.len())
            .max_by_key(|&i| out[i].unsigned_abs())
            .unwrap();
        assert!(peak.abs_diff(2205) <= 1, "{peak}");
    }

    #[test]
    fn content_above_the_new_nyquist_is_removed_not_folded() {
        // Each tone is above the target's Nyquist frequency; linear interpolation would fold it
        // back into the band at nearly full level.
        for (from, to, hz) in [
            (48_000, 8_000, 4_100.0),
            (48_000, 8_000, 7_000.0),
            (48_000, 16_000, 9_000.0),
            (22_050, 16_000, 10_000.0),
            (44_100, 16_000, 8_100.0),
        ] {
            let out = resample(&tone(from, hz, 0.5, 10_000.0), from, to);
            let left = level(&out[200..out.len() - 200]);
            // 75 dB below 7071 is about 1.3.
            assert!(left < 2.0, "{from}->{to} {hz} Hz: rms {left}");
        }
    }

    #[test]
    fn the_pass_band_is_flat() {
        for (from, to, hz) in [
            (48_000, 8_000, 300.0),
            (48_000, 8_000, 3_000.0),
            (8_000, 48_000, 3_000.0),
            (48_000, 16_000, 6_000.0),
            (22_050, 16_000, 6_000.0),
        ] {
            let out = resample(&tone(from, hz, 0.5, 10_000.0), from, to);
            let mid = level(&out[500..out.len() - 500]);
            assert!(
                (mid - 7071.0).abs() < 40.0,
                "{from}->{to} {hz} Hz: rms {mid}"
            );
        }
    }

    #[test]
    fn flush_hands_over_the_lagging_tail() {
        // A click near the end of a stream comes out only once the stream is flushed.
        let mut input = vec![0i16; 1600];
        input[1598] = 20_000;
        let mut r = Resampler::new(16_000, 24_000);
        let mut out = Vec::new();
        r.process(&input, &mut out);
        assert_eq!(out.len(), 2400);
        assert!(out[2390..].iter().all(|&s| s.unsigned_abs() < 2000));
        r.flush(&mut out);
        assert!(out[2390..].iter().any(|&s| s > 10_000));
        assert!(out.len() <= 2400 + r.taps() * 3 / 2 + 2, "{}", out.len());
        // And the next stream starts from silence.
        let mut next = Vec::new();
        r.process(&[0; 160], &mut next);
        assert!(next.iter().all(|&s| s == 0));
    }

    #[test]
    fn reset_forgets_the_stream() {
        let mut r = Resampler::new(16_000, 48_000);
        let mut first = Vec::new();
        r.process(&tone(16_000, 440.0, 0.05, 9000.0), &mut first);
        r.reset();
        let mut again = Vec::new();
        r.process(&tone(16_000, 440.0, 0.05, 9000.0), &mut again);
        assert_eq!(first, again);
    }

    #[test]
    fn floats_convert_like_integers() {
        let ints = tone(24_000, 700.0, 0.1, 12_000.0);
        let floats: Vec<f32> = ints.iter().map(|&s| f32::from(s) / 32768.0).collect();
        let a = resample(&ints, 24_000, 16_000);
        let b = resample_f32(&floats, 24_000, 16_000);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!((f32::from(*x) - y * 32768.0).abs() <= 1.0);
        }
    }

    // Kept from the rtc crate's and the pipeline's resamplers, which this one replaced.

    #[test]
    fn resampler_keeps_length_and_level() {
        for (from, to) in [
            (48000, 16000),
            (16000, 48000),
            (44100, 48000),
            (48000, 8000),
            (22050, 16000),
        ] {
            let input = tone(from, 440.0, 1.0, 10000.0);
            let mut r = Resampler::new(from, to);
            let mut out = Vec::new();
            for chunk in input.chunks(441) {
                r.process(chunk, &mut out);
            }
            let expected = to as usize;
            assert!(
                (out.len() as i64 - expected as i64).abs() < 40,
                "{from}->{to}: {}",
                out.len()
            );
            let level = level(&out[out.len() / 4..out.len() * 3 / 4]);
            assert!((level - 7071.0).abs() < 400.0, "{from}->{to}: rms {level}");
        }
    }

    #[test]
    fn resampler_removes_content_above_nyquist() {
        let input = tone(48000, 7000.0, 0.5, 10000.0);
        let mut r = Resampler::new(48000, 8000);
        let mut out = Vec::new();
        r.process(&input, &mut out);
        assert!(level(&out[200..]) < 300.0);
    }

    #[test]
    fn sinc_resampling_keeps_tones_in_band_and_drops_those_above() {
        // 22.05 kHz → 16 kHz: a 440 Hz tone keeps its level and length, a 10 kHz tone (above the
        // new Nyquist) is filtered out instead of aliasing.
        let rms = crate::rms;
        let sine_level = 8000.0 / 32768.0 / 2f32.sqrt();
        let low = resample(&tone(22_050, 440.0, 1.0, 8000.0), 22_050, 16_000);
        assert_eq!(low.len(), 16_000);
        assert!(
            (rms(&low[1000..15_000]) - sine_level).abs() < 0.01,
            "{}",
            rms(&low[1000..15_000])
        );
        let high = resample(&tone(22_050, 10_000.0, 1.0, 8000.0), 22_050, 16_000);
        assert!(
            rms(&high[1000..15_000]) < 0.01,
            "{}",
            rms(&high[1000..15_000])
        );
        // Upsampling 16 → 24 kHz keeps the tone too.
        let up = resample(&tone(16_000, 440.0, 0.5, 8000.0), 16_000, 24_000);
        assert_eq!(up.len(), 12_000);
        assert!((rms(&up[1000..11_000]) - sine_level).abs() < 0.01);
    }
}
