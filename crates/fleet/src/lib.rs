//! The fleet's shared vocabulary and plumbing: the versioned messages that pass between the admin
//! API, the dispatcher and agent workers (jobs, worker heartbeats, call checkpoints, finished call
//! records), and the transports that carry them — Redis in production, in-process under
//! `callfleet dev` (with a file-backed post-call queue so no finished call is lost on a crash).
//!
//! Architecture invariant: this crate moves messages and keeps their TTLs; it holds no placement
//! policy (that is the dispatcher's) and never runs a call (that is the agent's).

mod bus;
mod file_queue;
mod memory;
mod messages;
mod redis_bus;
#[cfg(feature = "test-support")]
pub mod testing;

pub use bus::{FleetBus, FleetError, PostCallQueue, QueuedRecord, UnreadableEntry};
pub use file_queue::FileQueue;
pub use memory::MemoryBus;
pub use messages::{Checkpoint, Job, WorkerStatus, MESSAGE_VERSION};
pub use redis_bus::{RedisBus, RedisQueue};

use std::time::Duration;

/// How long a worker's heartbeat stays valid: a worker silent this long is dead.
pub const HEARTBEAT_TTL: Duration = Duration::from_millis(800);
/// How often a worker beats; several beats fit in one TTL so one late beat is not a death.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(200);
/// How long a checkpoint outlives its last update.
pub const CHECKPOINT_TTL: Duration = Duration::from_secs(3600);
