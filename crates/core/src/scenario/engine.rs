//! The scenario engine: given a bot's config and what the caller says, decides what the bot
//! says next and what happened (scenario entered, field collected, request completed).
//!
//! One engine serves one call. Its whole memory is [`EngineState`], a plain serde value, so a
//! call can be checkpointed after every turn and resumed on another worker with
//! [`ScenarioEngine::restore`]. The engine is pure; the LLM and the knowledge base are reached
//! through the traits in [`super::assist`].

use super::assist::{KnowledgeSearch, Llm, LlmMessage};
use super::extract::{extract, is_name_field, object_after, ExtractContext, Found};
use super::outcome::classify;
use super::phrases::{self, Problem, YesNo};
use crate::config::{BotConfig, FieldKind, FieldSpec, Scenario};
use crate::domain::{Outcome, Speaker, Turn};
use crate::text::stem::{phrase_in, stems_match, token_stems};
use crate::text::{detect_language, stems, tokenize, Language, Stems, Token};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How sure keyword matching must be before the caller is taken into a scenario: the share
/// of a trigger phrase's words that were said.
pub const INTENT_THRESHOLD: f64 = 0.6;

/// How many times a field is re-asked before the engine stops insisting on it.
const MAX_RETRIES: u32 = 3;

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
    live_sent: usize,
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

    fn say(&mut self, text: impl AsRef<str>) {
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

/// One call's conversation logic.
pub struct ScenarioEngine {
    config: Arc<BotConfig>,
    context: CallContext,
    state: EngineState,
    llm: Option<Arc<dyn Llm>>,
    knowledge: Option<Arc<dyn KnowledgeSearch>>,
    /// Stems of every trigger phrase, per scenario, computed once per call.
    triggers: Vec<Vec<Stems>>,
    /// The listener of the turn being processed by [`ScenarioEngine::process_turn_live`].
    live: Option<LiveText>,
}

struct Intent {
    scenario: usize,
    score: f64,
    /// The token after the matched phrase, where its object ("на стрижку") starts.
    end: Option<usize>,
    span: Option<(usize, usize)>,
}

impl ScenarioEngine {
    pub fn new(config: Arc<BotConfig>, context: CallContext) -> Self {
        let language = Language::from_code(&config.language).unwrap_or(Language::En);
        let state = EngineState {
            language,
            transcript: Vec::new(),
            fields: BTreeMap::new(),
            active: None,
            entered: Vec::new(),
            completed: Vec::new(),
            answered: Vec::new(),
            transferred: None,
            callback_requested: None,
            ended: false,
            user_turns: 0,
            language_votes: BTreeMap::new(),
        };
        Self::with_state(config, context, state)
    }

    fn with_state(config: Arc<BotConfig>, context: CallContext, state: EngineState) -> Self {
        let triggers = config
            .scenarios
            .iter()
            .map(|s| s.trigger_keywords.iter().map(|k| stems(k)).collect())
            .collect();
        ScenarioEngine {
            config,
            context,
            state,
            llm: None,
            knowledge: None,
            triggers,
            live: None,
        }
    }

    /// Lets the engine classify intents and ground answers with an LLM.
    pub fn with_llm(mut self, llm: Arc<dyn Llm>) -> Self {
        self.llm = Some(llm);
        self
    }

    /// Lets scenarios with `use_knowledge_base` answer from the bot's documents.
    pub fn with_knowledge(mut self, knowledge: Arc<dyn KnowledgeSearch>) -> Self {
        self.knowledge = Some(knowledge);
        self
    }

    pub fn config(&self) -> &BotConfig {
        &self.config
    }

    pub fn context(&self) -> &CallContext {
        &self.context
    }

    pub fn state(&self) -> &EngineState {
        &self.state
    }

    pub fn is_ended(&self) -> bool {
        self.state.ended
    }

    /// The engine's memory, to checkpoint.
    pub fn snapshot(&self) -> EngineSnapshot {
        EngineSnapshot {
            context: self.context.clone(),
            state: self.state.clone(),
        }
    }

    /// An engine that continues a checkpointed call. `config` must be the version the call
    /// started with (`snapshot.context.config_version`).
    pub fn restore(config: Arc<BotConfig>, snapshot: EngineSnapshot) -> Self {
        Self::with_state(config, snapshot.context, snapshot.state)
    }

    fn lang(&self) -> Language {
        self.state.language
    }

    fn push_turn(&mut self, speaker: Speaker, text: &str) {
        self.state.transcript.push(Turn {
            speaker,
            text: text.to_string(),
            at_ms: 0,
            interrupted: false,
        });
    }

    /// The greeting.
    pub fn start_call(&mut self) -> TurnOutput {
        let greeting = self.config.greeting.clone();
        self.push_turn(Speaker::Bot, &greeting);
        TurnOutput {
            reply: greeting,
            ..TurnOutput::default()
        }
    }

    /// The bot's answer to one caller utterance.
    pub async fn process_turn(&mut self, user_text: &str) -> TurnOutput {
        let mut out = TurnOutput::default();
        if self.state.ended {
            out.say(phrases::call_ended(self.lang()));
            out.actions.push(Action::EndCall);
            return out;
        }
        let text = user_text.trim();
        if text.is_empty() || tokenize(text).is_empty() {
            out.say(phrases::cannot_hear(self.lang()));
            self.push_turn(Speaker::Bot, &out.reply);
            return out;
        }
        self.state.user_turns += 1;
        self.push_turn(Speaker::User, text);
        self.note_language(text, &mut out);
        let tokens = tokenize(text);
        self.respond(text, &tokens, &mut out).await;
        if !self.state.ended && self.state.user_turns >= self.config.max_turns {
            out.say(phrases::max_turns_reached(self.lang()));
            self.end(&mut out);
        }
        if out.reply.is_empty() {
            out.say(&self.config.fallback);
        }
        self.push_turn(Speaker::Bot, &out.reply);
        out
    }

    /// [`ScenarioEngine::process_turn`], handing the reply to `live` as it is decided: an answer
    /// the language model writes goes out sentence by sentence while it is generated, so a voice
    /// call speaks its start at once. The pieces joined are the returned reply.
    pub async fn process_turn_live(&mut self, user_text: &str, live: LiveText) -> TurnOutput {
        self.live = Some(live);
        let mut out = self.process_turn(user_text).await;
        self.flush_live(&mut out);
        self.live = None;
        out
    }

    /// Hands what was said since the last flush to the live listener, if there is one.
    fn flush_live(&self, out: &mut TurnOutput) {
        if let Some(live) = &self.live {
            if out.live_sent < out.reply.len() {
                live(&out.reply[out.live_sent..]);
                out.live_sent = out.reply.len();
            }
        }
    }

    /// Ends the call and says what it achieved.
    pub fn end_call(&mut self) -> CallResult {
        self.state.ended = true;
        let outcome = classify(&self.config, &self.state);
        let language = self
            .state
            .language_votes
            .iter()
            .max_by_key(|(_, votes)| **votes)
            .map(|(code, _)| code.clone())
            .unwrap_or_else(|| self.config.language.clone());
        CallResult {
            transcript: self.state.transcript.clone(),
            fields: self
                .state
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
            outcome,
            language,
            turns: self.state.user_turns,
            config_version: self.context.config_version,
            state: self.state.clone(),
        }
    }

    fn note_language(&mut self, text: &str, out: &mut TurnOutput) {
        let Some(heard) = detect_language(text) else {
            return;
        };
        *self
            .state
            .language_votes
            .entry(heard.code().to_string())
            .or_default() += 1;
        let allowed = self
            .config
            .languages
            .iter()
            .any(|l| Language::from_code(l) == Some(heard));
        if heard != self.state.language && allowed {
            self.state.language = heard;
            out.actions.push(Action::LanguageChanged {
                language: heard.code().to_string(),
            });
        }
    }

    fn end(&mut self, out: &mut TurnOutput) {
        self.state.ended = true;
        self.state.active = None;
        out.actions.push(Action::EndCall);
    }

    fn extract_context<'a>(&'a self, pending: Option<&'a str>) -> ExtractContext<'a> {
        ExtractContext {
            today: self.context.today(),
            region: self.context.region.as_deref(),
            pending,
        }
    }

    async fn respond(&mut self, text: &str, tokens: &[Token], out: &mut TurnOutput) {
        let turn = self.state.user_turns;
        if phrases::wants_callback(tokens) && self.state.callback_requested.is_none() {
            self.state.callback_requested = Some(turn);
            out.actions.push(Action::CallbackRequested);
        }
        if phrases::is_goodbye(tokens, self.state.active.is_none()) {
            out.say(phrases::farewell(self.lang()));
            self.end(out);
            return;
        }
        if phrases::wants_person(tokens) {
            self.transfer(out);
            return;
        }
        if let Some(active) = self.state.active.clone() {
            match active.phase {
                Phase::Collecting => self.collect(text, tokens, active, out).await,
                Phase::Confirming | Phase::Correcting => {
                    self.confirm_turn(text, tokens, active, out).await
                }
            }
            return;
        }
        if let Some(intent) = self.match_intent(text, tokens).await {
            self.enter(intent, text, tokens, out).await;
            return;
        }
        let did_something = !self.state.completed.is_empty() || !self.state.answered.is_empty();
        if did_something && tokens.len() <= 2 && phrases::yes_no(tokens) == Some(YesNo::No) {
            out.say(phrases::farewell(self.lang()));
            self.end(out);
            return;
        }
        if self.state.callback_requested == Some(turn) {
            out.say(phrases::callback(self.lang()));
            return;
        }
        if phrases::is_hello(tokens) {
            out.say(phrases::hello(self.lang()));
            return;
        }
        if let Some(intent) = self.implicit_scenario(tokens) {
            self.enter(intent, text, tokens, out).await;
            return;
        }
        if phrases::is_question(text, tokens) && self.answers_questions() {
            self.say_answer(text, out).await;
            return;
        }
        out.say(&self.config.fallback);
    }

    fn answers_questions(&self) -> bool {
        self.knowledge.is_some() || self.config.scenarios.iter().any(|s| s.use_knowledge_base)
    }

    fn transfer(&mut self, out: &mut TurnOutput) {
        self.state.transferred = Some(self.state.user_turns);
        out.say(phrases::transfer(self.lang()));
        out.actions.push(Action::Transfer);
        self.state.ended = true;
        self.state.active = None;
    }

    /// The scenario the caller's words point to, if any is sure enough.
    async fn match_intent(&self, text: &str, tokens: &[Token]) -> Option<Intent> {
        let said = token_stems(tokens);
        // Ties go to the scenario whose phrases cover more of what was said, then to the one
        // listed first: the config's order is its priority.
        let mut best: Option<(Intent, usize)> = None;
        for (i, phrases) in self.triggers.iter().enumerate() {
            let mut score = 0.0f64;
            let mut covered = vec![false; said.len()];
            let mut span = None;
            for phrase in phrases {
                if phrase.is_empty() {
                    continue;
                }
                let s = if let Some(found) = phrase_in(phrase, &said) {
                    if span.is_none() {
                        span = Some(found);
                    }
                    for c in &mut covered[found.0..found.1] {
                        *c = true;
                    }
                    1.0
                } else {
                    // Words present but not as the phrase ranks below the phrase itself.
                    let found = phrase
                        .iter()
                        .filter(|w| said.iter().any(|s| stems_match(w, s)))
                        .count();
                    0.9 * found as f64 / phrase.len() as f64
                };
                score = score.max(s);
            }
            let hits = covered.iter().filter(|c| **c).count();
            if score >= INTENT_THRESHOLD
                && best
                    .as_ref()
                    .is_none_or(|(b, h)| score > b.score || (score == b.score && hits > *h))
            {
                best = Some((
                    Intent {
                        scenario: i,
                        score,
                        end: span.map(|s| s.1),
                        span,
                    },
                    hits,
                ));
            }
        }
        if let Some((intent, _)) = best {
            return Some(intent);
        }
        self.classify_with_llm(text).await
    }

    async fn classify_with_llm(&self, text: &str) -> Option<Intent> {
        let llm = self.llm.as_ref()?;
        let mut list = String::new();
        for s in &self.config.scenarios {
            list.push_str(&format!(
                "- {}: {} (keywords: {})\n",
                s.name,
                s.description.as_deref().unwrap_or(""),
                s.trigger_keywords.join(", ")
            ));
        }
        let messages = vec![
            LlmMessage {
                role: "system",
                content: format!(
                    "You route a phone caller's request. Reply with exactly one scenario name from this list, or `none` if none fits:\n{list}"
                ),
            },
            LlmMessage { role: "user", content: text.to_string() },
        ];
        let reply = llm.complete(messages).await.ok()?.to_lowercase();
        let words: Vec<&str> = reply
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
            .collect();
        let scenario = self
            .config
            .scenarios
            .iter()
            .position(|s| words.contains(&s.name.as_str()))?;
        Some(Intent {
            scenario,
            score: 0.7,
            end: None,
            span: None,
        })
    }

    /// A scenario the caller is clearly in without naming it: "на завтра в пять можно?"
    /// carries a booking's date and time.
    fn implicit_scenario(&self, tokens: &[Token]) -> Option<Intent> {
        let mut best: Option<(usize, usize)> = None;
        for (i, scenario) in self.config.scenarios.iter().enumerate() {
            let typed: Vec<FieldSpec> = scenario
                .collect_fields
                .iter()
                .filter(|f| {
                    matches!(
                        f.kind(),
                        FieldKind::Enum | FieldKind::Date | FieldKind::Time
                    )
                })
                .cloned()
                .collect();
            if typed.is_empty() {
                continue;
            }
            let mut toks = tokens.to_vec();
            let found = extract(&typed, &mut toks, self.extract_context(None), &|_| false);
            let count = found
                .iter()
                .filter(|(_, f)| matches!(f, Found::Value(_)))
                .count();
            if count > 0 && best.is_none_or(|(_, c)| count > c) {
                best = Some((i, count));
            }
        }
        best.map(|(scenario, _)| Intent {
            scenario,
            score: 0.5,
            end: None,
            span: None,
        })
    }

    async fn enter(&mut self, intent: Intent, text: &str, tokens: &[Token], out: &mut TurnOutput) {
        let config = self.config.clone();
        let scenario = &config.scenarios[intent.scenario];
        let turn = self.state.user_turns;
        if !self
            .state
            .entered
            .iter()
            .any(|e| e.scenario == scenario.name)
        {
            self.state.entered.push(EnteredScenario {
                scenario: scenario.name.clone(),
                turn,
                collects_fields: !scenario.collect_fields.is_empty(),
            });
        }
        out.actions.push(Action::ScenarioEntered {
            scenario: scenario.name.clone(),
        });
        if scenario.collect_fields.is_empty() {
            if scenario.use_knowledge_base {
                self.say_answer(text, out).await;
            } else {
                match &scenario.completion_message {
                    Some(message) => out.say(message),
                    None => out.say(phrases::anything_else(self.lang())),
                }
            }
            self.state.completed.push(CompletedScenario {
                scenario: scenario.name.clone(),
                event: None,
                turn,
                fields: Vec::new(),
            });
            return;
        }
        self.state.active = Some(ActiveScenario {
            scenario: scenario.name.clone(),
            phase: Phase::Collecting,
            pending: None,
            retries: 0,
            skipped: Vec::new(),
        });
        let mut toks = tokens.to_vec();
        if let (Some(end), Some(first_text)) = (
            intent.end,
            scenario.collect_fields.iter().find(|f| {
                f.kind() == FieldKind::Text
                    && !is_name_field(&f.name)
                    && !self.state.fields.contains_key(&f.name)
            }),
        ) {
            // Typed values first, so "записаться на завтра" does not make "завтра" a service.
            let mut probe = toks.clone();
            let _ = extract(
                &scenario.collect_fields,
                &mut probe,
                self.extract_context(None),
                &|_| false,
            );
            if let Some((value, span)) = object_after(&probe, end) {
                self.set_field(&first_text.name, value, out);
                for t in &mut toks[span.start..span.end] {
                    t.text.clear();
                }
            }
        }
        if let Some((start, end)) = intent.span {
            for t in &mut toks[start..end] {
                t.text.clear();
            }
        }
        let found = {
            let fields = &self.state.fields;
            extract(
                &scenario.collect_fields,
                &mut toks,
                self.extract_context(None),
                &|f| fields.contains_key(f),
            )
        };
        let problems = self.apply(found, out);
        self.advance(scenario, problems, out);
    }

    fn set_field(&mut self, name: &str, value: String, out: &mut TurnOutput) {
        out.actions.push(Action::FieldCollected {
            field: name.to_string(),
            value: value.clone(),
        });
        self.state.fields.insert(
            name.to_string(),
            CollectedField {
                value,
                turn: self.state.user_turns,
            },
        );
    }

    /// Stores the values found; returns the problems, first one first.
    fn apply(
        &mut self,
        found: Vec<(String, Found)>,
        out: &mut TurnOutput,
    ) -> Vec<(String, Problem)> {
        let mut problems = Vec::new();
        for (field, result) in found {
            match result {
                Found::Value(value) => {
                    if self.state.fields.get(&field).map(|f| &f.value) != Some(&value) {
                        self.set_field(&field, value, out);
                    }
                }
                Found::Invalid(problem) => {
                    out.actions.push(Action::FieldRejected {
                        field: field.clone(),
                        reason: problem.describe().to_string(),
                    });
                    problems.push((field, problem));
                }
            }
        }
        problems
    }

    /// Asks for what is missing, or confirms, or completes.
    fn advance(
        &mut self,
        scenario: &Scenario,
        problems: Vec<(String, Problem)>,
        out: &mut TurnOutput,
    ) {
        let lang = self.lang();
        let Some(active) = self.state.active.as_mut() else {
            return;
        };
        if let Some((name, problem)) = problems.into_iter().next() {
            if let Some(field) = scenario.collect_fields.iter().find(|f| f.name == name) {
                active.retries = if active.pending.as_deref() == Some(name.as_str()) {
                    active.retries + 1
                } else {
                    0
                };
                active.pending = Some(name);
                active.phase = Phase::Collecting;
                out.say(phrases::retry(field, Some(&problem), lang));
                return;
            }
        }
        let missing = scenario.collect_fields.iter().find(|f| {
            !self.state.fields.contains_key(&f.name)
                && (f.required || !active.skipped.contains(&f.name))
        });
        if let Some(field) = missing {
            if active.pending.as_deref() != Some(field.name.as_str()) {
                active.retries = 0;
            }
            active.pending = Some(field.name.clone());
            active.phase = Phase::Collecting;
            out.say(&field.prompt);
            return;
        }
        active.pending = None;
        if scenario.confirm.unwrap_or(true) {
            active.phase = Phase::Confirming;
            out.actions.push(Action::ConfirmationRequested {
                scenario: scenario.name.clone(),
            });
            out.say(phrases::confirm(&self.summary(scenario), lang));
        } else {
            self.complete(scenario, out);
        }
    }

    fn summary(&self, scenario: &Scenario) -> String {
        let values: Vec<(&FieldSpec, &str)> = scenario
            .collect_fields
            .iter()
            .filter_map(|f| {
                self.state
                    .fields
                    .get(&f.name)
                    .map(|v| (f, v.value.as_str()))
            })
            .collect();
        phrases::summary(&values, self.lang())
    }

    fn complete(&mut self, scenario: &Scenario, out: &mut TurnOutput) {
        let turn = self.state.user_turns;
        let fields: Vec<String> = scenario
            .collect_fields
            .iter()
            .filter(|f| self.state.fields.contains_key(&f.name))
            .map(|f| f.name.clone())
            .collect();
        self.state.completed.push(CompletedScenario {
            scenario: scenario.name.clone(),
            event: scenario.on_complete.clone(),
            turn,
            fields,
        });
        out.actions.push(Action::Completed {
            scenario: scenario.name.clone(),
            event: scenario.on_complete.clone(),
        });
        let reply = match &scenario.completion_message {
            Some(message) => self.fill_placeholders(scenario, message),
            None => phrases::completed(&self.summary(scenario), self.lang()),
        };
        self.state.active = None;
        out.say(reply);
    }

    /// `{date}` in a completion message becomes the date as it is read back.
    fn fill_placeholders(&self, scenario: &Scenario, message: &str) -> String {
        let mut text = message.to_string();
        for field in &scenario.collect_fields {
            let value = self
                .state
                .fields
                .get(&field.name)
                .map(|v| phrases::display_value(field, &v.value, self.lang()))
                .unwrap_or_default();
            text = text.replace(&format!("{{{}}}", field.name), &value);
        }
        text
    }

    fn active_scenario(&self, active: &ActiveScenario) -> Option<Arc<BotConfig>> {
        self.config
            .scenarios
            .iter()
            .any(|s| s.name == active.scenario)
            .then(|| self.config.clone())
    }

    async fn collect(
        &mut self,
        text: &str,
        tokens: &[Token],
        active: ActiveScenario,
        out: &mut TurnOutput,
    ) {
        let Some(config) = self.active_scenario(&active) else {
            self.state.active = None;
            out.say(&self.config.fallback);
            return;
        };
        let Some(scenario) = config.scenarios.iter().find(|s| s.name == active.scenario) else {
            return;
        };
        let pending_field = active
            .pending
            .as_deref()
            .and_then(|p| scenario.collect_fields.iter().find(|f| f.name == p));
        let mut toks = tokens.to_vec();
        let found = {
            let fields = &self.state.fields;
            extract(
                &scenario.collect_fields,
                &mut toks,
                self.extract_context(active.pending.as_deref()),
                &|f| fields.contains_key(f),
            )
        };
        // A value the call already has ("сколько стоит педикюр?" while booking a pedicure)
        // is no answer to the question asked.
        let values = found
            .iter()
            .filter(|(name, f)| matches!(f, Found::Value(v) if self.state.fields.get(name).map(|c| &c.value) != Some(v)))
            .count();
        let only_free_text = values == 1
            && found.len() == 1
            && pending_field.is_some_and(|f| f.kind() == FieldKind::Text && found[0].0 == f.name);
        if values == 0 || only_free_text {
            if self.digress(text, tokens, scenario, &active, out).await {
                return;
            }
        }
        if values == 0 && found.is_empty() {
            let Some(field) = pending_field else {
                self.advance(scenario, Vec::new(), out);
                return;
            };
            let lang = self.lang();
            let Some(active) = self.state.active.as_mut() else {
                return;
            };
            active.retries += 1;
            // An optional field is asked once; a required one until the caller gives up.
            if !field.required {
                active.skipped.push(field.name.clone());
                self.advance(scenario, Vec::new(), out);
                return;
            }
            if active.retries > MAX_RETRIES {
                out.say(phrases::offer_person(lang));
            }
            out.say(phrases::retry(field, None, lang));
            return;
        }
        let problems = self.apply(found, out);
        self.advance(scenario, problems, out);
    }

    /// A question or a change of topic in the middle of a scenario. Questions are answered
    /// and the bot returns to where it was; a different request is switched to.
    async fn digress(
        &mut self,
        text: &str,
        tokens: &[Token],
        scenario: &Scenario,
        active: &ActiveScenario,
        out: &mut TurnOutput,
    ) -> bool {
        let intent = self
            .match_intent(text, tokens)
            .await
            .filter(|i| self.config.scenarios[i.scenario].name != scenario.name);
        let question = phrases::is_question(text, tokens);
        let resume_prompt = match active.phase {
            Phase::Collecting => active
                .pending
                .as_deref()
                .and_then(|p| scenario.collect_fields.iter().find(|f| f.name == p))
                .map(|f| phrases::back_to(&f.prompt, self.lang())),
            _ => Some(phrases::confirm(&self.summary(scenario), self.lang())),
        };
        match intent {
            Some(intent)
                if !self.config.scenarios[intent.scenario]
                    .collect_fields
                    .is_empty() =>
            {
                self.state.active = None;
                self.enter(intent, text, tokens, out).await;
                true
            }
            // A name like "Linda Park" must not read as a question about parking.
            Some(intent)
                if question || intent.score >= 1.0 && !only_text_pending(scenario, active) =>
            {
                let other = self.config.clone();
                let other = &other.scenarios[intent.scenario];
                if !self.state.entered.iter().any(|e| e.scenario == other.name) {
                    self.state.entered.push(EnteredScenario {
                        scenario: other.name.clone(),
                        turn: self.state.user_turns,
                        collects_fields: false,
                    });
                }
                out.actions.push(Action::ScenarioEntered {
                    scenario: other.name.clone(),
                });
                if other.use_knowledge_base {
                    self.say_answer(text, out).await;
                } else if let Some(message) = &other.completion_message {
                    out.say(message);
                }
                if let Some(prompt) = resume_prompt {
                    out.say(prompt);
                }
                true
            }
            _ if question && self.answers_questions() => {
                self.say_answer(text, out).await;
                if let Some(prompt) = resume_prompt {
                    out.say(prompt);
                }
                true
            }
            _ => false,
        }
    }

    async fn confirm_turn(
        &mut self,
        text: &str,
        tokens: &[Token],
        active: ActiveScenario,
        out: &mut TurnOutput,
    ) {
        let config = self.config.clone();
        let Some(scenario) = config.scenarios.iter().find(|s| s.name == active.scenario) else {
            self.state.active = None;
            return;
        };
        let mut toks = tokens.to_vec();
        let found = {
            let fields = &self.state.fields;
            extract(
                &scenario.collect_fields,
                &mut toks,
                self.extract_context(None),
                &|f| fields.contains_key(f),
            )
        };
        let changed: Vec<(String, Found)> = found
            .iter()
            .filter(|(name, f)| match f {
                Found::Value(v) => self.state.fields.get(name).map(|c| &c.value) != Some(v),
                Found::Invalid(_) => true,
            })
            .cloned()
            .collect();
        let answer = phrases::yes_no(tokens);
        let lang = self.lang();
        if !changed.is_empty() {
            let problems = self.apply(changed, out);
            if !problems.is_empty() {
                self.advance(scenario, problems, out);
                return;
            }
            if let Some(active) = self.state.active.as_mut() {
                active.phase = Phase::Confirming;
            }
            out.actions.push(Action::ConfirmationRequested {
                scenario: scenario.name.clone(),
            });
            out.say(phrases::corrected_confirm(&self.summary(scenario), lang));
            return;
        }
        if answer == Some(YesNo::Yes) {
            self.complete(scenario, out);
            return;
        }
        if let Some(field) = scenario
            .collect_fields
            .iter()
            .find(|f| phrases::mentions_field(f, tokens))
        {
            self.state.fields.remove(&field.name);
            if let Some(active) = self.state.active.as_mut() {
                active.phase = Phase::Collecting;
                active.pending = Some(field.name.clone());
                active.retries = 0;
            }
            out.say(&field.prompt);
            return;
        }
        if answer == Some(YesNo::No) {
            if let Some(active) = self.state.active.as_mut() {
                active.phase = Phase::Correcting;
            }
            out.say(phrases::what_to_correct(lang));
            return;
        }
        if self.digress(text, tokens, scenario, &active, out).await {
            return;
        }
        // "Не стрижка, а маникюр" after "what should I change?": the one free-text field.
        let text_fields: Vec<&FieldSpec> = scenario
            .collect_fields
            .iter()
            .filter(|f| f.kind() == FieldKind::Text)
            .collect();
        if active.phase == Phase::Correcting && text_fields.len() == 1 {
            let field = text_fields[0];
            let mut toks = tokens.to_vec();
            let found = extract(
                std::slice::from_ref(field),
                &mut toks,
                self.extract_context(Some(&field.name)),
                &|_| true,
            );
            if let Some((_, Found::Value(value))) = found.into_iter().next() {
                self.set_field(&field.name, value, out);
                if let Some(active) = self.state.active.as_mut() {
                    active.phase = Phase::Confirming;
                }
                out.say(phrases::corrected_confirm(&self.summary(scenario), lang));
                return;
            }
        }
        out.say(phrases::confirm_again(lang));
    }

    /// An answer from the bot's documents, citing the source; says so when nothing fits.
    /// Answers a question from the bot's documents: through the language model when there is
    /// one (streamed to a live listener as it is written), else the best passage itself.
    async fn say_answer(&mut self, question: &str, out: &mut TurnOutput) {
        let lang = self.lang();
        let turn = self.state.user_turns;
        let Some(knowledge) = self.knowledge.clone() else {
            out.say(format!(
                "{} {}",
                phrases::no_knowledge(lang),
                phrases::anything_else(lang)
            ));
            return;
        };
        let top_k = self.config.knowledge.top_k.max(1) as usize;
        let min_score = self.config.knowledge.min_score.unwrap_or(0.0);
        let chunks: Vec<_> = knowledge
            .search(question, top_k)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.score >= min_score)
            .collect();
        let Some(best) = chunks.first() else {
            out.say(format!(
                "{} {}",
                phrases::no_knowledge(lang),
                phrases::anything_else(lang)
            ));
            return;
        };
        let mut sources: Vec<String> = Vec::new();
        for c in &chunks {
            if !sources.contains(&c.source) {
                sources.push(c.source.clone());
            }
        }
        self.state.answered.push(turn);
        if let Some(llm) = &self.llm {
            let excerpts: String = chunks
                .iter()
                .map(|c| format!("[{}]\n{}\n\n", c.source, c.text))
                .collect();
            let system = format!(
                "{}\nAnswer the caller in {} in one or two short spoken sentences, using only these excerpts from the company's documents, and name the document you used. If they do not contain the answer, say that you do not have that information.\n\n{excerpts}",
                self.config.system_prompt.as_deref().unwrap_or(""),
                if lang == Language::Ru { "Russian" } else { "English" }
            );
            let messages = vec![
                LlmMessage {
                    role: "system",
                    content: system,
                },
                LlmMessage {
                    role: "user",
                    content: question.to_string(),
                },
            ];
            // With a live listener, what was said before the answer goes first, then the answer
            // as the model writes it (its first piece after a space). Without one, the pieces
            // go nowhere and the answer is only said.
            let live = self.live.clone();
            self.flush_live(out);
            let gap = !out.reply.is_empty();
            let first = std::sync::atomic::AtomicBool::new(true);
            let on_text = |piece: &str| {
                let Some(live) = &live else { return };
                let is_first = first.load(std::sync::atomic::Ordering::Relaxed);
                let piece = if is_first { piece.trim_start() } else { piece };
                if piece.is_empty() {
                    return;
                }
                if is_first {
                    first.store(false, std::sync::atomic::Ordering::Relaxed);
                    if gap {
                        live(" ");
                    }
                }
                live(piece);
            };
            let reply = llm.complete_streaming(messages, &on_text).await;
            if let Ok(text) = &reply {
                out.say(text);
                // What was streamed is in the reply now, so the final flush skips it.
                out.live_sent = out.reply.len();
            }
            if reply.is_ok_and(|text| !text.trim().is_empty()) {
                out.actions.push(Action::KnowledgeAnswered { sources });
                return;
            }
        }
        out.actions.push(Action::KnowledgeAnswered {
            sources: vec![best.source.clone()],
        });
        out.say(format!(
            "{} {}",
            excerpt(&best.text, 300),
            phrases::source(&best.source, lang)
        ));
    }
}

/// True when the bot waits for free text, where any words are a plausible answer.
fn only_text_pending(scenario: &Scenario, active: &ActiveScenario) -> bool {
    active.phase == Phase::Collecting
        && active
            .pending
            .as_deref()
            .and_then(|p| scenario.collect_fields.iter().find(|f| f.name == p))
            .is_some_and(|f| f.kind() == FieldKind::Text)
}

/// The first sentences of a passage, up to about `limit` characters, for reading aloud.
fn excerpt(text: &str, limit: usize) -> String {
    let clean: String = text
        .lines()
        .map(|l| l.trim_start_matches(['#', '-', '*', ' ']))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = String::new();
    for sentence in clean.split_inclusive(['.', '!', '?']) {
        if !out.is_empty() && out.chars().count() + sentence.chars().count() > limit {
            break;
        }
        out.push_str(sentence);
    }
    let out = out.trim().to_string();
    if out.chars().count() > limit * 2 {
        out.chars().take(limit).collect::<String>() + "…"
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::assist::{block_on, AssistError, BoxFuture};
    use chrono::TimeZone;

    const SALON: &str = r#"
language: ru
greeting: "Здравствуйте!"
fallback: "Не поняла."
scenarios:
  - name: booking
    trigger_keywords: ["записаться"]
    collect_fields:
      - {name: service, type: enum, prompt: "Какая услуга?", options: ["стрижка|подстричься", "маникюр"]}
      - {name: date, prompt: "Какой день?"}
      - {name: time, prompt: "Какое время?"}
      - {name: phone, prompt: "Ваш номер?"}
    on_complete: booking_created
  - name: callback
    description: "the caller wants a call back about prices"
    collect_fields:
      - {name: phone, prompt: "Ваш номер?"}
    on_complete: callback_requested
providers:
  llm: {provider: ollama}
"#;

    fn engine() -> ScenarioEngine {
        let config = BotConfig::parse_any(SALON).expect("valid test config");
        let now = Utc.with_ymd_and_hms(2025, 3, 12, 7, 0, 0).unwrap();
        ScenarioEngine::new(Arc::new(config.clone()), CallContext::for_bot(&config, now))
    }

    /// Plays caller lines and returns the bot's replies.
    fn play(engine: &mut ScenarioEngine, lines: &[&str]) -> Vec<String> {
        lines
            .iter()
            .map(|l| block_on(engine.process_turn(l)).reply)
            .collect()
    }

    #[test]
    fn a_checkpointed_call_resumes_where_it_stopped() {
        let mut first = engine();
        first.start_call();
        play(&mut first, &["хочу записаться на стрижку", "завтра в 5"]);
        let json = serde_json::to_string(&first.snapshot()).unwrap();
        let snapshot: EngineSnapshot = serde_json::from_str(&json).unwrap();
        let mut second = ScenarioEngine::restore(Arc::new(first.config().clone()), snapshot);
        let replies = play(&mut second, &["8 916 123 45 67", "да"]);
        assert!(replies[0].contains("Всё верно?"), "{replies:?}");
        let result = second.end_call();
        assert_eq!(result.outcome.kind, "BOOKING");
        assert_eq!(result.fields["date"], "2025-03-13");
        assert_eq!(result.turns, 4);
    }

    struct RoutesToCallback;

    impl Llm for RoutesToCallback {
        fn complete<'a>(
            &'a self,
            messages: Vec<LlmMessage>,
        ) -> BoxFuture<'a, Result<String, AssistError>> {
            let listed = messages[0].content.contains("callback:");
            Box::pin(std::future::ready(Ok(if listed {
                "callback".to_string()
            } else {
                "none".to_string()
            })))
        }
    }

    #[test]
    fn an_llm_classifies_what_keywords_miss() {
        let mut engine = engine().with_llm(Arc::new(RoutesToCallback));
        let out = block_on(engine.process_turn("наберите меня попозже насчёт цен"));
        assert_eq!(
            out.actions[0],
            Action::ScenarioEntered {
                scenario: "callback".into()
            }
        );
        assert_eq!(out.reply, "Ваш номер?");
    }

    /// Answers in two sentences, handing each over as it is "written".
    struct TwoSentences;

    const PRICE_ANSWER: [&str; 2] = [
        "Стрижка стоит 1500 рублей.",
        " Запишитесь, и мы подберём время.",
    ];

    impl Llm for TwoSentences {
        fn complete<'a>(
            &'a self,
            _messages: Vec<LlmMessage>,
        ) -> BoxFuture<'a, Result<String, AssistError>> {
            Box::pin(std::future::ready(Ok(PRICE_ANSWER.concat())))
        }

        fn complete_streaming<'a>(
            &'a self,
            messages: Vec<LlmMessage>,
            on_text: &'a (dyn Fn(&str) + Send + Sync),
        ) -> BoxFuture<'a, Result<String, AssistError>> {
            let classify = messages[0].content.contains("You route");
            Box::pin(async move {
                if classify {
                    return Ok("none".to_string());
                }
                for sentence in PRICE_ANSWER {
                    on_text(sentence);
                }
                Ok(PRICE_ANSWER.concat())
            })
        }
    }

    #[test]
    fn a_live_turn_hands_over_the_answer_sentence_by_sentence_in_order() {
        let knowledge = || {
            let mut k = crate::scenario::InMemoryKnowledge::new();
            k.add_document(
                "prices.md",
                "Стрижка стоит 1500 рублей. Маникюр стоит 1200 рублей.",
            );
            Arc::new(k)
        };
        let mut live_engine = engine()
            .with_llm(Arc::new(TwoSentences))
            .with_knowledge(knowledge());
        let mut plain_engine = engine()
            .with_llm(Arc::new(TwoSentences))
            .with_knowledge(knowledge());
        for e in [&mut live_engine, &mut plain_engine] {
            e.start_call();
            block_on(e.process_turn("хочу записаться на стрижку"));
        }
        // A question while a field is pending: the answer, then the pending question again.
        let pieces = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = pieces.clone();
        let live: LiveText = Arc::new(move |p: &str| sink.lock().unwrap().push(p.to_string()));
        let out = block_on(live_engine.process_turn_live("Сколько стоит стрижка?", live));
        let pieces = pieces.lock().unwrap().clone();
        assert_eq!(out.reply, "Стрижка стоит 1500 рублей. Запишитесь, и мы подберём время. Вернёмся к записи. Какой день?");
        assert_eq!(
            pieces,
            [
                "Стрижка стоит 1500 рублей.",
                " Запишитесь, и мы подберём время.",
                " Вернёмся к записи. Какой день?"
            ]
        );
        assert_eq!(pieces.concat(), out.reply);
        // Without a listener the engine says the same.
        assert_eq!(
            block_on(plain_engine.process_turn("Сколько стоит стрижка?")).reply,
            out.reply
        );
        assert!(out
            .actions
            .iter()
            .any(|a| matches!(a, Action::KnowledgeAnswered { .. })));
    }

    #[test]
    fn the_call_ends_at_max_turns() {
        let config =
            BotConfig::parse_any(&SALON.replace("language: ru", "language: ru\nmax_turns: 2"))
                .unwrap();
        let now = Utc.with_ymd_and_hms(2025, 3, 12, 7, 0, 0).unwrap();
        let mut engine =
            ScenarioEngine::new(Arc::new(config.clone()), CallContext::for_bot(&config, now));
        play(&mut engine, &["а"]);
        let out = block_on(engine.process_turn("б"));
        assert!(out.ends_call());
        assert_eq!(engine.end_call().outcome.kind, "ABANDONED");
    }
}
