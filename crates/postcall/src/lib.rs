//! Post-call processing: the consumer of the durable queue agents push finished calls to. For
//! each record it runs the configured steps (summaries and outcome classification slot in here as
//! [`PostCallStep`]s), stores the call, and only then acknowledges it — so a crash at any point
//! means the record is processed again, never lost. Storing is an upsert, so doing it twice is
//! harmless.
//!
//! Architecture invariant: runs after calls, never during one; a slow step delays the queue, not
//! a conversation.

use async_trait::async_trait;
use callfleet_core::domain::CallRecord;
use callfleet_fleet::{FleetError, PostCallQueue, QueuedRecord};
use callfleet_store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum PostCallError {
    #[error("queue: {0}")]
    Queue(#[from] FleetError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("step {step}: {message}")]
    Step { step: &'static str, message: String },
}

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
}

impl PostCallWorker {
    pub fn new(queue: Arc<dyn PostCallQueue>, store: Store, consumer: &str) -> PostCallWorker {
        PostCallWorker {
            queue,
            store,
            steps: Vec::new(),
            consumer: consumer.to_string(),
            reclaim_after: Duration::from_secs(60),
        }
    }

    pub fn with_step(mut self, step: Arc<dyn PostCallStep>) -> PostCallWorker {
        self.steps.push(step);
        self
    }

    pub fn with_reclaim_after(mut self, after: Duration) -> PostCallWorker {
        self.reclaim_after = after;
        self
    }

    /// Processes one record: steps, store, ack.
    pub async fn process(&self, queued: QueuedRecord) -> Result<(), PostCallError> {
        let mut record = queued.record;
        for step in &self.steps {
            step.apply(&mut record).await?;
        }
        self.store.upsert_call(&record).await?;
        self.queue.ack(&queued.id).await?;
        tracing::info!(call_id = %record.id, outcome = record.outcome.as_ref().map_or("-", |o| o.kind.as_str()), "call stored");
        Ok(())
    }

    /// Waits up to `wait` for one record (or a stale one) and processes it; false if none came.
    pub async fn process_next(&self, wait: Duration) -> Result<bool, PostCallError> {
        let stale = self
            .queue
            .reclaim(&self.consumer, self.reclaim_after)
            .await?;
        let had_stale = !stale.is_empty();
        for queued in stale {
            self.process(queued).await?;
        }
        match self.queue.pop(&self.consumer, wait).await? {
            Some(queued) => {
                self.process(queued).await?;
                Ok(true)
            }
            None => Ok(had_stale),
        }
    }

    /// Runs until `shutdown`. A failing record is logged and left unacked, to be retried.
    pub async fn run(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            tokio::select! {
                () = shutdown.cancelled() => return,
                done = self.process_next(Duration::from_secs(1)) => {
                    if let Err(e) = done {
                        tracing::error!(error = %e, "post-call processing failed; will retry");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    }
}
