//! Signalling and SDP: the server's messages dispatched, the subscriber's offers answered, the
//! publisher's offers made (data channels first, then each published track; one offer in
//! flight at a time), and tracks published on the server's word (`TrackPublished`).

use std::time::Instant;

use livekit_protocol as proto;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind};
use tokio::sync::oneshot;

use super::media::LocalTrack;
use super::Engine;
use crate::audio::{is_opus_rate, LocalAudioTrack};
use crate::error::RoomError;
use crate::peer::{first_mid, offered_audio, OfferedTrack, Role};
use crate::secret::Token;
use crate::signal::SignalInput;

/// Where the peer connections' negotiation stands; a new session starts it over.
#[derive(Default)]
pub(super) struct Negotiation {
    /// The publisher's offer awaiting its answer.
    pub(super) pub_offer: Option<SdpPendingOffer>,
    /// The publisher's reliable and lossy data channels, once offered.
    pub(super) pub_channels: Option<(ChannelId, ChannelId)>,
    pub(super) pub_reliable_open: bool,
    pub(super) pub_trickled: bool,
    pub(super) sub_trickled: bool,
    /// Audio the server's latest subscriber offer sends us, by mid.
    pub(super) offered: Vec<OfferedTrack>,
}

pub(super) struct PendingPublish {
    pub(super) name: String,
    pub(super) rate: u32,
    pub(super) reply: oneshot::Sender<Result<LocalAudioTrack, RoomError>>,
}

impl Engine {
    pub(super) fn handle_signal_input(&mut self, input: SignalInput) {
        match input {
            SignalInput::Response(resp) => {
                if let Some(msg) = resp.message {
                    self.handle_response(msg);
                }
            }
            SignalInput::Closed(reason) => {
                self.sig = None;
                self.signal_lost(reason);
            }
        }
    }

    fn handle_response(&mut self, msg: Resp) {
        match msg {
            Resp::Offer(desc) => self.handle_subscriber_offer(desc),
            Resp::Answer(desc) => self.handle_publisher_answer(desc),
            Resp::Trickle(t) => {
                let candidate = serde_json::from_str::<serde_json::Value>(&t.candidate_init)
                    .ok()
                    .and_then(|v| {
                        v.get("candidate")
                            .and_then(|c| c.as_str())
                            .map(str::to_string)
                    })
                    .unwrap_or_default();
                if t.target == Role::Publisher.signal_target() {
                    self.publ.add_remote_candidate(&candidate);
                } else {
                    self.sub.add_remote_candidate(&candidate);
                }
            }
            Resp::Update(u) => {
                for p in &u.participants {
                    self.update_participant(p);
                }
            }
            Resp::TrackPublished(tp) => self.handle_track_published(tp),
            Resp::Leave(l) => {
                // Resume and Reconnect both mean "come back": the resume task falls back to
                // a fresh join when the server refuses to resume.
                if l.action == proto::leave_request::Action::Disconnect as i32 && !l.can_reconnect {
                    self.fail(format!("server sent leave (reason {})", l.reason));
                } else {
                    if let Some(conn) = self.sig.take() {
                        conn.close();
                    }
                    self.signal_lost(format!("server asked to reconnect (reason {})", l.reason));
                }
            }
            Resp::RefreshToken(t) => self.token = Token::new(t),
            Resp::RequestResponse(r) if r.reason != proto::request_response::Reason::Ok as i32 => {
                // Attribute updates are fire-and-forget; a refusal (no `canUpdateOwnMetadata`
                // grant, say) is worth a line in the log, not the call.
                tracing::warn!(request = r.request_id, reason = r.reason, message = %r.message, "The server refused a request.");
            }
            Resp::PongResp(_) | Resp::Pong(_) => self.keepalive.last_pong = Instant::now(),
            Resp::TrackUnpublished(_) | Resp::Reconnect(_) | Resp::Join(_) => {}
            _ => {}
        }
    }

    fn handle_subscriber_offer(&mut self, desc: proto::SessionDescription) {
        let sdp = self.sub.filter_sdp(&desc.sdp);
        self.negotiation.offered = offered_audio(&sdp);
        tracing::debug!(id = desc.id, offered = ?self.negotiation.offered, "Subscriber offer.");
        let offer = match SdpOffer::from_sdp_string(&sdp) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "Unparsable subscriber offer.");
                return;
            }
        };
        let answer = match self.sub.rtc.sdp_api().accept_offer(offer) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "Subscriber offer rejected.");
                return;
            }
        };
        let answer_sdp = answer.to_sdp_string();
        self.send_signal(Req::Answer(proto::SessionDescription {
            r#type: "answer".into(),
            sdp: answer_sdp.clone(),
            id: desc.id,
            ..Default::default()
        }));
        if !self.negotiation.sub_trickled {
            self.negotiation.sub_trickled = true;
            let init = self.sub.candidate_init(&first_mid(&answer_sdp));
            self.send_signal(Req::Trickle(proto::TrickleRequest {
                candidate_init: init,
                target: Role::Subscriber.signal_target(),
                ..Default::default()
            }));
        }
        self.reconcile_remote_tracks();
    }

    fn handle_publisher_answer(&mut self, desc: proto::SessionDescription) {
        let Some(pending) = self.negotiation.pub_offer.take() else {
            return;
        };
        let sdp = self.publ.filter_sdp(&desc.sdp);
        let answer = match SdpAnswer::from_sdp_string(&sdp) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "Unparsable publisher answer.");
                return;
            }
        };
        if let Err(e) = self.publ.rtc.sdp_api().accept_answer(pending, answer) {
            tracing::warn!(error = %e, "Publisher answer rejected.");
            return;
        }
        for t in &mut self.local {
            if let (Some(mid), None) = (t.mid, t.pt) {
                t.pt = self.publ.rtc.writer(mid).and_then(|w| {
                    w.payload_params()
                        .find(|p| p.spec().codec == Codec::Opus)
                        .map(|p| p.pt())
                });
            }
        }
        self.negotiate_publisher();
    }

    /// Send an offer for whatever the publisher still lacks (data channels, new tracks).
    /// One offer at a time: further changes wait for the answer.
    pub(super) fn negotiate_publisher(&mut self) {
        if self.negotiation.pub_offer.is_some() || self.closed {
            return;
        }
        let mut api = self.publ.rtc.sdp_api();
        if self.negotiation.pub_channels.is_none() {
            let reliable = api.add_channel_with_config(ChannelConfig {
                label: "_reliable".into(),
                ordered: true,
                reliability: Reliability::Reliable,
                ..Default::default()
            });
            let lossy = api.add_channel_with_config(ChannelConfig {
                label: "_lossy".into(),
                ordered: false,
                reliability: Reliability::MaxRetransmits { retransmits: 0 },
                ..Default::default()
            });
            self.negotiation.pub_channels = Some((reliable, lossy));
        }
        for t in &mut self.local {
            if t.mid.is_none() {
                t.mid = Some(api.add_media(
                    MediaKind::Audio,
                    Direction::SendOnly,
                    Some(t.cid.clone()),
                    Some(t.cid.clone()),
                    None,
                ));
            }
        }
        let Some((offer, pending)) = api.apply() else {
            return;
        };
        let sdp = offer.to_sdp_string();
        self.negotiation.pub_offer = Some(pending);
        self.send_signal(Req::Offer(proto::SessionDescription {
            r#type: "offer".into(),
            sdp: sdp.clone(),
            ..Default::default()
        }));
        if !self.negotiation.pub_trickled {
            self.negotiation.pub_trickled = true;
            let init = self.publ.candidate_init(&first_mid(&sdp));
            self.send_signal(Req::Trickle(proto::TrickleRequest {
                candidate_init: init,
                target: Role::Publisher.signal_target(),
                ..Default::default()
            }));
        }
    }

    fn handle_track_published(&mut self, tp: proto::TrackPublishedResponse) {
        if self.republish.remove(&tp.cid).is_some() {
            self.negotiate_publisher();
            return;
        }
        let Some(pending) = self.pending_publish.remove(&tp.cid) else {
            return;
        };
        let sid = tp.track.map(|t| t.sid).unwrap_or_default();
        let enc_rate = if is_opus_rate(pending.rate) {
            pending.rate
        } else {
            48_000
        };
        let encoder =
            match opus::Encoder::new(enc_rate, opus::Channels::Mono, opus::Application::Voip) {
                Ok(mut e) => {
                    let _ = e.set_complexity(self.opts.opus_complexity.clamp(0, 10));
                    let _ = e.set_inband_fec(true);
                    e
                }
                Err(e) => {
                    let _ = pending.reply.send(Err(RoomError::Codec(e.to_string())));
                    return;
                }
            };
        let queue = LocalAudioTrack::new_queue();
        self.local.push(LocalTrack {
            cid: tp.cid.clone(),
            queue: queue.clone(),
            mid: None,
            pt: None,
            encoder,
            frame_len: (enc_rate / 50) as usize,
            rtp_ts: 0,
            talking: false,
            partial_wait: 0,
        });
        let track = LocalAudioTrack {
            sid,
            name: pending.name,
            rate: enc_rate,
            queue,
        };
        let _ = pending.reply.send(Ok(track));
        self.negotiate_publisher();
    }
}

#[allow(deprecated)] // `disable_dtx`: still what servers read.
pub(super) fn add_track_request(cid: String, name: String) -> proto::AddTrackRequest {
    proto::AddTrackRequest {
        cid,
        name,
        r#type: proto::TrackType::Audio as i32,
        source: proto::TrackSource::Microphone as i32,
        disable_red: true,
        disable_dtx: false,
        ..Default::default()
    }
}
