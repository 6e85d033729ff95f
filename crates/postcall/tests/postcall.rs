//! Records pushed by agents end up stored; failures leave them queued.

use async_trait::async_trait;
use callfleet_core::domain::{CallDirection, CallRecord, CallStatus, Evidence, Outcome};
use callfleet_fleet::testing::redis_queue;
use callfleet_fleet::{FileQueue, PostCallQueue};
use callfleet_postcall::{PostCallError, PostCallStep, PostCallWorker};
use callfleet_store::testing::sqlite;
use callfleet_store::{NewCompany, StoreError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn record(id: &str, company: &str) -> CallRecord {
    CallRecord {
        id: id.into(),
        company_id: company.into(),
        bot_id: "bot_1".into(),
        bot_config_version: 1,
        direction: CallDirection::Web,
        status: CallStatus::Completed,
        from_number: None,
        to_number: None,
        room: Some("room".into()),
        started_at: 1_000,
        ended_at: Some(61_000),
        language: Some("en".into()),
        transcript: vec![],
        fields: Default::default(),
        outcome: Some(Outcome {
            kind: "INFO_ONLY".into(),
            evidence: vec![],
        }),
        summary: None,
        metrics: vec![],
    }
}

/// A step that fails until told otherwise, then writes a summary.
struct FlakySummary(AtomicBool);

#[async_trait]
impl PostCallStep for FlakySummary {
    fn name(&self) -> &'static str {
        "summary"
    }
    async fn apply(&self, record: &mut CallRecord) -> Result<(), PostCallError> {
        if self.0.load(Ordering::SeqCst) {
            return Err(PostCallError::Step {
                step: "summary",
                message: "provider down".into(),
            });
        }
        record.summary = Some(format!("{} turns", record.transcript.len()));
        Ok(())
    }
}

async fn suite(name: &str, queue: Arc<dyn PostCallQueue>) {
    let db = sqlite().await;
    let company = db
        .store
        .create_company(NewCompany {
            name: "A".into(),
            timezone: "UTC".into(),
            max_concurrent_calls: 5,
        })
        .await
        .unwrap();
    let step = Arc::new(FlakySummary(AtomicBool::new(true)));
    let worker = PostCallWorker::new(queue.clone(), db.store.clone(), "pc-1")
        .with_step(step.clone())
        .with_reclaim_after(Duration::from_millis(100));

    queue.push(&record("call_1", &company.id)).await.unwrap();
    assert!(
        worker.process_next(Duration::from_secs(1)).await.is_err(),
        "{name}: the step fails"
    );
    assert!(
        matches!(db.store.get_call("call_1").await, Err(StoreError::NotFound)),
        "{name}: nothing half-stored"
    );

    step.0.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        worker
            .process_next(Duration::from_millis(100))
            .await
            .unwrap(),
        "{name}: the unacked record comes back"
    );
    let stored = db.store.get_call("call_1").await.unwrap();
    assert_eq!(stored.summary.as_deref(), Some("0 turns"), "{name}");
    assert_eq!(stored.duration_sec(), Some(60), "{name}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !worker
            .process_next(Duration::from_millis(100))
            .await
            .unwrap(),
        "{name}: acked, so not again"
    );
}

#[tokio::test]
async fn finished_calls_are_stored_exactly_when_processed() {
    let dir = tempfile::tempdir().unwrap();
    suite("file", Arc::new(FileQueue::open(dir.path()).unwrap())).await;
    if let Some(queue) = redis_queue().await {
        suite("redis", queue).await;
    }
}

/// An outbound call the callee never answered: its dialer stored why (busy, SIP 486) before the
/// room went; the agent, which only saw its room close, reports NO_ANSWER. The dialer's outcome
/// is what is stored and what the webhooks carry. A call the callee did answer keeps the agent's.
#[tokio::test]
async fn an_outbound_call_that_never_connected_keeps_its_dialers_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let queue: Arc<dyn PostCallQueue> = Arc::new(FileQueue::open(dir.path()).unwrap());
    let db = sqlite().await;
    let company = db
        .store
        .create_company(NewCompany {
            name: "A".into(),
            timezone: "UTC".into(),
            max_concurrent_calls: 5,
        })
        .await
        .unwrap();
    let worker = PostCallWorker::new(queue.clone(), db.store.clone(), "pc-1");
    let outbound = |id: &str, status: CallStatus, kind: &str| CallRecord {
        direction: CallDirection::Outbound,
        status,
        outcome: Some(Outcome {
            kind: kind.into(),
            evidence: vec![],
        }),
        ..record(id, &company.id)
    };

    // Busy: the dialer's ringing record, then its outcome, then the agent's record.
    db.store
        .upsert_call(&outbound("call_busy", CallStatus::Ringing, "NONE"))
        .await
        .unwrap();
    let busy = Outcome {
        kind: "BUSY".into(),
        evidence: vec![Evidence::note("the outbound call ended with SIP 486")],
    };
    assert!(db
        .store
        .end_call("call_busy", CallStatus::NoAnswer, &busy, 31_000)
        .await
        .unwrap());
    assert!(
        !db.store
            .set_open_call_status("call_busy", CallStatus::InProgress)
            .await
            .unwrap(),
        "a call that is over stays over"
    );
    queue
        .push(&outbound("call_busy", CallStatus::NoAnswer, "NO_ANSWER"))
        .await
        .unwrap();
    assert!(worker.process_next(Duration::from_secs(1)).await.unwrap());
    let stored = db.store.get_call("call_busy").await.unwrap();
    assert_eq!(stored.status, CallStatus::NoAnswer);
    assert_eq!(stored.outcome.as_ref(), Some(&busy));
    assert!(stored.summary.is_some(), "processed, not just ended");

    // Nobody answered, and the agent's record comes while the dialer still waits for LiveKit:
    // post-call waits for the dialer's outcome.
    db.store
        .upsert_call(&outbound("call_unanswered", CallStatus::Ringing, "NONE"))
        .await
        .unwrap();
    queue
        .push(&outbound(
            "call_unanswered",
            CallStatus::NoAnswer,
            "NO_ANSWER",
        ))
        .await
        .unwrap();
    let dialer = {
        let store = db.store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let why = Outcome {
                kind: "DIAL_FAILED".into(),
                evidence: vec![],
            };
            store
                .end_call("call_unanswered", CallStatus::Failed, &why, 9_000)
                .await
                .unwrap()
        })
    };
    assert!(worker.process_next(Duration::from_secs(1)).await.unwrap());
    assert!(dialer.await.unwrap());
    let stored = db.store.get_call("call_unanswered").await.unwrap();
    assert_eq!(stored.status, CallStatus::Failed);
    assert_eq!(stored.outcome.unwrap().kind, "DIAL_FAILED");
    assert!(stored.summary.is_some());

    // Answered (ringing, then in progress), then the callee never spoke: the agent's NO_ANSWER
    // stands.
    db.store
        .upsert_call(&outbound("call_quiet", CallStatus::Ringing, "NONE"))
        .await
        .unwrap();
    assert!(db
        .store
        .set_open_call_status("call_quiet", CallStatus::InProgress)
        .await
        .unwrap());
    assert_eq!(
        db.store.get_call("call_quiet").await.unwrap().status,
        CallStatus::InProgress
    );
    queue
        .push(&outbound("call_quiet", CallStatus::NoAnswer, "NO_ANSWER"))
        .await
        .unwrap();
    assert!(worker.process_next(Duration::from_secs(1)).await.unwrap());
    let stored = db.store.get_call("call_quiet").await.unwrap();
    assert_eq!(stored.outcome.unwrap().kind, "NO_ANSWER");
}
