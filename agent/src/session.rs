//! A call in a LiveKit room, conversed over the room's chat (`lk.chat`): the agent joins with a
//! token it mints itself, greets the first caller that appears, answers each chat message through
//! the scenario engine, checkpoints after every turn, and ends when the caller leaves, the bot
//! hangs up, or the worker is forced to stop. A call re-placed after its worker died resumes from
//! the checkpoint and tells the caller it is back.
//!
//! The voice session (room audio through the pipeline) runs the same engine and checkpoints the
//! same way; it replaces this runner once the voice pipeline is wired in.

use crate::worker::{CallHandle, CallRunner};
use async_trait::async_trait;
use callfleet_core::config::BotConfig;
use callfleet_core::domain::{CallRecord, CallStatus, Outcome, Speaker};
use callfleet_core::scenario::{CallContext, EngineSnapshot, ScenarioEngine};
use callfleet_core::secret::Secret;
use callfleet_fleet::Job;
use callfleet_rtc::{participant_token, ParticipantKind, Room, RoomEvent, RoomOptions};
use std::sync::Arc;
use std::time::Duration;

/// Where the LiveKit server is and the keys to mint tokens with.
#[derive(Debug, Clone)]
pub struct LiveKitSettings {
    pub url: String,
    pub api_key: String,
    pub api_secret: Secret,
}

/// Runs calls over LiveKit chat.
pub struct ChatSession {
    livekit: LiveKitSettings,
    knowledge: Option<callfleet_knowledge::KnowledgeSearcher>,
    /// How long to wait for a caller before the call ends as NO_ANSWER.
    pub caller_timeout: Duration,
}

impl ChatSession {
    pub fn new(livekit: LiveKitSettings) -> ChatSession {
        ChatSession {
            livekit,
            knowledge: None,
            caller_timeout: Duration::from_secs(60),
        }
    }

    /// Bots with `use_knowledge_base` answer from their documents through this searcher.
    pub fn with_knowledge(
        mut self,
        knowledge: callfleet_knowledge::KnowledgeSearcher,
    ) -> ChatSession {
        self.knowledge = Some(knowledge);
        self
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

/// The call's engine: restored from its checkpoint when the call was re-placed, else new; with
/// the bot's documents when there is a knowledge service.
pub(crate) fn start_engine(
    call: &CallHandle,
    config: Arc<BotConfig>,
    knowledge: Option<&callfleet_knowledge::KnowledgeSearcher>,
) -> Result<ScenarioEngine, CallError> {
    let engine = match &call.resume_from {
        Some(checkpoint) => {
            let snapshot: EngineSnapshot = serde_json::from_value(checkpoint.engine.clone())?;
            ScenarioEngine::restore(config, snapshot)
        }
        None => {
            let mut context = CallContext::for_bot_now(&config);
            context.config_version = call.job.config_version;
            ScenarioEngine::new(config, context)
        }
    };
    Ok(match knowledge {
        Some(searcher) => engine.with_knowledge(Arc::new(callfleet_knowledge::BotKnowledge::new(
            searcher.clone(),
            call.job.bot_id.clone(),
        ))),
        None => engine,
    })
}

/// Joins the job's room with a token of our own. One identity per call: a worker that takes
/// over replaces a dead one's ghost at once.
pub(crate) async fn join_room(
    livekit: &LiveKitSettings,
    job: &Job,
) -> Result<(Room, tokio::sync::mpsc::Receiver<RoomEvent>), CallError> {
    let identity = format!("agent-{}", job.call_id);
    let token = participant_token(
        &livekit.api_key,
        livekit.api_secret.expose(),
        &job.room,
        &identity,
    )?;
    Ok(Room::connect(&livekit.url, &token, RoomOptions::default()).await?)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn is_caller(kind: ParticipantKind) -> bool {
    !matches!(kind, ParticipantKind::Agent | ParticipantKind::Egress)
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
    let last = state
        .transcript
        .iter()
        .rev()
        .find(|t| t.speaker == Speaker::Bot)
        .map(|t| t.text.as_str());
    back_message(state.language.code(), last)
}

fn back_message(language: &str, last_bot_line: Option<&str>) -> String {
    let opening = if language == "ru" {
        "Извините, связь прервалась. Продолжим."
    } else {
        "Sorry, we got cut off. Let's continue."
    };
    match last_bot_line {
        Some(line) => format!("{opening} {line}"),
        None => opening.to_string(),
    }
}

/// The record of a call that could not run, with why as the outcome's evidence.
pub(crate) fn failed_record(job: &Job, started_at: i64, why: &dyn std::fmt::Display) -> CallRecord {
    let mut record = record_for(job, started_at, CallStatus::Failed);
    record.outcome = Some(Outcome {
        kind: "FAILED".into(),
        evidence: vec![why.to_string()],
    });
    record
}

pub(crate) fn record_for(job: &Job, started_at: i64, status: CallStatus) -> CallRecord {
    CallRecord {
        id: job.call_id.clone(),
        company_id: job.company_id.clone(),
        bot_id: job.bot_id.clone(),
        bot_config_version: job.config_version,
        direction: job.direction,
        status,
        from_number: job.from_number.clone(),
        to_number: job.to_number.clone(),
        room: Some(job.room.clone()),
        started_at,
        ended_at: Some(now_ms()),
        language: None,
        transcript: Vec::new(),
        fields: Default::default(),
        outcome: None,
        summary: None,
        metrics: Vec::new(),
    }
}

impl ChatSession {
    /// Runs the call over chat with the bot's language model (chosen by the caller of this, from
    /// the bot's providers) helping the engine classify and answer.
    pub(crate) async fn run_with_llm(
        &self,
        call: CallHandle,
        llm: Option<Arc<dyn callfleet_core::scenario::Llm>>,
    ) -> CallRecord {
        // A re-placed call keeps the start of the call, not of this worker's part of it.
        let started_at = if call.job.created_at > 0 {
            call.job.created_at
        } else {
            now_ms()
        };
        match self.converse(&call, llm, started_at).await {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(call_id = %call.job.call_id, error = %e, "call failed");
                failed_record(&call.job, started_at, &e)
            }
        }
    }

    async fn converse(
        &self,
        call: &CallHandle,
        llm: Option<Arc<dyn callfleet_core::scenario::Llm>>,
        started_at: i64,
    ) -> Result<CallRecord, CallError> {
        let job = &call.job;
        let config = Arc::new(
            BotConfig::from_value(&job.config).map_err(|e| CallError::Config(e.to_string()))?,
        );
        let resumed = call.resume_from.is_some();
        let mut engine = start_engine(call, config, self.knowledge.as_ref())?;
        if let Some(llm) = llm {
            engine = engine.with_llm(llm);
        }
        let (room, mut events) = join_room(&self.livekit, job).await?;
        tracing::info!(call_id = %job.call_id, room = %job.room, resumed, "joined the room");

        let mut caller: Option<String> = job.caller_identity.clone();
        let mut greeted = false;
        let mut status = CallStatus::Completed;
        let deadline = tokio::time::sleep(self.caller_timeout);
        tokio::pin!(deadline);
        loop {
            let event = tokio::select! {
                () = call.cancel.cancelled() => { status = CallStatus::Failed; break; }
                () = &mut deadline, if !greeted => { status = CallStatus::NoAnswer; break; }
                event = events.recv() => match event { Some(e) => e, None => break },
            };
            match event {
                RoomEvent::ParticipantJoined(p)
                    if is_caller(p.kind)
                        && !greeted
                        && caller.as_deref().is_none_or(|c| c == p.identity) =>
                {
                    caller = Some(p.identity.clone());
                    room.send_chat(&opening(&mut engine, resumed)).await?;
                    greeted = true;
                    self.checkpoint(call, &engine).await;
                }
                RoomEvent::ChatMessage { from, text }
                    if greeted && caller.as_deref() == Some(from.as_str()) =>
                {
                    let out = engine.process_turn(&text).await;
                    if !out.reply.is_empty() {
                        room.send_chat(&out.reply).await?;
                    }
                    self.checkpoint(call, &engine).await;
                    if out.ends_call() || engine.is_ended() {
                        break;
                    }
                }
                RoomEvent::ParticipantLeft { identity }
                    if caller.as_deref() == Some(identity.as_str()) =>
                {
                    break
                }
                RoomEvent::Disconnected { reason } => {
                    tracing::warn!(call_id = %job.call_id, reason = %reason, "left the room unexpectedly");
                    status = CallStatus::Failed;
                    break;
                }
                _ => {}
            }
        }
        room.leave().await;
        let result = engine.end_call();
        let mut record = record_for(job, started_at, status);
        record.language = Some(result.language);
        record.transcript = result.transcript;
        record.fields = result.fields;
        record.outcome = Some(if status == CallStatus::NoAnswer {
            Outcome {
                kind: "NO_ANSWER".into(),
                evidence: vec!["no caller joined the room".into()],
            }
        } else {
            result.outcome
        });
        Ok(record)
    }

    async fn checkpoint(&self, call: &CallHandle, engine: &ScenarioEngine) {
        call.checkpointer.save_snapshot(&engine.snapshot()).await;
    }
}

#[async_trait]
impl CallRunner for ChatSession {
    /// A chat call on the scenario engine alone (no language model).
    async fn run(&self, call: CallHandle) -> CallRecord {
        self.run_with_llm(call, None).await
    }
}
