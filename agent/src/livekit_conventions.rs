//! What LiveKit's clients and front-end components read off an agent, as LiveKit Agents
//! publishes it: the `lk.agent.state` attribute (`initializing` in the join token, then
//! `listening`, `thinking`, `speaking` as they change), and transcriptions as text streams on
//! `lk.transcription`. The caller's words go out on the caller's behalf, a whole stream for each
//! interim and for the final of a segment (which keep the segment's id); the agent's own words
//! are one stream per utterance, opened when its audio starts, written word by word as the audio
//! plays, and closed with the rest of what was said (what the caller heard, when they cut in) and
//! `lk.transcription_final: true`. Each names the
//! track the speech came from. Failures to send are logged, never the call's end.

use std::collections::HashMap;

use callfleet_pipeline::AgentState;
use callfleet_rtc::{Room, TextStreamOptions, TextStreamWriter};

pub(crate) const AGENT_STATE: &str = "lk.agent.state";
/// The state an agent joins in, before its conversation starts.
pub(crate) const INITIALIZING: &str = "initializing";
const TRANSCRIPTION_TOPIC: &str = "lk.transcription";
const SEGMENT_ID: &str = "lk.segment_id";
const TRACK_ID: &str = "lk.transcribed_track_id";
const FINAL: &str = "lk.transcription_final";

/// Sets our own `lk.agent.state` when it changes.
pub(crate) struct AgentStatus {
    room: Room,
    current: Option<AgentState>,
}

impl AgentStatus {
    pub(crate) fn new(room: Room) -> AgentStatus {
        AgentStatus {
            room,
            current: None,
        }
    }

    pub(crate) async fn set(&mut self, state: AgentState) {
        if self.current == Some(state) {
            return;
        }
        self.current = Some(state);
        let attributes = HashMap::from([(AGENT_STATE.to_string(), state.as_str().to_string())]);
        if let Err(e) = self.room.set_attributes(attributes).await {
            tracing::debug!(error = %e, "Could not set the agent's state.");
        }
    }
}

/// The call's transcriptions, as LiveKit's clients read them.
pub(crate) struct Transcriptions {
    room: Room,
    caller: String,
    caller_track: String,
    agent_track: String,
    /// The caller's open segment: its id and the words last sent for it.
    caller_segment: Option<(String, String)>,
    /// The agent's utterance being spoken, and its words written to it so far.
    agent_segment: Option<(TextStreamWriter, String)>,
    segments: u64,
}

impl Transcriptions {
    pub(crate) fn new(
        room: Room,
        caller: String,
        caller_track: String,
        agent_track: String,
    ) -> Transcriptions {
        Transcriptions {
            room,
            caller,
            caller_track,
            agent_track,
            caller_segment: None,
            agent_segment: None,
            segments: 0,
        }
    }

    /// Unique in the room: our participant id is new with every join (a worker that takes the
    /// call over gets its own).
    fn next_segment_id(&mut self) -> String {
        self.segments += 1;
        format!("SG_{}_{}", self.room.sid(), self.segments)
    }

    /// The recognizer's words for the caller's current segment. A final settles the segment
    /// (an empty final, with the words last heard); the next words start another.
    pub(crate) async fn caller_heard(&mut self, text: &str, is_final: bool) {
        let text = text.trim();
        let (id, last) = match self.caller_segment.take() {
            Some(open) => open,
            None if text.is_empty() => return,
            None => (self.next_segment_id(), String::new()),
        };
        let text = if text.is_empty() {
            last
        } else {
            text.to_string()
        };
        let options = TextStreamOptions {
            topic: TRANSCRIPTION_TOPIC.into(),
            attributes: attributes(&id, &self.caller_track, is_final),
            sender_identity: Some(self.caller.clone()),
        };
        if let Err(e) = self.room.send_text(&text, options).await {
            tracing::debug!(error = %e, "Could not send the caller's transcription.");
        }
        if !is_final {
            self.caller_segment = Some((id, text));
        }
    }

    /// The agent's audio started: its utterance's stream opens.
    pub(crate) async fn agent_speaking(&mut self) {
        if self.agent_segment.is_some() {
            return;
        }
        let id = self.next_segment_id();
        let options = TextStreamOptions {
            topic: TRANSCRIPTION_TOPIC.into(),
            attributes: attributes(&id, &self.agent_track, false),
            sender_identity: None,
        };
        match self.room.stream_text(options).await {
            Ok(writer) => self.agent_segment = Some((writer, String::new())),
            Err(e) => tracing::debug!(error = %e, "Could not open the agent's transcription."),
        }
    }

    /// The agent's words as they are played: written to its utterance's stream.
    pub(crate) async fn agent_saying(&mut self, words: &str) {
        self.agent_speaking().await;
        if let Some((writer, written)) = self.agent_segment.as_mut() {
            match writer.write(words).await {
                Ok(()) => written.push_str(words),
                Err(e) => tracing::debug!(error = %e, "Could not send the agent's words."),
            }
        }
    }

    /// What the agent said in the utterance now over (only what was heard, when cut off): the
    /// rest of it written, and the stream closed as final.
    pub(crate) async fn agent_said(&mut self, text: &str) {
        if self.agent_segment.is_none() {
            if text.trim().is_empty() {
                // Cut off before a word was heard: nothing to show.
                return;
            }
            self.agent_speaking().await;
        }
        let Some((mut writer, written)) = self.agent_segment.take() else {
            return;
        };
        let fin = HashMap::from([
            (FINAL.to_string(), "true".to_string()),
            (TRACK_ID.to_string(), self.agent_track.clone()),
        ]);
        // What was shown as it played is a prefix of what was said; a stream cannot take words
        // back, so nothing else is added when it is not.
        let rest = text.strip_prefix(written.as_str()).unwrap_or_default();
        let sent = match writer.write(rest).await {
            Ok(()) => writer.close(fin).await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "Could not send the agent's transcription.");
        }
    }
}

fn attributes(segment: &str, track: &str, is_final: bool) -> HashMap<String, String> {
    HashMap::from([
        (SEGMENT_ID.to_string(), segment.to_string()),
        (TRACK_ID.to_string(), track.to_string()),
        (FINAL.to_string(), is_final.to_string()),
    ])
}
