//! The worker lifecycle with a runner whose calls end when the test says so.

use async_trait::async_trait;
use callfleet_agent::{CallHandle, CallRunner, Worker, WorkerConfig};
use callfleet_core::domain::{CallDirection, CallRecord, CallStatus};
use callfleet_fleet::testing::test_buses;
use callfleet_fleet::{Checkpoint, FileQueue, FleetBus, Job, PostCallQueue, MESSAGE_VERSION};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Reports each call it starts (call id, resumed turns) and ends it when its sender fires.
struct GatedRunner {
    started: mpsc::UnboundedSender<(String, Option<u32>)>,
    gates: Mutex<HashMap<String, oneshot::Receiver<()>>>,
}

#[async_trait]
impl CallRunner for GatedRunner {
    async fn run(&self, call: CallHandle) -> CallRecord {
        let id = call.job.call_id.clone();
        let gate = self
            .gates
            .lock()
            .unwrap()
            .remove(&id)
            .expect("a gate per call");
        self.started
            .send((id.clone(), call.resume_from.as_ref().map(|c| c.turns)))
            .unwrap();
        call.checkpointer
            .save(serde_json::json!({"said": "hello"}), 1)
            .await
            .unwrap();
        let status = tokio::select! {
            _ = gate => CallStatus::Completed,
            () = call.cancel.cancelled() => CallStatus::Failed,
        };
        CallRecord {
            id,
            company_id: call.job.company_id,
            bot_id: call.job.bot_id,
            bot_config_version: call.job.config_version,
            direction: call.job.direction,
            status,
            from_number: None,
            to_number: None,
            room: Some(call.job.room),
            started_at: 0,
            ended_at: Some(1),
            language: None,
            transcript: vec![],
            fields: Default::default(),
            outcome: None,
            summary: None,
            metrics: vec![],
        }
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

struct Harness {
    bus: Arc<dyn FleetBus>,
    queue: Arc<FileQueue>,
    started: mpsc::UnboundedReceiver<(String, Option<u32>)>,
    gates: HashMap<String, oneshot::Sender<()>>,
    drain: CancellationToken,
    force: CancellationToken,
    done: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

fn start(bus: Arc<dyn FleetBus>, worker_id: &str, capacity: u32, calls: &[&str]) -> Harness {
    start_with(bus, worker_id, capacity, calls, |_| {})
}

fn start_with(
    bus: Arc<dyn FleetBus>,
    worker_id: &str,
    capacity: u32,
    calls: &[&str],
    tune: impl FnOnce(&mut WorkerConfig),
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(FileQueue::open(dir.path()).unwrap());
    let (tx, started) = mpsc::unbounded_channel();
    let mut gates = HashMap::new();
    let mut receivers = HashMap::new();
    for call in calls {
        let (gtx, grx) = oneshot::channel();
        gates.insert(call.to_string(), gtx);
        receivers.insert(call.to_string(), grx);
    }
    let runner = Arc::new(GatedRunner {
        started: tx,
        gates: Mutex::new(receivers),
    });
    let mut config = WorkerConfig::new(worker_id, capacity);
    config.heartbeat_interval = Duration::from_millis(50);
    config.job_wait = Duration::from_millis(100);
    tune(&mut config);
    let worker = Worker::new(bus.clone(), queue.clone(), runner, config);
    let (drain, force) = (CancellationToken::new(), CancellationToken::new());
    let done = tokio::spawn({
        let (drain, force) = (drain.clone(), force.clone());
        async move { worker.run(drain, force).await.unwrap() }
    });
    Harness {
        bus,
        queue,
        started,
        gates,
        drain,
        force,
        done,
        _dir: dir,
    }
}

async fn status_of(bus: &Arc<dyn FleetBus>, id: &str) -> Option<callfleet_fleet::WorkerStatus> {
    bus.live_workers()
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.worker_id == id)
}

async fn eventually<F: AsyncFn() -> bool>(what: &str, check: F) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Gives the worker the time to do whatever it would, before a check that it did nothing. On
/// the in-process bus that is the paused clock run forward 300 ms, which happens only once every
/// task is waiting (nothing is left that could happen); on Redis, 300 ms of real time.
async fn settle(bus: &str) {
    let wait = Duration::from_millis(300);
    if bus == "memory" {
        tokio::time::pause();
        tokio::time::sleep(wait).await;
        tokio::time::resume();
    } else {
        tokio::time::sleep(wait).await;
    }
}

#[tokio::test]
async fn a_worker_runs_its_jobs_and_hands_over_the_records() {
    for (name, bus) in test_buses().await {
        let mut h = start(bus.clone(), "w1", 1, &["c1", "c2"]);
        eventually("the worker beats", async || {
            status_of(&h.bus, "w1").await.is_some()
        })
        .await;
        bus.assign("w1", &job("c1")).await.unwrap();
        bus.assign("w1", &job("c2")).await.unwrap();
        assert_eq!(
            h.started.recv().await.unwrap(),
            ("c1".to_string(), None),
            "{name}"
        );
        eventually("load is reported", async || {
            status_of(&h.bus, "w1")
                .await
                .is_some_and(|s| s.active_calls == 1)
        })
        .await;
        settle(name).await;
        assert!(
            h.started.try_recv().is_err(),
            "{name}: capacity 1 — the second call waits"
        );

        h.gates.remove("c1").unwrap().send(()).unwrap();
        let (second, _) = h.started.recv().await.unwrap();
        assert_eq!(second, "c2", "{name}");
        let stored = h
            .queue
            .pop("t", Duration::from_secs(2))
            .await
            .unwrap()
            .expect("record queued");
        assert_eq!(
            (stored.record.id.as_str(), stored.record.status),
            ("c1", CallStatus::Completed),
            "{name}"
        );
        let held: Vec<String> = bus
            .jobs_of("w1")
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.call_id)
            .collect();
        assert_eq!(held, ["c2"], "{name}: a finished call releases its job");
        assert!(
            bus.load_checkpoint("c1").await.unwrap().is_some(),
            "{name}: the runner's checkpoint is on the bus"
        );

        h.gates.remove("c2").unwrap().send(()).unwrap();
        h.drain.cancel();
        h.done.await.unwrap();
    }
}

#[tokio::test]
async fn draining_takes_no_new_jobs_and_waits_for_calls() {
    for (name, bus) in test_buses().await {
        let mut h = start(bus.clone(), "w2", 5, &["c1", "c2"]);
        bus.assign("w2", &job("c1")).await.unwrap();
        h.started.recv().await.unwrap();
        h.drain.cancel();
        eventually("draining shows in the heartbeat", async || {
            status_of(&h.bus, "w2").await.is_some_and(|s| s.draining)
        })
        .await;
        bus.assign("w2", &job("c2")).await.unwrap();
        settle(name).await;
        assert!(
            h.started.try_recv().is_err(),
            "{name}: no new call while draining"
        );
        assert!(!h.done.is_finished(), "{name}: waits for the running call");
        h.gates.remove("c1").unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), h.done)
            .await
            .expect("stops once the call ended")
            .unwrap();
        assert!(
            status_of(&bus, "w2").await.is_none(),
            "{name}: deregistered"
        );
        let held: Vec<String> = bus
            .jobs_of("w2")
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.call_id)
            .collect();
        assert_eq!(
            held,
            ["c2"],
            "{name}: the untaken job stays for the dispatcher to re-place"
        );
    }
}

#[tokio::test]
async fn forcing_ends_calls_and_a_replaced_call_resumes_from_its_checkpoint() {
    for (name, bus) in test_buses().await {
        let checkpoint = Checkpoint {
            v: MESSAGE_VERSION,
            call_id: "c1".into(),
            engine: serde_json::json!({}),
            turns: 4,
            at: 0,
            attempt: 0,
        };
        bus.save_checkpoint(&checkpoint, Duration::from_secs(60))
            .await
            .unwrap();
        let mut h = start(bus.clone(), "w3", 5, &["c1"]);
        bus.assign(
            "w3",
            &Job {
                attempt: 1,
                ..job("c1")
            },
        )
        .await
        .unwrap();
        assert_eq!(
            h.started.recv().await.unwrap(),
            ("c1".to_string(), Some(4)),
            "{name}: resumed after turn 4"
        );
        h.drain.cancel();
        h.force.cancel();
        tokio::time::timeout(Duration::from_secs(5), h.done)
            .await
            .expect("forced stop")
            .unwrap();
        let record = h
            .queue
            .pop("t", Duration::from_secs(1))
            .await
            .unwrap()
            .expect("the cut call is still recorded");
        assert_eq!(record.record.status, CallStatus::Failed, "{name}");
    }
}

#[tokio::test]
async fn a_worker_at_its_memory_limit_takes_no_new_calls_and_shows_full() {
    for (name, bus) in test_buses().await {
        // A limit below what the process already uses: not even one more call fits.
        let mut h = start_with(bus.clone(), "w4", 5, &["c1"], |c| {
            c.memory_limit = Some(1 << 20)
        });
        eventually("the worker beats", async || {
            status_of(&h.bus, "w4").await.is_some()
        })
        .await;
        let status = status_of(&bus, "w4").await.unwrap();
        assert_eq!(
            (status.capacity, status.active_calls),
            (0, 0),
            "{name}: out of memory is out of capacity"
        );
        assert!(status.memory_bytes > 1 << 20, "{name}: RSS is reported");
        bus.assign("w4", &job("c1")).await.unwrap();
        settle(name).await;
        assert!(
            h.started.try_recv().is_err(),
            "{name}: the job is not taken"
        );
        h.drain.cancel();
        h.done.await.unwrap();
    }
    // With room for the budget, the same worker takes its call.
    for (name, bus) in test_buses().await {
        let mut h = start_with(bus.clone(), "w5", 5, &["c1"], |c| {
            c.memory_limit = Some(64 << 30)
        });
        bus.assign("w5", &job("c1")).await.unwrap();
        assert_eq!(h.started.recv().await.unwrap().0, "c1", "{name}");
        h.gates.remove("c1").unwrap().send(()).unwrap();
        h.drain.cancel();
        h.done.await.unwrap();
    }
}

/// A worker stalled past the failover timeout resumes to find its call re-placed: it leaves the
/// call within a lease check, quietly (`lost`), its record is dropped and the job and room stay
/// the new worker's; its late checkpoints are fenced off by the newer attempt.
#[tokio::test]
async fn a_stalled_worker_leaves_the_call_it_lost_and_writes_nothing_over_the_new_one() {
    for (name, bus) in test_buses().await {
        let mut h = start_with(bus.clone(), "w1", 5, &["c1"], |c| {
            c.lease_check = Duration::from_millis(50);
        });
        bus.assign("w1", &job("c1")).await.unwrap();
        assert_eq!(h.started.recv().await.unwrap().0, "c1", "{name}");
        // What failover does while w1 is stalled: the call moves to w2 as attempt 1, which
        // checkpoints it.
        let moved = Job {
            attempt: 1,
            ..job("c1")
        };
        bus.assign("w2", &moved).await.unwrap();
        bus.finish_job("w1", "c1").await.unwrap();
        let newer = Checkpoint {
            v: MESSAGE_VERSION,
            call_id: "c1".into(),
            engine: serde_json::json!({"by": "w2"}),
            turns: 2,
            at: 0,
            attempt: 1,
        };
        bus.save_checkpoint(&newer, Duration::from_secs(60))
            .await
            .unwrap();
        eventually("w1 leaves the lost call", async || {
            status_of(&bus, "w1")
                .await
                .is_some_and(|s| s.active_calls == 0)
        })
        .await;
        assert_eq!(
            h.queue.pop("t", Duration::from_millis(100)).await.unwrap(),
            None,
            "{name}: the lost run's record is dropped"
        );
        assert!(bus.holds_job("w2", "c1").await.unwrap(), "{name}");
        assert_eq!(
            bus.load_checkpoint("c1").await.unwrap(),
            Some(newer),
            "{name}: the new worker's checkpoint stands"
        );
        h.drain.cancel();
        h.done.await.unwrap();
    }
}

struct PanickingRunner;

#[async_trait]
impl CallRunner for PanickingRunner {
    async fn run(&self, _call: CallHandle) -> CallRecord {
        panic!("a bug in a call");
    }
}

/// A call whose task panics is recorded as failed and its job released; the worker goes on
/// taking calls.
#[tokio::test]
async fn a_panicking_call_is_recorded_as_failed_and_the_worker_goes_on() {
    for (name, bus) in test_buses().await {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(FileQueue::open(dir.path()).unwrap());
        let mut config = WorkerConfig::new("wp", 5);
        config.heartbeat_interval = Duration::from_millis(50);
        config.job_wait = Duration::from_millis(100);
        let worker = Worker::new(
            bus.clone(),
            queue.clone(),
            Arc::new(PanickingRunner),
            config,
        );
        let drain = CancellationToken::new();
        let done = tokio::spawn({
            let drain = drain.clone();
            async move { worker.run(drain, CancellationToken::new()).await.unwrap() }
        });
        for call in ["p1", "p2"] {
            bus.assign("wp", &job(call)).await.unwrap();
            let record = queue
                .pop("t", Duration::from_secs(10))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{name}: {call} is recorded"));
            assert_eq!(record.record.id, call, "{name}");
            assert_eq!(record.record.status, CallStatus::Failed, "{name}");
            queue.ack(&record.id).await.unwrap();
        }
        eventually("both jobs are released", async || {
            bus.jobs_of("wp").await.unwrap().is_empty()
        })
        .await;
        drain.cancel();
        done.await.unwrap();
    }
}

/// What LiveKit's dispatch answers offers with: room for another call counts the offers already
/// accepted, and the load is the larger of slot use and memory use.
#[tokio::test]
async fn room_and_load_count_promised_calls_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(FileQueue::open(dir.path()).unwrap());
    let (bus_name, bus) = test_buses().await.remove(0);
    let (tx, _started) = mpsc::unbounded_channel();
    let runner = Arc::new(GatedRunner {
        started: tx,
        gates: Mutex::new(HashMap::new()),
    });
    let worker = Worker::new(
        bus.clone(),
        queue.clone(),
        runner.clone(),
        WorkerConfig::new("w9", 2),
    );
    assert!(worker.has_room(0) && worker.has_room(1), "{bus_name}");
    assert!(
        !worker.has_room(2),
        "two promised calls fill a capacity of 2"
    );
    assert_eq!(worker.load(1), 0.5);
    assert_eq!(worker.load(5), 1.0);
    let mut tight = WorkerConfig::new("w10", 2);
    tight.memory_limit = Some(1 << 20);
    let short = Worker::new(bus, queue, runner, tight);
    assert!(!short.has_room(0), "no memory for another call");
    assert_eq!(short.load(0), 1.0, "memory use counts as load");
}
