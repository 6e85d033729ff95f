//! The task behind a `Room`: one select loop owning the signalling connection, both peer
//! connections, the Opus codecs and the local track queues. Nothing here is shared with
//! other tasks except the track queues (a mutex each) and bounded channels.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use livekit_protocol as proto;
use prost::Message as _;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::{Event, IceConnectionState};
use tokio::sync::{mpsc, oneshot};

use crate::audio::{
    is_opus_rate, AudioFrame, AudioStream, LocalAudioTrack, Resampler, SharedQueue,
};
use crate::data::{self, DataReceiver};
use crate::error::RoomError;
use crate::peer::{first_mid, local_ip_for, offered_audio, OfferedTrack, Peer, Role};
use crate::playout::{Playout, FRAME_TS};
use crate::room::{Participant, ParticipantKind, RoomEvent, RoomOptions};
use crate::secret::Token;
use crate::signal::{self, SignalConn, SignalInput};

const FRAME: Duration = Duration::from_millis(20);

pub(crate) enum Command {
    PublishAudio {
        name: String,
        sample_rate: u32,
        reply: oneshot::Sender<Result<LocalAudioTrack, RoomError>>,
    },
    SendChat {
        text: String,
    },
    SendData {
        topic: String,
        payload: Vec<u8>,
    },
    Leave {
        reply: oneshot::Sender<()>,
    },
    DropSignal,
}

pub(crate) struct Joined {
    pub(crate) engine: Engine,
    pub(crate) identity: String,
    pub(crate) sid: String,
    pub(crate) room_name: String,
}

struct RemoteTrack {
    track_sid: String,
    /// Packets from any other SSRC on this m-line belong to a previous track.
    ssrc: Option<u32>,
    participant_sid: String,
    decoder: opus::Decoder,
    decode_rate: u32,
    resampler: Option<Resampler>,
    tx: mpsc::Sender<AudioFrame>,
    /// Held until the participant is known and `TrackSubscribed` is emitted.
    stream: Option<AudioStream>,
    dropped: u64,
    playout: Playout,
    stats: TrackStats,
}

/// Per-track receive counters, logged when the track ends.
#[derive(Debug, Default)]
struct TrackStats {
    packets: u64,
    late: u64,
    concealed: u64,
    silence: u64,
}

impl Drop for RemoteTrack {
    fn drop(&mut self) {
        tracing::debug!(track = %self.track_sid, stats = ?self.stats, consumer_behind = self.dropped, "Remote track ended.");
    }
}

impl RemoteTrack {
    /// Hand decoded PCM (at `decode_rate`) to the consumer, resampled if asked.
    fn emit(&mut self, pcm: &[i16]) {
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

struct LocalTrack {
    cid: String,
    queue: SharedQueue,
    mid: Option<Mid>,
    pt: Option<Pt>,
    encoder: opus::Encoder,
    frame_len: usize,
    rtp_ts: u64,
    talking: bool,
    /// Ticks a partial frame has waited; a tail shorter than 20 ms is padded after one.
    partial_wait: u8,
}

struct PendingPublish {
    name: String,
    rate: u32,
    reply: oneshot::Sender<Result<LocalAudioTrack, RoomError>>,
}

/// How signalling came back: the same session resumed, or a new one (the server had
/// forgotten us, e.g. after a restart) that needs fresh peer connections.
pub(crate) enum Restored {
    Resumed(SignalConn),
    Rejoined(SignalConn, Box<proto::JoinResponse>),
}

type ReconnectResult = Result<Restored, RoomError>;

/// What woke the engine's loop.
enum Wake {
    Command(Option<Command>),
    Signal(SignalInput),
    Reconnected(ReconnectResult),
    Udp(Role, Option<(usize, std::net::SocketAddr)>),
    Timer,
}

pub(crate) struct Engine {
    base_url: String,
    token: Token,
    opts: RoomOptions,
    cmd_rx: mpsc::Receiver<Command>,
    events: mpsc::Sender<RoomEvent>,
    event_backlog: VecDeque<RoomEvent>,
    sig: Option<SignalConn>,
    sig_backlog: Vec<Req>,
    reconnect: Option<oneshot::Receiver<ReconnectResult>>,
    sub: Peer,
    publ: Peer,
    identity: String,
    sid: String,
    participants: HashMap<String, Participant>,
    track_names: HashMap<String, String>,
    remote: HashMap<Mid, RemoteTrack>,
    local: Vec<LocalTrack>,
    pending_publish: HashMap<String, PendingPublish>,
    pub_offer: Option<SdpPendingOffer>,
    pub_channels: Option<(ChannelId, ChannelId)>,
    pub_reliable_open: bool,
    pub_trickled: bool,
    sub_trickled: bool,
    data_backlog: Vec<Vec<u8>>,
    data_rx: DataReceiver,
    /// Audio the server's latest subscriber offer sends us, by mid.
    offered: Vec<OfferedTrack>,
    ping_interval: Duration,
    ping_timeout: Duration,
    next_ping: Instant,
    last_pong: Instant,
    next_tick: Instant,
    cid_counter: u64,
    closed: bool,
    leave_reply: Option<oneshot::Sender<()>>,
    decode_buf: Vec<i16>,
    encode_buf: Vec<u8>,
    bind_ip: std::net::IpAddr,
    loopback_only: bool,
    /// cid of a track published again after a rejoin → its index in `local`.
    republish: HashMap<String, usize>,
}

fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    h.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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

/// Wait for the first message of a fresh connection.
async fn first_response(conn: &mut SignalConn) -> Result<Box<proto::SignalResponse>, RoomError> {
    match conn.rx.recv().await {
        Some(SignalInput::Response(r)) => Ok(r),
        Some(SignalInput::Closed(reason)) => Err(RoomError::Signal(reason)),
        None => Err(RoomError::Signal("connection closed".into())),
    }
}

impl Engine {
    pub(crate) async fn join(
        url: &str,
        token: Token,
        opts: RoomOptions,
        cmd_rx: mpsc::Receiver<Command>,
        events: mpsc::Sender<RoomEvent>,
    ) -> Result<Joined, RoomError> {
        let parsed = url::Url::parse(url).map_err(|e| RoomError::InvalidUrl(e.to_string()))?;
        let host = parsed.host_str().unwrap_or("").to_string();
        let loopback_only = opts
            .loopback_only
            .unwrap_or_else(|| is_loopback_host(&host));
        let rtc_url = signal::rtc_url(url, opts.auto_subscribe, None)?;
        tracing::debug!(url = %rtc_url, "Joining room.");
        let mut conn = signal::connect(&rtc_url, &token).await?;
        let join = loop {
            let resp = first_response(&mut conn).await?;
            match resp.message {
                Some(Resp::Join(j)) => break j,
                Some(Resp::Leave(l)) => {
                    return Err(RoomError::Signal(format!(
                        "server sent leave (reason {})",
                        l.reason
                    )))
                }
                _ => continue,
            }
        };
        let me = join.participant.clone().unwrap_or_default();
        let room_name = join
            .room
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_default();
        // The server's ICE servers (public STUN in dev mode) are deliberately ignored: we
        // only ever offer host candidates.
        let ip = local_ip_for(&host, loopback_only).await;
        let sub = Peer::new(Role::Subscriber, ip, loopback_only)?;
        let publ = Peer::new(Role::Publisher, ip, loopback_only)?;
        let now = Instant::now();
        let ping_interval = Duration::from_secs(join.ping_interval.clamp(1, 60) as u64);
        let ping_timeout = Duration::from_secs(join.ping_timeout.clamp(2, 120) as u64);
        let mut engine = Engine {
            base_url: url.to_string(),
            token,
            opts,
            cmd_rx,
            events,
            event_backlog: VecDeque::new(),
            sig: Some(conn),
            sig_backlog: Vec::new(),
            reconnect: None,
            sub,
            publ,
            identity: me.identity.clone(),
            sid: me.sid.clone(),
            participants: HashMap::new(),
            track_names: HashMap::new(),
            remote: HashMap::new(),
            local: Vec::new(),
            pending_publish: HashMap::new(),
            pub_offer: None,
            pub_channels: None,
            pub_reliable_open: false,
            pub_trickled: false,
            sub_trickled: false,
            data_backlog: Vec::new(),
            data_rx: DataReceiver::default(),
            offered: Vec::new(),
            ping_interval,
            ping_timeout,
            next_ping: now + ping_interval,
            last_pong: now,
            next_tick: now + FRAME,
            cid_counter: 0,
            closed: false,
            leave_reply: None,
            decode_buf: vec![0; 5760],
            encode_buf: vec![0; 1500],
            bind_ip: ip,
            loopback_only,
            republish: HashMap::new(),
        };
        for p in &join.other_participants {
            engine.update_participant(p);
        }
        Ok(Joined {
            identity: me.identity,
            sid: me.sid,
            room_name,
            engine,
        })
    }

    pub(crate) async fn run(mut self) {
        // Open the publisher's data channels at once, so that data can be sent before any
        // track is published.
        self.negotiate_publisher();
        let mut events = Vec::new();
        while !self.closed {
            self.drive(&mut events);
            if self.closed {
                break;
            }
            let deadline = self
                .sub
                .next_timeout
                .min(self.publ.next_timeout)
                .min(self.next_tick)
                .min(self.next_ping);
            let has_backlog = !self.event_backlog.is_empty();
            let wake = tokio::select! {
                cmd = self.cmd_rx.recv() => Wake::Command(cmd),
                input = recv_signal(&mut self.sig) => Wake::Signal(input),
                res = recv_reconnect(&mut self.reconnect) => Wake::Reconnected(res),
                r = self.sub.socket.recv_from(&mut self.sub.buf) => Wake::Udp(Role::Subscriber, r.ok()),
                r = self.publ.socket.recv_from(&mut self.publ.buf) => Wake::Udp(Role::Publisher, r.ok()),
                permit = self.events.reserve(), if has_backlog => {
                    if let (Ok(permit), Some(ev)) = (permit, self.event_backlog.pop_front()) {
                        permit.send(ev);
                    }
                    Wake::Timer
                }
                _ = tokio::time::sleep_until(deadline.into()) => Wake::Timer,
            };
            match wake {
                Wake::Command(Some(c)) => self.handle_command(c),
                Wake::Command(None) => self.leave(),
                Wake::Signal(input) => self.handle_signal_input(input),
                Wake::Reconnected(res) => self.handle_reconnected(res),
                Wake::Udp(Role::Subscriber, Some((n, src))) => self.sub.handle_receive(n, src),
                Wake::Udp(Role::Publisher, Some((n, src))) => self.publ.handle_receive(n, src),
                Wake::Udp(_, None) | Wake::Timer => {}
            }
            let now = Instant::now();
            self.sub.handle_timeout(now);
            self.publ.handle_timeout(now);
            if now >= self.next_tick {
                self.audio_tick(now);
            }
            if now >= self.next_ping {
                self.ping(now);
            }
        }
        self.drive(&mut events);
        // Streams end when their senders drop.
        self.remote.clear();
        for (_, p) in self.pending_publish.drain() {
            let _ = p.reply.send(Err(RoomError::Closed));
        }
        for t in &self.local {
            if let Ok(mut q) = t.queue.lock() {
                q.closed = true;
                q.samples.clear();
            }
        }
        while let Some(ev) = self.event_backlog.pop_front() {
            if self.events.send(ev).await.is_err() {
                break;
            }
        }
        if let Some(reply) = self.leave_reply.take() {
            let _ = reply.send(());
        }
    }

    fn emit(&mut self, ev: RoomEvent) {
        if !self.event_backlog.is_empty() {
            self.event_backlog.push_back(ev);
            return;
        }
        match self.events.try_send(ev) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(ev)) => self.event_backlog.push_back(ev),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn send_signal(&mut self, msg: Req) {
        match &self.sig {
            Some(conn) if conn.send(msg.clone()) => {}
            _ => self.sig_backlog.push(msg),
        }
    }

    // ---------------------------------------------------------------- commands

    fn handle_command(&mut self, cmd: Command) {
        match cmd {
            Command::PublishAudio {
                name,
                sample_rate,
                reply,
            } => {
                self.cid_counter += 1;
                let cid = format!("callfleet-{}-{}", self.sid, self.cid_counter);
                self.send_signal(Req::AddTrack(add_track_request(cid.clone(), name.clone())));
                self.pending_publish.insert(
                    cid,
                    PendingPublish {
                        name,
                        rate: sample_rate,
                        reply,
                    },
                );
            }
            Command::SendChat { text } => self.send_chat(&text),
            Command::SendData { topic, payload } => {
                let packet = data::user_packet(&self.identity, &topic, payload);
                self.send_data_packet(packet);
            }
            Command::Leave { reply } => {
                self.leave_reply = Some(reply);
                self.leave();
            }
            Command::DropSignal => {
                if let Some(conn) = self.sig.take() {
                    conn.close();
                }
                self.signal_lost("simulated signalling loss".into());
            }
        }
    }

    fn leave(&mut self) {
        if self.closed {
            return;
        }
        self.send_signal(Req::Leave(proto::LeaveRequest {
            can_reconnect: false,
            reason: proto::DisconnectReason::ClientInitiated as i32,
            action: proto::leave_request::Action::Disconnect as i32,
            ..Default::default()
        }));
        if let Some(conn) = self.sig.take() {
            conn.close();
        }
        self.sub.rtc.disconnect();
        self.publ.rtc.disconnect();
        self.closed = true;
        self.emit(RoomEvent::Disconnected {
            reason: "left".into(),
        });
    }

    // ---------------------------------------------------------------- signalling

    fn handle_signal_input(&mut self, input: SignalInput) {
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

    fn signal_lost(&mut self, reason: String) {
        if self.closed || self.reconnect.is_some() {
            return;
        }
        tracing::info!(room_identity = %self.identity, reason = %reason, "Signalling lost; resuming.");
        self.emit(RoomEvent::Reconnecting);
        let (tx, rx) = oneshot::channel();
        self.reconnect = Some(rx);
        let base = self.base_url.clone();
        let token = self.token.clone();
        let sid = self.sid.clone();
        let auto = self.opts.auto_subscribe;
        let limit = self.opts.reconnect_timeout;
        tokio::spawn(async move {
            let _ = tx.send(resume(base, token, sid, auto, limit).await);
        });
    }

    fn handle_reconnected(&mut self, res: ReconnectResult) {
        self.reconnect = None;
        match res {
            Ok(Restored::Resumed(conn)) => {
                self.sig = Some(conn);
                let backlog = std::mem::take(&mut self.sig_backlog);
                for msg in backlog {
                    self.send_signal(msg);
                }
                tracing::info!(room_identity = %self.identity, "Signalling resumed.");
            }
            Ok(Restored::Rejoined(conn, join)) => {
                self.sig = Some(conn);
                if let Err(e) = self.rejoin(*join) {
                    self.fail(format!("rejoin failed: {e}"));
                    return;
                }
                tracing::info!(room_identity = %self.identity, "Rejoined the room with a new session.");
            }
            Err(e) => {
                tracing::warn!(error = %e, "Could not resume the session.");
                self.fail(format!("resume failed: {e}"));
                return;
            }
        }
        let now = Instant::now();
        self.last_pong = now;
        self.next_ping = now;
        self.emit(RoomEvent::Reconnected);
    }

    fn fail(&mut self, reason: String) {
        self.closed = true;
        self.sub.rtc.disconnect();
        self.publ.rtc.disconnect();
        self.emit(RoomEvent::Disconnected { reason });
    }

    /// A new session after the server lost ours: new peer connections, remote tracks start
    /// over, local tracks are published again (their queues keep working), participants are
    /// reconciled with the new join's list.
    fn rejoin(&mut self, join: proto::JoinResponse) -> Result<(), RoomError> {
        let me = join.participant.clone().unwrap_or_default();
        self.sid = me.sid;
        self.identity = me.identity;
        let mut sub = Peer::new(Role::Subscriber, self.bind_ip, self.loopback_only)?;
        let mut publ = Peer::new(Role::Publisher, self.bind_ip, self.loopback_only)?;
        std::mem::swap(&mut self.sub, &mut sub);
        std::mem::swap(&mut self.publ, &mut publ);
        sub.rtc.disconnect();
        publ.rtc.disconnect();
        // Signalling queued for the old session means nothing to the new one.
        self.sig_backlog.clear();
        self.pub_offer = None;
        self.pub_channels = None;
        self.pub_reliable_open = false;
        self.pub_trickled = false;
        self.sub_trickled = false;
        self.data_rx.clear();
        self.offered.clear();
        self.ping_interval = Duration::from_secs(join.ping_interval.clamp(1, 60) as u64);
        self.ping_timeout = Duration::from_secs(join.ping_timeout.clamp(2, 120) as u64);
        let old_tracks: Vec<RemoteTrack> = self.remote.drain().map(|(_, t)| t).collect();
        for t in old_tracks {
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
        // Participants: the new list is the truth.
        let present: std::collections::HashSet<String> = join
            .other_participants
            .iter()
            .map(|p| p.identity.clone())
            .collect();
        let gone: Vec<(String, String)> = self
            .participants
            .iter()
            .filter(|(_, p)| !present.contains(&p.identity))
            .map(|(sid, p)| (sid.clone(), p.identity.clone()))
            .collect();
        for (sid, identity) in gone {
            self.participants.remove(&sid);
            self.emit(RoomEvent::ParticipantLeft { identity });
        }
        // Same people may have new sids: key by identity.
        let known: HashMap<String, String> = self
            .participants
            .iter()
            .map(|(sid, p)| (p.identity.clone(), sid.clone()))
            .collect();
        for info in &join.other_participants {
            if let Some(old_sid) = known.get(&info.identity) {
                if let Some(mut p) = self.participants.remove(old_sid) {
                    p.sid = info.sid.clone();
                    self.participants.insert(info.sid.clone(), p);
                }
            }
            self.update_participant(info);
        }
        // Publish the local tracks again.
        self.republish.clear();
        for i in 0..self.local.len() {
            self.cid_counter += 1;
            let cid = format!("callfleet-{}-{}", self.sid, self.cid_counter);
            let t = &mut self.local[i];
            t.cid = cid.clone();
            t.mid = None;
            t.pt = None;
            t.talking = false;
            self.republish.insert(cid.clone(), i);
            self.send_signal(Req::AddTrack(add_track_request(cid, format!("track-{i}"))));
        }
        self.negotiate_publisher();
        Ok(())
    }

    fn ping(&mut self, now: Instant) {
        self.next_ping = now + self.ping_interval;
        if self.sig.is_none() {
            return;
        }
        if now.duration_since(self.last_pong) > self.ping_timeout {
            if let Some(conn) = self.sig.take() {
                conn.close();
            }
            self.signal_lost("ping timeout".into());
            return;
        }
        self.send_signal(Req::PingReq(proto::Ping {
            timestamp: unix_ms(),
            rtt: 0,
        }));
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
            Resp::PongResp(_) | Resp::Pong(_) => self.last_pong = Instant::now(),
            Resp::TrackUnpublished(_) | Resp::Reconnect(_) | Resp::Join(_) => {}
            _ => {}
        }
    }

    fn handle_subscriber_offer(&mut self, desc: proto::SessionDescription) {
        let sdp = self.sub.filter_sdp(&desc.sdp);
        self.offered = offered_audio(&sdp);
        tracing::debug!(id = desc.id, offered = ?self.offered, "Subscriber offer.");
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
        if !self.sub_trickled {
            self.sub_trickled = true;
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
        let Some(pending) = self.pub_offer.take() else {
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
    fn negotiate_publisher(&mut self) {
        if self.pub_offer.is_some() || self.closed {
            return;
        }
        let mut api = self.publ.rtc.sdp_api();
        if self.pub_channels.is_none() {
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
            self.pub_channels = Some((reliable, lossy));
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
        self.pub_offer = Some(pending);
        self.send_signal(Req::Offer(proto::SessionDescription {
            r#type: "offer".into(),
            sdp: sdp.clone(),
            ..Default::default()
        }));
        if !self.pub_trickled {
            self.pub_trickled = true;
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

    // ---------------------------------------------------------------- participants

    fn update_participant(&mut self, info: &proto::ParticipantInfo) {
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
    fn reconcile_remote_tracks(&mut self) {
        let offered = self.offered.clone();
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

    // ---------------------------------------------------------------- media

    fn drive(&mut self, events: &mut Vec<Event>) {
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
                if role == Role::Publisher && self.pub_channels.is_some_and(|(r, _)| r == id) {
                    self.pub_reliable_open = true;
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
    fn audio_tick(&mut self, now: Instant) {
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

    fn send_data_packet(&mut self, packet: proto::DataPacket) {
        let bytes = packet.encode_to_vec();
        if self.pub_reliable_open {
            self.write_reliable(&bytes);
        } else {
            self.data_backlog.push(bytes);
        }
    }

    fn write_reliable(&mut self, bytes: &[u8]) {
        let Some((id, _)) = self.pub_channels else {
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
    fn send_chat(&mut self, text: &str) {
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

#[allow(deprecated)] // `disable_dtx`: still what servers read.
fn add_track_request(cid: String, name: String) -> proto::AddTrackRequest {
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

async fn recv_signal(sig: &mut Option<SignalConn>) -> SignalInput {
    match sig {
        Some(conn) => conn
            .rx
            .recv()
            .await
            .unwrap_or_else(|| SignalInput::Closed("connection closed".into())),
        None => std::future::pending().await,
    }
}

async fn recv_reconnect(rx: &mut Option<oneshot::Receiver<ReconnectResult>>) -> ReconnectResult {
    match rx {
        Some(rx) => rx.await.unwrap_or(Err(RoomError::Closed)),
        None => std::future::pending().await,
    }
}

/// Reopen the signalling socket with `reconnect=1`, retrying with backoff until `limit`.
/// When the server no longer knows the session (it refuses, or it restarted), join afresh.
async fn resume(
    base: String,
    token: Token,
    sid: String,
    auto: bool,
    limit: Duration,
) -> ReconnectResult {
    let resume_url = signal::rtc_url(&base, auto, Some(&sid))?;
    let join_url = signal::rtc_url(&base, auto, None)?;
    let deadline = Instant::now() + limit;
    let mut backoff = Duration::from_millis(100);
    let mut fresh = false;
    loop {
        let url = if fresh { &join_url } else { &resume_url };
        let attempt = async {
            let mut conn = signal::connect(url, &token).await?;
            loop {
                let resp = tokio::time::timeout(Duration::from_secs(5), first_response(&mut conn))
                    .await
                    .map_err(|_| RoomError::Timeout("the reconnect response"))??;
                match resp.message {
                    Some(Resp::Join(j)) => return Ok(Restored::Rejoined(conn, Box::new(j))),
                    Some(Resp::Reconnect(_)) if !fresh => return Ok(Restored::Resumed(conn)),
                    Some(Resp::Leave(l)) => {
                        return Err(RoomError::SessionGone(format!(
                            "server sent leave (reason {})",
                            l.reason
                        )))
                    }
                    // Servers before protocol 9 sent nothing first: any message means resumed.
                    Some(_) if !fresh => return Ok(Restored::Resumed(conn)),
                    _ => continue,
                }
            }
        };
        match attempt.await {
            Ok(restored) => return Ok(restored),
            Err(e) => {
                if Instant::now() + backoff > deadline {
                    return Err(e);
                }
                // A refusal (leave, 4xx) means the session is gone: join afresh next time.
                // Forbidden tokens fail the fresh join too, and then we give up.
                match &e {
                    RoomError::Rejected {
                        status: 401 | 403, ..
                    } if fresh => return Err(e),
                    RoomError::Rejected { .. } | RoomError::SessionGone(_) if !fresh => {
                        tracing::debug!(error = %e, "Resume refused; joining afresh.");
                        fresh = true;
                        continue;
                    }
                    _ => tracing::debug!(error = %e, "Reconnect attempt failed."),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for (h, want) in [
            ("127.0.0.1", true),
            ("localhost", true),
            ("[::1]", true),
            ("10.0.0.1", false),
            ("lk.example.com", false),
        ] {
            assert_eq!(is_loopback_host(h), want, "{h}");
        }
    }

    #[test]
    fn level_of_silence_and_full_scale() {
        assert_eq!(audio_level(&[0; 960]), 127);
        assert!(audio_level(&[32767; 960]) <= 1);
    }
}
