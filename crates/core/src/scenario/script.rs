//! Scripted calls: a YAML file that plays a caller and states what the bot must do, so a
//! company can test its bot the way it tests code.
//!
//! ```yaml
//! bot: ../../salon-ru.yaml          # relative to this file (used by the runners that read files)
//! now: "2025-03-12T10:00:00"         # the call's local time
//! timezone: Europe/Moscow            # else the bot's
//! knowledge:                          # documents the bot may answer from
//!   - {source: prices.md, text: "Стрижка — 2000 рублей."}
//! greeting: {contains: "Элегант"}
//! turns:
//!   - user: "Хочу записаться на стрижку завтра в 5"
//!     contains: ["номер"]             # every one, case-insensitive
//!     matches: "(?i)телефон|номер"    # a regex
//!     not_contains: "Извините"
//! fields: {service: "стрижку", date: "2025-03-13", time: "17:00"}
//! absent_fields: [email]
//! outcome: BOOKING
//! language: ru
//! ```
//!
//! A turn may also say how sure the recogniser was (`confidence: 0.3`, see
//! `ScenarioEngine::process_heard`) and what a language model answers in it, by kind of request
//! (`llm: {route: "booking", extract: '{"service": "маникюр"}', answer: "…"}`): the evaluation
//! serves these from a fake model over the real wire, and a script with `requires_llm: true`
//! is only played when the bot has a model.
//!
//! Every report carries a [`ScriptScore`]: the expected fields matched exactly, the values
//! stored that the caller never gave (any stored value other than `fields` states), the
//! outcome, and the document answers with a fact the documents lack.
//!
//! [`run_script`] is pure: it takes the parsed bot and script, so the CLI and cargo tests
//! share it and only they read files.

use super::assist::{block_on, InMemoryKnowledge, Llm};
use super::engine::ScenarioEngine;
use super::grounded::unsupported_facts;
use super::phrases;
use super::state::Action;
use super::state::{CallContext, CallResult};
use crate::config::BotConfig;
use crate::text::normalize;
use crate::text::Language;
use chrono::{NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One string or several.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// What a bot reply must look like.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyExpectation {
    #[serde(default)]
    pub contains: OneOrMany,
    #[serde(default)]
    pub not_contains: OneOrMany,
    #[serde(default)]
    pub matches: OneOrMany,
}

/// One caller line and what the bot must answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptTurn {
    pub user: String,
    #[serde(default)]
    pub contains: OneOrMany,
    #[serde(default)]
    pub not_contains: OneOrMany,
    #[serde(default)]
    pub matches: OneOrMany,
    /// The bot hangs up (or transfers) after this reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_call: Option<bool>,
    /// How sure the recogniser was of `user` (0–1); none is sure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
    /// What a language model replies in this turn, by request kind (`route`, `extract`,
    /// `answer`); served by the fake model of the evaluation, ignored otherwise.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub llm: BTreeMap<String, String>,
}

/// The marker in the engine's request to the model of each kind of `ScriptTurn::llm`: a fake
/// model answers a request holding the marker and the turn's words with the scripted reply.
pub const LLM_REQUEST_MARKERS: [(&str, &str); 3] = [
    ("route", "You route a phone caller's request"),
    ("extract", "You extract form fields"),
    ("answer", "using only these excerpts"),
];

/// A document the bot may answer from during the script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptDocument {
    pub source: String,
    pub text: String,
}

/// A scripted call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallScript {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// The bot config, relative to the script file.
    #[serde(default)]
    pub bot: Option<String>,
    /// The call's local date and time, `2025-03-12T10:00:00`.
    pub now: String,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub knowledge: Vec<ScriptDocument>,
    #[serde(default)]
    pub greeting: Option<ReplyExpectation>,
    #[serde(default)]
    pub turns: Vec<ScriptTurn>,
    /// Fields that must have exactly these values.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Fields that must not have been collected.
    #[serde(default)]
    pub absent_fields: Vec<String>,
    #[serde(default)]
    pub outcome: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    /// Only played when the bot has a language model (the rows that need one).
    #[serde(default)]
    pub requires_llm: bool,
}

/// What a script measures (see the module docs); sums over a set of scripts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ScriptScore {
    pub fields_expected: usize,
    pub fields_exact: usize,
    pub values_stored: usize,
    /// Stored values the caller never gave: other than `fields` states, or not in it.
    pub values_wrong: usize,
    pub outcomes_expected: usize,
    pub outcomes_right: usize,
    /// Replies that answered from the documents (or declined to).
    pub document_answers: usize,
    /// Of those, replies stating a number, time, price, day or name the documents lack.
    pub unsupported_answers: usize,
}

impl ScriptScore {
    pub fn add(&mut self, other: &ScriptScore) {
        self.fields_expected += other.fields_expected;
        self.fields_exact += other.fields_exact;
        self.values_stored += other.values_stored;
        self.values_wrong += other.values_wrong;
        self.outcomes_expected += other.outcomes_expected;
        self.outcomes_right += other.outcomes_right;
        self.document_answers += other.document_answers;
        self.unsupported_answers += other.unsupported_answers;
    }

    fn share(part: usize, whole: usize, empty: f64) -> f64 {
        if whole == 0 {
            empty
        } else {
            part as f64 / whole as f64
        }
    }

    pub fn exact_match_rate(&self) -> f64 {
        Self::share(self.fields_exact, self.fields_expected, 1.0)
    }

    pub fn wrong_value_rate(&self) -> f64 {
        Self::share(self.values_wrong, self.values_stored, 0.0)
    }

    pub fn outcome_accuracy(&self) -> f64 {
        Self::share(self.outcomes_right, self.outcomes_expected, 1.0)
    }

    pub fn unsupported_share(&self) -> f64 {
        Self::share(self.unsupported_answers, self.document_answers, 0.0)
    }
}

/// Why a script cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("not a valid call script: {0}")]
    Parse(String),
    #[error("bad `now` {0:?}: expected local time like 2025-03-12T10:00:00")]
    Now(String),
    #[error("unknown timezone {0:?}")]
    Timezone(String),
    #[error("bad regex {pattern:?}: {message}")]
    Regex { pattern: String, message: String },
}

impl CallScript {
    pub fn parse(yaml: &str) -> Result<CallScript, ScriptError> {
        let value = crate::yaml::to_json(yaml, &crate::yaml::Limits::CONFIG)
            .map_err(|e| ScriptError::Parse(e.to_string()))?;
        serde_json::from_value(value).map_err(|e| ScriptError::Parse(e.to_string()))
    }

    /// Where the script's bot config lies, given where the script lies: its `bot:` key, else
    /// `<dir>/../../<dir name>.yaml` (scripts live in `bots/tests/<bot>/`).
    pub fn bot_path(&self, script_path: &Path) -> Option<PathBuf> {
        let dir = script_path.parent()?;
        match &self.bot {
            Some(bot) => Some(dir.join(bot)),
            None => {
                let name = dir.file_name()?.to_str()?;
                Some(dir.parent()?.parent()?.join(format!("{name}.yaml")))
            }
        }
    }

    fn context(&self, config: &BotConfig) -> Result<CallContext, ScriptError> {
        let local = NaiveDateTime::parse_from_str(&self.now, "%Y-%m-%dT%H:%M:%S")
            .or_else(|_| NaiveDateTime::parse_from_str(&self.now, "%Y-%m-%d %H:%M"))
            .or_else(|_| NaiveDateTime::parse_from_str(&self.now, "%Y-%m-%dT%H:%M"))
            .map_err(|_| ScriptError::Now(self.now.clone()))?;
        let mut context = CallContext::for_bot(config, Utc::now());
        if let Some(tz) = &self.timezone {
            context.timezone = tz.parse().map_err(|_| ScriptError::Timezone(tz.clone()))?;
        }
        context.now = context
            .timezone
            .from_local_datetime(&local)
            .earliest()
            .ok_or_else(|| ScriptError::Now(self.now.clone()))?
            .with_timezone(&Utc);
        if let Some(region) = &self.region {
            context.region = Some(region.clone());
        }
        Ok(context)
    }
}

/// How a script went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptReport {
    pub name: String,
    pub passed: bool,
    /// Every expectation that did not hold, with the turn it belongs to.
    pub failures: Vec<String>,
    /// Greeting first, then one reply per user line.
    pub replies: Vec<String>,
    pub result: Option<CallResult>,
    pub score: ScriptScore,
}

fn check_reply(
    label: &str,
    reply: &str,
    contains: &OneOrMany,
    not_contains: &OneOrMany,
    matches: &OneOrMany,
    failures: &mut Vec<String>,
) {
    let folded = normalize(reply);
    for want in contains.items() {
        if !folded.contains(&normalize(want)) {
            failures.push(format!(
                "{label}: expected the reply to contain {want:?}, got {reply:?}"
            ));
        }
    }
    for unwanted in not_contains.items() {
        if folded.contains(&normalize(unwanted)) {
            failures.push(format!(
                "{label}: expected the reply not to contain {unwanted:?}, got {reply:?}"
            ));
        }
    }
    for pattern in matches.items() {
        match regex::Regex::new(pattern) {
            Ok(re) if re.is_match(reply) => {}
            Ok(_) => failures.push(format!(
                "{label}: expected the reply to match /{pattern}/, got {reply:?}"
            )),
            Err(e) => failures.push(
                ScriptError::Regex {
                    pattern: pattern.to_string(),
                    message: e.to_string(),
                }
                .to_string(),
            ),
        }
    }
}

/// Plays `script` against `config` and checks every expectation.
pub fn run_script(config: &BotConfig, script: &CallScript) -> ScriptReport {
    block_on(run_script_with(config, script, None))
}

/// [`run_script`] with a language model for the bot, awaited on the caller's executor (a model
/// reached over the network needs the caller's runtime).
pub async fn run_script_with(
    config: &BotConfig,
    script: &CallScript,
    llm: Option<Arc<dyn Llm>>,
) -> ScriptReport {
    let name = script.name.clone().unwrap_or_default();
    let mut failures = Vec::new();
    let context = match script.context(config) {
        Ok(c) => c,
        Err(e) => {
            return ScriptReport {
                name,
                passed: false,
                failures: vec![e.to_string()],
                replies: Vec::new(),
                result: None,
                score: ScriptScore::default(),
            }
        }
    };
    let mut engine = ScenarioEngine::new(Arc::new(config.clone()), context);
    if let Some(llm) = llm {
        engine = engine.with_llm(llm);
    }
    let mut score = ScriptScore::default();
    let documents: Vec<&str> = script.knowledge.iter().map(|d| d.text.as_str()).collect();
    let unsure = [
        phrases::unsure_call_back(Language::Ru),
        phrases::unsure_call_back(Language::En),
    ];
    if !script.knowledge.is_empty() {
        let mut kb = InMemoryKnowledge::new();
        for doc in &script.knowledge {
            kb.add_document(&doc.source, &doc.text);
        }
        engine = engine.with_knowledge(Arc::new(kb));
    }
    let mut replies = Vec::new();
    let greeting = engine.start_call();
    if let Some(expect) = &script.greeting {
        check_reply(
            "greeting",
            &greeting.reply,
            &expect.contains,
            &expect.not_contains,
            &expect.matches,
            &mut failures,
        );
    }
    replies.push(greeting.reply);
    for (i, turn) in script.turns.iter().enumerate() {
        let label = format!("turn {} ({:?})", i + 1, turn.user);
        let out = engine.process_heard(&turn.user, turn.confidence).await;
        let answered = out
            .actions
            .iter()
            .any(|a| matches!(a, Action::KnowledgeAnswered { .. }));
        if answered || unsure.iter().any(|u| out.reply.contains(u)) {
            score.document_answers += 1;
            let mut grounds = documents.clone();
            // The bot's own prompts and the sources it names are no facts about the business.
            grounds.extend(config.name.as_deref());
            let prompts: Vec<&str> = config
                .scenarios
                .iter()
                .flat_map(|s| s.collect_fields.iter().map(|f| f.prompt.as_str()))
                .collect();
            grounds.extend(prompts);
            grounds.extend(script.knowledge.iter().map(|d| d.source.as_str()));
            // The way back to the request ("Вернёмся к записи. …") is the bot's own too.
            let back: Vec<String> = [Language::Ru, Language::En]
                .into_iter()
                .map(|l| phrases::back_to("", l))
                .collect();
            grounds.extend(back.iter().map(String::as_str));
            if !unsupported_facts(&out.reply, &grounds).is_empty() {
                score.unsupported_answers += 1;
                failures.push(format!(
                    "{label}: the answer states {:?}, which the documents do not",
                    unsupported_facts(&out.reply, &grounds)
                ));
            }
        }
        check_reply(
            &label,
            &out.reply,
            &turn.contains,
            &turn.not_contains,
            &turn.matches,
            &mut failures,
        );
        if let Some(want) = turn.ends_call {
            if out.ends_call() != want {
                failures.push(format!(
                    "{label}: expected the call {}to end here",
                    if want { "" } else { "not " }
                ));
            }
        }
        replies.push(out.reply);
    }
    let result = engine.end_call();
    score.fields_expected = script.fields.len();
    score.values_stored = result.fields.len();
    score.values_wrong = result
        .fields
        .iter()
        .filter(|(name, value)| script.fields.get(*name) != Some(*value))
        .count();
    if script.outcome.is_some() {
        score.outcomes_expected = 1;
        score.outcomes_right = usize::from(script.outcome.as_ref() == Some(&result.outcome.kind));
    }
    for (field, want) in &script.fields {
        match result.fields.get(field) {
            Some(got) if got == want => score.fields_exact += 1,
            Some(got) => failures.push(format!("field {field}: expected {want:?}, got {got:?}")),
            None => failures.push(format!("field {field}: expected {want:?}, not collected")),
        }
    }
    for field in &script.absent_fields {
        if let Some(got) = result.fields.get(field) {
            failures.push(format!("field {field}: expected none, got {got:?}"));
        }
    }
    if let Some(want) = &script.outcome {
        if &result.outcome.kind != want {
            failures.push(format!(
                "outcome: expected {want}, got {} ({})",
                result.outcome.kind,
                result
                    .outcome
                    .evidence
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
    }
    if let Some(want) = &script.language {
        if &result.language != want {
            failures.push(format!(
                "language: expected {want}, got {}",
                result.language
            ));
        }
    }
    ScriptReport {
        name,
        passed: failures.is_empty(),
        failures,
        replies,
        result: Some(result),
        score,
    }
}
