//! Webhook endpoints (where a company wants call events sent) and the delivery outbox that
//! post-call processing fills and retries.

use crate::sql::{json_column, text_enum};
use crate::{now_ms, unique_violation, Result, Store, StoreError};
use callfleet_core::domain::DeliveryStatus;
use callfleet_core::ids::{new_id, IdKind};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Clone, PartialEq, Serialize)]
pub struct WebhookEndpoint {
    pub id: String,
    pub company_id: String,
    pub url: String,
    pub description: Option<String>,
    /// Event names this endpoint receives (`call.completed`, …); empty = all.
    pub events: Vec<String>,
    pub enabled: bool,
    /// Failed attempts in a row; a success resets it, and a long run disables the endpoint.
    pub consecutive_failures: i64,
    /// Why the endpoint was disabled automatically (`None` when enabled, or paused by the user).
    pub disabled_reason: Option<String>,
    /// Signs deliveries. Never serialised: shown to the user once, by the API, on creation.
    #[serde(skip)]
    pub secret: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for WebhookEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("id", &self.id)
            .field("company_id", &self.company_id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("enabled", &self.enabled)
            .field("disabled_reason", &self.disabled_reason)
            .field("secret", &"[redacted]")
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct NewWebhookEndpoint {
    pub url: String,
    pub description: Option<String>,
    pub events: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// One event queued for one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookDelivery {
    pub id: String,
    pub endpoint_id: String,
    pub company_id: String,
    pub event: String,
    pub call_id: Option<String>,
    pub payload: serde_json::Value,
    pub idempotency_key: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

const ENDPOINT_COLUMNS: &str = "id, company_id, url, description, events, secret, enabled, \
     consecutive_failures, disabled_reason, created_at, updated_at";

fn endpoint_from_row(row: &AnyRow) -> Result<WebhookEndpoint> {
    let enabled: i64 = row.try_get("enabled")?;
    Ok(WebhookEndpoint {
        id: row.try_get("id")?,
        company_id: row.try_get("company_id")?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        events: json_column(row, "events")?,
        enabled: enabled != 0,
        consecutive_failures: row.try_get("consecutive_failures")?,
        disabled_reason: row.try_get("disabled_reason")?,
        secret: row.try_get("secret")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(crate) fn delivery_from_row(row: &AnyRow) -> Result<WebhookDelivery> {
    Ok(WebhookDelivery {
        id: row.try_get("id")?,
        endpoint_id: row.try_get("endpoint_id")?,
        company_id: row.try_get("company_id")?,
        event: row.try_get("event")?,
        call_id: row.try_get("call_id")?,
        payload: json_column(row, "payload")?,
        idempotency_key: row.try_get("idempotency_key")?,
        status: text_enum(row, "status", DeliveryStatus::parse)?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_status_code: row.try_get("last_status_code")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        delivered_at: row.try_get("delivered_at")?,
    })
}

fn events_json(events: &[String]) -> String {
    serde_json::to_string(events).expect("a list of strings serialises")
}

impl Store {
    pub async fn create_webhook(
        &self,
        company_id: &str,
        new: NewWebhookEndpoint,
    ) -> Result<WebhookEndpoint> {
        let random: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        let now = now_ms();
        let endpoint = WebhookEndpoint {
            id: new_id(IdKind::WebhookEndpoint),
            company_id: company_id.to_string(),
            url: new.url,
            description: new.description,
            events: new.events,
            enabled: true,
            consecutive_failures: 0,
            disabled_reason: None,
            secret: format!("whsec_{random}"),
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, company_id, url, description, events, secret, enabled, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7)",
        )
        .bind(&endpoint.id)
        .bind(&endpoint.company_id)
        .bind(&endpoint.url)
        .bind(&endpoint.description)
        .bind(events_json(&endpoint.events))
        .bind(&endpoint.secret)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(endpoint)
    }

    pub async fn get_webhook(&self, id: &str) -> Result<WebhookEndpoint> {
        let row = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound)?;
        endpoint_from_row(&row)
    }

    pub async fn list_webhooks(&self, company_id: &str) -> Result<Vec<WebhookEndpoint>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE company_id = $1 ORDER BY created_at, id"
        ))
        .bind(company_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    pub async fn update_webhook(&self, id: &str, patch: WebhookPatch) -> Result<WebhookEndpoint> {
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET url = COALESCE($2, url), description = COALESCE($3, description),
                events = COALESCE($4, events), enabled = COALESCE($5, enabled), updated_at = $6,
                consecutive_failures = CASE WHEN $5 = 1 THEN 0 ELSE consecutive_failures END,
                failing_since = CASE WHEN $5 = 1 THEN NULL ELSE failing_since END,
                disabled_reason = CASE WHEN $5 IS NULL THEN disabled_reason ELSE NULL END
             WHERE id = $1",
        )
        .bind(id)
        .bind(patch.url)
        .bind(patch.description)
        .bind(patch.events.as_deref().map(events_json))
        .bind(patch.enabled.map(i64::from))
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_webhook(id).await
    }

    pub async fn delete_webhook(&self, id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Queues an event for an endpoint. The idempotency key makes re-queuing the same event a no-op
    /// (`Conflict`), so a post-call retry never sends a webhook twice.
    pub async fn enqueue_delivery(
        &self,
        endpoint: &WebhookEndpoint,
        event: &str,
        call_id: Option<&str>,
        payload: &serde_json::Value,
        idempotency_key: &str,
    ) -> Result<WebhookDelivery> {
        self.enqueue_delivery_at(endpoint, event, call_id, payload, idempotency_key, now_ms())
            .await?
            .ok_or_else(|| {
                StoreError::Conflict(format!("delivery {idempotency_key} already queued"))
            })
    }

    /// Queues an event for an endpoint, due at `now`; `None` when this idempotency key was
    /// queued before (the event is not queued twice).
    pub async fn enqueue_delivery_at(
        &self,
        endpoint: &WebhookEndpoint,
        event: &str,
        call_id: Option<&str>,
        payload: &serde_json::Value,
        idempotency_key: &str,
        now: i64,
    ) -> Result<Option<WebhookDelivery>> {
        let id = new_id(IdKind::WebhookDelivery);
        let inserted = sqlx::query(
            "INSERT INTO webhook_deliveries (id, endpoint_id, company_id, event, call_id, payload, idempotency_key,
                status, attempts, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8)",
        )
        .bind(&id)
        .bind(&endpoint.id)
        .bind(&endpoint.company_id)
        .bind(event)
        .bind(call_id)
        .bind(payload.to_string())
        .bind(idempotency_key)
        .bind(now)
        .execute(self.pool())
        .await;
        match inserted {
            Ok(_) => Ok(Some(self.get_delivery(&id).await?)),
            Err(e) if unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deliveries of an endpoint, newest first.
    pub async fn list_deliveries(
        &self,
        endpoint_id: &str,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>> {
        let rows = sqlx::query(
            "SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(endpoint_id)
        .bind(i64::from(limit.clamp(1, 500)))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }
}
