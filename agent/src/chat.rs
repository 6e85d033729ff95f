//! A call in a LiveKit room, conversed over the room's chat (`lk.chat`: text streams, and the
//! legacy chat packets; replies go out as text streams): the agent joins with a token it mints
//! itself, greets the first caller that appears, answers each chat message through
//! the scenario engine, checkpoints after every turn, and ends when the caller leaves, the bot
//! hangs up, or the worker is forced to stop. A call re-placed after its worker died resumes from
//! the checkpoint and tells the caller it is back.
//!
//! The voice session runs a call here when the bot's speech providers cannot be built, so the
//! bot still answers; as a [`CallRunner`] of its own it runs the engine without a language model.

use crate::livekit_conventions::AgentStatus;
use crate::plan::{
    call_started_at, failed_record, is_caller, join_room, no_answer_record, opening, record_for,
    CallError, CallPlan, LiveKitSettings,
};
use crate::worker::{CallHandle, CallRunner};
use async_trait::async_trait;
use callfleet_core::domain::{CallRecord, CallStatus};
use callfleet_pipeline::AgentState;
use callfleet_rtc::RoomEvent;
use std::time::Duration;

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

    /// Runs the call `plan` was made for over chat, to its record.
    pub(crate) async fn run_plan(&self, call: &CallHandle, plan: CallPlan) -> CallRecord {
        let started_at = plan.started_at;
        match self.converse(call, plan).await {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(call_id = %call.job.call_id, error = %e, "call failed");
                failed_record(&call.job, started_at, &e)
            }
        }
    }

    async fn converse(&self, call: &CallHandle, plan: CallPlan) -> Result<CallRecord, CallError> {
        let job = &call.job;
        let CallPlan {
            mut engine,
            resumed,
            started_at,
            ..
        } = plan;
        let (room, mut events) = join_room(&self.livekit, job).await?;
        tracing::info!(call_id = %job.call_id, room = %job.room, resumed, "joined the room");
        let mut agent_state = AgentStatus::new(room.clone());

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
                    let opening = opening(&mut engine, resumed);
                    // Saved before it is sent: what the caller has read, a worker taking the
                    // call over knows.
                    call.checkpointer.save_snapshot(&engine.snapshot()).await;
                    room.send_chat(&opening).await?;
                    agent_state.set(AgentState::Listening).await;
                    greeted = true;
                }
                RoomEvent::ChatMessage { from, text }
                    if greeted && caller.as_deref() == Some(from.as_str()) =>
                {
                    agent_state.set(AgentState::Thinking).await;
                    let out = engine.process_turn(&text).await;
                    call.checkpointer.save_snapshot(&engine.snapshot()).await;
                    if !out.reply.is_empty() {
                        room.send_chat(&out.reply).await?;
                    }
                    agent_state.set(AgentState::Listening).await;
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
        let mut record = if status == CallStatus::NoAnswer {
            no_answer_record(job, started_at, "no caller joined the room")
        } else {
            let mut record = record_for(job, started_at, status);
            record.outcome = Some(result.outcome);
            record
        };
        record.language = Some(result.language);
        record.transcript = result.transcript;
        record.fields = result.fields;
        Ok(record)
    }
}

#[async_trait]
impl CallRunner for ChatSession {
    /// A chat call on the scenario engine alone (no language model).
    async fn run(&self, call: CallHandle) -> CallRecord {
        match CallPlan::for_job(&call, self.knowledge.as_ref()) {
            Ok(plan) => self.run_plan(&call, plan).await,
            Err(e) => {
                tracing::error!(call_id = %call.job.call_id, error = %e, "call failed");
                failed_record(&call.job, call_started_at(&call.job), &e)
            }
        }
    }
}
