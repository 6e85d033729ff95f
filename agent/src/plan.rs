//! A call assembled in one place. A [`CallPlan`] is built once from a job (or, in the console,
//! from a bot file): the bot config parsed once, the scenario engine started — restored from the
//! checkpoint of a call re-placed after its worker died — with the bot's documents and language
//! model, the provider chains chosen for the bot's language, and the call's start time. The chat
//! session, the voice session and `callfleet console` all run a call from a plan; what they say
//! around the engine ("we got cut off") comes from the core's phrase tables, keyed by the call's
//! [`Language`].
//!
//! Both ends of a call are here too: joining its LiveKit room, and the record it ends with.

use crate::livekit_conventions::{AGENT_STATE, INITIALIZING};
use crate::worker::CallHandle;
use callfleet_core::config::BotConfig;
use callfleet_core::domain::{CallRecord, CallStatus, Evidence, Outcome, Speaker, Turn};
use callfleet_core::scenario::{
    phrases, CallContext, EngineSnapshot, KnowledgeSearch, ScenarioEngine,
};
use callfleet_core::secret::Secret;
use callfleet_core::text::Language;
use callfleet_fleet::Job;
use callfleet_pipeline::{EndOfTurnModel, Pipeline, PipelineConfig, Providers, Vad};
use callfleet_providers::{call_chains, EngineLlm, LocalEngines, ProviderEnv};
use callfleet_rtc::{agent_token, ParticipantKind, Room, RoomEvent, RoomOptions};
use std::collections::HashMap;
use std::sync::Arc;

/// Where the LiveKit server is and the keys to mint tokens with.
#[derive(Debug, Clone)]
pub struct LiveKitSettings {
    pub url: String,
    pub api_key: String,
    pub api_secret: Secret,
    /// Tokens LiveKit's agent dispatch gave for calls (`--dispatch livekit`): such a call
    /// joins with the server's token rather than one of ours.
    pub grants: RoomGrants,
}

/// A room token LiveKit handed a worker with a job, and where to use it.
#[derive(Clone)]
pub struct RoomGrant {
    pub url: String,
    pub token: Secret,
}

/// The room grants of calls about to start, by call id; shared by the LiveKit dispatch (which
/// puts them) and the calls (which take them as they join).
#[derive(Clone, Default)]
pub struct RoomGrants(Arc<std::sync::Mutex<std::collections::HashMap<String, RoomGrant>>>);

impl std::fmt::Debug for RoomGrants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomGrants")
    }
}

impl RoomGrants {
    pub fn put(&self, call_id: &str, grant: RoomGrant) {
        if let Ok(mut grants) = self.0.lock() {
            grants.insert(call_id.to_string(), grant);
        }
    }

    pub fn take(&self, call_id: &str) -> Option<RoomGrant> {
        self.0.lock().ok()?.remove(call_id)
    }
}

/// Why a call could not run (chat or voice).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("the job's bot config is invalid: {0}")]
    Config(String),
    #[error("the checkpoint cannot be resumed: {0}")]
    Checkpoint(#[from] serde_json::Error),
    #[error("room: {0}")]
    Room(#[from] callfleet_rtc::RoomError),
    #[error("pipeline: {0}")]
    Pipeline(#[from] callfleet_pipeline::PipelineError),
}

/// Where the engine starts: a new call at a moment, or where a checkpoint left it.
pub enum EngineStart {
    Fresh(CallContext),
    Resume(Box<EngineSnapshot>),
}

/// Everything a call runs on, assembled once before it starts.
pub struct CallPlan {
    /// The bot the call is for (the pipeline's phrase cache and metrics are keyed by it).
    pub bot_id: String,
    pub config: Arc<BotConfig>,
    /// The language the call is in as it starts (a resumed call's, from its checkpoint).
    pub language: Language,
    /// When the call started, in ms since the epoch; a re-placed call keeps its first start.
    pub started_at: i64,
    /// Whether the call was taken over from a worker that died.
    pub resumed: bool,
    /// What was said before a takeover (from the checkpoint): the record holds the whole call.
    pub earlier: Vec<Turn>,
    /// The scenario engine, with the bot's language model and documents when it has them.
    pub engine: ScenarioEngine,
    /// The speech providers, when both STT and TTS could be built: else the call runs on chat.
    pub speech: Option<Providers>,
    /// What each built stage runs, in fallback order (`stt: deepgram → whisper`).
    pub chosen: Vec<String>,
    /// Providers left out, with why.
    pub skipped: Vec<String>,
}

impl CallPlan {
    /// A plan for `bot_id` on `config`, with the engine started from `start`; no providers yet
    /// ([`CallPlan::with_providers`]).
    pub fn new(
        bot_id: impl Into<String>,
        config: BotConfig,
        start: EngineStart,
        started_at: i64,
    ) -> CallPlan {
        let config = Arc::new(config);
        let (engine, resumed) = match start {
            EngineStart::Fresh(context) => (ScenarioEngine::new(config.clone(), context), false),
            EngineStart::Resume(snapshot) => {
                (ScenarioEngine::restore(config.clone(), *snapshot), true)
            }
        };
        let earlier = if resumed {
            engine.state().transcript.clone()
        } else {
            Vec::new()
        };
        CallPlan {
            bot_id: bot_id.into(),
            language: engine.state().language,
            config,
            started_at,
            resumed,
            earlier,
            engine,
            speech: None,
            chosen: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// The plan of a job: its bot config parsed (once, for the whole call), the engine restored
    /// from the checkpoint when the call was re-placed, else new on the job's config version;
    /// with the bot's documents when there is a searcher.
    pub(crate) fn for_job(
        call: &CallHandle,
        knowledge: Option<&callfleet_knowledge::KnowledgeSearcher>,
    ) -> Result<CallPlan, CallError> {
        let job = &call.job;
        let config =
            BotConfig::from_value(&job.config).map_err(|e| CallError::Config(e.to_string()))?;
        let start = match &call.resume_from {
            Some(checkpoint) => {
                EngineStart::Resume(Box::new(serde_json::from_value(checkpoint.engine.clone())?))
            }
            None => {
                let mut context = CallContext::for_bot_now(&config);
                context.config_version = job.config_version;
                EngineStart::Fresh(context)
            }
        };
        let plan = CallPlan::new(job.bot_id.clone(), config, start, call_started_at(job));
        Ok(match knowledge {
            Some(searcher) => plan.with_knowledge(Arc::new(
                callfleet_knowledge::BotKnowledge::new(searcher.clone(), job.bot_id.clone()),
            )),
            None => plan,
        })
    }

    /// Scenarios with `use_knowledge_base` answer from `knowledge`.
    pub fn with_knowledge(mut self, knowledge: Arc<dyn KnowledgeSearch>) -> CallPlan {
        self.engine = self.engine.with_knowledge(knowledge);
        self
    }

    /// Chooses the provider chains for the bot's language from `env` and the local engines
    /// (which, with no cloud key, serve what the cloud cannot): the engine gets the language
    /// model, the plan the speech providers when both STT and TTS were built.
    pub fn with_providers(
        mut self,
        env: &ProviderEnv,
        local: Option<&dyn LocalEngines>,
    ) -> CallPlan {
        let chains = call_chains(&self.config.providers, &self.config.language, env, local);
        if let Some(model) = chains.llm {
            let llm = EngineLlm::for_call(model, self.config.providers.llm.as_ref());
            self.engine = self.engine.with_llm(Arc::new(llm));
        }
        self.speech = match (chains.stt, chains.tts) {
            (Some(stt), Some(tts)) => Some(Providers { stt, tts }),
            _ => None,
        };
        self.chosen = chains.chosen;
        self.skipped = chains.skipped;
        self
    }

    /// The pipeline's settings for this bot (rates, voice, silence timeout, turn limit).
    pub fn pipeline_config(&self) -> PipelineConfig {
        PipelineConfig::for_bot(self.bot_id.clone(), &self.config)
    }

    /// The pipeline that runs this call's audio on `speech`, judging the caller with a VAD and
    /// end-of-turn model from `turn_models` when given.
    pub async fn pipeline(
        &self,
        speech: Providers,
        turn_models: Option<&TurnModelFactory>,
    ) -> Pipeline {
        let pipeline = Pipeline::new(self.pipeline_config(), speech);
        match turn_models {
            Some(factory) => CallTurnModels::open(factory).await.install(pipeline),
            None => pipeline,
        }
    }
}

/// One call's voice activity detector and end-of-turn model; `None` keeps the pipeline's own
/// (the energy VAD, no end-of-turn model).
#[derive(Default)]
pub struct CallTurnModels {
    pub vad: Option<Box<dyn Vad>>,
    pub end_of_turn: Option<Box<dyn EndOfTurnModel>>,
}

/// Makes [`CallTurnModels`] for each call (run on the blocking pool at call start).
pub type TurnModelFactory = Arc<dyn Fn() -> CallTurnModels + Send + Sync>;

impl CallTurnModels {
    /// One call's models from `factory`, opened off the executor (reading model files).
    pub async fn open(factory: &TurnModelFactory) -> CallTurnModels {
        let factory = factory.clone();
        tokio::task::spawn_blocking(move || factory())
            .await
            .unwrap_or_default()
    }

    /// `pipeline` judging the caller with these models.
    pub fn install(self, mut pipeline: Pipeline) -> Pipeline {
        if let Some(vad) = self.vad {
            pipeline = pipeline.with_vad(vad);
        }
        if let Some(model) = self.end_of_turn {
            pipeline = pipeline.with_turn_model(model);
        }
        pipeline
    }
}

/// What the bot says first: the greeting, or — on a call taken over from a dead worker — that it
/// is back, with the last thing it had said.
pub(crate) fn opening(engine: &mut ScenarioEngine, resumed: bool) -> String {
    if resumed {
        opening_after_takeover(engine)
    } else {
        engine.start_call().reply
    }
}

/// The bot is back after its worker died: say so, and repeat where it was.
pub(crate) fn opening_after_takeover(engine: &ScenarioEngine) -> String {
    let state = engine.state();
    let back = phrases::cut_off(state.language);
    let last = state
        .transcript
        .iter()
        .rev()
        .find(|t| t.speaker == Speaker::Bot);
    match last {
        Some(turn) => format!("{back} {}", turn.text),
        None => back.to_string(),
    }
}

/// Joins the job's room as an agent (participant kind AGENT, `lk.agent.state: initializing`)
/// with the token LiveKit's dispatch gave for it, else with one of our own. One identity per
/// call: a worker that takes over replaces a dead one's ghost at once.
pub(crate) async fn join_room(
    livekit: &LiveKitSettings,
    job: &Job,
) -> Result<(Room, tokio::sync::mpsc::Receiver<RoomEvent>), CallError> {
    if let Some(grant) = livekit.grants.take(&job.call_id) {
        let (room, events) =
            Room::connect(&grant.url, grant.token.expose(), RoomOptions::default()).await?;
        // LiveKit's token makes us an agent but sets no state; ours joins with it.
        let initializing = HashMap::from([(AGENT_STATE.to_string(), INITIALIZING.to_string())]);
        room.set_attributes(initializing).await?;
        return Ok((room, events));
    }
    let identity = format!("agent-{}", job.call_id);
    let token = agent_token(
        &livekit.api_key,
        livekit.api_secret.expose(),
        &job.room,
        &identity,
        &[(AGENT_STATE, INITIALIZING)],
    )?;
    Ok(Room::connect(&livekit.url, &token, RoomOptions::default()).await?)
}

pub(crate) fn is_caller(kind: ParticipantKind) -> bool {
    !matches!(kind, ParticipantKind::Agent | ParticipantKind::Egress)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// When the job's call started: a re-placed call keeps the start of the call, not of this
/// worker's part of it.
pub(crate) fn call_started_at(job: &Job) -> i64 {
    if job.created_at > 0 {
        job.created_at
    } else {
        now_ms()
    }
}

/// The record of a call that could not run, with why as the outcome's evidence.
pub(crate) fn failed_record(job: &Job, started_at: i64, why: &dyn std::fmt::Display) -> CallRecord {
    let mut record = record_for(job, started_at, CallStatus::Failed);
    record.outcome = Some(Outcome {
        kind: "FAILED".into(),
        evidence: vec![Evidence::note(why.to_string())],
    });
    record
}

/// The record of a call no caller came to, with what was missing as the evidence.
pub(crate) fn no_answer_record(job: &Job, started_at: i64, evidence: &str) -> CallRecord {
    let mut record = record_for(job, started_at, CallStatus::NoAnswer);
    record.outcome = Some(Outcome {
        kind: "NO_ANSWER".into(),
        evidence: vec![Evidence::note(evidence)],
    });
    record
}

/// A call's record as it ends, before the conversation is filled in.
pub(crate) fn record_for(job: &Job, started_at: i64, status: CallStatus) -> CallRecord {
    CallRecord {
        ended_at: Some(now_ms()),
        ..job.record(status, started_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine_with(language: &str, last_bot_line: Option<&str>) -> ScenarioEngine {
        let config = BotConfig::parse_any(&format!(
            "name: t\nlanguage: {language}\ngreeting: Hi there.\nfallback: Sorry?\n"
        ))
        .expect("a minimal bot config");
        let config = Arc::new(config);
        let mut engine = ScenarioEngine::new(config.clone(), CallContext::for_bot_now(&config));
        if last_bot_line.is_some() {
            engine.start_call();
        }
        engine
    }

    #[test]
    fn a_taken_over_call_says_it_is_back_in_its_language_and_repeats_its_last_line() {
        assert_eq!(
            opening_after_takeover(&engine_with("en", Some("Hi there."))),
            "Sorry, we got cut off. Let's continue. Hi there."
        );
        assert_eq!(
            opening_after_takeover(&engine_with("ru", None)),
            "Извините, связь прервалась. Продолжим."
        );
    }
}
