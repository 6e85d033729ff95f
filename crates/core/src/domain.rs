//! Records that cross service boundaries: a finished call, its turns and per-turn latencies.
//! They are plain serde types so the agent, the post-call consumer and the store agree on them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Who started the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallDirection {
    Inbound,
    Outbound,
    Web,
}

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    Queued,
    Ringing,
    InProgress,
    Completed,
    Failed,
    NoAnswer,
}

macro_rules! str_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($ty::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

str_enum!(CallDirection { Inbound => "inbound", Outbound => "outbound", Web => "web" });
str_enum!(CallStatus {
    Queued => "queued",
    Ringing => "ringing",
    InProgress => "in_progress",
    Completed => "completed",
    Failed => "failed",
    NoAnswer => "no_answer",
});

/// Who spoke a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    Bot,
    User,
}

/// One utterance in a call's transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub speaker: Speaker,
    pub text: String,
    /// Milliseconds since the call started.
    #[serde(default)]
    pub at_ms: u64,
    /// True when the caller barged in and only part of `text` was heard.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// Latencies of one bot reply, in milliseconds. Missing stages are `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnMetrics {
    pub turn: u32,
    pub end_of_utterance_ms: Option<u32>,
    pub stt_final_ms: Option<u32>,
    pub llm_first_token_ms: Option<u32>,
    pub tts_first_byte_ms: Option<u32>,
    pub voice_to_voice_ms: Option<u32>,
    /// How the caller's turn was judged over: `stt` (the recognizer's endpoint), `silence`
    /// (`max_endpointing` without one), `dtmf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// When the end-of-turn model was asked about the endpoint that ended the turn, and when it
    /// answered, counted like `end_of_utterance_ms` from the caller's last voice; and the
    /// probability it gave that the caller had finished. Absent without a model; no answer
    /// means the turn was held until `max_endpointing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_turn_asked_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_turn_answered_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_turn_probability: Option<f32>,
}

/// What the call achieved, with the evidence that decided it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// `BOOKING`, `LEAD`, `INFO_ONLY`, … or a company's own UPPER_SNAKE name.
    pub kind: String,
    /// Why: the rule or event that decided it, the turns and fields it rests on.
    #[serde(default)]
    pub evidence: Vec<String>,
}

/// Outcomes every bot understands without configuring them.
pub const STANDARD_OUTCOMES: &[&str] = &[
    "LEAD",
    "BOOKING",
    "CALLBACK",
    "INFO_ONLY",
    "TRANSFERRED",
    "NO_ANSWER",
    "ABANDONED",
    "FAILED",
];

/// A finished (or failed) call as the agent hands it to post-call processing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub id: String,
    pub company_id: String,
    pub bot_id: String,
    pub bot_config_version: i64,
    pub direction: CallDirection,
    pub status: CallStatus,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub room: Option<String>,
    /// Unix milliseconds.
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub language: Option<String>,
    pub transcript: Vec<Turn>,
    pub fields: BTreeMap<String, String>,
    pub outcome: Option<Outcome>,
    pub summary: Option<String>,
    pub metrics: Vec<TurnMetrics>,
}

impl CallRecord {
    /// Duration in whole seconds, once the call has ended.
    pub fn duration_sec(&self) -> Option<i64> {
        self.ended_at
            .map(|end| ((end - self.started_at).max(0)) / 1000)
    }
}
