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

/// Whether a bot takes calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BotStatus {
    Active,
    Disabled,
}

str_enum!(BotStatus { Active => "active", Disabled => "disabled" });

/// Where a knowledge document is in its indexing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentStatus {
    Pending,
    Indexing,
    Ready,
    Failed,
}

str_enum!(DocumentStatus {
    Pending => "pending",
    Indexing => "indexing",
    Ready => "ready",
    Failed => "failed",
});

/// Where a webhook delivery is: waiting for its next attempt, delivered, or given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

str_enum!(DeliveryStatus {
    Pending => "pending",
    Delivered => "delivered",
    Failed => "failed",
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
    /// Why, as data: the rule that decided it, the events, fields and turns it rests on. What
    /// follows from the outcome (its webhook events) is read from here, never from words.
    #[serde(default, deserialize_with = "evidence_list")]
    pub evidence: Vec<Evidence>,
}

impl Outcome {
    /// The index in the bot's `outcome_rules` of the rule that decided the outcome, if one did.
    pub fn rule(&self) -> Option<usize> {
        self.evidence.iter().find_map(|e| match e {
            Evidence::Rule { index } => Some(*index),
            _ => None,
        })
    }

    /// The scenario events (`on_complete`) the outcome rests on, in order, once each.
    pub fn events(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for e in &self.evidence {
            let event = match e {
                Evidence::Event { event, .. } => Some(event.as_str()),
                Evidence::ScenarioCompleted { event, .. } => event.as_deref(),
                _ => None,
            };
            if let Some(event) = event.filter(|e| !out.contains(e)) {
                out.push(event);
            }
        }
        out
    }

    /// Whether the call was handed to a person, by the outcome or its evidence.
    pub fn transferred(&self) -> bool {
        self.kind == "TRANSFERRED"
            || self
                .evidence
                .iter()
                .any(|e| matches!(e, Evidence::Transferred { .. }))
    }
}

/// One fact an outcome rests on. Serialised with its `kind` (`{"kind": "event", "turn": 5,
/// "event": "booking_created", "scenario": "booking"}`); [`Display`](std::fmt::Display) says it
/// in words for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    /// The bot's `outcome_rules[index]` held.
    Rule { index: usize },
    /// A scenario's `on_complete` event fired.
    Event {
        turn: u32,
        event: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scenario: Option<String>,
    },
    /// A scenario was completed (with its `on_complete` event, when it has one).
    ScenarioCompleted {
        turn: u32,
        scenario: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
    },
    /// A scenario was entered (and, when `completed` is false, left unfinished).
    ScenarioEntered {
        turn: u32,
        scenario: String,
        completed: bool,
    },
    /// A field was collected.
    Field {
        turn: u32,
        name: String,
        value: String,
    },
    /// The caller was handed to a person.
    Transferred { turn: u32 },
    /// The caller asked to be called back.
    CallbackRequested { turn: u32 },
    /// A question was answered (from the documents or the scenario).
    QuestionAnswered { turn: u32 },
    /// The caller never spoke.
    NoCallerSpeech,
    /// Contact details were left without a request being completed.
    ContactLeft,
    /// No request was recognised.
    NoRequest,
    /// Nothing else decided: the bot's `default_outcome`.
    DefaultOutcome,
    /// Anything else, in words: why a call could not run; evidence stored before it was data.
    Note { text: String },
}

impl Evidence {
    pub fn note(text: impl Into<String>) -> Evidence {
        Evidence::Note { text: text.into() }
    }
}

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Evidence::Rule { index } => write!(f, "rule outcome_rules[{index}]"),
            Evidence::Event { turn, event, .. } => write!(f, "turn {turn}: event {event}"),
            Evidence::ScenarioCompleted {
                turn,
                scenario,
                event: Some(event),
            } => write!(
                f,
                "turn {turn}: scenario {scenario} completed, event {event}"
            ),
            Evidence::ScenarioCompleted { turn, scenario, .. } => {
                write!(f, "turn {turn}: scenario {scenario} completed")
            }
            Evidence::ScenarioEntered {
                turn,
                scenario,
                completed: true,
            } => write!(f, "turn {turn}: scenario {scenario} entered"),
            Evidence::ScenarioEntered { turn, scenario, .. } => {
                write!(
                    f,
                    "turn {turn}: scenario {scenario} entered but not completed"
                )
            }
            Evidence::Field { turn, name, value } => {
                write!(f, "turn {turn}: field {name} = {value}")
            }
            Evidence::Transferred { turn } => write!(f, "turn {turn}: transferred to a person"),
            Evidence::CallbackRequested { turn } => {
                write!(f, "turn {turn}: the caller asked to be called back")
            }
            Evidence::QuestionAnswered { turn } => write!(f, "turn {turn}: question answered"),
            Evidence::NoCallerSpeech => f.write_str("the caller said nothing"),
            Evidence::ContactLeft => {
                f.write_str("contact details left without completing a request")
            }
            Evidence::NoRequest => f.write_str("no request recognised"),
            Evidence::DefaultOutcome => f.write_str("default_outcome"),
            Evidence::Note { text } => f.write_str(text),
        }
    }
}

/// Evidence as stored or queued: facts, or (from before evidence was data) plain words, which
/// are kept as notes.
fn evidence_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Evidence>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum FactOrWords {
        Fact(Evidence),
        Words(String),
    }
    let items = Vec::<FactOrWords>::deserialize(d)?;
    Ok(items
        .into_iter()
        .map(|item| match item {
            FactOrWords::Fact(e) => e,
            FactOrWords::Words(text) => Evidence::Note { text },
        })
        .collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each status's text in the database is its JSON in the API, and parses back.
    fn check_texts<T>(all: &[T], as_str: fn(T) -> &'static str, parse: fn(&str) -> Option<T>)
    where
        T: Copy + PartialEq + std::fmt::Debug + Serialize,
    {
        for &v in all {
            assert_eq!(serde_json::to_value(v).unwrap(), as_str(v), "{v:?}");
            assert_eq!(parse(as_str(v)), Some(v));
        }
        assert_eq!(parse("Active "), None);
    }

    #[test]
    fn status_texts_agree_with_serde() {
        check_texts(
            CallDirection::ALL,
            CallDirection::as_str,
            CallDirection::parse,
        );
        check_texts(CallStatus::ALL, CallStatus::as_str, CallStatus::parse);
        check_texts(BotStatus::ALL, BotStatus::as_str, BotStatus::parse);
        check_texts(
            DocumentStatus::ALL,
            DocumentStatus::as_str,
            DocumentStatus::parse,
        );
        check_texts(
            DeliveryStatus::ALL,
            DeliveryStatus::as_str,
            DeliveryStatus::parse,
        );
    }

    fn outcome(kind: &str, evidence: Vec<Evidence>) -> Outcome {
        Outcome {
            kind: kind.into(),
            evidence,
        }
    }

    #[test]
    fn evidence_is_data_and_reads_old_words() {
        let o = outcome(
            "BOOKING",
            vec![
                Evidence::Rule { index: 0 },
                Evidence::Event {
                    turn: 5,
                    event: "booking_created".into(),
                    scenario: Some("booking".into()),
                },
                Evidence::Field {
                    turn: 4,
                    name: "phone".into(),
                    value: "+79161234567".into(),
                },
            ],
        );
        let json = serde_json::to_value(&o).unwrap();
        assert_eq!(
            json["evidence"][1],
            serde_json::json!({"kind": "event", "turn": 5, "event": "booking_created", "scenario": "booking"})
        );
        assert_eq!(
            json["evidence"][0],
            serde_json::json!({"kind": "rule", "index": 0})
        );
        assert_eq!(serde_json::from_value::<Outcome>(json).unwrap(), o);
        // Records and rows from before: words become notes, never events.
        let old: Outcome = serde_json::from_value(serde_json::json!({
            "kind": "BOOKING",
            "evidence": ["turn 5: scenario booking completed, event booking_created"]
        }))
        .unwrap();
        assert_eq!(
            old.evidence,
            vec![Evidence::note(
                "turn 5: scenario booking completed, event booking_created"
            )]
        );
        assert!(old.events().is_empty());
        let bare: Outcome = serde_json::from_value(serde_json::json!({"kind": "LEAD"})).unwrap();
        assert!(bare.evidence.is_empty());
    }

    #[test]
    fn events_rule_and_transfer_come_from_the_facts() {
        let o = outcome(
            "LEAD",
            vec![
                Evidence::Rule { index: 2 },
                Evidence::ScenarioCompleted {
                    turn: 3,
                    scenario: "lead".into(),
                    event: Some("lead_captured".into()),
                },
                Evidence::Event {
                    turn: 3,
                    event: "lead_captured".into(),
                    scenario: None,
                },
                Evidence::ScenarioCompleted {
                    turn: 4,
                    scenario: "faq".into(),
                    event: None,
                },
                Evidence::note("turn 9: event fake_one, transferred"),
            ],
        );
        assert_eq!(o.rule(), Some(2));
        assert_eq!(o.events(), vec!["lead_captured"]);
        assert!(!o.transferred(), "words are not facts");
        assert!(outcome("TRANSFERRED", vec![]).transferred());
        assert!(outcome("BOOKING", vec![Evidence::Transferred { turn: 2 }]).transferred());
        assert_eq!(outcome("INFO_ONLY", vec![]).rule(), None);
    }

    #[test]
    fn evidence_in_words() {
        for (e, words) in [
            (Evidence::Rule { index: 1 }, "rule outcome_rules[1]"),
            (
                Evidence::ScenarioCompleted {
                    turn: 5,
                    scenario: "booking".into(),
                    event: Some("booking_created".into()),
                },
                "turn 5: scenario booking completed, event booking_created",
            ),
            (
                Evidence::ScenarioEntered {
                    turn: 2,
                    scenario: "booking".into(),
                    completed: false,
                },
                "turn 2: scenario booking entered but not completed",
            ),
            (
                Evidence::Field {
                    turn: 4,
                    name: "phone".into(),
                    value: "+1".into(),
                },
                "turn 4: field phone = +1",
            ),
            (Evidence::NoCallerSpeech, "the caller said nothing"),
            (Evidence::note("no caller joined"), "no caller joined"),
        ] {
            assert_eq!(e.to_string(), words);
        }
    }
}
