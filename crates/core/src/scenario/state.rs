//! What the scenario engine remembers about a call and what it reports: the call's context, the
//! checkpointable [`EngineState`], a turn's [`TurnOutput`] and [`Action`]s, the [`CallResult`].
//! Plain serde values, so a call is checkpointed after every turn and resumed elsewhere; outcome
//! rules read them without knowing the engine.

use crate::config::BotConfig;
use crate::domain::{Outcome, Turn};
use crate::text::Language;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the engine knows about the call from outside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallContext {
    /// When the call started; "tomorrow" is relative to this, in `timezone`.
    pub now: DateTime<Utc>,
    #[serde(with = "tz_name")]
    pub timezone: Tz,
    /// ISO country for phone numbers said without a country code (`RU`, `US`).
    pub region: Option<String>,
    /// The config version this call runs on; a running call keeps it across reloads.
    pub config_version: i64,
}

mod tz_name {
    use chrono_tz::Tz;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(tz.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Tz, D::Error> {
        let name = String::deserialize(d)?;
        name.parse()
            .map_err(|_| serde::de::Error::custom(format!("unknown timezone {name:?}")))
    }
}

impl CallContext {
    /// The context a bot's own settings imply: its timezone (else Moscow for Russian bots,
    /// UTC otherwise) and the phone region of its language.
    pub fn for_bot(config: &BotConfig, now: DateTime<Utc>) -> Self {
        let lang = Language::from_code(&config.language);
        let timezone = config
            .timezone
            .as_deref()
            .and_then(|tz| tz.parse().ok())
            .unwrap_or(if lang == Some(Language::Ru) {
                chrono_tz::Europe::Moscow
            } else {
                chrono_tz::UTC
            });
        let region = match lang {
            Some(Language::Ru) => Some("RU".to_string()),
            Some(Language::En) => Some("US".to_string()),
            None => None,
        };
        CallContext {
            now,
            timezone,
            region,
            config_version: 0,
        }
    }

    /// [`CallContext::for_bot`] for a call starting now.
    pub fn for_bot_now(config: &BotConfig) -> Self {
        Self::for_bot(config, Utc::now())
    }

    /// An RFC 3339 instant (`2025-03-12T10:00:00+03:00`), for tools that take the call's
    /// start as text so that "tomorrow" is reproducible.
    pub fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The call's local date.
    pub fn today(&self) -> NaiveDate {
        self.now.with_timezone(&self.timezone).date_naive()
    }
}

/// Something that happened in a turn, for the pipeline and the call record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    ScenarioEntered {
        scenario: String,
    },
    FieldCollected {
        field: String,
        value: String,
    },
    FieldRejected {
        field: String,
        reason: String,
    },
    ConfirmationRequested {
        scenario: String,
    },
    Completed {
        scenario: String,
        event: Option<String>,
    },
    KnowledgeAnswered {
        sources: Vec<String>,
    },
    LanguageChanged {
        language: String,
    },
    CallbackRequested,
    /// Hand the call to a person.
    Transfer,
    /// Hang up after saying the reply.
    EndCall,
}

/// The bot's reply to a turn and what happened in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnOutput {
    pub reply: String,
    pub actions: Vec<Action>,
    /// How much of `reply` was handed to a live listener already ([`ScenarioEngine::process_turn_live`]).
    #[serde(skip)]
    pub(super) live_sent: usize,
}

/// Where a turn's reply goes while the turn is still being worked out (a voice call's TTS): the
/// pieces, joined, are the reply.
pub type LiveText = Arc<dyn Fn(&str) + Send + Sync>;

impl TurnOutput {
    pub fn ends_call(&self) -> bool {
        self.actions
            .iter()
            .any(|a| matches!(a, Action::EndCall | Action::Transfer))
    }

    pub(super) fn say(&mut self, text: impl AsRef<str>) {
        let text = text.as_ref().trim();
        if text.is_empty() {
            return;
        }
        if !self.reply.is_empty() {
            self.reply.push(' ');
        }
        self.reply.push_str(text);
    }
}

/// A field value and the user turn (1-based) it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectedField {
    pub value: String,
    pub turn: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnteredScenario {
    pub scenario: String,
    pub turn: u32,
    pub collects_fields: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletedScenario {
    pub scenario: String,
    pub event: Option<String>,
    pub turn: u32,
    pub fields: Vec<String>,
}

/// Where the active scenario is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Collecting,
    /// The values were read back; waiting for a yes or a correction.
    Confirming,
    /// The caller said no; waiting to hear what to change.
    Correcting,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveScenario {
    pub scenario: String,
    pub phase: Phase,
    /// The field the bot asked for last.
    pub pending: Option<String>,
    /// How many times `pending` was asked without an answer.
    pub retries: u32,
    /// Optional fields asked once and not answered.
    #[serde(default)]
    pub skipped: Vec<String>,
}

/// Everything the engine remembers about a call; checkpointed after each turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    /// The language the bot speaks now.
    pub language: Language,
    pub transcript: Vec<Turn>,
    pub fields: BTreeMap<String, CollectedField>,
    pub active: Option<ActiveScenario>,
    pub entered: Vec<EnteredScenario>,
    pub completed: Vec<CompletedScenario>,
    /// User turns whose question was answered from knowledge.
    pub answered: Vec<u32>,
    /// The user turn in which the call was handed to a person.
    pub transferred: Option<u32>,
    pub callback_requested: Option<u32>,
    pub ended: bool,
    pub user_turns: u32,
    /// Utterances heard per language code, to report the call's language.
    pub language_votes: BTreeMap<String, u32>,
}

/// A call's engine, frozen for a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineSnapshot {
    pub context: CallContext,
    pub state: EngineState,
}

/// A finished call as the engine saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallResult {
    pub transcript: Vec<Turn>,
    pub fields: BTreeMap<String, String>,
    pub outcome: Outcome,
    /// The caller's language (`ru`, `en`), else the bot's.
    pub language: String,
    /// How many times the caller spoke.
    pub turns: u32,
    pub config_version: i64,
    pub state: EngineState,
}
