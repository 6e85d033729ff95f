//! The public face of a joined room: `Room`, its options and its events.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::audio::{AudioStream, LocalAudioTrack};
use crate::engine::{Command, Engine};
use crate::error::RoomError;
use crate::secret::Token;

/// How to join.
#[derive(Clone, Debug)]
pub struct RoomOptions {
    /// Subscribe to every published track automatically (LiveKit's `auto_subscribe`).
    pub auto_subscribe: bool,
    /// Rate of the PCM that `AudioStream`s deliver (decoded natively at 8/12/16/24/48 kHz,
    /// resampled otherwise). `AudioStream::resampled` can change it per stream.
    pub sample_rate: u32,
    /// Bind and advertise only loopback addresses. `None`: decide from the URL's host.
    pub loopback_only: Option<bool>,
    /// Capacity of the event channel and of each audio stream (in 20 ms frames).
    pub buffer: usize,
    /// Opus encoder complexity, 0–10 (lower is cheaper).
    pub opus_complexity: i32,
    /// How long to keep trying to resume when the signalling connection drops.
    pub reconnect_timeout: Duration,
    /// How long to wait for the join and for the media path to connect.
    pub connect_timeout: Duration,
}

impl Default for RoomOptions {
    fn default() -> Self {
        Self {
            auto_subscribe: true,
            sample_rate: 48_000,
            loopback_only: None,
            buffer: 256,
            opus_complexity: 5,
            reconnect_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// What kind of participant someone is, as LiveKit labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParticipantKind {
    Standard,
    Ingress,
    Egress,
    Sip,
    Agent,
    Other,
}

impl ParticipantKind {
    pub(crate) fn from_proto(kind: i32) -> Self {
        match kind {
            0 => ParticipantKind::Standard,
            1 => ParticipantKind::Ingress,
            2 => ParticipantKind::Egress,
            3 => ParticipantKind::Sip,
            4 => ParticipantKind::Agent,
            _ => ParticipantKind::Other,
        }
    }
}

/// A remote participant as last seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Participant {
    pub sid: String,
    pub identity: String,
    pub name: String,
    pub kind: ParticipantKind,
    pub attributes: HashMap<String, String>,
    pub metadata: String,
}

/// Something that happened in the room.
#[derive(Debug)]
pub enum RoomEvent {
    ParticipantJoined(Participant),
    ParticipantLeft {
        identity: String,
    },
    AttributesChanged {
        identity: String,
        attributes: HashMap<String, String>,
    },
    /// A remote audio track is flowing; `stream` yields its decoded PCM.
    TrackSubscribed {
        participant: Participant,
        track_sid: String,
        track_name: String,
        stream: AudioStream,
    },
    TrackUnsubscribed {
        identity: String,
        track_sid: String,
    },
    /// Text on topic `lk.chat` (text stream, legacy chat packet or user packet).
    ChatMessage {
        from: String,
        text: String,
    },
    /// Any other user data packet.
    Data {
        from: String,
        topic: Option<String>,
        payload: Vec<u8>,
    },
    /// A DTMF digit from a SIP participant.
    Dtmf {
        from: String,
        code: u32,
        digit: String,
    },
    /// The signalling connection dropped; media keeps flowing while we resume.
    Reconnecting,
    /// Signalling is back.
    Reconnected,
    /// The room is gone for us; no more events follow.
    Disconnected {
        reason: String,
    },
}

/// A joined room. Cheap to clone; every clone drives the same participant.
#[derive(Clone)]
pub struct Room {
    cmd: mpsc::Sender<Command>,
    identity: String,
    sid: String,
    name: String,
}

impl Room {
    /// Join `url` (`ws://`, `wss://`, `http(s)://`) with an access token.
    pub async fn connect(
        url: &str,
        token: &str,
        options: RoomOptions,
    ) -> Result<(Room, mpsc::Receiver<RoomEvent>), RoomError> {
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(options.buffer.max(16));
        let timeout = options.connect_timeout;
        let joined = tokio::time::timeout(
            timeout,
            Engine::join(url, Token::new(token), options, cmd_rx, ev_tx),
        )
        .await
        .map_err(|_| RoomError::Timeout("the join response"))??;
        let room = Room {
            cmd: cmd_tx,
            identity: joined.identity.clone(),
            sid: joined.sid.clone(),
            name: joined.room_name.clone(),
        };
        // Many rooms share one process: every log line says which room it is about.
        let span =
            tracing::info_span!("room", name = %joined.room_name, identity = %joined.identity);
        tokio::spawn(tracing::Instrument::instrument(joined.engine.run(), span));
        Ok((room, ev_rx))
    }

    /// Our identity in the room.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Our participant id as of joining (a rejoin after a server restart gets a new one).
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Publish a microphone audio track whose frames are usually at `sample_rate`
    /// (any rate is accepted by `push`).
    pub async fn publish_audio(
        &self,
        name: &str,
        sample_rate: u32,
    ) -> Result<LocalAudioTrack, RoomError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Command::PublishAudio {
                name: name.to_string(),
                sample_rate,
                reply: tx,
            })
            .await
            .map_err(|_| RoomError::Closed)?;
        tokio::time::timeout(Duration::from_secs(15), rx)
            .await
            .map_err(|_| RoomError::Timeout("the track to be published"))?
            .map_err(|_| RoomError::Closed)?
    }

    /// Send chat text on topic `lk.chat` to everyone.
    pub async fn send_chat(&self, text: &str) -> Result<(), RoomError> {
        self.cmd
            .send(Command::SendChat {
                text: text.to_string(),
            })
            .await
            .map_err(|_| RoomError::Closed)
    }

    /// Send a user data packet (reliable) on `topic`.
    pub async fn send_data(&self, topic: &str, payload: Vec<u8>) -> Result<(), RoomError> {
        self.cmd
            .send(Command::SendData {
                topic: topic.to_string(),
                payload,
            })
            .await
            .map_err(|_| RoomError::Closed)
    }

    /// Leave the room and stop all media.
    pub async fn leave(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Leave { reply: tx }).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
    }

    /// Drop the signalling connection as a network failure would (tests and drills):
    /// the room resumes on its own.
    pub async fn simulate_signal_loss(&self) {
        let _ = self.cmd.send(Command::DropSignal).await;
    }
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .field("sid", &self.sid)
            .finish()
    }
}
