//! callfleet's own LiveKit participant, in pure Rust: it joins a room over the signalling
//! WebSocket (protobuf `SignalRequest`/`SignalResponse`), runs the subscriber and publisher
//! peer connections (str0m, sans-IO, one UDP socket each), decodes every remote audio track
//! into PCM frames and encodes local PCM into 20 ms Opus packets paced in real time, and
//! carries chat, DTMF and participant events over the data channels and signalling — chat and
//! transcriptions as LiveKit text streams, our own attributes (`lk.agent.state`) set through
//! signalling.
//! One task per room owns all of that state ([`Room`] talks to it over bounded channels);
//! a dropped signalling socket is resumed while media keeps flowing over UDP.
//!
//! **Architecture invariant:** the public API speaks only rooms, participants, PCM frames
//! and text. No SDP, ICE, RTP or Opus type (and no `livekit-protocol` type) appears in it,
//! so the media stack can be replaced without touching callers. Access tokens never reach
//! logs or `Debug` output; when the server is on loopback only loopback addresses are bound,
//! advertised or sent to, and the ICE servers the server suggests are ignored.

pub mod agent_worker;
mod audio;
mod data;
pub mod echo;
mod engine;
mod error;
mod peer;
mod playout;
mod room;
mod secret;
mod signal;
mod text_stream;
mod token;
mod types;

pub use audio::{
    process_send_stats, AudioFrame, AudioStream, LocalAudioTrack, SendStats, LATE_FRAME,
};
pub use error::RoomError;
pub use room::Room;
pub use text_stream::{TextStreamOptions, TextStreamWriter};
pub use token::{agent_token, participant_token};
pub use types::{Participant, ParticipantKind, RoomEvent, RoomOptions};
