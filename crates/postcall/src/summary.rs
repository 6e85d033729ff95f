//! A call's summary from the bot's own language model chain (the `providers.llm` of the config
//! version the call ran on), asked to use only what the transcript and the collected fields say,
//! in the call's language. When no model can serve — none configured, a refusal, a broken stream,
//! no answer within the timeout — or what came back does not hold up (empty, the wrong language,
//! a number that appears nowhere in the call), the call gets the extractive summary instead:
//! never an invented one. Which kind each call got is stored beside it.

use crate::analysis::extractive_summary;
use async_trait::async_trait;
use callfleet_core::domain::{CallRecord, Speaker};
use callfleet_core::text::{detect_language, Language};
use callfleet_providers::{build_chains, ChatMessage, ChatRequest, LanguageModel, ProviderEnv};
use callfleet_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a call's summary was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryKind {
    /// Written by the bot's language model from the transcript.
    Llm,
    /// Drawn from the record: the caller's words, the fields, the outcome.
    Extractive,
    /// Came with the record (the agent or a post-call step wrote it).
    Given,
}

impl SummaryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SummaryKind::Llm => "llm",
            SummaryKind::Extractive => "extractive",
            SummaryKind::Given => "given",
        }
    }

    pub fn parse(text: &str) -> Option<SummaryKind> {
        [
            SummaryKind::Llm,
            SummaryKind::Extractive,
            SummaryKind::Given,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// A call's summary and how it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub text: String,
    pub kind: SummaryKind,
}

impl Summary {
    pub fn extractive(record: &CallRecord) -> Summary {
        Summary {
            text: extractive_summary(record),
            kind: SummaryKind::Extractive,
        }
    }
}

/// The language model that may summarise a call; `None` when its bot has none that can serve.
#[async_trait]
pub trait SummaryModels: Send + Sync + 'static {
    async fn model_for(&self, record: &CallRecord) -> Option<Arc<dyn LanguageModel>>;
}

/// The chain of the bot's `providers.llm` in the config version the call ran on, built over the
/// cloud and Ollama/OpenAI-compatible clients with the environment's keys and URLs. Local
/// engines are not used for summaries: the small offline model invents details.
pub struct BotModels {
    store: Store,
    env: ProviderEnv,
    built: Mutex<HashMap<BotVersionKey, Option<Arc<dyn LanguageModel>>>>,
}

/// (bot id, config version).
type BotVersionKey = (String, i64);

/// Bot versions whose chains are kept built; past this the cache starts over.
const KEPT_CHAINS: usize = 256;

impl BotModels {
    pub fn new(store: Store, env: ProviderEnv) -> BotModels {
        BotModels {
            store,
            env,
            built: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl SummaryModels for BotModels {
    async fn model_for(&self, record: &CallRecord) -> Option<Arc<dyn LanguageModel>> {
        let key = (record.bot_id.clone(), record.bot_config_version);
        if let Some(model) = self.built.lock().expect("chains lock").get(&key) {
            return model.clone();
        }
        let version = match self
            .store
            .get_bot_version(&record.bot_id, Some(record.bot_config_version))
            .await
        {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(call_id = %record.id, error = %e, "no bot config to summarise with");
                return None;
            }
        };
        let config = match version.bot_config() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(call_id = %record.id, error = %e, "bot config unreadable");
                return None;
            }
        };
        let model = build_chains(&config.providers, &self.env).llm;
        let mut built = self.built.lock().expect("chains lock");
        if built.len() >= KEPT_CHAINS {
            built.clear();
        }
        built.insert(key, model.clone());
        model
    }
}

/// Writes summaries, with a model when one serves in time, extractively otherwise.
#[derive(Clone)]
pub struct Summarizer {
    models: Option<Arc<dyn SummaryModels>>,
    timeout: Duration,
}

/// How long a model may take for a whole summary before the extractive one is used.
pub const SUMMARY_TIMEOUT: Duration = Duration::from_secs(20);

/// Longest summary kept from a model, in characters.
const MAX_SUMMARY_CHARS: usize = 600;

impl Summarizer {
    /// Extractive summaries only.
    pub fn extractive() -> Summarizer {
        Summarizer {
            models: None,
            timeout: SUMMARY_TIMEOUT,
        }
    }

    pub fn with_models(models: Arc<dyn SummaryModels>) -> Summarizer {
        Summarizer {
            models: Some(models),
            timeout: SUMMARY_TIMEOUT,
        }
    }

    /// Each bot's own chain ([`BotModels`]).
    pub fn for_bots(store: Store, env: ProviderEnv) -> Summarizer {
        Self::with_models(Arc::new(BotModels::new(store, env)))
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Summarizer {
        self.timeout = timeout;
        self
    }

    /// The summary of `record`: the model's when it serves and holds up, else extractive.
    pub async fn summarize(&self, record: &CallRecord) -> Summary {
        let caller_spoke = record
            .transcript
            .iter()
            .any(|t| t.speaker == Speaker::User && !t.text.trim().is_empty());
        let Some(models) = self.models.as_ref().filter(|_| caller_spoke) else {
            return Summary::extractive(record);
        };
        let Some(model) = models.model_for(record).await else {
            return Summary::extractive(record);
        };
        let asked = async {
            let stream = model.stream(request(record)).await?;
            let provider = stream.provider().to_string();
            stream.collect_text().await.map(|text| (provider, text))
        };
        let (provider, text) = match tokio::time::timeout(self.timeout, asked).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                tracing::warn!(call_id = %record.id, error = %e, "no model could summarise the call; extractive summary");
                return Summary::extractive(record);
            }
            Err(_) => {
                tracing::warn!(call_id = %record.id, timeout_ms = self.timeout.as_millis() as u64, "the model did not summarise the call in time; extractive summary");
                return Summary::extractive(record);
            }
        };
        match checked(record, &text) {
            Ok(text) => {
                tracing::debug!(call_id = %record.id, provider, "call summarised by a model");
                Summary {
                    text,
                    kind: SummaryKind::Llm,
                }
            }
            Err(why) => {
                tracing::warn!(call_id = %record.id, provider, why, "model summary refused; extractive summary");
                Summary::extractive(record)
            }
        }
    }
}

fn language_name(code: Option<&str>) -> String {
    let base = code
        .unwrap_or("en")
        .split(['-', '_'])
        .next()
        .unwrap_or("en")
        .to_ascii_lowercase();
    match base.as_str() {
        "ru" => "Russian".into(),
        "en" => "English".into(),
        "de" => "German".into(),
        "fr" => "French".into(),
        "es" => "Spanish".into(),
        "it" => "Italian".into(),
        "uk" => "Ukrainian".into(),
        "kk" => "Kazakh".into(),
        other => format!("the language with code '{other}'"),
    }
}

/// What the model is asked: the instruction, then the call as data.
fn request(record: &CallRecord) -> ChatRequest {
    let language = language_name(record.language.as_deref());
    let system = format!(
        "You write the summary of a finished phone call for the company's records. Write one to \
         three short sentences in {language}: what the caller wanted and what was agreed or \
         left open. Use only facts stated in the transcript and the collected fields; never add \
         names, dates, times, numbers or promises that are not there. No greeting, no preamble, \
         no lists: the summary only."
    );
    let mut call = String::from("Transcript:\n");
    for turn in &record.transcript {
        let who = match turn.speaker {
            Speaker::User => "Caller",
            Speaker::Bot => "Bot",
        };
        call.push_str(&format!("{who}: {}\n", turn.text.trim()));
    }
    if !record.fields.is_empty() {
        call.push_str("\nCollected fields:\n");
        for (name, value) in &record.fields {
            call.push_str(&format!("{name}: {value}\n"));
        }
    }
    if let Some(outcome) = &record.outcome {
        call.push_str(&format!("\nOutcome: {}\n", outcome.kind));
    }
    ChatRequest {
        messages: vec![ChatMessage::system(system), ChatMessage::user(call)],
        tools: Vec::new(),
        temperature: Some(0.2),
        max_tokens: Some(200),
    }
}

/// Runs of digits in `text`.
fn numbers(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|run| !run.is_empty())
        .map(str::to_string)
        .collect()
}

/// The model's text, trimmed and bounded, if it holds up against the call: not empty, in the
/// call's language (where that can be told), and every number of three digits or more (a phone,
/// a price, a year) found in what was said or collected.
fn checked(record: &CallRecord, text: &str) -> Result<String, &'static str> {
    let text = text.trim().trim_matches('"').trim();
    if text.is_empty() {
        return Err("empty");
    }
    if let Some(want) = record.language.as_deref().and_then(Language::from_code) {
        if detect_language(text).is_some_and(|got| got != want) {
            return Err("not in the call's language");
        }
    }
    let mut source: Vec<String> = Vec::new();
    for turn in &record.transcript {
        source.extend(numbers(&turn.text));
    }
    for value in record.fields.values() {
        source.extend(numbers(value));
        // A phone read out in groups is one number in the field.
        source.push(value.chars().filter(char::is_ascii_digit).collect());
    }
    let digits_said = source.join("|");
    let invented = numbers(text)
        .into_iter()
        .any(|n| n.len() >= 3 && !digits_said.contains(&n));
    if invented {
        return Err("a number that is not in the call");
    }
    let mut text = text.to_string();
    if text.chars().count() > MAX_SUMMARY_CHARS {
        let cut: String = text.chars().take(MAX_SUMMARY_CHARS).collect();
        let end = cut.rfind(['.', '!', '?']).map_or(cut.len(), |i| i + 1);
        text = format!("{}…", cut[..end].trim_end());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use callfleet_core::domain::{CallDirection, CallStatus, Turn};

    fn record(language: &str, said: &[&str], fields: &[(&str, &str)]) -> CallRecord {
        CallRecord {
            id: "call_1".into(),
            company_id: "cmp".into(),
            bot_id: "bot".into(),
            bot_config_version: 1,
            direction: CallDirection::Inbound,
            status: CallStatus::Completed,
            from_number: None,
            to_number: None,
            room: None,
            started_at: 0,
            ended_at: Some(30_000),
            language: Some(language.into()),
            transcript: said
                .iter()
                .map(|t| Turn {
                    speaker: Speaker::User,
                    text: t.to_string(),
                    at_ms: 0,
                    interrupted: false,
                })
                .collect(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            outcome: None,
            summary: None,
            metrics: vec![],
        }
    }

    #[test]
    fn a_model_summary_must_hold_up_against_the_call() {
        let en = record(
            "en",
            &["Book me a haircut tomorrow at 10, my number is 415 555 0100"],
            &[("phone", "+14155550100"), ("date", "2026-12-03")],
        );
        for (text, expected) in [
            (
                "  The caller booked a haircut for tomorrow at 10:00.  ",
                Ok("The caller booked a haircut for tomorrow at 10:00."),
            ),
            (
                "The caller booked a haircut on 2026-12-03 and left +1 415 555 0100.",
                Ok("The caller booked a haircut on 2026-12-03 and left +1 415 555 0100."),
            ),
            ("", Err("empty")),
            ("\"\"", Err("empty")),
            (
                "The haircut costs 1500 roubles.",
                Err("a number that is not in the call"),
            ),
            (
                "Клиент записался на стрижку.",
                Err("not in the call's language"),
            ),
        ] {
            assert_eq!(
                checked(&en, text).as_deref(),
                expected.map(str::to_string).as_deref(),
                "{text}"
            );
        }
        let ru = record("ru", &["Хочу записаться на маникюр"], &[]);
        assert_eq!(
            checked(&ru, "The caller wants a manicure."),
            Err("not in the call's language")
        );
        assert!(checked(&ru, "Клиент хочет записаться на маникюр.").is_ok());
        // Languages without phrase tables are not judged.
        assert!(checked(&record("de", &["Hallo"], &[]), "Der Anrufer grüßte.").is_ok());
        let long = "A sentence that goes on. ".repeat(40);
        let cut = checked(&en, &long).expect("long is fine, cut");
        assert!(cut.chars().count() <= MAX_SUMMARY_CHARS + 1 && cut.ends_with(".…"));
    }

    #[test]
    fn the_request_carries_the_call_and_its_language() {
        let r = record("ru-RU", &["Хочу записаться"], &[("service", "стрижка")]);
        let req = request(&r);
        assert!(req.messages[0].content.contains("in Russian"));
        assert!(req.messages[1].content.contains("Caller: Хочу записаться"));
        assert!(req.messages[1].content.contains("service: стрижка"));
        assert_eq!(language_name(Some("pt-BR")), "the language with code 'pt'");
        assert_eq!(SummaryKind::parse("llm"), Some(SummaryKind::Llm));
        assert_eq!(SummaryKind::parse("poem"), None);
    }
}
