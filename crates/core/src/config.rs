//! The bot configuration: what a company writes (YAML or JSON, one schema) to describe its bot.
//!
//! Parsing is in three steps so that a user sees *every* problem at once, each with its path
//! (`scenarios[1].collect_fields[0].name: required`):
//! 1. the text becomes a JSON value (YAML and JSON both);
//! 2. the value is checked against [`SCHEMA`], a table of the allowed keys and their types;
//! 3. the typed [`BotConfig`] is built and checked for meaning (unique names, references that
//!    resolve, a known timezone, known providers).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// One problem in a config, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigIssue {
    /// `scenarios[1].collect_fields[0].name`; empty for the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A config that cannot be used, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid bot config: {}", .issues.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; "))]
pub struct ConfigError {
    pub issues: Vec<ConfigIssue>,
}

/// The format a config text is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    Yaml,
    Json,
}

impl ConfigFormat {
    /// Picks the format from a media type (`application/json`, `application/yaml`, `text/yaml`, …);
    /// `None` for anything else.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        let essence = media_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Some(Self::Json),
            "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
                Some(Self::Yaml)
            }
            _ => None,
        }
    }
}

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
    #[serde(default)]
    pub providers: Providers,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outcome_rules: Vec<OutcomeRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_outcome: Option<String>,
    #[serde(default)]
    pub knowledge: KnowledgeSettings,
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

impl Default for KnowledgeSettings {
    fn default() -> Self {
        KnowledgeSettings {
            top_k: default_top_k(),
            min_score: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Step 2: the shape table.

/// The type a key's value must have.
#[derive(Debug)]
pub enum Shape {
    Str,
    NonEmptyStr,
    Bool,
    UInt { min: u64, max: u64 },
    Num,
    List(&'static Shape),
    Obj(&'static [Key]),
    OneOf(&'static [&'static str]),
}

/// An allowed key of an object.
#[derive(Debug)]
pub struct Key {
    pub name: &'static str,
    pub required: bool,
    pub shape: Shape,
}

const fn req(name: &'static str, shape: Shape) -> Key {
    Key {
        name,
        required: true,
        shape,
    }
}

const fn opt(name: &'static str, shape: Shape) -> Key {
    Key {
        name,
        required: false,
        shape,
    }
}

const PROVIDER_KEYS: &[Key] = &[
    req("provider", Shape::NonEmptyStr),
    opt("model", Shape::Str),
    opt("voice", Shape::Str),
    opt("language", Shape::Str),
    opt("temperature", Shape::Num),
    opt(
        "max_tokens",
        Shape::UInt {
            min: 1,
            max: 32_768,
        },
    ),
    opt("fallback", Shape::List(&Shape::Obj(PROVIDER_FALLBACK_KEYS))),
];

const PROVIDER_FALLBACK_KEYS: &[Key] = &[
    req("provider", Shape::NonEmptyStr),
    opt("model", Shape::Str),
    opt("voice", Shape::Str),
    opt("language", Shape::Str),
    opt("temperature", Shape::Num),
    opt(
        "max_tokens",
        Shape::UInt {
            min: 1,
            max: 32_768,
        },
    ),
];

const FIELD_KEYS: &[Key] = &[
    req("name", Shape::NonEmptyStr),
    req("prompt", Shape::NonEmptyStr),
    opt("type", Shape::OneOf(FieldKind::NAMES)),
    opt("required", Shape::Bool),
    opt("options", Shape::List(&Shape::NonEmptyStr)),
    opt("min", Shape::Num),
    opt("max", Shape::Num),
    opt("retry_prompt", Shape::NonEmptyStr),
];

const SCENARIO_KEYS: &[Key] = &[
    req("name", Shape::NonEmptyStr),
    opt("description", Shape::Str),
    opt("trigger_keywords", Shape::List(&Shape::NonEmptyStr)),
    opt("collect_fields", Shape::List(&Shape::Obj(FIELD_KEYS))),
    opt("on_complete", Shape::NonEmptyStr),
    opt("use_knowledge_base", Shape::Bool),
    opt("confirm", Shape::Bool),
    opt("completion_message", Shape::NonEmptyStr),
];

const CONDITION_KEYS: &[Key] = &[
    opt("scenario_completed", Shape::NonEmptyStr),
    opt("scenario_entered", Shape::NonEmptyStr),
    opt("event", Shape::NonEmptyStr),
    opt("fields_collected", Shape::List(&Shape::NonEmptyStr)),
    opt("transferred", Shape::Bool),
    opt("no_user_speech", Shape::Bool),
    opt("callback_requested", Shape::Bool),
    opt("min_user_turns", Shape::UInt { min: 0, max: 1000 }),
];

const RULE_KEYS: &[Key] = &[
    req("outcome", Shape::NonEmptyStr),
    req("when", Shape::Obj(CONDITION_KEYS)),
];

/// The whole config's allowed keys. Public so the admin UI and docs can show it.
pub const SCHEMA: &[Key] = &[
    opt("bot_id", Shape::NonEmptyStr),
    opt("name", Shape::Str),
    req("language", Shape::NonEmptyStr),
    opt("languages", Shape::List(&Shape::NonEmptyStr)),
    opt("voice_id", Shape::Str),
    opt("timezone", Shape::NonEmptyStr),
    req("greeting", Shape::NonEmptyStr),
    opt("system_prompt", Shape::Str),
    opt("scenarios", Shape::List(&Shape::Obj(SCENARIO_KEYS))),
    req("fallback", Shape::NonEmptyStr),
    opt("max_turns", Shape::UInt { min: 1, max: 500 }),
    opt("silence_timeout_sec", Shape::UInt { min: 1, max: 600 }),
    opt(
        "providers",
        Shape::Obj(&[
            opt("stt", Shape::Obj(PROVIDER_KEYS)),
            opt("llm", Shape::Obj(PROVIDER_KEYS)),
            opt("tts", Shape::Obj(PROVIDER_KEYS)),
        ]),
    ),
    opt("outcome_rules", Shape::List(&Shape::Obj(RULE_KEYS))),
    opt("default_outcome", Shape::NonEmptyStr),
    opt(
        "knowledge",
        Shape::Obj(&[
            opt("top_k", Shape::UInt { min: 1, max: 50 }),
            opt("min_score", Shape::Num),
        ]),
    ),
];

struct Issues(Vec<ConfigIssue>);

impl Issues {
    fn push(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.to_string(),
            message: message.into(),
        });
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn check_shape(value: &Value, shape: &Shape, path: &str, issues: &mut Issues) {
    match (shape, value) {
        (Shape::Str, Value::String(_)) | (Shape::Bool, Value::Bool(_)) => {}
        (Shape::Num, Value::Number(_)) => {}
        (Shape::NonEmptyStr, Value::String(s)) => {
            if s.trim().is_empty() {
                issues.push(path, "must not be empty");
            }
        }
        (Shape::UInt { min, max }, Value::Number(n)) => match n.as_u64() {
            Some(v) if (*min..=*max).contains(&v) => {}
            _ => issues.push(path, format!("must be a whole number from {min} to {max}")),
        },
        (Shape::OneOf(allowed), Value::String(s)) => {
            if !allowed.contains(&s.as_str()) {
                issues.push(path, format!("must be one of: {}", allowed.join(", ")));
            }
        }
        (Shape::List(item), Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                check_shape(v, item, &format!("{path}[{i}]"), issues);
            }
        }
        (Shape::Obj(keys), Value::Object(map)) => {
            for key in keys.iter() {
                match map.get(key.name) {
                    Some(Value::Null) | None if key.required => {
                        issues.push(&join(path, key.name), "required")
                    }
                    Some(Value::Null) | None => {}
                    Some(v) => check_shape(v, &key.shape, &join(path, key.name), issues),
                }
            }
            for name in map.keys() {
                if !keys.iter().any(|k| k.name == name) {
                    let known: Vec<&str> = keys.iter().map(|k| k.name).collect();
                    issues.push(
                        &join(path, name),
                        format!("unknown key (allowed: {})", known.join(", ")),
                    );
                }
            }
        }
        (expected, actual) => {
            let want = match expected {
                Shape::Str | Shape::NonEmptyStr | Shape::OneOf(_) => "a string",
                Shape::Bool => "a boolean (true or false)",
                Shape::UInt { .. } => "a whole number",
                Shape::Num => "a number",
                Shape::List(_) => "a list",
                Shape::Obj(_) => "an object",
            };
            issues.push(path, format!("must be {want}, not {}", type_name(actual)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Step 3: meaning.

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn is_language_code(s: &str) -> bool {
    let (lang, region) = match s.split_once('-') {
        Some((l, r)) => (l, Some(r)),
        None => (s, None),
    };
    (2..=3).contains(&lang.len())
        && lang.chars().all(|c| c.is_ascii_lowercase())
        && region.is_none_or(|r| r.len() == 2 && r.chars().all(|c| c.is_ascii_uppercase()))
}

fn is_outcome_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn check_provider(choice: &ProviderChoice, known: &[&str], path: &str, issues: &mut Issues) {
    if !known.contains(&choice.provider.as_str()) {
        issues.push(
            &join(path, "provider"),
            format!("unknown provider (known: {})", known.join(", ")),
        );
    }
    if let Some(t) = choice.temperature {
        if !(0.0..=2.0).contains(&t) {
            issues.push(&join(path, "temperature"), "must be from 0 to 2");
        }
    }
    for (i, fb) in choice.fallback.iter().enumerate() {
        check_provider(fb, known, &format!("{path}.fallback[{i}]"), issues);
    }
}

impl BotConfig {
    /// Parses and validates a config written in `format`.
    pub fn parse(text: &str, format: ConfigFormat) -> Result<BotConfig, ConfigError> {
        let value = match format {
            ConfigFormat::Json => serde_json::from_str::<Value>(text)
                .map_err(|e| single_issue(format!("not valid JSON: {e}")))?,
            ConfigFormat::Yaml => yaml_to_json(text)?,
        };
        Self::from_value(&value)
    }

    /// Parses a config whose format is not known: JSON if it starts like JSON, else YAML
    /// (which also accepts most JSON).
    pub fn parse_any(text: &str) -> Result<BotConfig, ConfigError> {
        let format = if text.trim_start().starts_with('{') {
            ConfigFormat::Json
        } else {
            ConfigFormat::Yaml
        };
        Self::parse(text, format)
    }

    /// Validates an already-parsed document.
    pub fn from_value(value: &Value) -> Result<BotConfig, ConfigError> {
        let mut issues = Issues(Vec::new());
        check_shape(value, &Shape::Obj(SCHEMA), "", &mut issues);
        if !issues.0.is_empty() {
            return Err(ConfigError { issues: issues.0 });
        }
        let config: BotConfig = serde_json::from_value(value.clone())
            .map_err(|e| single_issue(format!("does not match the schema: {e}")))?;
        config.check_meaning(&mut issues);
        if issues.0.is_empty() {
            Ok(config.with_inferred_types())
        } else {
            Err(ConfigError { issues: issues.0 })
        }
    }

    fn with_inferred_types(mut self) -> Self {
        for scenario in &mut self.scenarios {
            for field in &mut scenario.collect_fields {
                field.kind = Some(field.kind());
            }
        }
        self
    }

    fn check_meaning(&self, issues: &mut Issues) {
        if let Some(id) = &self.bot_id {
            if !is_identifier(id) {
                issues.push(
                    "bot_id",
                    "must be lowercase letters, digits, '-' or '_', starting with a letter",
                );
            }
        }
        if !is_language_code(&self.language) {
            issues.push(
                "language",
                "must be a language code such as \"ru\", \"en\" or \"en-US\"",
            );
        }
        for (i, lang) in self.languages.iter().enumerate() {
            if !is_language_code(lang) {
                issues.push(
                    &format!("languages[{i}]"),
                    "must be a language code such as \"ru\" or \"en\"",
                );
            }
        }
        if let Some(tz) = &self.timezone {
            if tz.parse::<chrono_tz::Tz>().is_err() {
                issues.push(
                    "timezone",
                    "unknown timezone (use an IANA name such as \"Europe/Moscow\")",
                );
            }
        }

        let mut scenario_names = HashSet::new();
        let mut all_fields = HashSet::new();
        let mut events = HashSet::new();
        for (si, scenario) in self.scenarios.iter().enumerate() {
            let sp = format!("scenarios[{si}]");
            if !is_identifier(&scenario.name) {
                issues.push(
                    &join(&sp, "name"),
                    "must be lowercase letters, digits, '-' or '_', starting with a letter",
                );
            }
            if !scenario_names.insert(scenario.name.as_str()) {
                issues.push(
                    &join(&sp, "name"),
                    format!("duplicate scenario name {:?}", scenario.name),
                );
            }
            if scenario.trigger_keywords.is_empty() && self.providers.llm.is_none() {
                issues.push(
                    &join(&sp, "trigger_keywords"),
                    "required when no LLM is configured (nothing else could select this scenario)",
                );
            }
            if let Some(event) = &scenario.on_complete {
                events.insert(event.as_str());
                if scenario.collect_fields.is_empty() {
                    issues.push(
                        &join(&sp, "on_complete"),
                        "needs collect_fields (it fires when they are all collected)",
                    );
                }
            }
            let mut field_names = HashSet::new();
            for (fi, field) in scenario.collect_fields.iter().enumerate() {
                let fp = format!("{sp}.collect_fields[{fi}]");
                if !is_identifier(&field.name) {
                    issues.push(
                        &join(&fp, "name"),
                        "must be lowercase letters, digits, '-' or '_', starting with a letter",
                    );
                }
                if !field_names.insert(field.name.as_str()) {
                    issues.push(
                        &join(&fp, "name"),
                        format!("duplicate field name {:?} in this scenario", field.name),
                    );
                }
                all_fields.insert(field.name.as_str());
                let kind = field.kind();
                if kind == FieldKind::Enum && field.options.is_empty() {
                    issues.push(&join(&fp, "options"), "required for an enum field");
                }
                if kind != FieldKind::Enum && !field.options.is_empty() {
                    issues.push(&join(&fp, "options"), "only an enum field takes options");
                }
                if (field.min.is_some() || field.max.is_some()) && kind != FieldKind::Number {
                    issues.push(&fp, "min and max apply to number fields only");
                }
                if let (Some(min), Some(max)) = (field.min, field.max) {
                    if min > max {
                        issues.push(&join(&fp, "min"), "must not be greater than max");
                    }
                }
            }
        }

        if let Some(stt) = &self.providers.stt {
            check_provider(stt, STT_PROVIDERS, "providers.stt", issues);
        }
        if let Some(llm) = &self.providers.llm {
            check_provider(llm, LLM_PROVIDERS, "providers.llm", issues);
        }
        if let Some(tts) = &self.providers.tts {
            check_provider(tts, TTS_PROVIDERS, "providers.tts", issues);
        }

        for (ri, rule) in self.outcome_rules.iter().enumerate() {
            let rp = format!("outcome_rules[{ri}]");
            if !is_outcome_name(&rule.outcome) {
                issues.push(
                    &join(&rp, "outcome"),
                    "must be UPPER_SNAKE_CASE, e.g. BOOKING or LEAD",
                );
            }
            let when = &rule.when;
            if *when == OutcomeCondition::default() {
                issues.push(&join(&rp, "when"), "needs at least one condition");
            }
            for (key, name) in [
                ("scenario_completed", &when.scenario_completed),
                ("scenario_entered", &when.scenario_entered),
            ] {
                if let Some(name) = name {
                    if !scenario_names.contains(name.as_str()) {
                        issues.push(
                            &format!("{rp}.when.{key}"),
                            format!("no scenario named {name:?}"),
                        );
                    }
                }
            }
            if let Some(event) = &when.event {
                if !events.contains(event.as_str()) {
                    issues.push(
                        &format!("{rp}.when.event"),
                        format!("no scenario raises {event:?} (on_complete)"),
                    );
                }
            }
            for (fi, field) in when.fields_collected.iter().enumerate() {
                if !all_fields.contains(field.as_str()) {
                    issues.push(
                        &format!("{rp}.when.fields_collected[{fi}]"),
                        format!("no scenario collects {field:?}"),
                    );
                }
            }
        }
        if let Some(outcome) = &self.default_outcome {
            if !is_outcome_name(outcome) {
                issues.push(
                    "default_outcome",
                    "must be UPPER_SNAKE_CASE, e.g. INFO_ONLY",
                );
            }
        }
    }

    /// The config as canonical JSON (types inferred, defaults filled in).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a BotConfig always serialises")
    }

    /// Every field name any scenario collects, with its spec (first occurrence wins).
    pub fn fields(&self) -> BTreeMap<&str, &FieldSpec> {
        let mut out = BTreeMap::new();
        for scenario in &self.scenarios {
            for field in &scenario.collect_fields {
                out.entry(field.name.as_str()).or_insert(field);
            }
        }
        out
    }
}

fn single_issue(message: String) -> ConfigError {
    ConfigError {
        issues: vec![ConfigIssue {
            path: String::new(),
            message,
        }],
    }
}

fn yaml_to_json(text: &str) -> Result<Value, ConfigError> {
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| single_issue(format!("not valid YAML: {e}")))?;
    yaml_value_to_json(yaml).map_err(single_issue)
}

fn yaml_value_to_json(value: serde_yaml::Value) -> Result<Value, String> {
    Ok(match value {
        serde_yaml::Value::Null => Value::Null,
        serde_yaml::Value::Bool(b) => Value::Bool(b),
        serde_yaml::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or("numbers must be finite")?
            }
        }
        serde_yaml::Value::String(s) => Value::String(s),
        serde_yaml::Value::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_value_to_json)
                .collect::<Result<_, _>>()?,
        ),
        serde_yaml::Value::Mapping(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let key = match k {
                    serde_yaml::Value::String(s) => s,
                    serde_yaml::Value::Number(n) => n.to_string(),
                    serde_yaml::Value::Bool(b) => b.to_string(),
                    other => return Err(format!("keys must be strings, found {other:?}")),
                };
                out.insert(key, yaml_value_to_json(v)?);
            }
            Value::Object(out)
        }
        serde_yaml::Value::Tagged(tagged) => yaml_value_to_json(tagged.value)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SALON: &str = r#"
bot_id: "salon-bot-1"
language: "ru"
voice_id: "russian-female-1"
greeting: "Здравствуйте! Салон красоты Элегант. Чем могу помочь?"
scenarios:
  - name: "booking"
    trigger_keywords: ["записаться", "запись", "свободно"]
    collect_fields:
      - {name: "service", prompt: "На какую услугу хотите записаться?"}
      - {name: "date", prompt: "На какой день?"}
      - {name: "time", prompt: "В какое время?"}
      - {name: "phone", prompt: "Оставьте номер для подтверждения"}
    on_complete: "booking_created"
  - name: "support"
    trigger_keywords: ["вопрос", "узнать", "сколько стоит"]
    use_knowledge_base: true
fallback: "Извините, не совсем поняла. Вы хотите записаться или у вас вопрос?"
max_turns: 20
silence_timeout_sec: 10
"#;

    fn issues_of(text: &str) -> Vec<String> {
        match BotConfig::parse_any(text) {
            Ok(_) => vec![],
            Err(e) => e.issues.iter().map(|i| i.to_string()).collect(),
        }
    }

    #[test]
    fn the_seed_config_parses_with_inferred_field_types() {
        let config = BotConfig::parse(SALON, ConfigFormat::Yaml).expect("seed config is valid");
        assert_eq!(config.language, "ru");
        assert_eq!(config.scenarios.len(), 2);
        let kinds: Vec<FieldKind> = config.scenarios[0]
            .collect_fields
            .iter()
            .map(|f| f.kind())
            .collect();
        assert_eq!(
            kinds,
            [
                FieldKind::Text,
                FieldKind::Date,
                FieldKind::Time,
                FieldKind::Phone
            ]
        );
        assert!(config.scenarios[1].use_knowledge_base);
        assert_eq!(config.max_turns, 20);
    }

    #[test]
    fn json_and_yaml_give_the_same_config() {
        let from_yaml = BotConfig::parse(SALON, ConfigFormat::Yaml).unwrap();
        let json = serde_json::to_string(&from_yaml.to_json()).unwrap();
        let from_json = BotConfig::parse(&json, ConfigFormat::Json).unwrap();
        assert_eq!(from_yaml, from_json);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = r#"
language: "ru"
greeting: ""
scenarios:
  - name: "booking"
    trigger_keywords: ["записаться"]
    collect_fields:
      - {prompt: "На какую услугу?"}
      - {name: "when", prompt: "Когда?", type: "datetime"}
  - trigger_keywords: "вопрос"
max_turns: 0
colour: "blue"
"#;
        assert_eq!(
            issues_of(text),
            [
                "greeting: must not be empty",
                "scenarios[0].collect_fields[0].name: required",
                "scenarios[0].collect_fields[1].type: must be one of: text, phone, date, time, email, number, enum",
                "scenarios[1].name: required",
                "scenarios[1].trigger_keywords: must be a list, not a string",
                "fallback: required",
                "max_turns: must be a whole number from 1 to 500",
                "colour: unknown key (allowed: bot_id, name, language, languages, voice_id, timezone, greeting, system_prompt, scenarios, fallback, max_turns, silence_timeout_sec, providers, outcome_rules, default_outcome, knowledge)",
            ]
        );
    }

    #[test]
    fn meaning_is_checked_after_shape() {
        let text = r#"
language: "russian"
timezone: "Mars/Olympus"
greeting: "hi"
fallback: "sorry"
scenarios:
  - name: "booking"
    trigger_keywords: ["book"]
    collect_fields:
      - {name: "service", prompt: "Which?", type: enum}
      - {name: "service", prompt: "Again?"}
  - name: "booking"
    trigger_keywords: ["book"]
providers:
  llm: {provider: "gpt-magic"}
outcome_rules:
  - outcome: "booking"
    when: {scenario_completed: "sales", fields_collected: ["email"]}
"#;
        assert_eq!(
            issues_of(text),
            [
                "language: must be a language code such as \"ru\", \"en\" or \"en-US\"",
                "timezone: unknown timezone (use an IANA name such as \"Europe/Moscow\")",
                "scenarios[0].collect_fields[0].options: required for an enum field",
                "scenarios[0].collect_fields[1].name: duplicate field name \"service\" in this scenario",
                "scenarios[1].name: duplicate scenario name \"booking\"",
                "providers.llm.provider: unknown provider (known: ollama, openai, local-llm)",
                "outcome_rules[0].outcome: must be UPPER_SNAKE_CASE, e.g. BOOKING or LEAD",
                "outcome_rules[0].when.scenario_completed: no scenario named \"sales\"",
                "outcome_rules[0].when.fields_collected[0]: no scenario collects \"email\"",
            ]
        );
    }

    #[test]
    fn syntax_errors_are_one_clear_issue() {
        let issues = issues_of("language: [ru\n");
        assert_eq!(issues.len(), 1);
        assert!(issues[0].starts_with("not valid YAML"), "{issues:?}");
        let issues = issues_of("{\"language\": ");
        assert!(issues[0].starts_with("not valid JSON"), "{issues:?}");
        assert_eq!(issues_of("- a\n- b\n"), ["must be an object, not a list"]);
    }

    #[test]
    fn field_types_are_inferred_from_names() {
        for (name, kind) in [
            ("phone", FieldKind::Phone),
            ("contact_phone", FieldKind::Phone),
            ("email", FieldKind::Email),
            ("visit_date", FieldKind::Date),
            ("time", FieldKind::Time),
            ("service", FieldKind::Text),
            ("timeline", FieldKind::Text),
        ] {
            assert_eq!(FieldKind::infer_from_name(name), kind, "{name}");
        }
    }

    #[test]
    fn media_types_pick_the_format() {
        assert_eq!(
            ConfigFormat::from_media_type("application/json; charset=utf-8"),
            Some(ConfigFormat::Json)
        );
        assert_eq!(
            ConfigFormat::from_media_type("application/yaml"),
            Some(ConfigFormat::Yaml)
        );
        assert_eq!(
            ConfigFormat::from_media_type("text/x-yaml"),
            Some(ConfigFormat::Yaml)
        );
        assert_eq!(ConfigFormat::from_media_type("text/plain"), None);
    }
}
