//! PCM frames, the streams of remote audio and the queue behind a local track.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callfleet_audio::Resampler;
use tokio::sync::mpsc;

/// Mono 16-bit PCM audio at `sample_rate`.
#[derive(Clone, PartialEq, Eq)]
pub struct AudioFrame {
    pub samples: Vec<i16>,
    pub sample_rate: u32,
}

impl AudioFrame {
    pub fn new(samples: Vec<i16>, sample_rate: u32) -> Self {
        Self {
            samples,
            sample_rate,
        }
    }

    /// How long this frame plays.
    pub fn duration(&self) -> Duration {
        if self.sample_rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(self.samples.len() as f64 / f64::from(self.sample_rate))
    }
}

impl std::fmt::Debug for AudioFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioFrame")
            .field("samples", &self.samples.len())
            .field("sample_rate", &self.sample_rate)
            .finish()
    }
}

/// Sample rates that Opus encodes and decodes natively: frames at these rates skip resampling.
pub(crate) fn is_opus_rate(rate: u32) -> bool {
    matches!(rate, 8000 | 12000 | 16000 | 24000 | 48000)
}

/// The decoded audio of one remote track. Ends when the track is unsubscribed, its
/// participant leaves or the room closes.
pub struct AudioStream {
    rx: mpsc::Receiver<AudioFrame>,
    resampler: Option<Resampler>,
    target_rate: Option<u32>,
}

impl AudioStream {
    pub(crate) fn new(rx: mpsc::Receiver<AudioFrame>) -> Self {
        Self {
            rx,
            resampler: None,
            target_rate: None,
        }
    }

    /// Deliver frames at `sample_rate` (e.g. 16 000 or 8 000 for speech recognition).
    pub fn resampled(mut self, sample_rate: u32) -> Self {
        self.target_rate = Some(sample_rate);
        self
    }

    /// The next frame (20 ms of audio), or `None` once the track has ended.
    pub async fn recv(&mut self) -> Option<AudioFrame> {
        let frame = self.rx.recv().await?;
        Some(self.convert(frame))
    }

    /// A frame if one is ready now.
    pub fn try_recv(&mut self) -> Option<AudioFrame> {
        let frame = self.rx.try_recv().ok()?;
        Some(self.convert(frame))
    }

    fn convert(&mut self, frame: AudioFrame) -> AudioFrame {
        let Some(rate) = self.target_rate else {
            return frame;
        };
        if rate == frame.sample_rate || rate == 0 {
            return frame;
        }
        let needs_new = self
            .resampler
            .as_ref()
            .is_none_or(|r| r.rates() != (frame.sample_rate, rate));
        if needs_new {
            self.resampler = Some(Resampler::new(frame.sample_rate, rate));
        }
        let mut out = Vec::with_capacity(
            frame.samples.len() * rate as usize / frame.sample_rate as usize + 2,
        );
        if let Some(r) = self.resampler.as_mut() {
            r.process(&frame.samples, &mut out);
        }
        AudioFrame::new(out, rate)
    }
}

impl futures::Stream for AudioStream {
    type Item = AudioFrame;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<AudioFrame>> {
        match self.rx.poll_recv(cx) {
            std::task::Poll::Ready(Some(f)) => std::task::Poll::Ready(Some(self.convert(f))),
            other => other,
        }
    }
}

impl std::fmt::Debug for AudioStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioStream")
            .field("target_rate", &self.target_rate)
            .finish()
    }
}

/// Samples waiting to be encoded for one local track, at the encoder's rate.
pub(crate) struct TrackQueue {
    pub(crate) samples: VecDeque<i16>,
    pub(crate) resampler: Option<Resampler>,
    pub(crate) closed: bool,
    pub(crate) stats: SendStats,
}

/// How a published track has kept real time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendStats {
    /// 20 ms frames of audio sent (silence between talkspurts is not sent).
    pub frames: u64,
    /// Frames sent more than [`LATE_FRAME`] after their slot: the process was too busy to keep
    /// real time, and a listener's jitter buffer would have run dry (an underrun).
    pub late_frames: u64,
}

static FRAMES_SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static LATE_FRAMES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// [`SendStats`] summed over every track this process has published (for load reports and
/// benchmarks, where the tracks belong to many calls).
pub fn process_send_stats() -> SendStats {
    use std::sync::atomic::Ordering::Relaxed;
    SendStats {
        frames: FRAMES_SENT.load(Relaxed),
        late_frames: LATE_FRAMES.load(Relaxed),
    }
}

impl SendStats {
    pub(crate) fn count(&mut self, late: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        self.frames += 1;
        FRAMES_SENT.fetch_add(1, Relaxed);
        if late {
            self.late_frames += 1;
            LATE_FRAMES.fetch_add(1, Relaxed);
        }
    }
}

/// How far behind its slot a frame may leave before it counts as late.
pub const LATE_FRAME: Duration = Duration::from_millis(40);

pub(crate) type SharedQueue = Arc<Mutex<TrackQueue>>;

/// An audio track this participant publishes. Frames pushed here are encoded as 20 ms
/// Opus packets and sent in real time; `clear()` drops whatever is still queued.
#[derive(Clone)]
pub struct LocalAudioTrack {
    pub(crate) sid: String,
    pub(crate) name: String,
    pub(crate) rate: u32,
    pub(crate) queue: SharedQueue,
}

impl LocalAudioTrack {
    pub(crate) fn new_queue() -> SharedQueue {
        Arc::new(Mutex::new(TrackQueue {
            samples: VecDeque::new(),
            resampler: None,
            closed: false,
            stats: SendStats::default(),
        }))
    }

    /// The server-assigned track id.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Queue audio for sending. Any sample rate is accepted; frames of any length.
    pub fn push(&self, frame: &AudioFrame) {
        let Ok(mut q) = self.queue.lock() else {
            return;
        };
        if frame.sample_rate == self.rate || frame.sample_rate == 0 {
            q.samples.extend(frame.samples.iter().copied());
            return;
        }
        let needs_new = q
            .resampler
            .as_ref()
            .is_none_or(|r| r.rates() != (frame.sample_rate, self.rate));
        if needs_new {
            q.resampler = Some(Resampler::new(frame.sample_rate, self.rate));
        }
        let mut out = Vec::with_capacity(
            frame.samples.len() * self.rate as usize / frame.sample_rate.max(1) as usize + 2,
        );
        if let Some(r) = q.resampler.as_mut() {
            r.process(&frame.samples, &mut out);
        }
        q.samples.extend(out);
    }

    /// Drop all queued audio at once (barge-in).
    pub fn clear(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.samples.clear();
            if let Some(r) = q.resampler.as_mut() {
                r.reset();
            }
        }
    }

    /// Frames sent so far and how many left late.
    pub fn stats(&self) -> SendStats {
        self.queue.lock().map(|q| q.stats).unwrap_or_default()
    }

    /// Audio queued and not yet sent.
    pub fn queued(&self) -> Duration {
        let n = self.queue.lock().map(|q| q.samples.len()).unwrap_or(0);
        Duration::from_secs_f64(n as f64 / f64::from(self.rate.max(1)))
    }

    /// Wait until the queue has played out (or was cleared).
    pub async fn wait_played_out(&self) {
        loop {
            let left = self.queued();
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.min(Duration::from_millis(20))).await;
        }
    }
}

impl std::fmt::Debug for LocalAudioTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalAudioTrack")
            .field("sid", &self.sid)
            .field("name", &self.name)
            .field("rate", &self.rate)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, freq: f64, secs: f64) -> Vec<i16> {
        (0..(f64::from(rate) * secs) as usize)
            .map(|i| {
                ((2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin() * 10000.0)
                    as i16
            })
            .collect()
    }

    #[test]
    fn track_queue_resamples_and_clears_at_once() {
        let track = LocalAudioTrack {
            sid: "TR_1".into(),
            name: "t".into(),
            rate: 48_000,
            queue: LocalAudioTrack::new_queue(),
        };
        track.push(&AudioFrame::new(tone(16_000, 440.0, 0.5), 16_000));
        track.push(&AudioFrame::new(tone(48_000, 440.0, 0.5), 48_000));
        let queued = track.queued().as_secs_f64();
        assert!((queued - 1.0).abs() < 0.01, "{queued}");
        track.clear();
        assert!(track.queued().is_zero());
        assert!(
            !format!("{track:?}").contains("samples"),
            "Debug stays short"
        );
    }
}
