//! The messages. Each carries `v` so a worker of the next release can refuse (or adapt to) a
//! message it does not understand instead of misreading it.

use callfleet_core::domain::{CallDirection, CallRecord, CallStatus};
use serde::{Deserialize, Serialize};

pub const MESSAGE_VERSION: u32 = 1;

fn current_version() -> u32 {
    MESSAGE_VERSION
}

/// Work for an agent: run the call in `room` for `bot_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    #[serde(default = "current_version")]
    pub v: u32,
    pub call_id: String,
    pub room: String,
    pub company_id: String,
    pub bot_id: String,
    /// The config version the call runs with, fixed when the call is first placed.
    pub config_version: i64,
    /// That version's validated config (canonical JSON): workers never read the database, so
    /// the job carries what the bot is.
    #[serde(default)]
    pub config: serde_json::Value,
    pub direction: CallDirection,
    /// The caller's participant identity in the room, when known (SIP participants).
    #[serde(default)]
    pub caller_identity: Option<String>,
    #[serde(default)]
    pub from_number: Option<String>,
    #[serde(default)]
    pub to_number: Option<String>,
    /// Unix ms when the call was first placed.
    pub created_at: i64,
    /// 0 for the first placement; +1 each time a dead worker's call is re-placed.
    #[serde(default)]
    pub attempt: u32,
    /// The agent name of a call LiveKit's own agent dispatch handed to a worker
    /// (`callfleet agent --dispatch livekit`): failover asks LiveKit to dispatch it again under
    /// this name (`CreateDispatch`) instead of queueing it for a worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub livekit_agent: Option<String>,
}

impl Job {
    /// The call's record in `status`, begun at `started_at` (Unix ms), before anything was said:
    /// who it is for, how it came and where it runs.
    pub fn record(&self, status: CallStatus, started_at: i64) -> CallRecord {
        CallRecord {
            id: self.call_id.clone(),
            company_id: self.company_id.clone(),
            bot_id: self.bot_id.clone(),
            bot_config_version: self.config_version,
            direction: self.direction,
            status,
            from_number: self.from_number.clone(),
            to_number: self.to_number.clone(),
            room: Some(self.room.clone()),
            started_at,
            ended_at: None,
            language: None,
            transcript: Vec::new(),
            fields: Default::default(),
            outcome: None,
            summary: None,
            metrics: Vec::new(),
        }
    }
}

/// A worker's heartbeat: who it is and how loaded it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    #[serde(default = "current_version")]
    pub v: u32,
    pub worker_id: String,
    /// Calls it accepts at once.
    pub capacity: u32,
    pub active_calls: u32,
    /// Process CPU use, 0.0–1.0 of the machine.
    pub cpu: f32,
    pub memory_bytes: u64,
    /// Open connections to providers (STT, TTS, LLM) across its calls.
    #[serde(default)]
    pub provider_connections: u32,
    /// A draining worker finishes its calls and takes no new ones.
    #[serde(default)]
    pub draining: bool,
    /// Unix ms of this beat.
    pub at: i64,
}

impl WorkerStatus {
    pub fn has_room(&self) -> bool {
        !self.draining && self.active_calls < self.capacity
    }
}

/// What a call has become after its latest turn, kept so another worker can resume it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    #[serde(default = "current_version")]
    pub v: u32,
    pub call_id: String,
    /// The scenario engine's snapshot (transcript, scenario state, collected fields), opaque here.
    pub engine: serde_json::Value,
    /// Turns completed so far.
    pub turns: u32,
    /// Unix ms of this checkpoint.
    pub at: i64,
    /// The fencing token: the job's `attempt` of the worker that wrote it. A checkpoint of a
    /// lower attempt (a stalled worker that resumed after its call was re-placed) never
    /// replaces one of a higher attempt.
    #[serde(default)]
    pub attempt: u32,
}
