//! A call's recording, made from the audio the agent already has: the caller's microphone as it
//! arrives (left channel) and the bot's speech as the paced outbound track plays it (right). The
//! bot's audio reaches the track in bursts and is queued there, so each piece is laid after the
//! previous one or at the moment it arrived, whichever is later, and a barge-in (the queue
//! cleared) cuts what had not been played yet. Telephone quality (8 kHz), at most
//! [`MAX_RECORDING`] long, so an opted-in call costs at most about 29 MB while it runs.

use callfleet_audio::Resampler;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The recording's sample rate.
pub const RECORDING_RATE: u32 = 8_000;

/// The longest recording kept; past it both channels stop growing.
pub const MAX_RECORDING: Duration = Duration::from_secs(30 * 60);

struct Channels {
    caller: Vec<i16>,
    bot: Vec<i16>,
    /// Each channel converted to the recording's rate as one stream.
    caller_converter: Option<Resampler>,
    bot_converter: Option<Resampler>,
}

/// `samples` at `rate` converted to [`RECORDING_RATE`] by the channel's converter.
fn convert(converter: &mut Option<Resampler>, samples: &[i16], rate: u32) -> Vec<i16> {
    if rate == RECORDING_RATE {
        return samples.to_vec();
    }
    let converter = match converter {
        Some(c) if c.rates() == (rate, RECORDING_RATE) => c,
        slot => slot.insert(Resampler::new(rate, RECORDING_RATE)),
    };
    let mut out =
        Vec::with_capacity(samples.len() * RECORDING_RATE as usize / rate.max(1) as usize + 2);
    converter.process(samples, &mut out);
    out
}

/// Shared by the microphone and speaker tasks of one call.
#[derive(Clone)]
pub struct Recorder {
    started: Instant,
    channels: Arc<Mutex<Channels>>,
}

fn max_samples() -> usize {
    (MAX_RECORDING.as_secs() * u64::from(RECORDING_RATE)) as usize
}

impl Recorder {
    pub fn start() -> Recorder {
        Recorder {
            started: Instant::now(),
            channels: Arc::new(Mutex::new(Channels {
                caller: Vec::new(),
                bot: Vec::new(),
                caller_converter: None,
                bot_converter: None,
            })),
        }
    }

    fn channels(&self) -> std::sync::MutexGuard<'_, Channels> {
        self.channels.lock().expect("recording lock poisoned")
    }

    /// Where the call is now, in recording samples.
    fn now(&self) -> usize {
        let elapsed = self.started.elapsed();
        (elapsed.as_secs_f64() * f64::from(RECORDING_RATE)) as usize
    }

    /// The caller's audio at `rate`, appended as it arrives (the microphone is continuous).
    pub fn caller(&self, samples: &[i16], rate: u32) {
        let mut c = self.channels();
        let samples = convert(&mut c.caller_converter, samples, rate);
        let room = max_samples().saturating_sub(c.caller.len());
        c.caller.extend(samples.iter().take(room));
    }

    /// The bot's audio at `rate`, queued behind what is still to play, or from now.
    pub fn bot(&self, samples: &[i16], rate: u32) {
        let now = self.now();
        let mut c = self.channels();
        let samples = convert(&mut c.bot_converter, samples, rate);
        let at = c.bot.len().max(now).min(max_samples());
        c.bot.resize(at, 0);
        let room = max_samples().saturating_sub(at);
        c.bot.extend(samples.iter().take(room));
    }

    /// The caller barged in: what was queued but not yet played is cut.
    pub fn clear(&self) {
        let now = self.now();
        let mut c = self.channels();
        if c.bot.len() > now {
            c.bot.truncate(now);
        }
        if let Some(converter) = c.bot_converter.as_mut() {
            converter.reset();
        }
    }

    /// The two-channel WAV of the call so far.
    pub fn wav(&self) -> Vec<u8> {
        let c = self.channels();
        callfleet_recording::stereo_wav(&c.caller, &c.bot, RECORDING_RATE)
    }

    /// (caller, bot) samples, for tests.
    #[cfg(test)]
    pub fn lengths(&self) -> (usize, usize) {
        let c = self.channels();
        (c.caller.len(), c.bot.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: usize = RECORDING_RATE as usize / 1000;

    #[tokio::test(start_paused = true)]
    async fn bot_audio_is_laid_as_the_track_plays_it_and_cut_on_barge_in() {
        let r = Recorder::start();
        // 100 ms of caller audio at 16 kHz: 800 samples at 8 kHz.
        r.caller(&[1000; 1600], 16_000);
        assert_eq!(r.lengths().0, 100 * MS);
        // At 200 ms the bot's reply arrives as a burst: 300 ms now, 300 ms right after.
        tokio::time::advance(Duration::from_millis(200)).await;
        r.bot(&[500; 7200], 24_000);
        r.bot(&[500; 7200], 24_000);
        assert_eq!(r.lengths().1, (200 + 600) * MS, "queued behind each other");
        // The caller cuts in at 400 ms: what was not played yet is gone.
        tokio::time::advance(Duration::from_millis(200)).await;
        r.clear();
        assert_eq!(r.lengths().1, 400 * MS);
        // The next reply starts at its own time, after silence.
        tokio::time::advance(Duration::from_millis(600)).await;
        r.bot(&[500; 2400], 24_000);
        assert_eq!(r.lengths().1, (1000 + 100) * MS);

        let wav = r.wav();
        assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 2);
        let frame = |i: usize| {
            let at = 44 + i * 4;
            (
                i16::from_le_bytes([wav[at], wav[at + 1]]),
                i16::from_le_bytes([wav[at + 2], wav[at + 3]]),
            )
        };
        assert_eq!(frame(50 * MS), (1000, 0), "caller speaking, bot silent");
        assert_eq!(frame(300 * MS), (0, 500), "bot speaking");
        assert_eq!(frame(700 * MS), (0, 0), "cut off, then silence");
        assert_eq!(frame(1050 * MS), (0, 500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_recording_stops_growing_at_its_cap() {
        let r = Recorder::start();
        let second = vec![1i16; RECORDING_RATE as usize];
        for _ in 0..(MAX_RECORDING.as_secs() + 5) {
            r.caller(&second, RECORDING_RATE);
        }
        tokio::time::advance(MAX_RECORDING + Duration::from_secs(10)).await;
        r.bot(&second, RECORDING_RATE);
        assert_eq!(r.lengths(), (max_samples(), max_samples()));
    }
}
