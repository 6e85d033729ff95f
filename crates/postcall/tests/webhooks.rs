//! Webhooks end to end, on every store backend: a finished call goes through post-call
//! processing into the outbox, and the deliverer sends it over HTTP to a receiver on 127.0.0.1
//! that checks every signature with its own implementation (`support/receiver.py`: Python's
//! hmac/hashlib/base64). The receiver is down, then answers 500, then is too slow, then
//! redirects, then asks to be left alone (Retry-After), then recovers: each event arrives, once
//! accepted, with one webhook-id through all its attempts, and every attempt is logged.

use callfleet_core::domain::{
    CallDirection, CallRecord, CallStatus, Evidence, Outcome, Speaker, Turn,
};
use callfleet_fleet::{FileQueue, PostCallQueue};
use callfleet_postcall::{
    AddressPolicy, DeliveryConfig, HttpTransport, PostCallWorker, RetryPolicy, SendOutcome,
    WebhookDeliverer, WebhookTransport,
};
use callfleet_store::testing::test_stores;
use callfleet_store::{DisableAfter, NewCompany, NewWebhookEndpoint, Store, WebhookEndpoint};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// The Python receiver, killed when dropped.
struct Receiver {
    child: tokio::process::Child,
    port: u16,
}

impl Receiver {
    async fn start(port: u16, secrets: &[(&str, &str)]) -> Receiver {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/receiver.py");
        let mut command = tokio::process::Command::new("python3");
        command.arg(script).arg(port.to_string());
        for (name, secret) in secrets {
            command.arg(format!("{name}={secret}"));
        }
        let mut child = command
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs the receiver");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .unwrap();
        assert_eq!(line.trim(), "ready", "the receiver started");
        Receiver { child, port }
    }

    async fn set_mode(&self, mode: Value) {
        let status = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/_mode", self.port))
            .json(&mode)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 204);
    }

    async fn received(&self) -> Vec<Value> {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/_received", self.port))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        self.child.kill().await.ok();
    }
}

/// A port nothing listens on (yet).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn booking_call(id: &str, company: &str) -> CallRecord {
    CallRecord {
        id: id.into(),
        company_id: company.into(),
        bot_id: "bot_1".into(),
        bot_config_version: 1,
        direction: CallDirection::Inbound,
        status: CallStatus::Completed,
        from_number: Some("+79161234567".into()),
        to_number: None,
        room: Some("room".into()),
        started_at: 1_700_000_000_000,
        ended_at: Some(1_700_000_060_000),
        language: Some("en".into()),
        transcript: vec![
            Turn {
                speaker: Speaker::User,
                text: "I'd like to book a haircut".into(),
                at_ms: 1_000,
                interrupted: false,
            },
            Turn {
                speaker: Speaker::Bot,
                text: "Booked for tomorrow at ten.".into(),
                at_ms: 3_000,
                interrupted: false,
            },
        ],
        fields: BTreeMap::from([("service".to_string(), "haircut".to_string())]),
        outcome: Some(Outcome {
            kind: "BOOKING".into(),
            evidence: vec![Evidence::ScenarioCompleted {
                turn: 1,
                scenario: "booking".into(),
                event: Some("booking_created".into()),
            }],
        }),
        summary: None,
        metrics: vec![],
    }
}

async fn endpoint(store: &Store, company: &str, url: String, events: &[&str]) -> WebhookEndpoint {
    store
        .create_webhook(
            company,
            NewWebhookEndpoint {
                url,
                description: None,
                events: events.iter().map(|e| e.to_string()).collect(),
            },
        )
        .await
        .unwrap()
}

/// Retries at once (the schedule itself is tested on the paused clock), 1 s request timeout.
fn fast_deliverer(store: &Store, disable_after: i64) -> WebhookDeliverer {
    let transport = HttpTransport::new(
        AddressPolicy::parse("127.0.0.1/32").unwrap(),
        Duration::from_secs(1),
    )
    .unwrap();
    WebhookDeliverer::new(
        Arc::new(store.clone()),
        Arc::new(transport),
        DeliveryConfig {
            retry: RetryPolicy {
                delays: vec![Duration::from_millis(1); 15],
                jitter: 0.0,
                max_retry_after: Duration::from_secs(60),
            },
            disable: DisableAfter {
                failures: disable_after,
                run_ms: 0,
            },
            ..DeliveryConfig::default()
        },
    )
}

/// Sends due deliveries until `delivery` has made `attempts` attempts (a bounded wait for the
/// outcome, not a timing assertion).
async fn attempt_until(deliverer: &WebhookDeliverer, store: &Store, delivery: &str, attempts: i64) {
    for _ in 0..600 {
        deliverer.deliver_due().await.unwrap();
        if store.get_delivery(delivery).await.unwrap().attempts >= attempts {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("delivery {delivery} never reached {attempts} attempts");
}

#[tokio::test]
async fn events_reach_a_receiver_that_recovers_signed_once_each() {
    for db in test_stores().await {
        let name = format!("{:?}", db.backend);
        let store = &db.store;
        let company = store
            .create_company(NewCompany {
                name: "A".into(),
                timezone: "UTC".into(),
                max_concurrent_calls: 5,
            })
            .await
            .unwrap()
            .id;
        let port = free_port();
        let url = |path: &str| format!("http://127.0.0.1:{port}/{path}");
        let all = endpoint(store, &company, url("all"), &[]).await;
        let bookings = endpoint(store, &company, url("bookings"), &["booking.created"]).await;
        let failures = endpoint(store, &company, url("failures"), &["call.failed"]).await;
        let dead_port = free_port();
        let dead = endpoint(
            store,
            &company,
            format!("http://127.0.0.1:{dead_port}/x"),
            &[],
        )
        .await;

        let dir = tempfile::tempdir().unwrap();
        let queue: Arc<dyn PostCallQueue> = Arc::new(FileQueue::open(dir.path()).unwrap());
        let worker = PostCallWorker::new(queue.clone(), store.clone(), "pc");
        queue.push(&booking_call("call_1", &company)).await.unwrap();
        // The agent pushed it twice (it died after pushing, and failover ended the call again).
        queue.push(&booking_call("call_1", &company)).await.unwrap();
        for _ in 0..2 {
            assert!(worker.process_next(Duration::from_secs(1)).await.unwrap());
        }
        let queued = |hook: &WebhookEndpoint| {
            let store = store.clone();
            let id = hook.id.clone();
            async move {
                let mut events: Vec<(String, String)> = store
                    .list_deliveries(&id, 100)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|d| (d.event, d.id))
                    .collect();
                events.sort();
                events
            }
        };
        let to_all = queued(&all).await;
        let to_bookings = queued(&bookings).await;
        assert_eq!(
            to_all.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>(),
            ["booking.created", "call.completed"],
            "{name}: each event queued once, though the record came twice"
        );
        assert_eq!(to_bookings.len(), 1, "{name}: filtered to booking.created");
        assert!(queued(&failures).await.is_empty(), "{name}: not subscribed");
        let completed = to_all[1].1.clone();

        // Two deliveries to `all` fail five times each: ten in a row, under the twelve that disable.
        let deliverer = fast_deliverer(store, 12);
        // 1. Down: nothing listens.
        attempt_until(&deliverer, store, &completed, 1).await;
        let receiver = Receiver::start(
            port,
            &[
                ("all", all.secret.as_str()),
                ("bookings", bookings.secret.as_str()),
                ("failures", failures.secret.as_str()),
            ],
        )
        .await;
        // 2. Broken, 3. too slow for the 1 s timeout, 4. redirecting, 5. busy for 2 s.
        receiver.set_mode(json!({"mode": "fail"})).await;
        attempt_until(&deliverer, store, &completed, 2).await;
        receiver.set_mode(json!({"mode": "slow", "slow": 3})).await;
        attempt_until(&deliverer, store, &completed, 3).await;
        receiver.set_mode(json!({"mode": "redirect"})).await;
        attempt_until(&deliverer, store, &completed, 4).await;
        receiver
            .set_mode(json!({"mode": "retry_after", "retry_after": "2"}))
            .await;
        attempt_until(&deliverer, store, &completed, 5).await;
        let waiting = store.get_delivery(&completed).await.unwrap();
        let log = store.delivery_attempts(&completed).await.unwrap();
        let fifth = log.last().unwrap();
        assert!(
            waiting.next_attempt_at >= fifth.started_at + fifth.latency_ms + 2_000,
            "{name}: Retry-After: 2 is honoured over a 1 ms schedule"
        );
        // 6. Recovered.
        receiver.set_mode(json!({"mode": "ok"})).await;
        for (_, id) in to_all.iter().chain(&to_bookings) {
            for _ in 0..600 {
                if store.get_delivery(id).await.unwrap().status.as_str() == "delivered" {
                    break;
                }
                deliverer.deliver_due().await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(
                store.get_delivery(id).await.unwrap().status.as_str(),
                "delivered",
                "{name}: {id}"
            );
        }

        let received = receiver.received().await;
        assert!(
            received.iter().all(|r| r["verified"] == true),
            "{name}: every request was signed correctly: {received:?}"
        );
        assert!(
            received.iter().all(|r| r["path"] != "/elsewhere"),
            "{name}: the redirect was not followed"
        );
        let accepted: Vec<(String, String)> = received
            .iter()
            .filter(|r| r["mode"] == "ok")
            .map(|r| {
                (
                    r["path"].as_str().unwrap().to_string(),
                    r["id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = {
            let mut e: Vec<(String, String)> = to_all
                .iter()
                .map(|(_, id)| ("/all".to_string(), id.clone()))
                .chain(
                    to_bookings
                        .iter()
                        .map(|(_, id)| ("/bookings".to_string(), id.clone())),
                )
                .collect();
            e.sort();
            e
        };
        let mut sorted = accepted.clone();
        sorted.sort();
        assert_eq!(
            sorted, expected,
            "{name}: each event accepted exactly once, under its delivery's id"
        );
        let ids_of_completed: BTreeSet<&str> = received
            .iter()
            .filter(|r| r["path"] == "/all" && r["type"] == "call.completed")
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids_of_completed,
            BTreeSet::from([completed.as_str()]),
            "{name}: one webhook-id through every retry"
        );

        // Every attempt is in the log, in order, with what the receiver answered.
        let log = store.delivery_attempts(&completed).await.unwrap();
        let summary: Vec<(i64, Option<i64>)> =
            log.iter().map(|a| (a.attempt, a.status_code)).collect();
        assert_eq!(
            summary,
            [
                (1, None),
                (2, Some(500)),
                (3, None),
                (4, Some(302)),
                (5, Some(503)),
                (6, Some(200))
            ],
            "{name}"
        );
        assert!(
            log[0].error.as_deref().unwrap().contains("connect"),
            "{name}: {:?}",
            log[0]
        );
        assert_eq!(log[1].response_excerpt.as_deref(), Some("receiver broken"));
        assert!(
            log[2].error.as_deref().unwrap().contains("timed out"),
            "{name}: {:?}",
            log[2]
        );
        assert!(log[3]
            .error
            .as_deref()
            .unwrap()
            .contains("redirects are not followed"));
        assert_eq!(log[5].response_excerpt.as_deref(), Some("thanks"));
        let done = store.get_delivery(&completed).await.unwrap();
        assert_eq!((done.attempts, done.last_status_code), (6, Some(200)));
        assert!(
            store.get_webhook(&all.id).await.unwrap().enabled,
            "{name}: five failures then a success: still enabled"
        );

        // An endpoint that never answers is disabled after its run of failures, with the reason.
        for _ in 0..600 {
            if !store.get_webhook(&dead.id).await.unwrap().enabled {
                break;
            }
            deliverer.deliver_due().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let dead_now = store.get_webhook(&dead.id).await.unwrap();
        assert!(!dead_now.enabled, "{name}");
        let reason = dead_now.disabled_reason.unwrap();
        assert!(
            reason.contains("12 failed attempts in a row") && reason.contains("connect"),
            "{name}: {reason}"
        );

        // A replay sends the same webhook-id again; the receiver sees the duplicate.
        store
            .replay_delivery(&completed, callfleet_store::now_ms())
            .await
            .unwrap();
        attempt_until(&deliverer, store, &completed, 7).await;
        let received = receiver.received().await;
        let last = received.last().unwrap();
        assert_eq!(
            (last["id"].as_str(), last["duplicate"].as_bool()),
            (Some(completed.as_str()), Some(true)),
            "{name}"
        );
        receiver.stop().await;
    }
}

#[tokio::test]
async fn the_default_policy_refuses_loopback_before_and_after_dns() {
    let port = free_port();
    let receiver =
        Receiver::start(port, &[("all", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]).await;
    let headers = [("content-type", "application/json".to_string())];
    // The default: public destinations only.
    let strict = HttpTransport::new(AddressPolicy::public_only(), Duration::from_secs(1)).unwrap();
    for url in [
        format!("http://127.0.0.1:{port}/all"),
        format!("http://localhost:{port}/all"),
        format!("http://[::ffff:127.0.0.1]:{port}/all"),
    ] {
        match strict.send(&url, &headers, b"{}").await {
            SendOutcome::NoAnswer { error } => {
                assert!(error.starts_with("refused"), "{url}: {error}")
            }
            other => panic!("{url} was sent: {other:?}"),
        }
    }
    // Allowing a private range passes internal names to DNS, whose answer is checked too:
    // localhost resolves to loopback, which is still refused.
    let lan = HttpTransport::new(
        AddressPolicy::parse("10.0.0.0/8").unwrap(),
        Duration::from_secs(1),
    )
    .unwrap();
    match lan
        .send(&format!("http://localhost:{port}/all"), &headers, b"{}")
        .await
    {
        SendOutcome::NoAnswer { error } => {
            assert!(
                error.contains("resolves to 127.0.0.1") || error.contains("resolves to ::1"),
                "{error}"
            )
        }
        other => panic!("sent after DNS said loopback: {other:?}"),
    }
    assert!(
        receiver.received().await.is_empty(),
        "nothing reached the receiver"
    );
    // The allow-list opens loopback (what self-hosted users and these tests do).
    let open = HttpTransport::new(
        AddressPolicy::parse("127.0.0.1/32").unwrap(),
        Duration::from_secs(1),
    )
    .unwrap();
    match open
        .send(&format!("http://127.0.0.1:{port}/all"), &headers, b"{}")
        .await
    {
        SendOutcome::Answered { status, .. } => {
            assert_eq!(status, 401, "unsigned, so refused by the receiver")
        }
        other => panic!("{other:?}"),
    }
    receiver.stop().await;
}
