//! The webhook outbox and the post-call dead letters, on every backend.

use callfleet_store::testing::test_stores;
use callfleet_store::{
    AttemptVerdict, DeliveryAttempt, DisableAfter, NewCompany, NewWebhookEndpoint, Store,
    StoreError, WebhookPatch,
};
use serde_json::json;

async fn company(store: &Store, name: &str) -> String {
    store
        .create_company(NewCompany {
            name: name.into(),
            timezone: "UTC".into(),
            max_concurrent_calls: 5,
        })
        .await
        .unwrap()
        .id
}

const THREE: DisableAfter = DisableAfter {
    failures: 3,
    run_ms: 0,
};

fn attempt(delivery_id: &str, n: i64, at: i64, status: Option<i64>) -> DeliveryAttempt {
    DeliveryAttempt {
        id: DeliveryAttempt::new_id(),
        delivery_id: delivery_id.into(),
        attempt: n,
        started_at: at,
        latency_ms: 12,
        status_code: status,
        error: status.is_none().then(|| "connection refused".to_string()),
        response_excerpt: status.map(|s| format!("answer {s}")),
    }
}

#[tokio::test]
async fn deliveries_are_due_claimed_once_logged_and_replayed() {
    for db in test_stores().await {
        let s = &db.store;
        let name = format!("{:?}", db.backend);
        let c = company(s, "A").await;
        let hook = s
            .create_webhook(
                &c,
                NewWebhookEndpoint {
                    url: "https://crm.example/hook".into(),
                    description: None,
                    events: vec![],
                },
            )
            .await
            .unwrap();
        let payload = json!({"type": "call.completed"});
        let d = s
            .enqueue_delivery_at(
                &hook,
                "call.completed",
                Some("call_1"),
                &payload,
                "k1",
                1_000,
            )
            .await
            .unwrap()
            .expect("first time queued");
        assert!(
            s.enqueue_delivery_at(
                &hook,
                "call.completed",
                Some("call_1"),
                &payload,
                "k1",
                1_000
            )
            .await
            .unwrap()
            .is_none(),
            "{name}: the same key is not queued twice"
        );
        assert!(
            s.due_deliveries(999, 10).await.unwrap().is_empty(),
            "{name}"
        );
        assert_eq!(s.next_delivery_due().await.unwrap(), Some(1_000), "{name}");
        let due = s.due_deliveries(1_000, 10).await.unwrap();
        assert_eq!(due.len(), 1, "{name}");
        assert_eq!(
            due[0].endpoint.secret, hook.secret,
            "{name}: the sender signs"
        );
        assert_eq!(due[0].delivery.payload, payload, "{name}");

        assert!(s.claim_delivery(&d.id, 1_000, 61_000).await.unwrap());
        assert!(
            !s.claim_delivery(&d.id, 1_000, 61_000).await.unwrap(),
            "{name}: a second sender does not get it"
        );
        assert!(
            s.due_deliveries(60_999, 10).await.unwrap().is_empty(),
            "{name}: leased"
        );

        let first = attempt(&d.id, 1, 1_000, Some(500));
        let recorded = s
            .record_delivery_attempt(&first, AttemptVerdict::RetryAt(6_000), THREE)
            .await
            .unwrap();
        assert_eq!(recorded.endpoint_disabled, None, "{name}");
        let stored = s.get_delivery(&d.id).await.unwrap();
        assert_eq!(
            (
                stored.status.as_str(),
                stored.attempts,
                stored.next_attempt_at
            ),
            ("pending", 1, 6_000),
            "{name}"
        );
        assert_eq!(stored.last_status_code, Some(500), "{name}");

        let second = attempt(&d.id, 2, 6_000, Some(200));
        s.record_delivery_attempt(&second, AttemptVerdict::Delivered, THREE)
            .await
            .unwrap();
        let stored = s.get_delivery(&d.id).await.unwrap();
        assert_eq!(
            (stored.status.as_str(), stored.delivered_at),
            ("delivered", Some(6_012)),
            "{name}"
        );
        let log = s.delivery_attempts(&d.id).await.unwrap();
        assert_eq!(log, vec![first, second], "{name}: every attempt is logged");
        assert_eq!(s.next_delivery_due().await.unwrap(), None, "{name}");

        let replayed = s.replay_delivery(&d.id, 9_000).await.unwrap();
        assert_eq!(
            (
                replayed.id.as_str(),
                replayed.status.as_str(),
                replayed.next_attempt_at
            ),
            (d.id.as_str(), "pending", 9_000),
            "{name}: a replay keeps the id"
        );
        assert!(matches!(
            s.replay_delivery("dlv_missing", 9_000).await,
            Err(StoreError::NotFound)
        ));
    }
}

#[tokio::test]
async fn a_run_of_failures_disables_the_endpoint_until_it_is_enabled() {
    for db in test_stores().await {
        let s = &db.store;
        let name = format!("{:?}", db.backend);
        let c = company(s, "A").await;
        let hook = s
            .create_webhook(
                &c,
                NewWebhookEndpoint {
                    url: "https://crm.example/hook".into(),
                    description: None,
                    events: vec![],
                },
            )
            .await
            .unwrap();
        let d = s
            .enqueue_delivery_at(&hook, "call.failed", None, &json!({}), "k", 0)
            .await
            .unwrap()
            .unwrap();
        let mut disabled = None;
        for n in 1..=3 {
            disabled = s
                .record_delivery_attempt(
                    &attempt(&d.id, n, n * 1_000, None),
                    AttemptVerdict::RetryAt(n * 1_000 + 500),
                    // Two failures are enough in number, but not until the run lasted 2 s.
                    DisableAfter {
                        failures: 2,
                        run_ms: 2_000,
                    },
                )
                .await
                .unwrap()
                .endpoint_disabled;
            assert_eq!(disabled.is_some(), n == 3, "{name}: attempt {n}");
        }
        let reason = disabled.unwrap();
        assert!(
            reason.contains("3 failed attempts") && reason.contains("connection refused"),
            "{name}: {reason}"
        );
        let endpoint = s.get_webhook(&hook.id).await.unwrap();
        assert!(!endpoint.enabled, "{name}");
        assert_eq!(endpoint.disabled_reason.as_deref(), Some(reason.as_str()));
        assert!(
            s.due_deliveries(i64::MAX, 10).await.unwrap().is_empty(),
            "{name}: nothing goes to a disabled endpoint"
        );
        assert_eq!(s.next_delivery_due().await.unwrap(), None, "{name}");

        let enabled = s
            .update_webhook(
                &hook.id,
                WebhookPatch {
                    enabled: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(enabled.enabled, "{name}");
        assert_eq!(
            (enabled.disabled_reason, enabled.consecutive_failures),
            (None, 0),
            "{name}: enabling clears the run"
        );
        assert_eq!(
            s.due_deliveries(i64::MAX, 10).await.unwrap().len(),
            1,
            "{name}"
        );
    }
}

#[tokio::test]
async fn dead_letters_are_kept_per_company() {
    for db in test_stores().await {
        let s = &db.store;
        let name = format!("{:?}", db.backend);
        let record = json!({"id": "call_1"});
        s.add_dead_letter("1-0", "call_1", "cmp_gone", &record, 3, "no such company")
            .await
            .unwrap();
        s.add_dead_letter(
            "1-0",
            "call_1",
            "cmp_gone",
            &record,
            4,
            "still no such company",
        )
        .await
        .unwrap();
        s.add_dead_letter("2-0", "call_2", "cmp_other", &record, 3, "x")
            .await
            .unwrap();
        let mine = s.list_dead_letters(Some("cmp_gone"), 10).await.unwrap();
        assert_eq!(mine.len(), 1, "{name}: one per queue entry");
        assert_eq!(
            (
                mine[0].attempts,
                mine[0].last_error.as_str(),
                &mine[0].record
            ),
            (4, "still no such company", &record),
            "{name}"
        );
        assert_eq!(
            s.list_dead_letters(None, 10).await.unwrap().len(),
            2,
            "{name}"
        );
    }
}
