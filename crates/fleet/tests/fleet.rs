//! The transport suite: every test runs on the in-process bus and on Redis.

use callfleet_core::domain::{CallDirection, CallRecord, CallStatus};
use callfleet_fleet::testing::{redis_queue, test_buses};
use callfleet_fleet::{Checkpoint, FileQueue, Job, PostCallQueue, WorkerStatus, MESSAGE_VERSION};
use std::time::Duration;

/// Lets `d` pass for the transport named `name`. The in-process bus and the file queue read
/// tokio's clock, so their TTLs run out on the paused clock at once; Redis keeps its own time, so
/// for it the test sleeps through them.
async fn pass(name: &str, d: Duration) {
    if name == "redis" {
        tokio::time::sleep(d).await;
    } else {
        tokio::time::pause();
        tokio::time::advance(d).await;
        tokio::time::resume();
    }
}

fn status(id: &str, active: u32) -> WorkerStatus {
    WorkerStatus {
        v: MESSAGE_VERSION,
        worker_id: id.into(),
        capacity: 10,
        active_calls: active,
        cpu: 0.1,
        memory_bytes: 50 << 20,
        provider_connections: 0,
        draining: false,
        at: 0,
    }
}

fn job(call: &str) -> Job {
    Job {
        v: MESSAGE_VERSION,
        call_id: call.into(),
        room: format!("room-{call}"),
        company_id: "cmp_1".into(),
        bot_id: "bot_1".into(),
        config_version: 3,
        config: serde_json::Value::Null,
        direction: CallDirection::Web,
        caller_identity: Some("caller".into()),
        from_number: None,
        to_number: None,
        created_at: 1,
        attempt: 0,
        livekit_agent: None,
    }
}

fn record(id: &str) -> CallRecord {
    CallRecord {
        id: id.into(),
        company_id: "cmp_1".into(),
        bot_id: "bot_1".into(),
        bot_config_version: 1,
        direction: CallDirection::Inbound,
        status: CallStatus::Completed,
        from_number: None,
        to_number: None,
        room: None,
        started_at: 1,
        ended_at: Some(2),
        language: None,
        transcript: vec![],
        fields: Default::default(),
        outcome: None,
        summary: None,
        metrics: vec![],
    }
}

#[tokio::test]
async fn heartbeats_expire_and_dead_workers_stay_known() {
    for (name, bus) in test_buses().await {
        bus.heartbeat(&status("w1", 1), Duration::from_secs(30))
            .await
            .unwrap();
        bus.heartbeat(&status("w2", 2), Duration::from_millis(100))
            .await
            .unwrap();
        let live: Vec<String> = bus
            .live_workers()
            .await
            .unwrap()
            .into_iter()
            .map(|w| w.worker_id)
            .collect();
        assert_eq!(live, ["w1", "w2"], "{name}");
        pass(name, Duration::from_millis(300)).await;
        let live = bus.live_workers().await.unwrap();
        assert_eq!(live.len(), 1, "{name}: w2's beat expired");
        assert_eq!(live[0].active_calls, 1);
        assert_eq!(
            bus.known_workers().await.unwrap(),
            ["w1", "w2"],
            "{name}: a dead worker is still known"
        );
        // A job placed on w2 after failover read its jobs (another process still saw it live)
        // keeps it known, with the job, for the next scan.
        bus.assign("w2", &job("late")).await.unwrap();
        assert!(!bus.forget_worker("w2").await.unwrap(), "{name}");
        assert_eq!(bus.known_workers().await.unwrap(), ["w1", "w2"], "{name}");
        assert_eq!(bus.jobs_of("w2").await.unwrap().len(), 1, "{name}");
        bus.finish_job("w2", "late").await.unwrap();
        assert!(bus.forget_worker("w2").await.unwrap(), "{name}");
        assert_eq!(bus.known_workers().await.unwrap(), ["w1"], "{name}");
        bus.deregister("w1").await.unwrap();
        assert!(bus.live_workers().await.unwrap().is_empty(), "{name}");
    }
}

#[tokio::test]
async fn a_claim_has_one_owner_until_it_expires() {
    for (name, bus) in test_buses().await {
        assert!(
            bus.claim("room:r1", "dispatcher-a", Duration::from_millis(150))
                .await
                .unwrap(),
            "{name}"
        );
        assert!(
            !bus.claim("room:r1", "dispatcher-b", Duration::from_millis(150))
                .await
                .unwrap(),
            "{name}"
        );
        assert!(
            bus.claim("room:r2", "dispatcher-b", Duration::from_secs(5))
                .await
                .unwrap(),
            "{name}"
        );
        bus.release("room:r2", "dispatcher-a").await.unwrap();
        assert!(
            !bus.claim("room:r2", "dispatcher-a", Duration::from_secs(5))
                .await
                .unwrap(),
            "{name}: only the owner releases"
        );
        bus.release("room:r2", "dispatcher-b").await.unwrap();
        assert!(
            bus.claim("room:r2", "dispatcher-a", Duration::from_secs(5))
                .await
                .unwrap(),
            "{name}: released"
        );
        pass(name, Duration::from_millis(300)).await;
        assert!(
            bus.claim("room:r1", "dispatcher-b", Duration::from_secs(5))
                .await
                .unwrap(),
            "{name}: expired"
        );
    }
}

#[tokio::test]
async fn jobs_are_queued_taken_and_held_until_finished() {
    for (name, bus) in test_buses().await {
        assert_eq!(
            bus.next_job("w1", Duration::from_millis(50)).await.unwrap(),
            None,
            "{name}"
        );
        bus.assign("w1", &job("c1")).await.unwrap();
        bus.assign("w1", &job("c2")).await.unwrap();
        bus.assign("w2", &job("c3")).await.unwrap();
        assert_eq!(
            bus.next_job("w1", Duration::from_secs(1)).await.unwrap(),
            Some(job("c1")),
            "{name}: in order"
        );
        assert_eq!(
            bus.next_job("w1", Duration::from_secs(1)).await.unwrap(),
            Some(job("c2")),
            "{name}"
        );
        assert_eq!(
            bus.next_job("w1", Duration::from_millis(50)).await.unwrap(),
            None,
            "{name}"
        );
        let held: Vec<String> = bus
            .jobs_of("w1")
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.call_id)
            .collect();
        assert_eq!(
            held,
            ["c1", "c2"],
            "{name}: taken jobs are held until finished"
        );
        bus.finish_job("w1", "c1").await.unwrap();
        let held: Vec<String> = bus
            .jobs_of("w1")
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.call_id)
            .collect();
        assert_eq!(held, ["c2"], "{name}");
    }
}

#[tokio::test]
async fn a_waiting_worker_wakes_for_a_new_job() {
    for (name, bus) in test_buses().await {
        let waiter = {
            let bus = bus.clone();
            tokio::spawn(async move { bus.next_job("w9", Duration::from_secs(5)).await })
        };
        pass(name, Duration::from_millis(100)).await;
        bus.assign("w9", &job("c9")).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woke")
            .unwrap()
            .unwrap();
        assert_eq!(got, Some(job("c9")), "{name}");
    }
}

#[tokio::test]
async fn checkpoints_round_trip() {
    for (name, bus) in test_buses().await {
        assert_eq!(bus.load_checkpoint("c1").await.unwrap(), None, "{name}");
        let cp = Checkpoint {
            v: MESSAGE_VERSION,
            call_id: "c1".into(),
            engine: serde_json::json!({"fields": {"date": "2026-11-24"}}),
            turns: 3,
            at: 5,
            attempt: 0,
        };
        bus.save_checkpoint(&cp, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(bus.load_checkpoint("c1").await.unwrap(), Some(cp), "{name}");
    }
}

/// The attempt is a fencing token: once the worker that took a call over (attempt 1) has
/// saved, the stalled worker it replaced (attempt 0) cannot overwrite it; saves of the same or a
/// newer attempt go on.
#[tokio::test]
async fn a_stale_attempt_cannot_overwrite_a_newer_checkpoint() {
    for (name, bus) in test_buses().await {
        let at = |attempt: u32, turns: u32| Checkpoint {
            v: MESSAGE_VERSION,
            call_id: "c9".into(),
            engine: serde_json::json!({"turns": turns}),
            turns,
            at: 0,
            attempt,
        };
        let ttl = Duration::from_secs(60);
        bus.save_checkpoint(&at(0, 1), ttl).await.unwrap();
        bus.save_checkpoint(&at(1, 2), ttl).await.unwrap();
        let stale = bus.save_checkpoint(&at(0, 5), ttl).await.unwrap_err();
        assert!(
            matches!(stale, callfleet_fleet::FleetError::Fenced { held: 1, .. }),
            "{name}: {stale}"
        );
        assert_eq!(
            bus.load_checkpoint("c9").await.unwrap(),
            Some(at(1, 2)),
            "{name}"
        );
        bus.save_checkpoint(&at(1, 3), ttl).await.unwrap();
        bus.save_checkpoint(&at(2, 4), ttl).await.unwrap();
        assert_eq!(
            bus.load_checkpoint("c9").await.unwrap(),
            Some(at(2, 4)),
            "{name}"
        );
    }
}

/// A job of a newer version (a rolling upgrade) is not misread and does not stop the worker: it
/// is taken off the worker, and the next job is served.
#[tokio::test]
async fn newer_jobs_are_set_aside_not_misread() {
    for (name, bus) in test_buses().await {
        let mut future = job("c1");
        future.v = MESSAGE_VERSION + 1;
        bus.assign("w1", &future).await.unwrap();
        bus.assign("w1", &job("c2")).await.unwrap();
        let first = bus.next_job("w1", Duration::from_secs(1)).await.unwrap();
        assert_eq!(first, None, "{name}");
        let second = bus.next_job("w1", Duration::from_secs(1)).await.unwrap();
        assert_eq!(second.map(|j| j.call_id).as_deref(), Some("c2"), "{name}");
        let held: Vec<String> = bus
            .jobs_of("w1")
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.call_id)
            .collect();
        assert_eq!(
            held,
            ["c2"],
            "{name}: the unreadable job is not the worker's call"
        );
    }
}

/// On Redis, entries no build of ours wrote (damaged, or from a newer version) sit beside good
/// ones: listing workers and jobs skips them, so placement and failover go on for everyone.
#[tokio::test]
async fn unreadable_heartbeats_and_jobs_do_not_stop_the_others() {
    use redis::AsyncCommands;
    let Some(url) = callfleet_fleet::testing::redis_url() else {
        return;
    };
    let prefix = callfleet_fleet::testing::unique_prefix();
    let bus = callfleet_fleet::RedisBus::connect(&url, &prefix)
        .await
        .unwrap();
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    use callfleet_fleet::FleetBus;
    bus.heartbeat(&status("good", 1), Duration::from_secs(30))
        .await
        .unwrap();
    let mut newer = serde_json::to_value(status("newer", 0)).unwrap();
    newer["v"] = serde_json::json!(MESSAGE_VERSION + 1);
    for (id, body) in [
        ("garbled", "{not json".to_string()),
        ("newer", newer.to_string()),
    ] {
        let _: () = conn
            .set(format!("{prefix}worker:{id}"), body)
            .await
            .unwrap();
        let _: () = conn.sadd(format!("{prefix}workers"), id).await.unwrap();
    }
    let live: Vec<String> = bus
        .live_workers()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.worker_id)
        .collect();
    assert_eq!(live, ["good"]);

    bus.assign("good", &job("c1")).await.unwrap();
    let _: () = conn
        .hset(format!("{prefix}worker:good:jobs"), "c0", "{garbage")
        .await
        .unwrap();
    let _: () = conn
        .rpush(
            format!("{prefix}worker:good:queue"),
            r#"{"call_id": "c0", "v": 1}"#,
        )
        .await
        .unwrap();
    let held: Vec<String> = bus
        .jobs_of("good")
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.call_id)
        .collect();
    assert_eq!(held, ["c1"]);
    // The unreadable job is popped first (RPUSH puts it at the BRPOP end): set aside, not run.
    assert_eq!(
        bus.next_job("good", Duration::from_secs(1)).await.unwrap(),
        None
    );
    let next = bus.next_job("good", Duration::from_secs(1)).await.unwrap();
    assert_eq!(next.map(|j| j.call_id).as_deref(), Some("c1"));
    let dead: Vec<String> = conn
        .lrange(format!("{prefix}dead-jobs"), 0, -1)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].contains("c0"), "{dead:?}");
    let garbage_left: bool = conn
        .hexists(format!("{prefix}worker:good:jobs"), "c0")
        .await
        .unwrap();
    assert!(
        !garbage_left,
        "the set-aside job is no longer counted as the worker's"
    );
}

async fn queue_suite(name: &str, queue: &dyn PostCallQueue) {
    assert!(
        queue
            .pop("c1", Duration::from_millis(50))
            .await
            .unwrap()
            .is_none(),
        "{name}"
    );
    queue.push(&record("call_1")).await.unwrap();
    queue.push(&record("call_2")).await.unwrap();
    let first = queue
        .pop("c1", Duration::from_secs(1))
        .await
        .unwrap()
        .expect("first");
    assert_eq!(first.record.id, "call_1", "{name}");
    let second = queue
        .pop("c1", Duration::from_secs(1))
        .await
        .unwrap()
        .expect("second");
    assert_eq!(second.record.id, "call_2", "{name}");
    assert!(
        queue
            .pop("c1", Duration::from_millis(50))
            .await
            .unwrap()
            .is_none(),
        "{name}: taken records are not handed out twice"
    );
    queue.ack(&first.id).await.unwrap();
    // call_2 was taken and never acked: its consumer "died"; another reclaims it.
    pass(name, Duration::from_millis(150)).await;
    let reclaimed = queue
        .reclaim("c2", Duration::from_millis(100))
        .await
        .unwrap();
    let ids: Vec<&str> = reclaimed.iter().map(|r| r.record.id.as_str()).collect();
    assert_eq!(
        ids,
        ["call_2"],
        "{name}: only the unacked record comes back"
    );
    queue.ack(&reclaimed[0].id).await.unwrap();
    pass(name, Duration::from_millis(150)).await;
    assert!(
        queue
            .reclaim("c2", Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty(),
        "{name}"
    );
}

#[tokio::test]
async fn post_call_queues_deliver_at_least_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = FileQueue::open(dir.path()).unwrap();
    queue_suite("file", &file).await;
    if let Some(redis) = redis_queue().await {
        queue_suite("redis", redis.as_ref()).await;
    }
}

#[tokio::test]
async fn the_file_queue_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let queue = FileQueue::open(dir.path()).unwrap();
        queue.push(&record("call_1")).await.unwrap();
        queue.push(&record("call_2")).await.unwrap();
        let taken = queue
            .pop("c", Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        queue.ack(&taken.id).await.unwrap();
        queue
            .pop("c", Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap(); // taken, never acked: crash
    }
    let queue = FileQueue::open(dir.path()).unwrap();
    assert_eq!(queue.pending_len(), 1);
    let again = queue
        .pop("c", Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        again.record.id, "call_2",
        "an unacked record is delivered again after a restart"
    );
    queue.push(&record("call_3")).await.unwrap();
    let next = queue
        .pop("c", Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.record.id, "call_3");
    assert!(next.id > again.id, "ids keep increasing across restarts");
}
