//! Who is in the room, and which of their tracks we receive: participants as the server reports
//! them (joined, changed, gone), and the remote tracks kept in step with the subscriber offer —
//! a track is announced (`TrackSubscribed`) once both its media and its participant are known.

use livekit_protocol as proto;
use str0m::media::Mid;
use tokio::sync::mpsc;

use super::media::{RemoteTrack, TrackStats};
use super::Engine;
use crate::audio::{is_opus_rate, AudioStream};
use crate::playout::Playout;
use crate::types::{Participant, ParticipantKind, RoomEvent};
use callfleet_audio::Resampler;

impl Engine {
    pub(super) fn update_participant(&mut self, info: &proto::ParticipantInfo) {
        if info.sid == self.sid || (!self.identity.is_empty() && info.identity == self.identity) {
            return;
        }
        for t in &info.tracks {
            self.track_names.insert(t.sid.clone(), t.name.clone());
        }
        let disconnected = info.state == proto::participant_info::State::Disconnected as i32;
        if disconnected {
            if self.participants.remove(&info.sid).is_some() {
                let gone: Vec<Mid> = self
                    .remote
                    .iter()
                    .filter(|(_, t)| t.participant_sid == info.sid)
                    .map(|(m, _)| *m)
                    .collect();
                for mid in gone {
                    if let Some(t) = self.remote.remove(&mid) {
                        self.emit(RoomEvent::TrackUnsubscribed {
                            identity: info.identity.clone(),
                            track_sid: t.track_sid.clone(),
                        });
                    }
                }
                self.emit(RoomEvent::ParticipantLeft {
                    identity: info.identity.clone(),
                });
            }
            return;
        }
        let new = participant_from(info);
        match self.participants.get(&info.sid) {
            None => {
                tracing::debug!(sid = %info.sid, identity = %info.identity, tracks = info.tracks.len(), "Participant joined.");
                self.participants.insert(info.sid.clone(), new.clone());
                self.emit(RoomEvent::ParticipantJoined(new));
                self.announce_tracks();
            }
            Some(old) => {
                let changed = old.attributes != new.attributes;
                self.participants.insert(info.sid.clone(), new.clone());
                if changed {
                    self.emit(RoomEvent::AttributesChanged {
                        identity: new.identity,
                        attributes: new.attributes,
                    });
                }
            }
        }
    }

    /// Emit `TrackSubscribed` for tracks whose participant is now known.
    fn announce_tracks(&mut self) {
        let mut ready = Vec::new();
        for (mid, t) in &mut self.remote {
            if t.stream.is_some() {
                if let Some(p) = self.participants.get(&t.participant_sid) {
                    if let Some(stream) = t.stream.take() {
                        ready.push((*mid, p.clone(), t.track_sid.clone(), stream));
                    }
                }
            }
        }
        for (mid, participant, track_sid, stream) in ready {
            tracing::debug!(%mid, track = %track_sid, participant = %participant.identity, "Track subscribed.");
            let track_name = self
                .track_names
                .get(&track_sid)
                .cloned()
                .unwrap_or_default();
            self.emit(RoomEvent::TrackSubscribed {
                participant,
                track_sid,
                track_name,
                stream,
            });
        }
    }

    /// Make the remote tracks match the server's latest offer: start tracks on new or
    /// reused m-lines, end those the server stopped sending or gave to another track.
    pub(super) fn reconcile_remote_tracks(&mut self) {
        let offered = self.negotiation.offered.clone();
        let stale: Vec<Mid> = self
            .remote
            .iter()
            .filter(|(mid, t)| {
                !offered
                    .iter()
                    .any(|o| Mid::from(o.mid.as_str()) == **mid && o.track_id == t.track_sid)
            })
            .map(|(mid, _)| *mid)
            .collect();
        for mid in stale {
            if let Some(t) = self.remote.remove(&mid) {
                let identity = self
                    .participants
                    .get(&t.participant_sid)
                    .map(|p| p.identity.clone())
                    .unwrap_or_default();
                self.emit(RoomEvent::TrackUnsubscribed {
                    identity,
                    track_sid: t.track_sid.clone(),
                });
            }
        }
        for o in offered {
            let mid = Mid::from(o.mid.as_str());
            if !self.remote.contains_key(&mid) && self.sub.rtc.media(mid).is_some() {
                let participant_sid = o.stream_id.split('|').next().unwrap_or("").to_string();
                self.start_remote_track(mid, o.track_id, participant_sid, o.ssrc);
            }
        }
    }

    fn start_remote_track(
        &mut self,
        mid: Mid,
        track_sid: String,
        participant_sid: String,
        ssrc: Option<u32>,
    ) {
        let rate = self.opts.sample_rate;
        let decode_rate = if is_opus_rate(rate) { rate } else { 48_000 };
        let decoder = match opus::Decoder::new(decode_rate, opus::Channels::Mono) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "Opus decoder failed to start.");
                return;
            }
        };
        tracing::debug!(%mid, track = %track_sid, participant = %participant_sid, "Remote track started.");
        let (tx, rx) = mpsc::channel(self.opts.buffer.max(4));
        self.remote.insert(
            mid,
            RemoteTrack {
                track_sid,
                ssrc,
                participant_sid,
                decoder,
                decode_rate,
                resampler: (decode_rate != rate).then(|| Resampler::new(decode_rate, rate)),
                tx,
                stream: Some(AudioStream::new(rx)),
                dropped: 0,
                playout: Playout::default(),
                stats: TrackStats::default(),
            },
        );
        self.announce_tracks();
    }
}

fn participant_from(info: &proto::ParticipantInfo) -> Participant {
    Participant {
        sid: info.sid.clone(),
        identity: info.identity.clone(),
        name: info.name.clone(),
        kind: ParticipantKind::from_proto(info.kind),
        attributes: info.attributes.clone(),
        metadata: info.metadata.clone(),
    }
}
