//! Keeps a remote track's PCM in real time: RTP timestamp gaps (DTX silence, loss) become
//! silence or concealment, and silence keeps flowing while the sender sends nothing, so that
//! consumers (VAD, STT) see time pass as the caller does.

use std::time::Instant;

/// RTP clock of Opus.
const CLOCK: i64 = 48_000;
/// 20 ms at 48 kHz.
pub(crate) const FRAME_TS: i64 = 960;
/// How far behind real time the silence filler stays at least, so that late packets still
/// fit instead of being dropped as already played. It is also the delay with which a DTX
/// pause shows up as silence, so it stays short unless the path is jittery.
const MIN_FILL_LAG_TS: i64 = 4_800;
/// The filler's lag grows with observed lateness (a busy machine, a jittery network) up to this.
const MAX_FILL_LAG_TS: i64 = 19_200;
/// Longest gap filled at once when a packet arrives after a pause.
const MAX_GAP_TS: i64 = 5 * CLOCK;

#[derive(Default)]
pub(crate) struct Playout {
    last_raw: Option<u32>,
    last_unwrapped: i64,
    /// Timestamp the next emitted audio starts at.
    next: Option<i64>,
    /// End of the last decoded packet: anything before it is a duplicate.
    decoded_end: Option<i64>,
    /// (timestamp, when it was due): maps RTP time to wall time.
    anchor: Option<(i64, Instant)>,
    /// Recent worst lateness of packets behind the anchor, decaying slowly.
    jitter: i64,
}

impl Playout {
    fn unwrap_ts(&mut self, raw: u32) -> i64 {
        let ts = match self.last_raw {
            None => i64::from(raw),
            Some(prev) => self.last_unwrapped + i64::from(raw.wrapping_sub(prev) as i32),
        };
        self.last_raw = Some(raw);
        self.last_unwrapped = ts;
        ts
    }

    fn expected(&self, now: Instant) -> Option<i64> {
        self.anchor.map(|(ts, at)| {
            ts + (now.saturating_duration_since(at).as_micros() as i64) * CLOCK / 1_000_000
        })
    }

    /// A packet with RTP timestamp `raw` arrived. `None`: a duplicate (or older than what was
    /// decoded), to drop. `Some((ts, gap))`: play `gap` timestamps (48 kHz) of filler first,
    /// then the packet. A packet whose time was already played as silence (it came late) is
    /// still played: speech is never dropped for timing; the stream runs behind until the
    /// next pause absorbs it.
    pub(crate) fn on_packet(&mut self, raw: u32, now: Instant) -> Option<(i64, i64)> {
        let ts = self.unwrap_ts(raw);
        // Re-anchor when the sender runs ahead of our wall-clock estimate.
        if self.expected(now).is_none_or(|e| ts > e - FRAME_TS) {
            self.anchor = Some((ts, now));
        }
        let lateness = self
            .expected(now)
            .map_or(0, |e| (e - ts).clamp(0, MAX_FILL_LAG_TS));
        self.jitter = lateness.max(self.jitter - self.jitter / 256);
        if self.decoded_end.is_some_and(|end| ts + FRAME_TS / 2 <= end) {
            return None;
        }
        let gap = self.next.map_or(0, |next| (ts - next).clamp(0, MAX_GAP_TS));
        Some((ts, gap))
    }

    /// The packet at `ts` produced `len` timestamps of audio.
    pub(crate) fn played(&mut self, ts: i64, len: i64) {
        self.decoded_end = Some(ts + len);
        self.next = Some(match self.next {
            Some(next) if next > ts => next + len,
            _ => ts + len,
        });
    }

    /// How many 20 ms frames of silence are due now (the sender is quiet).
    pub(crate) fn silence_due(&mut self, now: Instant) -> usize {
        let (Some(next), Some(expected)) = (self.next, self.expected(now)) else {
            return 0;
        };
        let mut n = 0;
        let mut next = next;
        let lag =
            (self.jitter + self.jitter / 2 + FRAME_TS).clamp(MIN_FILL_LAG_TS, MAX_FILL_LAG_TS);
        while next + FRAME_TS <= expected - lag && n < 10 {
            next += FRAME_TS;
            n += 1;
        }
        self.next = Some(next);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn contiguous_packets_need_no_filler() {
        let mut p = Playout::default();
        let t0 = Instant::now();
        for i in 0..5u32 {
            let (ts, gap) = p
                .on_packet(
                    1000 + i * 960,
                    t0 + Duration::from_millis(20 * u64::from(i)),
                )
                .expect("fresh");
            assert_eq!(gap, 0);
            p.played(ts, FRAME_TS);
        }
    }

    #[test]
    fn dtx_gap_is_filled_by_timer_then_packet_fits() {
        let mut p = Playout::default();
        let t0 = Instant::now();
        let (ts, _) = p.on_packet(u32::MAX - 500, t0).expect("fresh");
        p.played(ts, FRAME_TS);
        // 400 ms of nothing: the filler plays silence up to 100 ms behind real time.
        let filled: usize = (1..=20)
            .map(|i| p.silence_due(t0 + Duration::from_millis(20 * i)))
            .sum();
        assert_eq!(filled, 14);
        // The next packet (timestamp wrapped) comes 400 ms later: a 100 ms gap remains.
        let (ts2, gap) = p
            .on_packet(
                (u32::MAX - 500).wrapping_add(960 * 20),
                t0 + Duration::from_millis(400),
            )
            .expect("fresh");
        assert_eq!(ts2 - ts, 960 * 20);
        assert_eq!(gap, 960 * 5);
    }

    #[test]
    fn the_filler_backs_off_when_packets_come_late() {
        let mut p = Playout::default();
        let t0 = Instant::now();
        let ms = |v: u64| t0 + Duration::from_millis(v);
        // Packet 0 on time, packet 1 (20 ms of audio later) arrives 150 ms late.
        let (ts, _) = p.on_packet(0, ms(0)).expect("fresh");
        p.played(ts, FRAME_TS);
        let (ts, _) = p
            .on_packet(960, ms(170))
            .expect("fresh: nothing was filled yet");
        p.played(ts, FRAME_TS);
        // Now a pause: silence starts only ~245 ms behind real time (150 ms * 1.5 + 20 ms).
        assert_eq!(p.silence_due(ms(250)), 0);
        assert!(p.silence_due(ms(400)) > 0);
    }

    #[test]
    fn a_late_burst_is_played_not_dropped() {
        let mut p = Playout::default();
        let t0 = Instant::now();
        let ms = |v: u64| t0 + Duration::from_millis(v);
        let (ts, _) = p.on_packet(0, ms(0)).expect("fresh");
        p.played(ts, FRAME_TS);
        // A 400 ms stall: silence is played meanwhile...
        let filled: usize = (1..=20).map(|i| p.silence_due(ms(20 * i))).sum();
        assert!(filled > 0);
        // ...then the delayed packets arrive at once: all of them are played.
        for i in 1..=20u32 {
            let (ts, gap) = p.on_packet(960 * i, ms(401)).expect("late, still played");
            assert_eq!(gap, 0);
            p.played(ts, FRAME_TS);
        }
        // A duplicate of one of them is not.
        assert!(p.on_packet(960 * 20, ms(402)).is_none());
    }

    #[test]
    fn duplicates_are_dropped() {
        let mut p = Playout::default();
        let t0 = Instant::now();
        let (ts, _) = p.on_packet(5000, t0).expect("fresh");
        p.played(ts, FRAME_TS);
        assert!(p.on_packet(5000, t0).is_none());
    }
}
