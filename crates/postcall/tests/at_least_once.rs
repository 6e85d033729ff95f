//! Post-call processing is at-least-once with idempotent effects: a record that keeps failing
//! becomes a dead letter and never blocks the others; a process dying mid-record leaves it to be
//! processed again after a restart, stored and announced once. On every store backend, with the
//! file queue and (when available) Redis.

use callfleet_core::domain::{CallDirection, CallRecord, CallStatus, Outcome};
use callfleet_fleet::testing::redis_queue;
use callfleet_fleet::{FileQueue, PostCallQueue};
use callfleet_postcall::PostCallWorker;
use callfleet_store::testing::test_stores;
use callfleet_store::{CallFilter, NewCompany, NewWebhookEndpoint, Store, StoreError};
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
        room: None,
        started_at: 1_000,
        ended_at: Some(31_000),
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

async fn company(store: &Store) -> String {
    store
        .create_company(NewCompany {
            name: "A".into(),
            timezone: "UTC".into(),
            max_concurrent_calls: 5,
        })
        .await
        .unwrap()
        .id
}

async fn poison_is_set_aside(name: &str, store: &Store, queue: Arc<dyn PostCallQueue>) {
    let company = company(store).await;
    let worker = PostCallWorker::new(queue.clone(), store.clone(), "pc")
        .with_max_attempts(3)
        .with_reclaim_after(Duration::ZERO);
    // Its company was deleted mid-call: storing it breaks a foreign key, every time.
    let gone = format!("cmp_deleted_{}", name.replace('/', "_"));
    queue.push(&record("call_poison", &gone)).await.unwrap();
    queue.push(&record("call_good", &company)).await.unwrap();
    let mut errors = 0;
    for _ in 0..10 {
        match worker.process_next(Duration::from_millis(50)).await {
            Ok(_) => {}
            Err(_) => errors += 1,
        }
    }
    assert_eq!(
        errors, 3,
        "{name}: the poison failed three times, then stopped coming back"
    );
    assert!(
        store.get_call("call_good").await.is_ok(),
        "{name}: the good record was not blocked"
    );
    assert!(matches!(
        store.get_call("call_poison").await,
        Err(StoreError::NotFound)
    ));
    let dead = store.list_dead_letters(Some(&gone), 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{name}");
    assert_eq!(
        (dead[0].call_id.as_str(), dead[0].attempts),
        ("call_poison", 3),
        "{name}"
    );
    assert!(
        dead[0].last_error.contains("store"),
        "{name}: the last error is kept: {}",
        dead[0].last_error
    );
    assert_eq!(
        dead[0].record["id"], "call_poison",
        "{name}: the record is kept whole"
    );
    assert!(
        !worker
            .process_next(Duration::from_millis(50))
            .await
            .unwrap(),
        "{name}: nothing left"
    );
}

#[tokio::test]
async fn a_record_that_keeps_failing_becomes_a_dead_letter_and_blocks_nothing() {
    for db in test_stores().await {
        let dir = tempfile::tempdir().unwrap();
        let file: Arc<dyn PostCallQueue> = Arc::new(FileQueue::open(dir.path()).unwrap());
        let name = format!("{:?}/file", db.backend);
        poison_is_set_aside(&name, &db.store, file).await;
        if let Some(redis) = redis_queue().await {
            let name = format!("{:?}/redis", db.backend);
            poison_is_set_aside(&name, &db.store, redis).await;
        }
    }
}

#[tokio::test]
async fn a_record_taken_by_a_process_that_died_is_stored_and_announced_once_after_restart() {
    for db in test_stores().await {
        let name = format!("{:?}", db.backend);
        let store = &db.store;
        let company = company(store).await;
        let hook = store
            .create_webhook(
                &company,
                NewWebhookEndpoint {
                    url: "https://crm.example/hook".into(),
                    description: None,
                    events: vec![],
                },
            )
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        {
            let queue: Arc<dyn PostCallQueue> = Arc::new(FileQueue::open(dir.path()).unwrap());
            queue.push(&record("call_1", &company)).await.unwrap();
            // A first process stores the call and queues its webhook, then dies before acking.
            let worker = PostCallWorker::new(queue.clone(), store.clone(), "pc-1");
            let taken = queue
                .pop("pc-1", Duration::from_secs(1))
                .await
                .unwrap()
                .unwrap();
            let mut unacked = taken.clone();
            unacked.id = "not-the-entry".into();
            worker.process(unacked).await.unwrap();
            assert!(store.get_call("call_1").await.is_ok());
        }
        // The restarted process finds the record still queued and processes it again.
        let queue: Arc<dyn PostCallQueue> = Arc::new(FileQueue::open(dir.path()).unwrap());
        let worker = PostCallWorker::new(queue.clone(), store.clone(), "pc-2");
        assert!(
            worker.process_next(Duration::from_secs(1)).await.unwrap(),
            "{name}"
        );
        assert!(
            !worker
                .process_next(Duration::from_millis(50))
                .await
                .unwrap(),
            "{name}"
        );
        let calls = store
            .list_calls(
                &CallFilter {
                    company_id: Some(company.clone()),
                    ..Default::default()
                },
                None,
                10,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(calls.calls.len(), 1, "{name}: stored once");
        let deliveries = store.list_deliveries(&hook.id, 10).await.unwrap();
        assert_eq!(
            deliveries
                .iter()
                .map(|d| d.event.as_str())
                .collect::<Vec<_>>(),
            ["call.completed"],
            "{name}: announced once"
        );
    }
}
