//! The public face of a joined room: `Room`, a handle that sends commands to the room's
//! engine task (its options and events are in `types.rs`).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::audio::LocalAudioTrack;
use crate::engine::{Command, Engine};
use crate::error::RoomError;
use crate::secret::Token;
use crate::text_stream::{TextStreamOptions, TextStreamWriter};
use crate::types::{RoomEvent, RoomOptions};
use std::collections::HashMap;

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

    /// Opens a text stream (LiveKit data streams: header now, chunks as written, trailer on
    /// close); see [`TextStreamOptions`] for the topic, attributes and sender.
    pub async fn stream_text(
        &self,
        options: TextStreamOptions,
    ) -> Result<TextStreamWriter, RoomError> {
        TextStreamWriter::open(self.cmd.clone(), &self.identity, &self.sid, options).await
    }

    /// Sends `text` as one whole text stream.
    pub async fn send_text(&self, text: &str, options: TextStreamOptions) -> Result<(), RoomError> {
        let mut writer = self.stream_text(options).await?;
        writer.write(text).await?;
        writer.close(HashMap::new()).await
    }

    /// Sets our own participant attributes (an empty value removes one); others see them change
    /// as `AttributesChanged`. Needs a token that allows it (`canUpdateOwnMetadata`, as
    /// [`crate::agent_token`] gives); the server's refusal is only logged.
    pub async fn set_attributes(
        &self,
        attributes: HashMap<String, String>,
    ) -> Result<(), RoomError> {
        self.cmd
            .send(Command::SetAttributes(attributes))
            .await
            .map_err(|_| RoomError::Closed)
    }

    /// Press keypad keys (`0-9`, `*`, `#`, `A-D`) towards the room's phone participants:
    /// livekit-sip plays each as an RFC 4733 event. Other characters are skipped.
    pub async fn send_dtmf(&self, digits: &str) -> Result<(), RoomError> {
        for digit in digits.chars() {
            self.cmd
                .send(Command::SendDtmf { digit })
                .await
                .map_err(|_| RoomError::Closed)?;
        }
        Ok(())
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
