//! The task behind a `Room`: one select loop owning the signalling connection, both peer
//! connections, the Opus codecs and the local track queues. Nothing here is shared with
//! other tasks except the track queues (a mutex each) and bounded channels.
//!
//! The loop (here) wakes on a command from the `Room`, a signalling message, the end of a
//! resume attempt, a UDP datagram or a timer, and hands each to its part: `negotiation`
//! (signalling and SDP, publishing), `participants` (who is in the room and which remote
//! tracks we receive), `media` (RTP in and out, the data channels) and `resume` (pings,
//! resuming or rejoining after signalling drops). What happens goes out to the `Room`'s holder
//! as `RoomEvent`s on the events channel; nothing here calls back into `room.rs`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use livekit_protocol as proto;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;
use str0m::media::Mid;
use tokio::sync::{mpsc, oneshot};

use crate::audio::LocalAudioTrack;
use crate::data::{self, DataReceiver};
use crate::error::RoomError;
use crate::peer::{local_ip_for, Peer, Role};
use crate::secret::Token;
use crate::signal::{self, SignalConn, SignalInput};
use crate::types::{Participant, RoomEvent, RoomOptions};

mod media;
mod negotiation;
mod participants;
mod resume;

use media::{LocalTrack, RemoteTrack};
use negotiation::{add_track_request, Negotiation, PendingPublish};
use resume::{first_response, recv_reconnect, Keepalive, ReconnectResult};

const FRAME: Duration = Duration::from_millis(20);

/// What the `Room` handle asks of its engine.
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
    SendDtmf {
        digit: char,
    },
    /// Data packets built by the caller (a text stream's header, chunks or trailer), in order.
    SendPackets(Vec<proto::DataPacket>),
    /// Set (or, with an empty value, remove) our own participant attributes.
    SetAttributes(HashMap<String, String>),
    Leave {
        reply: oneshot::Sender<()>,
    },
    DropSignal,
}

/// A joined room: the engine to run, and who we are in it.
pub(crate) struct Joined {
    pub(crate) engine: Engine,
    pub(crate) identity: String,
    pub(crate) sid: String,
    pub(crate) room_name: String,
}

/// What woke the engine's loop.
enum Wake {
    Command(Option<Command>),
    Signal(SignalInput),
    Reconnected(ReconnectResult),
    Udp(Role, Option<(usize, std::net::SocketAddr)>),
    Timer,
}

/// One room's state, owned by its task.
pub(crate) struct Engine {
    // The room and the handle's channels.
    base_url: String,
    token: Token,
    opts: RoomOptions,
    cmd_rx: mpsc::Receiver<Command>,
    events: mpsc::Sender<RoomEvent>,
    /// Events waiting for room in the events channel (never dropped).
    event_backlog: VecDeque<RoomEvent>,
    identity: String,
    sid: String,
    closed: bool,
    leave_reply: Option<oneshot::Sender<()>>,
    // Signalling: the connection, and what waits for it while it is resumed (`resume`).
    sig: Option<SignalConn>,
    sig_backlog: Vec<Req>,
    reconnect: Option<oneshot::Receiver<ReconnectResult>>,
    keepalive: Keepalive,
    // The peer connections and their negotiation (`negotiation`).
    sub: Peer,
    publ: Peer,
    negotiation: Negotiation,
    bind_ip: std::net::IpAddr,
    loopback_only: bool,
    // Participants and remote tracks (`participants`, `media`).
    participants: HashMap<String, Participant>,
    track_names: HashMap<String, String>,
    remote: HashMap<Mid, RemoteTrack>,
    decode_buf: Vec<i16>,
    // Local tracks (`negotiation` publishes them, `media` sends them).
    local: Vec<LocalTrack>,
    pending_publish: HashMap<String, PendingPublish>,
    /// cid of a track published again after a rejoin → its index in `local`.
    republish: HashMap<String, usize>,
    cid_counter: u64,
    /// Of the last request the server answers with a `RequestResponse` (attribute updates).
    request_id: u32,
    next_tick: Instant,
    encode_buf: Vec<u8>,
    // Data channels (`media`).
    /// Data packets waiting for the reliable channel to open.
    data_backlog: Vec<Vec<u8>>,
    data_rx: DataReceiver,
}

/// Whether the server's host is this machine (then only loopback is bound and advertised).
fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    h.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// Now, in ms since the epoch (pings, text stream headers).
pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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
            negotiation: Negotiation::default(),
            data_backlog: Vec::new(),
            data_rx: DataReceiver::default(),
            keepalive: Keepalive::new(&join, now),
            next_tick: now + FRAME,
            cid_counter: 0,
            request_id: 0,
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
                .min(self.keepalive.next_ping);
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
            if now >= self.keepalive.next_ping {
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

    pub(super) fn emit(&mut self, ev: RoomEvent) {
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

    pub(super) fn send_signal(&mut self, msg: Req) {
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
            Command::SendDtmf { digit } => {
                if let Some(packet) = data::dtmf_packet(&self.identity, digit) {
                    self.send_data_packet(packet);
                }
            }
            Command::SendPackets(packets) => {
                for packet in packets {
                    self.send_data_packet(packet);
                }
            }
            Command::SetAttributes(attributes) => {
                self.request_id += 1;
                self.send_signal(Req::UpdateMetadata(proto::UpdateParticipantMetadata {
                    attributes,
                    request_id: self.request_id,
                    ..Default::default()
                }));
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

    pub(super) fn fail(&mut self, reason: String) {
        self.closed = true;
        self.sub.rtc.disconnect();
        self.publ.rtc.disconnect();
        self.emit(RoomEvent::Disconnected { reason });
    }
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
}
