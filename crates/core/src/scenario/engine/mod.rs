//! The scenario engine: given a bot's config and what the caller says, decides what the bot
//! says next and what happened (scenario entered, field collected, request completed).
//!
//! One engine serves one call. Its whole memory is [`EngineState`], a plain serde value, so a
//! call can be checkpointed after every turn and resumed on another worker with
//! [`ScenarioEngine::restore`]. The engine is pure; the LLM and the knowledge base are reached
//! through the traits in [`super::assist`].
//!
//! This module holds the call's flow (greeting, a turn, the end); `intent` decides which
//! scenario the caller means, `collect` gathers and confirms its fields, `answer` answers from
//! documents. What the engine remembers and reports is in [`super::state`].

mod answer;
mod collect;
mod intent;
mod understand;

use super::assist::{KnowledgeSearch, Llm};
use super::extract::ExtractContext;
use super::outcome::classify;
use super::phrases::{self, YesNo};
use super::state::*;
use crate::config::BotConfig;
use crate::domain::{Speaker, Turn};
use crate::text::{detect_language, stems, tokenize, Language, Stems, Token};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How sure keyword matching must be before the caller is taken into a scenario: the share
/// of a trigger phrase's words that were said.
pub const INTENT_THRESHOLD: f64 = 0.6;

/// Below this recogniser confidence an utterance is not taken as a free-text value: the
/// field is asked again rather than filled with what was probably misheard.
pub const LOW_CONFIDENCE: f32 = 0.5;

/// How many times a field is re-asked before the engine stops insisting on it.
pub(super) const MAX_RETRIES: u32 = 3;

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
    /// How sure the recogniser was of the turn being processed, when it said.
    heard_confidence: Option<f32>,
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
            heard_confidence: None,
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
        self.process_heard(user_text, None).await
    }

    /// [`ScenarioEngine::process_turn`] for an utterance the recogniser heard with
    /// `confidence` (0–1): below [`LOW_CONFIDENCE`] it fills no free-text field.
    pub async fn process_heard(&mut self, user_text: &str, confidence: Option<f32>) -> TurnOutput {
        self.heard_confidence = confidence;
        let out = self.respond_to(user_text).await;
        self.heard_confidence = None;
        out
    }

    /// True when the recogniser said it was unsure of this turn's words.
    fn heard_unsure(&self) -> bool {
        self.heard_confidence.is_some_and(|c| c < LOW_CONFIDENCE)
    }

    async fn respond_to(&mut self, user_text: &str) -> TurnOutput {
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
        self.process_heard_live(user_text, None, live).await
    }

    /// [`ScenarioEngine::process_turn_live`] with the recogniser's confidence, as in
    /// [`ScenarioEngine::process_heard`].
    pub async fn process_heard_live(
        &mut self,
        user_text: &str,
        confidence: Option<f32>,
        live: LiveText,
    ) -> TurnOutput {
        self.live = Some(live);
        let mut out = self.process_heard(user_text, confidence).await;
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

    fn transfer(&mut self, out: &mut TurnOutput) {
        self.transfer_with(None, out);
    }

    /// Ends the bot's part of the call by putting the caller through to a person, saying
    /// `message` (else that it is transferring them).
    fn transfer_with(&mut self, message: Option<String>, out: &mut TurnOutput) {
        self.state.transferred = Some(self.state.user_turns);
        match message {
            Some(message) => out.say(message),
            None => out.say(phrases::transfer(self.lang())),
        }
        out.actions.push(Action::Transfer);
        self.state.ended = true;
        self.state.active = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::assist::{block_on, AssistError, BoxFuture, LlmMessage};
    use chrono::{TimeZone, Utc};

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

    /// Answers with hours the documents do not give.
    struct InventsSundayHours;

    impl Llm for InventsSundayHours {
        fn complete<'a>(
            &'a self,
            messages: Vec<LlmMessage>,
        ) -> BoxFuture<'a, Result<String, AssistError>> {
            let reply = if messages[0].content.contains("You route") {
                "none"
            } else {
                "Мы работаем с 10 до 21. В воскресенье с 8 утра до 16."
            };
            Box::pin(std::future::ready(Ok(reply.to_string())))
        }

        fn complete_streaming<'a>(
            &'a self,
            messages: Vec<LlmMessage>,
            on_text: &'a (dyn Fn(&str) + Send + Sync),
        ) -> BoxFuture<'a, Result<String, AssistError>> {
            Box::pin(async move {
                let reply = self.complete(messages).await?;
                // Sentences as models stream them: the next one starts with its space.
                for sentence in reply.split_inclusive('.') {
                    on_text(sentence);
                }
                Ok(reply)
            })
        }
    }

    #[test]
    fn an_answer_with_a_fact_the_documents_lack_is_withheld_and_a_call_back_offered() {
        let mut k = crate::scenario::InMemoryKnowledge::new();
        k.add_document("about.md", "Работаем с понедельника по субботу с 10 до 21.");
        let mut engine = engine()
            .with_llm(Arc::new(InventsSundayHours))
            .with_knowledge(Arc::new(k));
        let pieces = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = pieces.clone();
        let live: LiveText = Arc::new(move |p: &str| sink.lock().unwrap().push(p.to_string()));
        let out = block_on(engine.process_turn_live("Когда вы работаете?", live));
        assert_eq!(
            out.reply,
            format!(
                "Мы работаем с 10 до 21. {}",
                phrases::unsure_call_back(Language::Ru)
            )
        );
        // The invented sentence was never handed to the voice.
        assert_eq!(pieces.lock().unwrap().concat(), out.reply);
        assert!(out.actions.contains(&Action::CallbackRequested));
        assert_eq!(engine.end_call().outcome.kind, "CALLBACK");
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

    const SUPPORT: &str = r#"
name: Support line
language: en
greeting: "Hello, support line."
fallback: "Sorry?"
transfer_to: "+14155550199"
scenarios:
  - name: manager
    trigger_keywords: [manager, complaint]
    transfer: true
    completion_message: "Putting you through to a manager now."
  - name: sales
    trigger_keywords: [buy, quote]
    collect_fields:
      - {name: caller_name, type: text, prompt: "May I have your name?"}
    confirm: false
    transfer: true
"#;

    fn support() -> ScenarioEngine {
        let config = BotConfig::parse_any(SUPPORT).expect("valid test config");
        let now = Utc.with_ymd_and_hms(2025, 3, 12, 7, 0, 0).unwrap();
        ScenarioEngine::new(Arc::new(config.clone()), CallContext::for_bot(&config, now))
    }

    #[test]
    fn a_transfer_scenario_puts_the_caller_through_when_it_is_entered() {
        let mut engine = support();
        engine.start_call();
        let out = block_on(engine.process_turn("I have a complaint about my order"));
        assert_eq!(out.reply, "Putting you through to a manager now.");
        assert!(out.actions.contains(&Action::Transfer), "{:?}", out.actions);
        assert!(out.ends_call());
        let result = engine.end_call();
        assert_eq!(result.outcome.kind, "TRANSFERRED");
        assert_eq!(result.state.transferred, Some(1));
    }

    #[test]
    fn a_transfer_scenario_with_fields_transfers_once_they_are_collected() {
        let mut engine = support();
        engine.start_call();
        let asked = block_on(engine.process_turn("I would like a quote"));
        assert!(!asked.actions.contains(&Action::Transfer));
        assert!(
            asked.reply.contains("May I have your name?"),
            "{}",
            asked.reply
        );
        let out = block_on(engine.process_turn("Anna Smith"));
        assert!(out.actions.contains(&Action::Transfer), "{:?}", out.actions);
        assert!(out.ends_call());
        let result = engine.end_call();
        assert_eq!(result.outcome.kind, "TRANSFERRED");
        assert_eq!(result.fields["caller_name"], "Anna Smith");
    }

    #[test]
    fn a_transfer_scenario_needs_somewhere_to_transfer_to() {
        let without = SUPPORT.replace("transfer_to: \"+14155550199\"\n", "");
        let issues = BotConfig::parse_any(&without).unwrap_err().to_string();
        assert!(issues.contains("scenarios[0].transfer"), "{issues}");
        assert!(issues.contains("scenarios[1].transfer"), "{issues}");
    }
}
