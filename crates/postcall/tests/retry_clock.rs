//! The delivery loop's timing on tokio's paused clock: an in-memory outbox and a scripted
//! transport, so hours of retries run in an instant and every wait is exact.

use async_trait::async_trait;
use callfleet_core::domain::DeliveryStatus;
use callfleet_postcall::{
    DeliveryConfig, Outbox, RetryPolicy, SendOutcome, WebhookDeliverer, WebhookTransport,
};
use callfleet_store::{
    AttemptVerdict, DeliveryAttempt, DisableAfter, DueDelivery, RecordedAttempt, StoreError,
    WebhookDelivery, WebhookEndpoint,
};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One delivery kept in memory, with what the deliverer recorded.
struct MemoryOutbox {
    due: Mutex<DueDelivery>,
    log: Mutex<Vec<(DeliveryAttempt, AttemptVerdict)>>,
}

impl MemoryOutbox {
    fn new(now: i64) -> MemoryOutbox {
        let endpoint = WebhookEndpoint {
            id: "whk_1".into(),
            company_id: "cmp_1".into(),
            url: "https://crm.example/hook".into(),
            description: None,
            events: vec![],
            enabled: true,
            consecutive_failures: 0,
            disabled_reason: None,
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            created_at: now,
            updated_at: now,
        };
        let delivery = WebhookDelivery {
            id: "dlv_1".into(),
            endpoint_id: "whk_1".into(),
            company_id: "cmp_1".into(),
            event: "call.completed".into(),
            call_id: Some("call_1".into()),
            payload: serde_json::json!({"type": "call.completed"}),
            idempotency_key: "k".into(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: now,
            last_status_code: None,
            last_error: None,
            created_at: now,
            delivered_at: None,
        };
        MemoryOutbox {
            due: Mutex::new(DueDelivery { delivery, endpoint }),
            log: Mutex::new(Vec::new()),
        }
    }

    fn status(&self) -> &'static str {
        self.due.lock().unwrap().delivery.status.as_str()
    }
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn due(&self, now: i64, _limit: u32) -> Result<Vec<DueDelivery>, StoreError> {
        let d = self.due.lock().unwrap();
        Ok(
            (d.delivery.status.as_str() == "pending" && d.delivery.next_attempt_at <= now)
                .then(|| d.clone())
                .into_iter()
                .collect(),
        )
    }
    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let d = self.due.lock().unwrap();
        Ok((d.delivery.status.as_str() == "pending").then_some(d.delivery.next_attempt_at))
    }
    async fn claim(&self, _id: &str, seen: i64, lease_until: i64) -> Result<bool, StoreError> {
        let mut d = self.due.lock().unwrap();
        if d.delivery.status.as_str() != "pending" || d.delivery.next_attempt_at != seen {
            return Ok(false);
        }
        d.delivery.next_attempt_at = lease_until;
        Ok(true)
    }
    async fn record(
        &self,
        attempt: &DeliveryAttempt,
        verdict: AttemptVerdict,
        _disable: DisableAfter,
    ) -> Result<RecordedAttempt, StoreError> {
        let mut d = self.due.lock().unwrap();
        d.delivery.attempts = attempt.attempt;
        match verdict {
            AttemptVerdict::Delivered => d.delivery.status = DeliveryStatus::Delivered,
            AttemptVerdict::RetryAt(at) => d.delivery.next_attempt_at = at,
            AttemptVerdict::GiveUp => d.delivery.status = DeliveryStatus::Failed,
        }
        self.log.lock().unwrap().push((attempt.clone(), verdict));
        Ok(RecordedAttempt {
            endpoint_disabled: None,
        })
    }
}

/// Answers from a script (then 200), noting when each request came and its webhook-id.
struct ScriptedTransport {
    script: Mutex<VecDeque<SendOutcome>>,
    seen: Mutex<Vec<(Duration, String)>>,
    start: Instant,
}

impl ScriptedTransport {
    fn new(script: Vec<SendOutcome>) -> ScriptedTransport {
        ScriptedTransport {
            script: Mutex::new(script.into()),
            seen: Mutex::new(Vec::new()),
            start: Instant::now(),
        }
    }

    fn times(&self) -> Vec<Duration> {
        self.seen.lock().unwrap().iter().map(|(t, _)| *t).collect()
    }
}

#[async_trait]
impl WebhookTransport for ScriptedTransport {
    async fn send(&self, _url: &str, headers: &[(&str, String)], _body: &[u8]) -> SendOutcome {
        let id = headers
            .iter()
            .find(|(name, _)| *name == "webhook-id")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        self.seen.lock().unwrap().push((self.start.elapsed(), id));
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(SendOutcome::Answered {
                status: 200,
                retry_after: None,
                excerpt: "ok".into(),
            })
    }
}

fn answered(status: u16, retry_after: Option<Duration>) -> SendOutcome {
    SendOutcome::Answered {
        status,
        retry_after,
        excerpt: String::new(),
    }
}

/// Runs a deliverer over `script` for `span` of (paused) time.
async fn run(
    script: Vec<SendOutcome>,
    retry: RetryPolicy,
    span: Duration,
) -> (Arc<MemoryOutbox>, Arc<ScriptedTransport>) {
    let transport = Arc::new(ScriptedTransport::new(script));
    let clock = callfleet_postcall::Clock::new();
    let outbox = Arc::new(MemoryOutbox::new(clock.now_ms()));
    let deliverer = WebhookDeliverer::new(
        outbox.clone(),
        transport.clone(),
        DeliveryConfig {
            retry,
            ..DeliveryConfig::default()
        },
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(deliverer.run(stop.clone()));
    tokio::time::sleep(span).await;
    stop.cancel();
    task.await.unwrap();
    (outbox, transport)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[tokio::test(start_paused = true)]
async fn failures_are_retried_on_the_schedule_and_retry_after_is_honoured() {
    let script = vec![
        SendOutcome::NoAnswer {
            error: "could not connect".into(),
        },
        answered(500, None),
        // Asks for ten minutes, far more than the scheduled two.
        answered(503, Some(Duration::from_secs(600))),
        answered(429, Some(Duration::from_secs(1))),
    ];
    let (outbox, transport) = run(script, RetryPolicy::default(), secs(4.0 * 3600.0)).await;
    let t = transport.times();
    assert_eq!(t.len(), 5, "four failures, then delivered: {t:?}");
    assert_eq!(t[0], Duration::ZERO, "the first attempt goes at once");
    let gaps: Vec<Duration> = t.windows(2).map(|w| w[1] - w[0]).collect();
    // Scheduled 5 s, 30 s, (2 min → Retry-After 10 min), 5 min; each ±20 % jitter.
    for (i, (gap, low, high)) in [
        (gaps[0], secs(4.0), secs(6.0)),
        (gaps[1], secs(24.0), secs(36.0)),
        (gaps[2], secs(600.0), secs(600.0)),
        (gaps[3], secs(240.0), secs(360.0)),
    ]
    .into_iter()
    .enumerate()
    {
        // The loop wakes when the next attempt is due, to the millisecond the outbox keeps.
        assert!(
            gap >= low && gap <= high + Duration::from_millis(1),
            "gap {i}: {gap:?} not in {low:?}..={high:?}"
        );
    }
    let ids: Vec<String> = transport
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, id)| id.clone())
        .collect();
    assert!(
        ids.iter().all(|id| id == "dlv_1"),
        "one webhook-id: {ids:?}"
    );
    assert_eq!(outbox.status(), "delivered");
    let log = outbox.log.lock().unwrap();
    let numbers: Vec<i64> = log.iter().map(|(a, _)| a.attempt).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5]);
}

#[tokio::test(start_paused = true)]
async fn a_receiver_down_for_good_is_tried_for_about_a_day_then_given_up() {
    let script = vec![answered(500, None); 100];
    let (outbox, transport) = run(script, RetryPolicy::default(), secs(40.0 * 3600.0)).await;
    let t = transport.times();
    assert_eq!(t.len(), 12, "every attempt of the schedule, then no more");
    let span = *t.last().unwrap() - t[0];
    assert!(
        span >= secs(0.8 * 86_000.0) && span <= secs(1.2 * 86_000.0),
        "the attempts span about a day: {span:?}"
    );
    assert_eq!(outbox.status(), "failed");
    let log = outbox.log.lock().unwrap();
    assert_eq!(log.last().unwrap().1, AttemptVerdict::GiveUp);
}

#[tokio::test(start_paused = true)]
async fn the_loop_wakes_for_the_next_due_delivery_without_polling_early() {
    // No jitter: attempts at exactly 0, 5 s and 35 s.
    let retry = RetryPolicy {
        jitter: 0.0,
        ..RetryPolicy::default()
    };
    let (_, transport) = run(
        vec![answered(500, None), answered(500, None)],
        retry,
        secs(60.0),
    )
    .await;
    assert_eq!(transport.times(), [secs(0.0), secs(5.0), secs(35.0)]);
}
