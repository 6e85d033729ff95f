//! What a room is joined with and what it reports: `RoomOptions`, `Participant`, `RoomEvent`.
//! Plain values, shared by the `Room` handle, the engine task that emits the events and the data
//! packet decoder.

use std::collections::HashMap;
use std::time::Duration;

use crate::audio::AudioStream;

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
