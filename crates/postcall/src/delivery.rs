//! The webhook delivery loop. Post-call processing queues one delivery per event and endpoint in
//! the outbox table (its idempotency key stops a re-processed call from queueing twice); this loop
//! sends what is due, signed as Standard Webhooks says, with the delivery's id as `webhook-id` on
//! every attempt; logs each attempt; schedules the next by [`RetryPolicy`]; and lets a long run of
//! failures disable the endpoint. Everything lives in the database, so a restart resumes where it
//! stopped, and a lease on each delivery keeps two processes from sending it at once.

use crate::retry::RetryPolicy;
use crate::signing::SigningKey;
use crate::transport::{SendOutcome, WebhookTransport};
use async_trait::async_trait;
use callfleet_store::{
    AttemptVerdict, DeliveryAttempt, DisableAfter, DueDelivery, RecordedAttempt, Store, StoreError,
};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Where deliveries wait. The store is the one that matters; the trait lets the loop's timing be
/// tested on tokio's paused clock, which real database I/O cannot run under.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    async fn due(&self, now: i64, limit: u32) -> Result<Vec<DueDelivery>, StoreError>;
    async fn next_due(&self) -> Result<Option<i64>, StoreError>;
    async fn claim(&self, id: &str, seen: i64, lease_until: i64) -> Result<bool, StoreError>;
    async fn record(
        &self,
        attempt: &DeliveryAttempt,
        verdict: AttemptVerdict,
        disable: DisableAfter,
    ) -> Result<RecordedAttempt, StoreError>;
}

#[async_trait]
impl Outbox for Store {
    async fn due(&self, now: i64, limit: u32) -> Result<Vec<DueDelivery>, StoreError> {
        self.due_deliveries(now, limit).await
    }
    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        self.next_delivery_due().await
    }
    async fn claim(&self, id: &str, seen: i64, lease_until: i64) -> Result<bool, StoreError> {
        self.claim_delivery(id, seen, lease_until).await
    }
    async fn record(
        &self,
        attempt: &DeliveryAttempt,
        verdict: AttemptVerdict,
        disable: DisableAfter,
    ) -> Result<RecordedAttempt, StoreError> {
        self.record_delivery_attempt(attempt, verdict, disable)
            .await
    }
}

/// Unix milliseconds on tokio's clock: the wall time at creation plus tokio's elapsed time, so a
/// paused test clock moves it and production gets a monotonic one.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_at_start: i64,
    start: tokio::time::Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            wall_at_start: chrono::Utc::now().timestamp_millis(),
            start: tokio::time::Instant::now(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.wall_at_start.saturating_add(elapsed)
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub retry: RetryPolicy,
    pub disable: DisableAfter,
    /// Deliveries taken per round.
    pub batch: u32,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// How long a sender holds a delivery; it must outlast one request's timeout.
    pub lease: Duration,
    /// The longest sleep between looks at the outbox (other processes queue and replay too).
    pub idle_poll: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> DeliveryConfig {
        DeliveryConfig {
            retry: RetryPolicy::default(),
            // A receiver failing every attempt for 24 hours, at least 20 of them.
            disable: DisableAfter {
                failures: 20,
                run_ms: 24 * 3600 * 1000,
            },
            batch: 64,
            concurrency: 16,
            lease: Duration::from_secs(120),
            idle_poll: Duration::from_secs(2),
        }
    }
}

/// Sends due webhooks until cancelled.
pub struct WebhookDeliverer {
    outbox: Arc<dyn Outbox>,
    transport: Arc<dyn WebhookTransport>,
    config: DeliveryConfig,
    clock: Clock,
    wake: Arc<Notify>,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl WebhookDeliverer {
    pub fn new(
        outbox: Arc<dyn Outbox>,
        transport: Arc<dyn WebhookTransport>,
        config: DeliveryConfig,
    ) -> WebhookDeliverer {
        WebhookDeliverer {
            outbox,
            transport,
            config,
            clock: Clock::new(),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Notified (`notify_one`) when deliveries were queued, so they go at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Sends every delivery due now; returns when the next one is due (now, when more were due
    /// than one round takes).
    pub async fn deliver_due(&self) -> Result<Option<i64>, StoreError> {
        let now = self.clock.now_ms();
        let due = self.outbox.due(now, self.config.batch).await?;
        let full = due.len() >= self.config.batch as usize;
        let lease_until = now + millis(self.config.lease);
        futures::stream::iter(due)
            .for_each_concurrent(self.config.concurrency.max(1), |due| async move {
                let id = due.delivery.id.clone();
                let claimed = self
                    .outbox
                    .claim(&id, due.delivery.next_attempt_at, lease_until)
                    .await;
                let done = match claimed {
                    Ok(true) => self.attempt(due).await,
                    Ok(false) => Ok(()),
                    Err(e) => Err(e),
                };
                if let Err(e) = done {
                    // The lease runs out and the delivery is tried again, with the same id.
                    tracing::error!(delivery_id = %id, error = %e, "webhook attempt not recorded");
                }
            })
            .await;
        if full {
            return Ok(Some(self.clock.now_ms()));
        }
        self.outbox.next_due().await
    }

    async fn attempt(&self, due: DueDelivery) -> Result<(), StoreError> {
        let DueDelivery { delivery, endpoint } = due;
        let number = delivery.attempts.saturating_add(1);
        let body = serde_json::to_vec(&delivery.payload).expect("a JSON value serialises");
        let started_at = self.clock.now_ms();
        let outcome = match SigningKey::from_secret(&endpoint.secret) {
            Err(e) => SendOutcome::NoAnswer {
                error: e.to_string(),
            },
            Ok(key) => {
                let timestamp = started_at.div_euclid(1000);
                let headers = [
                    ("content-type", "application/json".to_string()),
                    ("webhook-id", delivery.id.clone()),
                    ("webhook-timestamp", timestamp.to_string()),
                    (
                        "webhook-signature",
                        key.sign(&delivery.id, timestamp, &body),
                    ),
                ];
                self.transport.send(&endpoint.url, &headers, &body).await
            }
        };
        let finished_at = self.clock.now_ms();
        let (status_code, error, excerpt, retry_after) = match outcome {
            SendOutcome::Answered {
                status,
                retry_after,
                excerpt,
            } => {
                let error = (300..400)
                    .contains(&status)
                    .then(|| format!("HTTP {status}: redirects are not followed"));
                (Some(i64::from(status)), error, Some(excerpt), retry_after)
            }
            SendOutcome::NoAnswer { error } => (None, Some(error), None, None),
        };
        let delivered = status_code.is_some_and(|s| (200..300).contains(&s));
        let verdict = if delivered {
            AttemptVerdict::Delivered
        } else {
            let attempt = u32::try_from(number).unwrap_or(u32::MAX);
            match self
                .config
                .retry
                .delay_after(attempt, retry_after, rand::random::<f64>())
            {
                Some(wait) => AttemptVerdict::RetryAt(finished_at + millis(wait)),
                None => AttemptVerdict::GiveUp,
            }
        };
        let attempt = DeliveryAttempt {
            id: DeliveryAttempt::new_id(),
            delivery_id: delivery.id.clone(),
            attempt: number,
            started_at,
            latency_ms: finished_at - started_at,
            status_code,
            error,
            response_excerpt: excerpt,
        };
        let recorded = self
            .outbox
            .record(&attempt, verdict, self.config.disable)
            .await?;
        match verdict {
            AttemptVerdict::Delivered => tracing::info!(
                delivery_id = %delivery.id, event = %delivery.event, attempt = number,
                latency_ms = attempt.latency_ms, "webhook delivered"
            ),
            AttemptVerdict::RetryAt(at) => tracing::warn!(
                delivery_id = %delivery.id, event = %delivery.event, attempt = number,
                status = ?attempt.status_code, error = ?attempt.error,
                retry_in_ms = at - finished_at, "webhook attempt failed; will retry"
            ),
            AttemptVerdict::GiveUp => tracing::error!(
                delivery_id = %delivery.id, event = %delivery.event, attempt = number,
                status = ?attempt.status_code, error = ?attempt.error,
                "webhook failed: no attempts left"
            ),
        }
        if let Some(reason) = recorded.endpoint_disabled {
            tracing::error!(endpoint_id = %endpoint.id, %reason, "webhook endpoint disabled");
        }
        Ok(())
    }

    /// Runs until `shutdown`: sends what is due, sleeps until the next is due (or a wake-up, or
    /// `idle_poll`).
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let next = match self.deliver_due().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "webhook outbox unreadable; will retry");
                    None
                }
            };
            let now = self.clock.now_ms();
            let wait = next.map_or(self.config.idle_poll, |at| {
                Duration::from_millis(u64::try_from((at - now).max(0)).unwrap_or(0))
                    .min(self.config.idle_poll)
            });
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
