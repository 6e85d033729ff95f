//! Keeping the session: pings and their timeout, and when signalling drops, resuming it in the
//! background (`reconnect=1`, with backoff) while media keeps flowing over UDP — or, when the
//! server no longer knows us, rejoining with a new session: new peer connections, remote tracks
//! started over, local tracks published again, participants reconciled.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;
use tokio::sync::oneshot;

use super::media::RemoteTrack;
use super::negotiation::{add_track_request, Negotiation};
use super::{unix_ms, Engine};
use crate::error::RoomError;
use crate::peer::{Peer, Role};
use crate::secret::Token;
use crate::signal::{self, SignalConn, SignalInput};
use crate::types::RoomEvent;

/// How signalling came back: the same session resumed, or a new one (the server had
/// forgotten us, e.g. after a restart) that needs fresh peer connections.
pub(super) enum Restored {
    Resumed(SignalConn),
    Rejoined(SignalConn, Box<proto::JoinResponse>),
}

pub(super) type ReconnectResult = Result<Restored, RoomError>;

/// Pings on the signalling connection, and when the server was last heard.
pub(super) struct Keepalive {
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
    pub(super) next_ping: Instant,
    pub(super) last_pong: Instant,
}

impl Keepalive {
    /// The server's ping interval and timeout from its join response, clamped to sane bounds.
    pub(super) fn new(join: &proto::JoinResponse, now: Instant) -> Keepalive {
        let interval = Duration::from_secs(join.ping_interval.clamp(1, 60) as u64);
        Keepalive {
            interval,
            timeout: Duration::from_secs(join.ping_timeout.clamp(2, 120) as u64),
            next_ping: now + interval,
            last_pong: now,
        }
    }
}

impl Engine {
    pub(super) fn signal_lost(&mut self, reason: String) {
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

    pub(super) fn handle_reconnected(&mut self, res: ReconnectResult) {
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
        self.keepalive.last_pong = now;
        self.keepalive.next_ping = now;
        self.emit(RoomEvent::Reconnected);
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
        self.negotiation = Negotiation::default();
        self.data_rx.clear();
        self.keepalive = Keepalive::new(&join, Instant::now());
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

    pub(super) fn ping(&mut self, now: Instant) {
        self.keepalive.next_ping = now + self.keepalive.interval;
        if self.sig.is_none() {
            return;
        }
        if now.duration_since(self.keepalive.last_pong) > self.keepalive.timeout {
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
}

/// Wait for the first message of a fresh connection.
pub(super) async fn first_response(
    conn: &mut SignalConn,
) -> Result<Box<proto::SignalResponse>, RoomError> {
    match conn.rx.recv().await {
        Some(SignalInput::Response(r)) => Ok(r),
        Some(SignalInput::Closed(reason)) => Err(RoomError::Signal(reason)),
        None => Err(RoomError::Signal("connection closed".into())),
    }
}

pub(super) async fn recv_reconnect(
    rx: &mut Option<oneshot::Receiver<ReconnectResult>>,
) -> ReconnectResult {
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
