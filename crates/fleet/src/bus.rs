//! The transport traits. Both implementations (Redis, in-process) pass one shared test suite.

use crate::messages::{Checkpoint, Job, WorkerStatus};
use async_trait::async_trait;
use callfleet_core::domain::CallRecord;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("message could not be read: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("queue file: {0}")]
    Io(#[from] std::io::Error),
    #[error("message version {0} is newer than this build understands")]
    Version(u32),
    /// A checkpoint of an older attempt than the one stored: another worker has the call now.
    #[error("call {call_id} was taken over (attempt {held} holds it)")]
    Fenced { call_id: String, held: u32 },
}

pub type Result<T, E = FleetError> = std::result::Result<T, E>;

/// Workers, jobs and checkpoints.
#[async_trait]
pub trait FleetBus: Send + Sync + 'static {
    /// Records a worker's heartbeat, valid for `ttl`.
    async fn heartbeat(&self, status: &WorkerStatus, ttl: Duration) -> Result<()>;
    /// Removes a worker at once (clean shutdown); its unfinished jobs stay for failover.
    async fn deregister(&self, worker_id: &str) -> Result<()>;
    /// Workers whose heartbeat is still valid. A heartbeat this build cannot read is left out
    /// with a warning (that worker gets no calls from this dispatcher); the others are listed.
    async fn live_workers(&self) -> Result<Vec<WorkerStatus>>;
    /// Every worker that has ever registered and not been forgotten, live or not.
    async fn known_workers(&self) -> Result<Vec<String>>;
    /// Forgets a dead worker once its jobs have been re-placed — unless a job was assigned to
    /// it meanwhile (another process placed a call on it before it was seen dead): then it stays
    /// known, with that job, for the next failover scan. Returns whether it was forgotten.
    async fn forget_worker(&self, worker_id: &str) -> Result<bool>;

    /// Claims `key` (a room, a re-placement) for `owner` for `ttl`; false if someone holds it.
    /// This is how several dispatchers avoid placing one room twice.
    async fn claim(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool>;
    /// Gives up a claim, if `owner` still holds it.
    async fn release(&self, key: &str, owner: &str) -> Result<()>;
    /// Ends the claim on a room whose call is over, whoever placed it, so the room can be
    /// placed again (a reused room name, a new call on the same SIP room) before the claim's TTL.
    async fn release_room(&self, room: &str) -> Result<()>;

    /// Gives `job` to `worker_id`: queued for it and recorded as its until finished.
    async fn assign(&self, worker_id: &str, job: &Job) -> Result<()>;
    /// The next job queued for `worker_id`, waiting up to `wait`. A job this build cannot run is
    /// taken off the worker (set aside on Redis, under `dead-jobs`, with the error) and `None`
    /// returned, so it is neither retried forever nor counted as the worker's call.
    async fn next_job(&self, worker_id: &str, wait: Duration) -> Result<Option<Job>>;
    /// The worker is done with this call (ended, or handed back).
    async fn finish_job(&self, worker_id: &str, call_id: &str) -> Result<()>;
    /// Jobs assigned to `worker_id` and not finished. A job this build cannot read (a newer
    /// version during a rolling upgrade, a damaged entry) is left out with a warning, so one
    /// such job never stops placement or failover of the others.
    async fn jobs_of(&self, worker_id: &str) -> Result<Vec<Job>>;
    /// Whether `worker_id` still holds the call: false once failover gave it to another worker
    /// (this one was stalled, not dead). A worker that no longer holds a call leaves it.
    async fn holds_job(&self, worker_id: &str, call_id: &str) -> Result<bool>;

    /// Saves a call's checkpoint unless one of a higher `attempt` is stored
    /// ([`FleetError::Fenced`]): a stalled worker cannot overwrite the worker that took over.
    async fn save_checkpoint(&self, checkpoint: &Checkpoint, ttl: Duration) -> Result<()>;
    async fn load_checkpoint(&self, call_id: &str) -> Result<Option<Checkpoint>>;
}

/// A record taken from the post-call queue; ack it once stored.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedRecord {
    pub id: String,
    pub record: CallRecord,
}

/// The durable queue from agents to post-call processing. Delivery is at-least-once: a record
/// taken but not acked comes back (to any consumer) after `redeliver_after`.
#[async_trait]
pub trait PostCallQueue: Send + Sync + 'static {
    async fn push(&self, record: &CallRecord) -> Result<String>;
    async fn pop(&self, consumer: &str, wait: Duration) -> Result<Option<QueuedRecord>>;
    async fn ack(&self, id: &str) -> Result<()>;
    /// Records taken more than `idle` ago and never acked (their consumer died).
    async fn reclaim(&self, consumer: &str, idle: Duration) -> Result<Vec<QueuedRecord>>;
    /// Up to `max` entries the queue set aside because they were not call records at all,
    /// oldest first, for post-call processing to keep as dead letters; none by default (queues
    /// that never hold unreadable entries).
    async fn unreadable(&self, _max: usize) -> Result<Vec<UnreadableEntry>> {
        Ok(Vec::new())
    }
    /// Drops set-aside entries once they are kept elsewhere (by [`UnreadableEntry::id`]).
    async fn forget_unreadable(&self, _ids: &[String]) -> Result<()> {
        Ok(())
    }
}

/// A queue entry that could not be read as a call record, as it was set aside.
#[derive(Debug, Clone, PartialEq)]
pub struct UnreadableEntry {
    /// Its id where it is set aside.
    pub id: String,
    /// Its id in the queue it came from.
    pub entry_id: String,
    /// The raw body.
    pub body: String,
    /// Why it could not be read.
    pub error: String,
}

pub(crate) fn check_version(v: u32) -> Result<()> {
    if v > crate::MESSAGE_VERSION {
        return Err(FleetError::Version(v));
    }
    Ok(())
}
