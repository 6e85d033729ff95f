//! The agent worker: registers with the fleet (heartbeats carrying capacity and load), takes the
//! jobs the dispatcher queues for it, runs each call through a [`CallRunner`] (the LiveKit room +
//! voice pipeline + scenario engine), checkpoints after every turn so another worker can resume
//! the call if this one dies, and pushes each finished call to the durable post-call queue.
//! SIGTERM drains it: no new jobs, running calls finish, then it leaves; a second SIGTERM forces
//! the calls to end. With `--dispatch livekit` (`livekit_dispatch.rs`) the jobs come from
//! LiveKit's own agent dispatch, admitted by the dispatcher and then run the same way.
//!
//! Following a call: `worker.rs` takes the job → `plan.rs` assembles the call once
//! ([`CallPlan`]: config parsed, engine started or resumed, providers chosen, start time,
//! language) → `voice.rs` runs it over the room's audio (or `chat.rs` over its chat when the bot
//! has no speech providers), saving checkpoints (`checkpoint.rs`) after every turn → the record
//! goes back to the worker, which queues it for post-call. In the room the agent keeps LiveKit's
//! conventions (`livekit_conventions.rs`): participant kind AGENT, `lk.agent.state`, and the
//! call's transcriptions on `lk.transcription`, so LiveKit's own clients show it as an agent.
//!
//! Architecture invariant: a worker never writes to the database; everything it produces leaves
//! through the fleet (checkpoints, the post-call queue).

mod chat;
mod checkpoint;
mod livekit_conventions;
mod livekit_dispatch;
pub mod load;
mod plan;
mod recorder;
mod voice;
mod worker;

pub use chat::ChatSession;
pub use checkpoint::Checkpointer;
pub use livekit_dispatch::{choose_bot, BotRouting, LiveKitDispatch, LiveKitDispatchConfig};
pub use plan::{
    CallPlan, CallTurnModels, EngineStart, LiveKitSettings, RoomGrant, RoomGrants, TurnModelFactory,
};
pub use voice::VoiceSession;
pub use worker::{CallHandle, CallRunner, Worker, WorkerConfig, CALL_MEMORY_BUDGET};
