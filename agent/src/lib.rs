//! The agent worker: registers with the fleet (heartbeats carrying capacity and load), takes the
//! jobs the dispatcher queues for it, runs each call through a [`CallRunner`] (the LiveKit room +
//! voice pipeline + scenario engine), checkpoints after every turn so another worker can resume
//! the call if this one dies, and pushes each finished call to the durable post-call queue.
//! SIGTERM drains it: no new jobs, running calls finish, then it leaves; a second SIGTERM forces
//! the calls to end.
//!
//! Architecture invariant: a worker never writes to the database; everything it produces leaves
//! through the fleet (checkpoints, the post-call queue).

pub mod load;
mod session;
mod voice;
mod worker;

pub use session::{ChatSession, LiveKitSettings};
pub use voice::{CallTurnModels, TurnModelFactory, VoiceSession};
pub use worker::{CallHandle, CallRunner, Checkpointer, Worker, WorkerConfig, CALL_MEMORY_BUDGET};
