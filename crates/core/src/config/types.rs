//! The typed bot config, as serde reads and writes it. [`super::schema::SCHEMA`] states the same
//! keys as a table (for messages with paths, and for the admin UI); a test checks they agree.

use serde::{Deserialize, Serialize};

/// A bot, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The language the bot starts in (`ru`, `en`, …).
    pub language: String,
    /// Other languages the bot may switch to when the caller speaks them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_id: Option<String>,
    /// IANA timezone used to resolve "tomorrow" and "at five"; the company's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    pub greeting: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub scenarios: Vec<Scenario>,
    pub fallback: String,
    #[serde(default = "default_max_turns")]
    pub max_turns: u32,
    #[serde(default = "default_silence_timeout")]
    pub silence_timeout_sec: u32,
    /// Where a phone caller who asks for a person is transferred (`+E.164`, `tel:…` or `sip:…`);
    /// without it the bot says a person will call back and hangs up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_to: Option<String>,
    #[serde(default)]
    pub providers: Providers,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outcome_rules: Vec<OutcomeRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_outcome: Option<String>,
    #[serde(default)]
    pub knowledge: KnowledgeSettings,
    /// Whether calls are recorded (off unless asked for) and how long recordings are kept.
    #[serde(default, skip_serializing_if = "RecordingSettings::is_off")]
    pub recording: RecordingSettings,
}

fn default_max_turns() -> u32 {
    20
}

fn default_silence_timeout() -> u32 {
    10
}

/// A goal the caller may have, found by its trigger keywords.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub trigger_keywords: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collect_fields: Vec<FieldSpec>,
    /// The event raised when every field is collected (and confirmed), e.g. `booking_created`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_complete: Option<String>,
    #[serde(default)]
    pub use_knowledge_base: bool,
    /// Read the collected values back and ask for a yes before completing. Default: on when the
    /// scenario collects fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_message: Option<String>,
    /// Put the caller through to the bot's `transfer_to` when the scenario completes (its fields
    /// collected, or at once when it collects none): a phone call is transferred (SIP REFER) and
    /// the call's outcome is TRANSFERRED.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transfer: bool,
}

/// One value a scenario collects from the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    pub prompt: String,
    /// Inferred from the name when absent (`phone`, `date`, `time`, `email`), else `text`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FieldKind>,
    #[serde(default = "default_true")]
    pub required: bool,
    /// Allowed values of an `enum` field (synonyms may follow a `|`: `haircut|стрижка`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Said when the caller's answer is not a valid value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_prompt: Option<String>,
}

fn default_true() -> bool {
    true
}

impl FieldSpec {
    /// The field's type, inferred from its name when the config does not say.
    pub fn kind(&self) -> FieldKind {
        self.kind
            .unwrap_or_else(|| FieldKind::infer_from_name(&self.name))
    }
}

/// How a field's value is recognised and validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    Text,
    Phone,
    Date,
    Time,
    Email,
    Number,
    Enum,
}

impl FieldKind {
    pub const NAMES: &'static [&'static str] =
        &["text", "phone", "date", "time", "email", "number", "enum"];

    /// The type a field named like this most likely has.
    pub fn infer_from_name(name: &str) -> FieldKind {
        let name = name.to_ascii_lowercase();
        let has = |words: &[&str]| {
            words.iter().any(|w| {
                name == *w || name.ends_with(&format!("_{w}")) || name.starts_with(&format!("{w}_"))
            })
        };
        if has(&["phone", "telephone", "mobile", "tel"]) {
            FieldKind::Phone
        } else if has(&["email", "mail"]) {
            FieldKind::Email
        } else if has(&["date", "day"]) {
            FieldKind::Date
        } else if has(&["time"]) {
            FieldKind::Time
        } else {
            FieldKind::Text
        }
    }
}

/// Which provider serves each stage, with fallbacks tried in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Providers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stt: Option<ProviderChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<ProviderChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tts: Option<ProviderChoice>,
}

/// A provider for one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderChoice {
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// LLM sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// LLM reply length cap, in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Tried in order when this provider fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<ProviderChoice>,
}

/// Providers callfleet knows, per stage.
pub const STT_PROVIDERS: &[&str] = &["deepgram", "whisper"];
pub const LLM_PROVIDERS: &[&str] = &["ollama", "openai", "local-llm"];
pub const TTS_PROVIDERS: &[&str] = &["cartesia", "elevenlabs", "deepgram-aura", "piper", "espeak"];

/// Maps what happened in a call to an outcome; the first rule whose conditions all hold wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRule {
    pub outcome: String,
    pub when: OutcomeCondition,
}

/// Conditions of an [`OutcomeRule`]; every one given must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeCondition {
    /// This scenario collected all its fields (and was confirmed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario_completed: Option<String>,
    /// The caller's intent matched this scenario at some point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario_entered: Option<String>,
    /// The event (`on_complete`) was raised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// All these fields have values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields_collected: Vec<String>,
    /// The call was transferred to a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transferred: Option<bool>,
    /// The caller said nothing at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_user_speech: Option<bool>,
    /// The caller asked to be called back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_requested: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_user_turns: Option<u32>,
}

/// How the bot searches its knowledge base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeSettings {
    #[serde(default = "default_top_k")]
    pub top_k: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f64>,
}

fn default_top_k() -> u32 {
    5
}

/// Call recording: a two-channel WAV (caller, bot) per call, kept `retention_days`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingSettings {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
}

fn default_retention_days() -> u32 {
    30
}

impl RecordingSettings {
    fn is_off(&self) -> bool {
        *self == RecordingSettings::default()
    }
}

impl Default for RecordingSettings {
    fn default() -> Self {
        RecordingSettings {
            enabled: false,
            retention_days: default_retention_days(),
        }
    }
}

impl Default for KnowledgeSettings {
    fn default() -> Self {
        KnowledgeSettings {
            top_k: default_top_k(),
            min_score: None,
        }
    }
}
