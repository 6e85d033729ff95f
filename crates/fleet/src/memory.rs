//! The in-process bus for `callfleet dev`: the same semantics as Redis (TTLs, claims, per-worker
//! queues) kept in memory. Time is tokio's, so TTL behaviour is tested on a paused clock.

use crate::bus::{check_version, FleetBus, Result};
use crate::messages::{Checkpoint, Job, WorkerStatus};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Default)]
struct State {
    workers: HashMap<String, (WorkerStatus, Instant)>,
    known: BTreeSet<String>,
    claims: HashMap<String, (String, Instant)>,
    queues: HashMap<String, VecDeque<Job>>,
    assigned: HashMap<String, BTreeMap<String, Job>>,
    checkpoints: HashMap<String, (Checkpoint, Instant)>,
}

/// Fleet messages between tasks of one process.
#[derive(Default)]
pub struct MemoryBus {
    state: Mutex<State>,
    job_queued: Notify,
}

impl MemoryBus {
    pub fn new() -> MemoryBus {
        MemoryBus::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock would be a bug in this file; nothing inside can panic.
        self.state.lock().expect("memory bus lock poisoned")
    }
}

#[async_trait]
impl FleetBus for MemoryBus {
    async fn heartbeat(&self, status: &WorkerStatus, ttl: Duration) -> Result<()> {
        let mut state = self.state();
        state.known.insert(status.worker_id.clone());
        state.workers.insert(
            status.worker_id.clone(),
            (status.clone(), Instant::now() + ttl),
        );
        Ok(())
    }

    async fn deregister(&self, worker_id: &str) -> Result<()> {
        self.state().workers.remove(worker_id);
        Ok(())
    }

    async fn live_workers(&self) -> Result<Vec<WorkerStatus>> {
        let now = Instant::now();
        let mut live: Vec<WorkerStatus> = self
            .state()
            .workers
            .values()
            .filter(|(_, expires)| *expires > now)
            .map(|(s, _)| s.clone())
            .collect();
        live.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        Ok(live)
    }

    async fn known_workers(&self) -> Result<Vec<String>> {
        Ok(self.state().known.iter().cloned().collect())
    }

    async fn forget_worker(&self, worker_id: &str) -> Result<bool> {
        let mut state = self.state();
        if state
            .assigned
            .get(worker_id)
            .is_some_and(|jobs| !jobs.is_empty())
        {
            return Ok(false);
        }
        state.known.remove(worker_id);
        state.workers.remove(worker_id);
        state.queues.remove(worker_id);
        state.assigned.remove(worker_id);
        Ok(true)
    }

    async fn claim(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool> {
        let now = Instant::now();
        let mut state = self.state();
        match state.claims.get(key) {
            Some((_, expires)) if *expires > now => Ok(false),
            _ => {
                state
                    .claims
                    .insert(key.to_string(), (owner.to_string(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn release(&self, key: &str, owner: &str) -> Result<()> {
        let mut state = self.state();
        if state
            .claims
            .get(key)
            .is_some_and(|(held_by, _)| held_by == owner)
        {
            state.claims.remove(key);
        }
        Ok(())
    }

    async fn release_room(&self, room: &str) -> Result<()> {
        self.state().claims.remove(&format!("room:{room}"));
        Ok(())
    }

    async fn assign(&self, worker_id: &str, job: &Job) -> Result<()> {
        {
            let mut state = self.state();
            state
                .assigned
                .entry(worker_id.to_string())
                .or_default()
                .insert(job.call_id.clone(), job.clone());
            state
                .queues
                .entry(worker_id.to_string())
                .or_default()
                .push_back(job.clone());
        }
        self.job_queued.notify_waiters();
        Ok(())
    }

    async fn next_job(&self, worker_id: &str, wait: Duration) -> Result<Option<Job>> {
        let deadline = Instant::now() + wait;
        loop {
            // Registered before looking, so a job queued in between still wakes us.
            let notified = self.job_queued.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let popped = self
                .state()
                .queues
                .get_mut(worker_id)
                .and_then(VecDeque::pop_front);
            if let Some(job) = popped {
                if let Err(e) = check_version(job.v) {
                    tracing::error!(worker = %worker_id, call_id = %job.call_id, error = %e,
                        "A job cannot be run by this worker; dropped.");
                    self.finish_job(worker_id, &job.call_id).await?;
                    return Ok(None);
                }
                return Ok(Some(job));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    async fn finish_job(&self, worker_id: &str, call_id: &str) -> Result<()> {
        if let Some(jobs) = self.state().assigned.get_mut(worker_id) {
            jobs.remove(call_id);
        }
        Ok(())
    }

    async fn jobs_of(&self, worker_id: &str) -> Result<Vec<Job>> {
        Ok(self
            .state()
            .assigned
            .get(worker_id)
            .map(|jobs| jobs.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn holds_job(&self, worker_id: &str, call_id: &str) -> Result<bool> {
        Ok(self
            .state()
            .assigned
            .get(worker_id)
            .is_some_and(|jobs| jobs.contains_key(call_id)))
    }

    async fn save_checkpoint(&self, checkpoint: &Checkpoint, ttl: Duration) -> Result<()> {
        let now = Instant::now();
        let mut state = self.state();
        if let Some((held, expires)) = state.checkpoints.get(&checkpoint.call_id) {
            if *expires > now && held.attempt > checkpoint.attempt {
                return Err(crate::FleetError::Fenced {
                    call_id: checkpoint.call_id.clone(),
                    held: held.attempt,
                });
            }
        }
        state
            .checkpoints
            .insert(checkpoint.call_id.clone(), (checkpoint.clone(), now + ttl));
        Ok(())
    }

    async fn load_checkpoint(&self, call_id: &str) -> Result<Option<Checkpoint>> {
        let now = Instant::now();
        Ok(self
            .state()
            .checkpoints
            .get(call_id)
            .filter(|(_, expires)| *expires > now)
            .map(|(c, _)| c.clone()))
    }
}
