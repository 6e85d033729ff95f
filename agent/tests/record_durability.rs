//! A finished call's record is never lost when the post-call queue is down: the worker keeps
//! retrying and holds the job (so failover would re-place the call) until the queue has it.

use async_trait::async_trait;
use callfleet_agent::{CallHandle, CallRunner, Worker, WorkerConfig};
use callfleet_core::domain::{CallDirection, CallRecord, CallStatus};
use callfleet_fleet::{
    FileQueue, FleetBus, FleetError, Job, MemoryBus, PostCallQueue, QueuedRecord, MESSAGE_VERSION,
};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Ends every call at once.
struct InstantCall;

#[async_trait]
impl CallRunner for InstantCall {
    async fn run(&self, call: CallHandle) -> CallRecord {
        CallRecord {
            id: call.job.call_id,
            company_id: call.job.company_id,
            bot_id: call.job.bot_id,
            bot_config_version: call.job.config_version,
            direction: call.job.direction,
            status: CallStatus::Completed,
            from_number: None,
            to_number: None,
            room: Some(call.job.room),
            started_at: 0,
            ended_at: Some(1_000),
            language: None,
            transcript: vec![],
            fields: Default::default(),
            outcome: None,
            summary: None,
            metrics: vec![],
        }
    }
}

/// A file queue whose pushes fail while `down`.
struct FlakyQueue {
    inner: FileQueue,
    down: AtomicBool,
    refused: AtomicU32,
}

#[async_trait]
impl PostCallQueue for FlakyQueue {
    async fn push(&self, record: &CallRecord) -> Result<String, FleetError> {
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(FleetError::Io(std::io::Error::other("queue down")));
        }
        self.inner.push(record).await
    }
    async fn pop(
        &self,
        consumer: &str,
        wait: Duration,
    ) -> Result<Option<QueuedRecord>, FleetError> {
        self.inner.pop(consumer, wait).await
    }
    async fn ack(&self, id: &str) -> Result<(), FleetError> {
        self.inner.ack(id).await
    }
    async fn reclaim(
        &self,
        consumer: &str,
        idle: Duration,
    ) -> Result<Vec<QueuedRecord>, FleetError> {
        self.inner.reclaim(consumer, idle).await
    }
}

fn job(call: &str) -> Job {
    Job {
        v: MESSAGE_VERSION,
        call_id: call.into(),
        room: format!("room-{call}"),
        company_id: "cmp".into(),
        bot_id: "bot".into(),
        config_version: 1,
        config: serde_json::Value::Null,
        direction: CallDirection::Web,
        caller_identity: None,
        from_number: None,
        to_number: None,
        created_at: 0,
        attempt: 0,
        livekit_agent: None,
    }
}

/// Waits (bounded) until `check` holds.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never: {what}");
}

async fn held(bus: &Arc<dyn FleetBus>) -> Vec<String> {
    bus.jobs_of("w1")
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.call_id)
        .collect()
}

fn start(
    queue: Arc<FlakyQueue>,
    bus: Arc<dyn FleetBus>,
) -> (
    Arc<Worker>,
    CancellationToken,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), FleetError>>,
) {
    let worker = Worker::new(
        bus,
        queue,
        Arc::new(InstantCall),
        WorkerConfig::new("w1", 2),
    );
    let (drain, force) = (CancellationToken::new(), CancellationToken::new());
    let run = tokio::spawn(worker.clone().run(drain.clone(), force.clone()));
    (worker, drain, force, run)
}

fn flaky_queue(dir: &std::path::Path) -> Arc<FlakyQueue> {
    Arc::new(FlakyQueue {
        inner: FileQueue::open(dir).unwrap(),
        down: AtomicBool::new(true),
        refused: AtomicU32::new(0),
    })
}

#[tokio::test]
async fn the_job_is_held_until_the_record_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let queue = flaky_queue(dir.path());
    let bus: Arc<dyn FleetBus> = Arc::new(MemoryBus::new());
    let (worker, drain, _force, run) = start(queue.clone(), bus.clone());
    bus.assign("w1", &job("c1")).await.unwrap();

    // The queue is down: the push is retried, and the job stays the worker's meanwhile.
    eventually("three pushes refused", || {
        queue.refused.load(Ordering::SeqCst) >= 3
    })
    .await;
    assert_eq!(
        held(&bus).await,
        ["c1"],
        "not released while the record is not durable"
    );
    assert_eq!(worker.active_calls(), 1);

    queue.down.store(false, Ordering::SeqCst);
    eventually("the record queued", || queue.inner.pending_len() == 1).await;
    for _ in 0..500 {
        if held(&bus).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(held(&bus).await.is_empty(), "released once queued");
    let queued = queue
        .inner
        .pop("t", Duration::ZERO)
        .await
        .unwrap()
        .expect("the record");
    assert_eq!(queued.record.id, "c1");
    assert_eq!(queue.inner.pending_len(), 1, "queued once");

    drain.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_forced_stop_leaves_the_unqueued_call_to_failover() {
    let dir = tempfile::tempdir().unwrap();
    let queue = flaky_queue(dir.path());
    let bus: Arc<dyn FleetBus> = Arc::new(MemoryBus::new());
    let (_worker, drain, force, run) = start(queue.clone(), bus.clone());
    bus.assign("w1", &job("c1")).await.unwrap();
    eventually("a push refused", || {
        queue.refused.load(Ordering::SeqCst) >= 1
    })
    .await;
    drain.cancel();
    force.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(
        held(&bus).await,
        ["c1"],
        "the job is left assigned, for failover to re-place"
    );
}
