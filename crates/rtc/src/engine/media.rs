//! Media over the two peer connections: the remote audio tracks (RTP in, jitter handled by the
//! playout clock, Opus decoded to PCM frames for their `AudioStream`s), the local tracks (PCM
//! queues encoded to 20 ms Opus packets, paced in real time), and the data channels (chat and
//! user packets out on the reliable channel, every packet in through `DataReceiver`).

use std::time::{Duration, Instant};

use livekit_protocol as proto;
use prost::Message as _;
use str0m::media::{Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::{Event, IceConnectionState};
use tokio::sync::mpsc;

use super::{unix_ms, Engine, FRAME};
use crate::audio::{AudioFrame, AudioStream, SharedQueue};
use crate::data;
use crate::peer::Role;
use crate::playout::{Playout, FRAME_TS};
use callfleet_audio::Resampler;

pub(super) struct RemoteTrack {
    pub(super) track_sid: String,
    /// Packets from any other SSRC on this m-line belong to a previous track.
    pub(super) ssrc: Option<u32>,
    pub(super) participant_sid: String,
    pub(super) decoder: opus::Decoder,
    pub(super) decode_rate: u32,
    pub(super) resampler: Option<Resampler>,
    pub(super) tx: mpsc::Sender<AudioFrame>,
    /// Held until the participant is known and `TrackSubscribed` is emitted.
    pub(super) stream: Option<AudioStream>,
    pub(super) dropped: u64,
    pub(super) playout: Playout,
    pub(super) stats: TrackStats,
}

/// Per-track receive counters, logged when the track ends.
#[derive(Debug, Default)]
pub(super) struct TrackStats {
    pub(super) packets: u64,
    pub(super) late: u64,
    pub(super) concealed: u64,
    pub(super) silence: u64,
}

impl Drop for RemoteTrack {
    fn drop(&mut self) {
        tracing::debug!(track = %self.track_sid, stats = ?self.stats, consumer_behind = self.dropped, "Remote track ended.");
    }
}

impl RemoteTrack {
    /// Hand decoded PCM (at `decode_rate`) to the consumer, resampled if asked.
    pub(super) fn emit(&mut self, pcm: &[i16]) {
        let frame = match self.resampler.as_mut() {
            Some(r) => {
                let (_, to) = r.rates();
                let mut out =
                    Vec::with_capacity(pcm.len() * to as usize / self.decode_rate as usize + 2);
                r.process(pcm, &mut out);
                AudioFrame::new(out, to)
            }
            None => AudioFrame::new(pcm.to_vec(), self.decode_rate),
        };
        if self.tx.try_send(frame).is_err() {
            self.dropped += 1;
            if self.dropped % 250 == 1 {
                tracing::debug!(track = %self.track_sid, dropped = self.dropped, "Audio consumer is behind; frames dropped.");
            }
        }
    }
}

pub(super) struct LocalTrack {
    pub(super) cid: String,
    pub(super) queue: SharedQueue,
    pub(super) mid: Option<Mid>,
    pub(super) pt: Option<Pt>,
    pub(super) encoder: opus::Encoder,
    pub(super) frame_len: usize,
    pub(super) rtp_ts: u64,
    pub(super) talking: bool,
    /// Ticks a partial frame has waited; a tail shorter than 20 ms is padded after one.
    pub(super) partial_wait: u8,
}

impl Engine {
    pub(super) fn drive(&mut self, events: &mut Vec<Event>) {
        self.sub.drive(events);
        for ev in events.drain(..) {
            self.handle_peer_event(Role::Subscriber, ev);
        }
        self.publ.drive(events);
        for ev in events.drain(..) {
            self.handle_peer_event(Role::Publisher, ev);
        }
        // Events may have queued more output (data channel writes, media).
        self.sub.drive(events);
        self.publ.drive(events);
        for ev in events.drain(..) {
            tracing::trace!(?ev, "Late peer event.");
        }
    }

    fn handle_peer_event(&mut self, role: Role, ev: Event) {
        match ev {
            Event::Connected => {
                tracing::debug!(?role, "Peer connection established.");
                match role {
                    Role::Subscriber => self.sub.connected = true,
                    Role::Publisher => self.publ.connected = true,
                }
            }
            Event::IceConnectionStateChange(state) => {
                tracing::debug!(?role, ?state, "ICE state.");
                if state == IceConnectionState::Disconnected {
                    match role {
                        Role::Subscriber => self.sub.connected = false,
                        Role::Publisher => self.publ.connected = false,
                    }
                }
            }
            Event::MediaAdded(m) if role == Role::Subscriber && m.kind == MediaKind::Audio => {
                self.reconcile_remote_tracks();
            }
            Event::MediaChanged(_) if role == Role::Subscriber => self.reconcile_remote_tracks(),
            Event::RtpPacket(p) if role == Role::Subscriber => self.handle_rtp(p),
            Event::ChannelOpen(id, label) => {
                tracing::debug!(?role, label = %label, "Data channel open.");
                if role == Role::Publisher
                    && self.negotiation.pub_channels.is_some_and(|(r, _)| r == id)
                {
                    self.negotiation.pub_reliable_open = true;
                    for bytes in std::mem::take(&mut self.data_backlog) {
                        self.write_reliable(&bytes);
                    }
                }
            }
            Event::ChannelData(cd) => match proto::DataPacket::decode(cd.data.as_slice()) {
                Ok(packet) => self.handle_data_packet(packet),
                Err(e) => tracing::debug!(error = %e, "Undecodable data packet."),
            },
            _ => {}
        }
    }

    fn handle_rtp(&mut self, p: str0m::rtp::RtpPacket) {
        if p.payload.is_empty() {
            return; // padding / probes
        }
        let now = Instant::now();
        let Some(mid) = self
            .sub
            .rtc
            .direct_api()
            .stream_rx(&p.header.ssrc)
            .map(|s| s.mid())
        else {
            return;
        };
        let Some(t) = self.remote.get_mut(&mid) else {
            return;
        };
        let ssrc = *p.header.ssrc;
        if *t.ssrc.get_or_insert(ssrc) != ssrc {
            return;
        }
        t.stats.packets += 1;
        let Some((ts, gap)) = t.playout.on_packet(p.header.timestamp, now) else {
            t.stats.late += 1;
            tracing::trace!(track = %t.track_sid, seq = ?p.seq_no, ts = p.header.timestamp, "Late packet dropped.");
            return;
        };
        // Short gaps (loss) are concealed by the decoder, longer ones (DTX) are silence.
        let mut filler = gap;
        while filler >= FRAME_TS {
            let frame = t.decode_rate as usize / 50;
            if gap <= 3 * FRAME_TS {
                t.stats.concealed += 1;
                if let Ok(n) = t.decoder.decode(&[], &mut self.decode_buf[..frame], false) {
                    let pcm = self.decode_buf[..n].to_vec();
                    t.emit(&pcm);
                }
            } else {
                t.stats.silence += 1;
                t.emit(&vec![0; frame]);
            }
            filler -= FRAME_TS;
        }
        let n = match t.decoder.decode(&p.payload, &mut self.decode_buf, false) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "Opus decode failed.");
                return;
            }
        };
        t.playout
            .played(ts, n as i64 * 48_000 / i64::from(t.decode_rate));
        let pcm = self.decode_buf[..n].to_vec();
        t.emit(&pcm);
    }

    /// Keep silent remote tracks flowing in real time.
    fn fill_silence(&mut self, now: Instant) {
        for t in self.remote.values_mut() {
            let due = t.playout.silence_due(now);
            t.stats.silence += due as u64;
            if due > 0 {
                let silence = vec![0; t.decode_rate as usize / 50];
                for _ in 0..due {
                    t.emit(&silence);
                }
            }
        }
    }

    /// Encode and send 20 ms per local track; keeps real-time pace with catch-up.
    pub(super) fn audio_tick(&mut self, now: Instant) {
        let mut ticks = 0;
        while self.next_tick <= now {
            let behind = now - self.next_tick;
            self.next_tick += FRAME;
            ticks += 1;
            if ticks > 5 {
                // Far behind (a stall): don't burst, restart the clock.
                self.next_tick = now + FRAME;
                break;
            }
            for i in 0..self.local.len() {
                self.send_local_frame(i, now, behind);
            }
        }
        self.fill_silence(now);
    }

    fn send_local_frame(&mut self, i: usize, now: Instant, behind: Duration) {
        let t = &mut self.local[i];
        let ts = t.rtp_ts;
        t.rtp_ts += 960;
        let mut pcm = Vec::new();
        if let Ok(mut q) = t.queue.lock() {
            let len = q.samples.len();
            if len >= t.frame_len || (len > 0 && t.partial_wait >= 1) {
                let take = len.min(t.frame_len);
                pcm.extend(q.samples.drain(..take));
                pcm.resize(t.frame_len, 0);
                t.partial_wait = 0;
                q.stats.count(behind > crate::audio::LATE_FRAME);
            } else if len > 0 {
                t.partial_wait += 1;
            }
        }
        if pcm.is_empty() {
            t.talking = false;
            return;
        }
        let (Some(mid), Some(pt)) = (t.mid, t.pt) else {
            return;
        };
        if !self.publ.connected {
            return;
        }
        let n = match t.encoder.encode(&pcm, &mut self.encode_buf) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "Opus encode failed.");
                return;
            }
        };
        let start = !t.talking;
        t.talking = true;
        let level = audio_level(&pcm);
        let Some(writer) = self.publ.rtc.writer(mid) else {
            return;
        };
        let res = writer
            .start_of_talkspurt(start)
            .audio_level(-level, level < 127)
            .write(
                pt,
                now,
                MediaTime::new(ts, Frequency::FORTY_EIGHT_KHZ),
                &self.encode_buf[..n],
            );
        if let Err(e) = res {
            tracing::debug!(error = %e, "RTP write failed.");
        }
    }

    // ---------------------------------------------------------------- data

    pub(super) fn send_data_packet(&mut self, packet: proto::DataPacket) {
        let bytes = packet.encode_to_vec();
        if self.negotiation.pub_reliable_open {
            self.write_reliable(&bytes);
        } else {
            self.data_backlog.push(bytes);
        }
    }

    fn write_reliable(&mut self, bytes: &[u8]) {
        let Some((id, _)) = self.negotiation.pub_channels else {
            return;
        };
        match self.publ.rtc.channel(id) {
            Some(mut ch) => {
                if let Err(e) = ch.write(true, bytes) {
                    tracing::debug!(error = %e, "Data channel write failed.");
                }
            }
            None => tracing::debug!("Reliable data channel is gone."),
        }
    }

    /// Chat as a LiveKit text stream on `lk.chat` (what current SDKs and agents use).
    pub(super) fn send_chat(&mut self, text: &str) {
        let stream_id = format!("{}-{}-{}", self.sid, unix_ms(), self.cid_counter);
        self.cid_counter += 1;
        for p in data::chat_packets(&self.identity, &stream_id, unix_ms(), text) {
            self.send_data_packet(p);
        }
    }

    fn handle_data_packet(&mut self, packet: proto::DataPacket) {
        if let Some(ev) = self.data_rx.on_packet(packet) {
            self.emit(ev);
        }
    }
}

/// RFC 6464 level: 0 (loud) … 127 (silence), in -dBov.
fn audio_level(pcm: &[i16]) -> i8 {
    let energy: f64 = pcm
        .iter()
        .map(|&s| f64::from(s) * f64::from(s))
        .sum::<f64>()
        / pcm.len().max(1) as f64;
    let rms = energy.sqrt() / 32768.0;
    if rms <= 0.0 {
        return 127;
    }
    (-20.0 * rms.log10()).clamp(0.0, 127.0) as i8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_of_silence_and_full_scale() {
        assert_eq!(audio_level(&[0; 960]), 127);
        assert!(audio_level(&[32767; 960]) <= 1);
    }
}
