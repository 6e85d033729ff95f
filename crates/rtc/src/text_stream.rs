//! Sending LiveKit text streams (header, chunks, trailer on the reliable data channel): what
//! agents publish transcriptions and chat with. A [`TextStreamWriter`] sends the text as it comes
//! (a delta stream); readers see the header's attributes merged with the trailer's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::data;
use crate::engine::{unix_ms, Command};
use crate::error::RoomError;

/// How to open a text stream.
#[derive(Clone, Debug, Default)]
pub struct TextStreamOptions {
    /// The topic readers register for (`lk.transcription`, `lk.chat`, …).
    pub topic: String,
    /// Sent with the header.
    pub attributes: HashMap<String, String>,
    /// The participant the stream is from, when not ourselves: an agent publishes a caller's
    /// transcription on the caller's behalf (livekit-server lets agents do that).
    pub sender_identity: Option<String>,
}

/// An open text stream. Text written goes out at once; [`TextStreamWriter::close`] ends it.
/// Dropped unclosed, it is closed with the reason `interrupted`.
pub struct TextStreamWriter {
    cmd: mpsc::Sender<Command>,
    identity: String,
    stream_id: String,
    next_chunk: u64,
    closed: bool,
}

/// Stream ids unique within this process; the participant's sid makes them unique in the room.
static STREAM_COUNTER: AtomicU64 = AtomicU64::new(0);

impl TextStreamWriter {
    pub(crate) async fn open(
        cmd: mpsc::Sender<Command>,
        own_identity: &str,
        own_sid: &str,
        options: TextStreamOptions,
    ) -> Result<TextStreamWriter, RoomError> {
        let n = STREAM_COUNTER.fetch_add(1, Ordering::Relaxed);
        let stream_id = format!("TS_{own_sid}_{}_{n}", unix_ms());
        let identity = options
            .sender_identity
            .unwrap_or_else(|| own_identity.to_string());
        let header = data::stream_header(
            &identity,
            &stream_id,
            unix_ms(),
            &options.topic,
            options.attributes,
            None,
        );
        cmd.send(Command::SendPackets(vec![header]))
            .await
            .map_err(|_| RoomError::Closed)?;
        Ok(TextStreamWriter {
            cmd,
            identity,
            stream_id,
            next_chunk: 0,
            closed: false,
        })
    }

    /// The stream's id, as readers see it.
    pub fn id(&self) -> &str {
        &self.stream_id
    }

    /// Sends more of the text.
    pub async fn write(&mut self, text: &str) -> Result<(), RoomError> {
        if text.is_empty() {
            return Ok(());
        }
        let chunks = data::stream_chunks(&self.identity, &self.stream_id, self.next_chunk, text);
        self.next_chunk += chunks.len() as u64;
        self.cmd
            .send(Command::SendPackets(chunks))
            .await
            .map_err(|_| RoomError::Closed)
    }

    /// Ends the stream; `attributes` are added to (or replace) the header's.
    pub async fn close(mut self, attributes: HashMap<String, String>) -> Result<(), RoomError> {
        self.closed = true;
        let trailer = data::stream_trailer(&self.identity, &self.stream_id, attributes, "");
        self.cmd
            .send(Command::SendPackets(vec![trailer]))
            .await
            .map_err(|_| RoomError::Closed)
    }
}

impl Drop for TextStreamWriter {
    fn drop(&mut self) {
        if !self.closed {
            let trailer = data::stream_trailer(
                &self.identity,
                &self.stream_id,
                HashMap::new(),
                "interrupted",
            );
            let _ = self.cmd.try_send(Command::SendPackets(vec![trailer]));
        }
    }
}

impl std::fmt::Debug for TextStreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextStreamWriter")
            .field("stream_id", &self.stream_id)
            .field("identity", &self.identity)
            .finish()
    }
}
