//! Post-call processing: the consumer of the durable queue agents push finished calls to. For
//! each record it runs the configured steps (summaries and outcome classification slot in here as
//! [`PostCallStep`]s), stores the call, queues its webhooks in the outbox table, and only then
//! acknowledges it — so a crash at any point means the record is processed again, never lost.
//! Every effect is idempotent: storing is an upsert, and a webhook's idempotency key (endpoint,
//! call, event) queues it once. A record that keeps failing is set aside as a dead letter after
//! [`PostCallWorker::with_max_attempts`] tries, so it never blocks the others.
//!
//! Webhooks leave through [`WebhookDeliverer`] (`delivery`): signed as Standard Webhooks
//! (`signing`), retried over about a day (`retry`), only to public addresses unless allowed
//! (`address`, checked again after DNS by `transport`).
//!
//! Architecture invariant: runs after calls, never during one; a slow step delays the queue, not
//! a conversation.

pub mod address;
pub mod analysis;
pub mod delivery;
pub mod events;
pub mod retry;
pub mod signing;
pub mod summary;
pub mod transport;

pub use address::{AddressPolicy, Refused, ALLOW_PRIVATE_ENV};
pub use delivery::{Clock, DeliveryConfig, Outbox, WebhookDeliverer};
pub use events::{events_of, WebhookEvent, CALL_EVENTS};
pub use retry::RetryPolicy;
pub use summary::{BotModels, Summarizer, Summary, SummaryKind, SummaryModels};
pub use transport::{HttpTransport, SendOutcome, WebhookTransport};

use async_trait::async_trait;
use callfleet_core::domain::{CallDirection, CallRecord, CallStatus, Speaker};
use callfleet_fleet::{FleetError, PostCallQueue, QueuedRecord};
use callfleet_recording::RecordingStore;
use callfleet_store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long the record of an outbound call that never connected waits for its dialer's outcome.
pub const DIAL_OUTCOME_WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum PostCallError {
    #[error("queue: {0}")]
    Queue(#[from] FleetError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("step {step}: {message}")]
    Step { step: &'static str, message: String },
    #[error("recordings: {0}")]
    Recording(#[from] callfleet_recording::RecordingError),
}

impl PostCallError {
    /// Whether the failure is the database or queue being unreachable rather than something
    /// wrong with the record: such failures do not count towards dead-lettering it, so an outage
    /// never sets good records aside.
    pub fn is_outage(&self) -> bool {
        match self {
            // The recording store (a bucket, a disk) being unreachable is an outage too.
            PostCallError::Queue(_) | PostCallError::Recording(_) => true,
            PostCallError::Store(StoreError::Database(sqlx::Error::Database(db))) => {
                // PostgreSQL: connection exceptions (08), insufficient resources (53), shutdown
                // and other operator intervention (57), serialization failures and deadlocks
                // (40); SQLite: busy (5) or locked (6).
                let code = db.code().unwrap_or_default();
                ["08", "53", "57", "40"].iter().any(|c| code.starts_with(c))
                    || code == "5"
                    || code == "6"
            }
            PostCallError::Store(StoreError::Database(e)) => matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
                    | sqlx::Error::Protocol(_)
            ),
            _ => false,
        }
    }
}

/// How long a webhook request may take before it counts as failed.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(15);

/// Work done on a finished call before it is stored (a summary, an outcome classification).
#[async_trait]
pub trait PostCallStep: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn apply(&self, record: &mut CallRecord) -> Result<(), PostCallError>;
}

/// Takes records off the queue until cancelled.
pub struct PostCallWorker {
    queue: Arc<dyn PostCallQueue>,
    store: Store,
    steps: Vec<Arc<dyn PostCallStep>>,
    consumer: String,
    /// A record taken by a consumer that has not acked it for this long is taken over.
    reclaim_after: Duration,
    /// Failed tries of a record before it becomes a dead letter.
    max_attempts: u32,
    /// Failed tries so far, by queue entry (outages not counted).
    failures: Mutex<HashMap<String, u32>>,
    /// Sends the webhooks `process` queues; started by `run`.
    deliverer: Option<WebhookDeliverer>,
    /// Wakes the deliverer when webhooks were queued.
    webhooks_queued: Option<Arc<Notify>>,
    /// Writes each call's summary (extractive unless given models).
    summarizer: Summarizer,
    /// Where agents put recordings: a recorded call's is registered, expired ones deleted.
    recordings: Option<Arc<dyn RecordingStore>>,
}

impl PostCallWorker {
    pub fn new(queue: Arc<dyn PostCallQueue>, store: Store, consumer: &str) -> PostCallWorker {
        PostCallWorker {
            queue,
            store,
            steps: Vec::new(),
            consumer: consumer.to_string(),
            reclaim_after: Duration::from_secs(60),
            max_attempts: 5,
            failures: Mutex::new(HashMap::new()),
            deliverer: None,
            webhooks_queued: None,
            summarizer: Summarizer::extractive(),
            recordings: None,
        }
    }

    /// Registers the recordings agents put in `recordings` for calls of bots that record, and
    /// deletes them when their bot's retention is over.
    pub fn with_recordings(mut self, recordings: Arc<dyn RecordingStore>) -> PostCallWorker {
        self.recordings = Some(recordings);
        self
    }

    /// A recorded call's recording, registered with its expiry (the bot's `retention_days`
    /// after the call ended) so the API serves it; nothing for bots that do not record.
    async fn register_recording(&self, record: &CallRecord) -> Result<bool, PostCallError> {
        let Some(recordings) = &self.recordings else {
            return Ok(false);
        };
        let settings = match self
            .store
            .get_bot_version(&record.bot_id, Some(record.bot_config_version))
            .await
            .and_then(|v| v.bot_config())
        {
            Ok(config) => config.recording,
            Err(StoreError::NotFound) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if !settings.enabled {
            return Ok(false);
        }
        let key = callfleet_recording::recording_key(&record.company_id, &record.id);
        let Some(bytes) = recordings.size(&key).await? else {
            tracing::warn!(call_id = %record.id, "the bot records calls but this one has no recording");
            return Ok(false);
        };
        let ended = record.ended_at.unwrap_or(record.started_at);
        let expires_at = ended + i64::from(settings.retention_days) * 86_400_000;
        self.store
            .save_recording(
                &record.id,
                &record.company_id,
                &key,
                i64::try_from(bytes).unwrap_or(i64::MAX),
                expires_at,
            )
            .await?;
        Ok(true)
    }

    /// Deletes recordings past their retention (bytes first, then the row); how many.
    pub async fn sweep_recordings(&self) -> Result<usize, PostCallError> {
        let Some(recordings) = &self.recordings else {
            return Ok(0);
        };
        let expired = self
            .store
            .expired_recordings(callfleet_store::now_ms(), 100)
            .await?;
        for recording in &expired {
            recordings.delete(&recording.storage_key).await?;
            self.store.forget_recording(&recording.call_id).await?;
        }
        if !expired.is_empty() {
            tracing::info!(deleted = expired.len(), "expired recordings deleted");
        }
        Ok(expired.len())
    }

    /// Summarises calls with `summarizer` (by default every summary is extractive).
    pub fn with_summarizer(mut self, summarizer: Summarizer) -> PostCallWorker {
        self.summarizer = summarizer;
        self
    }

    /// Sends webhooks through `deliverer` (by default, [`run`](Self::run) builds one over HTTP
    /// with the address policy of `CALLFLEET_WEBHOOK_ALLOW_PRIVATE`).
    pub fn with_deliverer(mut self, deliverer: WebhookDeliverer) -> PostCallWorker {
        self.webhooks_queued = Some(deliverer.waker());
        self.deliverer = Some(deliverer);
        self
    }

    /// Failed tries (outages aside) before a record is set aside as a dead letter.
    pub fn with_max_attempts(mut self, attempts: u32) -> PostCallWorker {
        self.max_attempts = attempts.max(1);
        self
    }

    pub fn with_step(mut self, step: Arc<dyn PostCallStep>) -> PostCallWorker {
        self.steps.push(step);
        self
    }

    pub fn with_reclaim_after(mut self, after: Duration) -> PostCallWorker {
        self.reclaim_after = after;
        self
    }

    /// Processes one record: steps, store, queue webhooks, ack.
    pub async fn process(&self, queued: QueuedRecord) -> Result<(), PostCallError> {
        let mut record = queued.record;
        for step in &self.steps {
            step.apply(&mut record).await?;
        }
        self.keep_dial_outcome(&mut record).await?;
        let summary = self.summary_of(&record).await?;
        record.summary = Some(summary.text.clone());
        self.store.upsert_call(&record).await?;
        self.store
            .save_call_analysis(
                &record.id,
                &analysis::analyze(&record),
                Some((&summary.text, summary.kind.as_str())),
            )
            .await?;
        self.register_recording(&record).await?;
        let queued_webhooks = self.queue_webhooks(&record).await?;
        self.queue.ack(&queued.id).await?;
        if queued_webhooks > 0 {
            if let Some(wake) = &self.webhooks_queued {
                wake.notify_one();
            }
        }
        tracing::info!(call_id = %record.id, outcome = record.outcome.as_ref().map_or("-", |o| o.kind.as_str()), webhooks = queued_webhooks, "call stored");
        Ok(())
    }

    /// An outbound call that never connected is ended by its dialer with why (busy, nobody
    /// answered, the call failed, and the SIP status); its agent only saw the callee's leg or its
    /// room close and reports NO_ANSWER. The dialer's status and outcome stand. The agent's
    /// record can come first (livekit-sip drops the callee's leg a moment before LiveKit
    /// answers the dialer), so a call still stored as ringing is waited for, up to
    /// [`DIAL_OUTCOME_WAIT`] (a dialer that died never ends it).
    async fn keep_dial_outcome(&self, record: &mut CallRecord) -> Result<(), PostCallError> {
        if record.direction != CallDirection::Outbound
            || record.status != CallStatus::NoAnswer
            || record.transcript.iter().any(|t| t.speaker == Speaker::User)
        {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + DIAL_OUTCOME_WAIT;
        loop {
            let stored = match self.store.get_call(&record.id).await {
                Ok(stored) => stored,
                Err(StoreError::NotFound) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            match stored.status {
                CallStatus::Ringing if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                CallStatus::NoAnswer | CallStatus::Failed if stored.outcome.is_some() => {
                    record.status = stored.status;
                    record.outcome = stored.outcome;
                    return Ok(());
                }
                _ => return Ok(()),
            }
        }
    }

    /// The call's summary: one from a step (or the agent) stands; one this call already got
    /// (processed before, then retried) is kept, so its webhooks and the stored call agree;
    /// otherwise the summarizer writes it.
    async fn summary_of(&self, record: &CallRecord) -> Result<Summary, PostCallError> {
        if let Some(given) = record.summary.as_deref().filter(|s| !s.trim().is_empty()) {
            return Ok(Summary {
                text: given.to_string(),
                kind: SummaryKind::Given,
            });
        }
        if let Some((text, kind)) = self.store.get_call_summary(&record.id).await? {
            if let Some(kind) = SummaryKind::parse(&kind).filter(|k| *k != SummaryKind::Given) {
                return Ok(Summary { text, kind });
            }
        }
        Ok(self.summarizer.summarize(record).await)
    }

    /// Queues the call's events for every enabled endpoint of its company that subscribes to
    /// them; returns how many were new.
    async fn queue_webhooks(&self, record: &CallRecord) -> Result<usize, PostCallError> {
        let endpoints = self.store.list_webhooks(&record.company_id).await?;
        if endpoints.iter().all(|e| !e.enabled) {
            return Ok(0);
        }
        let events = events_of(record);
        let now = callfleet_store::now_ms();
        let mut queued = 0;
        for endpoint in endpoints.iter().filter(|e| e.enabled) {
            let wanted = events
                .iter()
                .filter(|e| endpoint.events.is_empty() || endpoint.events.contains(&e.name));
            for event in wanted {
                let key = format!("{}:{}:{}", endpoint.id, record.id, event.name);
                let added = self
                    .store
                    .enqueue_delivery_at(
                        endpoint,
                        &event.name,
                        Some(&record.id),
                        &event.payload,
                        &key,
                        now,
                    )
                    .await?;
                queued += usize::from(added.is_some());
            }
        }
        Ok(queued)
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().expect("failure counts lock poisoned")
    }

    /// Processes one record; a record that failed `max_attempts` times (outages aside) becomes a
    /// dead letter and is acked, so it stops coming back. The error is still returned.
    async fn process_or_set_aside(&self, queued: QueuedRecord) -> Result<(), PostCallError> {
        let id = queued.id.clone();
        let record = queued.record.clone();
        let error = match self.process(queued).await {
            Ok(()) => {
                self.failures().remove(&id);
                return Ok(());
            }
            Err(e) => e,
        };
        if error.is_outage() {
            tracing::warn!(call_id = %record.id, error = %error, "post-call processing hit an outage; will retry");
            return Err(error);
        }
        let attempts = {
            let mut failures = self.failures();
            let n = failures.entry(id.clone()).or_insert(0);
            *n += 1;
            *n
        };
        if attempts < self.max_attempts {
            tracing::warn!(call_id = %record.id, attempts, error = %error, "post-call processing failed; will retry");
            return Err(error);
        }
        let value = serde_json::to_value(&record).expect("a call record serialises");
        self.store
            .add_dead_letter(
                &id,
                &record.id,
                &record.company_id,
                &value,
                i64::from(attempts),
                &error.to_string(),
            )
            .await?;
        self.queue.ack(&id).await?;
        self.failures().remove(&id);
        tracing::error!(call_id = %record.id, attempts, error = %error, "post-call record set aside as a dead letter");
        Err(error)
    }

    /// Keeps the entries the queue set aside as not call records at all (damaged, foreign) as
    /// dead letters, so they show with the others (`GET /dead-letters`; under the company their
    /// JSON names, if it names one, else for the admin key only), then drops them from the queue.
    pub async fn keep_unreadable(&self) -> Result<usize, PostCallError> {
        let entries = self.queue.unreadable(100).await?;
        for entry in &entries {
            let value: serde_json::Value = serde_json::from_str(&entry.body)
                .unwrap_or_else(|_| serde_json::Value::String(entry.body.clone()));
            let named = |key: &str| {
                value
                    .get(key)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let id = if entry.entry_id.is_empty() {
                &entry.id
            } else {
                &entry.entry_id
            };
            self.store
                .add_dead_letter(
                    id,
                    &named("id"),
                    &named("company_id"),
                    &value,
                    1,
                    &format!("not a call record: {}", entry.error),
                )
                .await?;
            tracing::error!(entry = %id, error = %entry.error, "unreadable post-call entry kept as a dead letter");
        }
        let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
        self.queue.forget_unreadable(&ids).await?;
        Ok(entries.len())
    }

    /// Waits up to `wait` for one record (or a stale one) and processes it; false if none came.
    pub async fn process_next(&self, wait: Duration) -> Result<bool, PostCallError> {
        self.keep_unreadable().await?;
        let stale = self
            .queue
            .reclaim(&self.consumer, self.reclaim_after)
            .await?;
        let had_stale = !stale.is_empty();
        // One failing record never stops the others: each is tried, the first error reported.
        let mut first_error = None;
        for queued in stale {
            if let Err(e) = self.process_or_set_aside(queued).await {
                first_error.get_or_insert(e);
            }
        }
        let took = match self.queue.pop(&self.consumer, wait).await? {
            Some(queued) => {
                if let Err(e) = self.process_or_set_aside(queued).await {
                    first_error.get_or_insert(e);
                }
                true
            }
            None => had_stale,
        };
        match first_error {
            Some(e) => Err(e),
            None => Ok(took),
        }
    }

    /// Runs until `shutdown`, with webhook delivery beside it. A failing record is logged and
    /// left unacked, to be retried.
    pub async fn run(mut self, shutdown: CancellationToken) {
        if self.deliverer.is_none() {
            match default_deliverer(&self.store) {
                Ok(deliverer) => self = self.with_deliverer(deliverer),
                Err(e) => tracing::error!(error = %e, "webhooks will not be sent"),
            }
        }
        let delivery = self
            .deliverer
            .take()
            .map(|d| tokio::spawn(d.run(shutdown.clone())));
        let mut next_sweep = tokio::time::Instant::now();
        while !shutdown.is_cancelled() {
            if tokio::time::Instant::now() >= next_sweep {
                if let Err(e) = self.sweep_recordings().await {
                    tracing::warn!(error = %e, "expired recordings not deleted yet; will retry");
                }
                next_sweep = tokio::time::Instant::now() + Duration::from_secs(60);
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                done = self.process_next(Duration::from_secs(1)) => {
                    if let Err(e) = done {
                        tracing::error!(error = %e, "post-call processing failed; will retry");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
        if let Some(delivery) = delivery {
            delivery.await.ok();
        }
    }
}

/// The deliverer `run` uses unless given one: HTTP with the address policy of
/// `CALLFLEET_WEBHOOK_ALLOW_PRIVATE` (public destinations only when unset).
pub fn default_deliverer(store: &Store) -> Result<WebhookDeliverer, String> {
    let policy = AddressPolicy::from_env().map_err(|e| e.to_string())?;
    let transport = HttpTransport::new(policy, WEBHOOK_TIMEOUT).map_err(|e| e.to_string())?;
    Ok(WebhookDeliverer::new(
        Arc::new(store.clone()),
        Arc::new(transport),
        DeliveryConfig::default(),
    ))
}
