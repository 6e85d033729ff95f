//! The webhook outbox as post-call delivery works it: deliveries that are due, a short lease so
//! two processes never send one delivery at once, the log of every attempt, the endpoint's run of
//! failures (and its disabling), and replays. Times are passed in, so the deliverer's clock decides.

use crate::sql::json_column;
use crate::webhooks::delivery_from_row;
use crate::{Result, Store, StoreError, WebhookDelivery, WebhookEndpoint};
use callfleet_core::domain::DeliveryStatus;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

/// A delivery that is due, with the endpoint it goes to.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub delivery: WebhookDelivery,
    pub endpoint: WebhookEndpoint,
}

/// One HTTP attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryAttempt {
    pub id: String,
    pub delivery_id: String,
    /// 1 for the first attempt.
    pub attempt: i64,
    /// Unix ms when the request started.
    pub started_at: i64,
    pub latency_ms: i64,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<i64>,
    /// Why the attempt failed without an answer (refused address, timeout, connection refused).
    pub error: Option<String>,
    /// The start of the receiver's answer.
    pub response_excerpt: Option<String>,
}

/// What becomes of a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptVerdict {
    Delivered,
    /// Try again at this unix ms.
    RetryAt(i64),
    /// No attempts left: the delivery is `failed` (a replay can still send it).
    GiveUp,
}

/// When a run of failed attempts disables an endpoint: at least `failures` attempts in a row,
/// the first of them at least `run_ms` ago (so a burst of calls to a receiver that is down for a
/// minute does not disable it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisableAfter {
    pub failures: i64,
    pub run_ms: i64,
}

/// What recording an attempt changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedAttempt {
    /// The endpoint was disabled by this attempt, with this reason.
    pub endpoint_disabled: Option<String>,
}

impl DeliveryAttempt {
    /// A fresh attempt id (`att_…`, sorting by time).
    pub fn new_id() -> String {
        format!("att_{}", uuid::Uuid::now_v7().simple())
    }
}

fn attempt_from_row(row: &AnyRow) -> Result<DeliveryAttempt> {
    Ok(DeliveryAttempt {
        id: row.try_get("id")?,
        delivery_id: row.try_get("delivery_id")?,
        attempt: row.try_get("attempt")?,
        started_at: row.try_get("started_at")?,
        latency_ms: row.try_get("latency_ms")?,
        status_code: row.try_get("status_code")?,
        error: row.try_get("error")?,
        response_excerpt: row.try_get("response_excerpt")?,
    })
}

const DUE_COLUMNS: &str = "d.id, d.endpoint_id, d.company_id, d.event, d.call_id, d.payload, \
    d.idempotency_key, d.status, d.attempts, d.next_attempt_at, d.last_status_code, d.last_error, \
    d.created_at, d.delivered_at, e.url AS e_url, e.description AS e_description, \
    e.events AS e_events, e.secret AS e_secret, e.enabled AS e_enabled, \
    e.consecutive_failures AS e_consecutive_failures, e.disabled_reason AS e_disabled_reason, \
    e.created_at AS e_created_at, e.updated_at AS e_updated_at";

fn due_from_row(row: &AnyRow) -> Result<DueDelivery> {
    let delivery = delivery_from_row(row)?;
    let enabled: i64 = row.try_get("e_enabled")?;
    let endpoint = WebhookEndpoint {
        id: delivery.endpoint_id.clone(),
        company_id: delivery.company_id.clone(),
        url: row.try_get("e_url")?,
        description: row.try_get("e_description")?,
        events: json_column(row, "e_events")?,
        enabled: enabled != 0,
        consecutive_failures: row.try_get("e_consecutive_failures")?,
        disabled_reason: row.try_get("e_disabled_reason")?,
        secret: row.try_get("e_secret")?,
        created_at: row.try_get("e_created_at")?,
        updated_at: row.try_get("e_updated_at")?,
    };
    Ok(DueDelivery { delivery, endpoint })
}

impl Store {
    pub async fn get_delivery(&self, id: &str) -> Result<WebhookDelivery> {
        let row = sqlx::query("SELECT * FROM webhook_deliveries WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        delivery_from_row(&row)
    }

    /// Pending deliveries due at `now` to enabled endpoints, oldest due first.
    pub async fn due_deliveries(&self, now: i64, limit: u32) -> Result<Vec<DueDelivery>> {
        let rows = sqlx::query(&format!(
            "SELECT {DUE_COLUMNS} FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
             WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND e.enabled = 1
             ORDER BY d.next_attempt_at, d.id LIMIT $2"
        ))
        .bind(now)
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(due_from_row).collect()
    }

    /// When the next pending delivery to an enabled endpoint is due, if any.
    pub async fn next_delivery_due(&self) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(d.next_attempt_at) AS next_due FROM webhook_deliveries d
             JOIN webhook_endpoints e ON e.id = d.endpoint_id
             WHERE d.status = 'pending' AND e.enabled = 1",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get("next_due")?)
    }

    /// Takes a due delivery for sending until `lease_until`: true only for the one process whose
    /// update saw it still due at `seen_next_attempt_at`. A sender that dies mid-attempt leaves it
    /// due again when the lease ends.
    pub async fn claim_delivery(
        &self,
        id: &str,
        seen_next_attempt_at: i64,
        lease_until: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET next_attempt_at = $3
             WHERE id = $1 AND status = 'pending' AND next_attempt_at = $2",
        )
        .bind(id)
        .bind(seen_next_attempt_at)
        .bind(lease_until)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Logs an attempt and applies its verdict to the delivery and to the endpoint's run of
    /// failures, in one transaction. The endpoint is disabled once `disable_after` attempts in a
    /// row have failed over a long enough time (see [`DisableAfter`]).
    pub async fn record_delivery_attempt(
        &self,
        attempt: &DeliveryAttempt,
        verdict: AttemptVerdict,
        disable: DisableAfter,
    ) -> Result<RecordedAttempt> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO webhook_attempts (id, delivery_id, attempt, started_at, latency_ms, status_code, error,
                response_excerpt)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&attempt.id)
        .bind(&attempt.delivery_id)
        .bind(attempt.attempt)
        .bind(attempt.started_at)
        .bind(attempt.latency_ms)
        .bind(attempt.status_code)
        .bind(&attempt.error)
        .bind(&attempt.response_excerpt)
        .execute(&mut *tx)
        .await?;
        let finished_at = attempt.started_at + attempt.latency_ms;
        let (status, next_attempt_at, delivered_at) = match verdict {
            AttemptVerdict::Delivered => {
                (DeliveryStatus::Delivered, finished_at, Some(finished_at))
            }
            AttemptVerdict::RetryAt(at) => (DeliveryStatus::Pending, at, None),
            AttemptVerdict::GiveUp => (DeliveryStatus::Failed, finished_at, None),
        };
        let endpoint_id: String = sqlx::query(
            "UPDATE webhook_deliveries SET attempts = $2, status = $3, next_attempt_at = $4, delivered_at = $5,
                last_status_code = $6, last_error = $7
             WHERE id = $1 RETURNING endpoint_id",
        )
        .bind(&attempt.delivery_id)
        .bind(attempt.attempt)
        .bind(status.as_str())
        .bind(next_attempt_at)
        .bind(delivered_at)
        .bind(attempt.status_code)
        .bind(&attempt.error)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?
        .try_get("endpoint_id")?;
        let mut endpoint_disabled = None;
        if verdict == AttemptVerdict::Delivered {
            sqlx::query(
                "UPDATE webhook_endpoints SET consecutive_failures = 0, failing_since = NULL WHERE id = $1",
            )
            .bind(&endpoint_id)
            .execute(&mut *tx)
            .await?;
        } else {
            let row = sqlx::query(
                "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1,
                    failing_since = COALESCE(failing_since, $2)
                 WHERE id = $1 RETURNING consecutive_failures, failing_since, enabled",
            )
            .bind(&endpoint_id)
            .bind(attempt.started_at)
            .fetch_one(&mut *tx)
            .await?;
            let failures: i64 = row.try_get("consecutive_failures")?;
            let failing_since: i64 = row.try_get("failing_since")?;
            let enabled: i64 = row.try_get("enabled")?;
            if enabled != 0
                && failures >= disable.failures
                && finished_at - failing_since >= disable.run_ms
            {
                let last = match (attempt.status_code, &attempt.error) {
                    (Some(code), _) => format!("HTTP {code}"),
                    (None, Some(error)) => error.clone(),
                    (None, None) => "no answer".to_string(),
                };
                let reason =
                    format!("disabled after {failures} failed attempts in a row; the last: {last}");
                sqlx::query(
                    "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = $2, updated_at = $3 WHERE id = $1",
                )
                .bind(&endpoint_id)
                .bind(&reason)
                .bind(finished_at)
                .execute(&mut *tx)
                .await?;
                endpoint_disabled = Some(reason);
            }
        }
        tx.commit().await?;
        Ok(RecordedAttempt { endpoint_disabled })
    }

    /// A delivery's attempts, first first.
    pub async fn delivery_attempts(&self, delivery_id: &str) -> Result<Vec<DeliveryAttempt>> {
        let rows = sqlx::query(
            "SELECT * FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt, started_at",
        )
        .bind(delivery_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(attempt_from_row).collect()
    }

    /// Sends a delivery again, whatever became of it, with the same id (its webhook-id): due at
    /// `now`, its attempt count kept so the log stays in order.
    pub async fn replay_delivery(&self, id: &str, now: i64) -> Result<WebhookDelivery> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_delivery(id).await
    }
}
