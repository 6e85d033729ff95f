//! The worker loop: heartbeat, take jobs while there is room, run calls, drain on request.

use crate::checkpoint::Checkpointer;
use crate::load::{rss_bytes, LoadSampler};
use crate::plan::{failed_record, now_ms};
use async_trait::async_trait;
use callfleet_core::domain::CallRecord;
use callfleet_fleet::{
    Checkpoint, FleetBus, FleetError, Job, PostCallQueue, WorkerStatus, HEARTBEAT_INTERVAL,
    HEARTBEAT_TTL, MESSAGE_VERSION,
};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub worker_id: String,
    /// Calls this worker runs at once.
    pub capacity: u32,
    pub heartbeat_interval: Duration,
    pub heartbeat_ttl: Duration,
    /// How long one wait for a job lasts before the loop looks at its state again.
    pub job_wait: Duration,
    /// The memory budget of one call. With `memory_limit`, it bounds how many calls fit.
    pub call_memory: u64,
    /// The most resident memory this process may use: a new call is taken only while the
    /// process's RSS plus one call's budget stays under it. `None`: capacity alone decides.
    pub memory_limit: Option<u64>,
    /// How often a running call checks that this worker still holds its job. A worker stalled
    /// (SIGSTOP, a long pause) past the failover timeout finds on resuming that its calls were
    /// re-placed, and leaves them within this interval.
    pub lease_check: Duration,
}

/// What one call may cost; bench-fleet measures the real figure (well under this).
pub const CALL_MEMORY_BUDGET: u64 = 8 << 20;

impl WorkerConfig {
    pub fn new(worker_id: &str, capacity: u32) -> WorkerConfig {
        WorkerConfig {
            worker_id: worker_id.to_string(),
            capacity,
            heartbeat_interval: HEARTBEAT_INTERVAL,
            heartbeat_ttl: HEARTBEAT_TTL,
            job_wait: Duration::from_millis(500),
            call_memory: CALL_MEMORY_BUDGET,
            memory_limit: None,
            lease_check: Duration::from_secs(1),
        }
    }
}

/// Everything a call needs from the worker.
pub struct CallHandle {
    pub job: Job,
    /// Where the call was when its previous worker died (a re-placed call), else `None`.
    pub resume_from: Option<Checkpoint>,
    pub checkpointer: Checkpointer,
    /// Cancelled when the worker is forced to stop: end the call now.
    pub cancel: CancellationToken,
    /// Cancelled (with `cancel`) when another worker has taken this call over: leave the room
    /// quietly — the call goes on with the other worker, so do not end it for the caller (no
    /// hang-up, no goodbye); the record made of this run is dropped.
    pub lost: CancellationToken,
}

/// Runs one call to its end and returns its record. Implemented by the LiveKit voice session
/// (and the chat session it falls back to).
#[async_trait]
pub trait CallRunner: Send + Sync + 'static {
    async fn run(&self, call: CallHandle) -> CallRecord;
}

pub struct Worker {
    bus: Arc<dyn FleetBus>,
    queue: Arc<dyn PostCallQueue>,
    runner: Arc<dyn CallRunner>,
    config: WorkerConfig,
    active: AtomicU32,
    draining: AtomicBool,
    /// Woken whenever a call starts or ends (what LiveKit's dispatch reports at once).
    calls_changed: tokio::sync::Notify,
}

impl Worker {
    pub fn new(
        bus: Arc<dyn FleetBus>,
        queue: Arc<dyn PostCallQueue>,
        runner: Arc<dyn CallRunner>,
        config: WorkerConfig,
    ) -> Arc<Worker> {
        Arc::new(Worker {
            bus,
            queue,
            runner,
            config,
            active: AtomicU32::new(0),
            draining: AtomicBool::new(false),
            calls_changed: tokio::sync::Notify::new(),
        })
    }

    pub fn active_calls(&self) -> u32 {
        self.active.load(Ordering::SeqCst)
    }

    /// Whether this worker takes another call now, with `reserved` more already promised
    /// (accepted LiveKit offers whose jobs have not arrived): not draining, under capacity, and
    /// with memory for one more.
    pub fn has_room(&self, reserved: u32) -> bool {
        !self.draining.load(Ordering::SeqCst)
            && self.active_calls() + reserved < self.config.capacity
            && self.memory_allows_another(rss_bytes())
    }

    /// How full this worker is, 0.0–1.0: the larger of its share of capacity (counting
    /// `reserved` calls) and of its memory limit.
    pub fn load(&self, reserved: u32) -> f32 {
        let slots = (self.active_calls() + reserved) as f32 / self.config.capacity.max(1) as f32;
        let memory = self.config.memory_limit.map_or(0.0, |limit| {
            rss_bytes().saturating_add(self.config.call_memory) as f32 / limit.max(1) as f32
        });
        slots.max(memory).clamp(0.0, 1.0)
    }

    /// Returns once a call has started or ended.
    pub async fn calls_changed(&self) {
        self.calls_changed.notified().await;
    }

    /// This worker's id in the fleet.
    pub fn id(&self) -> &str {
        &self.config.worker_id
    }

    /// Whether one more call fits in the memory limit, given `rss` now.
    fn memory_allows_another(&self, rss: u64) -> bool {
        self.config
            .memory_limit
            .is_none_or(|limit| rss.saturating_add(self.config.call_memory) <= limit)
    }

    fn status(&self, sampler: &mut LoadSampler) -> WorkerStatus {
        let rss = rss_bytes();
        let active = self.active_calls();
        // Out of memory is out of capacity: the dispatcher sees this worker as full.
        let capacity = if self.memory_allows_another(rss) {
            self.config.capacity
        } else {
            active.min(self.config.capacity)
        };
        WorkerStatus {
            v: MESSAGE_VERSION,
            worker_id: self.config.worker_id.clone(),
            capacity,
            active_calls: active,
            cpu: sampler.cpu(),
            memory_bytes: rss,
            provider_connections: callfleet_providers::open_connections(),
            draining: self.draining.load(Ordering::SeqCst),
            at: now_ms(),
        }
    }

    async fn heartbeat_loop(self: Arc<Self>, stop: CancellationToken) {
        let mut sampler = LoadSampler::new();
        let mut tick = tokio::time::interval(self.config.heartbeat_interval);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = self.bus.heartbeat(&self.status(&mut sampler), self.config.heartbeat_ttl).await {
                        tracing::warn!(error = %e, "heartbeat failed");
                    }
                }
            }
        }
    }

    async fn run_call(self: Arc<Self>, job: Job, forced: CancellationToken) {
        let call_id = job.call_id.clone();
        let room = job.room.clone();
        let started_at = now_ms();
        let resume_from = match self.bus.load_checkpoint(&call_id).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(call_id = %call_id, error = %e, "checkpoint unreadable; starting the call afresh");
                None
            }
        };
        let cancel = forced.child_token();
        let lost = CancellationToken::new();
        let checkpointer =
            Checkpointer::new(self.bus.clone(), call_id.clone(), job.attempt, lost.clone());
        let lease = tokio::spawn(self.clone().watch_lease(call_id.clone(), lost.clone()));
        let ended_by_loss = {
            let (cancel, lost) = (cancel.clone(), lost.clone());
            tokio::spawn(async move {
                lost.cancelled().await;
                cancel.cancel();
            })
        };
        // The call runs in a task of its own, so a panic in it ends this call as failed rather
        // than the worker (or leaving the job held until failover).
        let runner = self.runner.clone();
        let handle = CallHandle {
            job: job.clone(),
            resume_from,
            checkpointer,
            cancel,
            lost: lost.clone(),
        };
        let record = match tokio::spawn(async move { runner.run(handle).await }).await {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(call_id = %call_id, error = %e, "the call's task failed; recording the call as failed");
                failed_record(&job, started_at, &"the call stopped on an internal error")
            }
        };
        lease.abort();
        ended_by_loss.abort();
        if lost.is_cancelled() {
            // Another worker has the call (and will make its record); ours is dropped, and the
            // job and room are that worker's now.
            tracing::warn!(call_id = %call_id, "left a call another worker took over");
        } else if self.push_until_queued(&record, &forced).await {
            // The record is durable before the job is released: if we die in between, the call
            // is re-placed and ends again, which post-call processing absorbs (storing is an
            // upsert). Until the queue takes it the job stays held, for the same reason.
            if let Err(e) = self.bus.finish_job(&self.config.worker_id, &call_id).await {
                tracing::warn!(call_id = %call_id, error = %e, "could not release the job");
            }
            if let Err(e) = self.bus.release_room(&room).await {
                tracing::warn!(call_id = %call_id, error = %e, "could not release the room's claim; it expires on its own");
            }
        }
        self.active.fetch_sub(1, Ordering::SeqCst);
        self.calls_changed.notify_waiters();
        tracing::info!(call_id = %call_id, "call finished");
    }

    /// Cancels `lost` once this worker no longer holds the call (failover moved it while this
    /// worker was stalled). A bus error is not a loss: the next check decides.
    async fn watch_lease(self: Arc<Self>, call_id: String, lost: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.lease_check);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.bus.holds_job(&self.config.worker_id, &call_id).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(call_id = %call_id, "this worker no longer holds the call; leaving it");
                    lost.cancel();
                    return;
                }
                Err(e) => {
                    tracing::warn!(call_id = %call_id, error = %e, "could not check the call's lease")
                }
            }
        }
    }

    /// Pushes a finished call's record, retrying with backoff while the queue is down; true once
    /// it is queued. False only when `forced` to stop first: the job then stays assigned, so
    /// failover re-places the call and its record is made again from the checkpoint.
    async fn push_until_queued(&self, record: &CallRecord, forced: &CancellationToken) -> bool {
        let mut wait = Duration::from_millis(200);
        loop {
            match self.queue.push(record).await {
                Ok(_) => return true,
                Err(e) => {
                    tracing::error!(call_id = %record.id, error = %e, retry_in_ms = wait.as_millis() as u64, "could not queue the finished call; holding its job until it is");
                }
            }
            tokio::select! {
                () = forced.cancelled() => {
                    tracing::error!(call_id = %record.id, "forced to stop with the call unqueued: its job stays assigned for failover");
                    return false;
                }
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(10));
        }
    }

    /// Runs until `drain` is cancelled and every call has ended; `force` ends the calls early.
    pub async fn run(
        self: Arc<Self>,
        drain: CancellationToken,
        force: CancellationToken,
    ) -> Result<(), FleetError> {
        let beats = CancellationToken::new();
        let heartbeat = tokio::spawn(self.clone().heartbeat_loop(beats.clone()));
        let mut calls = JoinSet::new();
        let mut memory_full = false;
        tracing::info!(worker = %self.config.worker_id, capacity = self.config.capacity, "worker started");
        while !drain.is_cancelled() {
            while calls.try_join_next().is_some() {}
            if self.active_calls() >= self.config.capacity {
                tokio::select! {
                    () = drain.cancelled() => break,
                    _ = calls.join_next() => continue,
                }
            }
            if !self.memory_allows_another(rss_bytes()) {
                // The heartbeat shows this worker full, so the dispatcher places calls elsewhere.
                if !memory_full {
                    tracing::warn!(active = self.active_calls(), limit = ?self.config.memory_limit, "memory limit reached: taking no new calls");
                    memory_full = true;
                }
                tokio::select! {
                    () = drain.cancelled() => break,
                    Some(_) = calls.join_next(), if !calls.is_empty() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            memory_full = false;
            // Never abandon a wait half-way: a job popped by an abandoned wait would be lost
            // until failover. Waits are short, so draining still starts promptly.
            match self
                .bus
                .next_job(&self.config.worker_id, self.config.job_wait)
                .await
            {
                Ok(Some(job)) => {
                    self.active.fetch_add(1, Ordering::SeqCst);
                    self.calls_changed.notify_waiters();
                    tracing::info!(call_id = %job.call_id, room = %job.room, attempt = job.attempt, "job taken");
                    calls.spawn(self.clone().run_call(job, force.child_token()));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "could not take a job");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        self.draining.store(true, Ordering::SeqCst);
        tracing::info!(
            active = self.active_calls(),
            "draining: no new jobs, waiting for calls to end"
        );
        while calls.join_next().await.is_some() {}
        beats.cancel();
        heartbeat.await.ok();
        self.bus.deregister(&self.config.worker_id).await?;
        tracing::info!("worker stopped");
        Ok(())
    }
}
