//! Webhook endpoints: where a company's call events are POSTed (signed with the endpoint's
//! secret, shown once on creation), the deliveries made to each with every attempt, and replays.
//! A URL must point at a public address (`callfleet_postcall::AddressPolicy`, widened by
//! `CALLFLEET_WEBHOOK_ALLOW_PRIVATE`); delivery checks it again after DNS.

use super::{Body, Id, Params};
use crate::error::{ApiError, ApiResult, ErrorBody, NotFoundAs};
use crate::{ApiContext, Principal};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use callfleet_core::domain::DeliveryStatus;
use callfleet_postcall::address::{AddressPolicy, Target};
use callfleet_postcall::events::{is_subscribable, CALL_EVENTS};
use callfleet_store::{
    DeliveryAttempt, NewWebhookEndpoint, WebhookDelivery, WebhookEndpoint, WebhookPatch,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(replay_delivery))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateWebhook {
    /// Required with the admin key; implied by a company key.
    company_id: Option<String>,
    /// `https://…` (or `http://…`).
    url: String,
    description: Option<String>,
    /// Subscribed events; empty or absent means all.
    events: Option<Vec<String>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateWebhook {
    url: Option<String>,
    description: Option<String>,
    events: Option<Vec<String>>,
    enabled: Option<bool>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListWebhooks {
    /// Required with the admin key; implied by a company key.
    company_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct WebhookOut {
    id: String,
    company_id: String,
    url: String,
    description: Option<String>,
    events: Vec<String>,
    enabled: bool,
    /// Why delivery disabled the endpoint (a long run of failed attempts); cleared by enabling it.
    disabled_reason: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl From<WebhookEndpoint> for WebhookOut {
    fn from(w: WebhookEndpoint) -> Self {
        WebhookOut {
            id: w.id,
            company_id: w.company_id,
            url: w.url,
            description: w.description,
            events: w.events,
            enabled: w.enabled,
            disabled_reason: w.disabled_reason,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedWebhook {
    #[serde(flatten)]
    webhook: WebhookOut,
    /// Signs every delivery (HMAC-SHA256). Shown this once.
    secret: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DeliveryOut {
    /// Also the `webhook-id` header of every attempt.
    id: String,
    endpoint_id: String,
    event: String,
    call_id: Option<String>,
    #[schema(value_type = Object)]
    payload: Value,
    /// `pending`, `delivered` or `failed`.
    #[schema(value_type = String)]
    status: DeliveryStatus,
    attempts: i64,
    next_attempt_at: i64,
    last_status_code: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    delivered_at: Option<i64>,
}

impl From<WebhookDelivery> for DeliveryOut {
    fn from(d: WebhookDelivery) -> Self {
        DeliveryOut {
            id: d.id,
            endpoint_id: d.endpoint_id,
            event: d.event,
            call_id: d.call_id,
            payload: d.payload,
            status: d.status,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AttemptOut {
    /// 1 for the first attempt.
    attempt: i64,
    /// Unix ms when the request started.
    started_at: i64,
    latency_ms: i64,
    /// The receiver's HTTP status, when it answered.
    status_code: Option<i64>,
    /// Why there was no (acceptable) answer.
    error: Option<String>,
    /// The start of the receiver's answer.
    response_excerpt: Option<String>,
}

impl From<DeliveryAttempt> for AttemptOut {
    fn from(a: DeliveryAttempt) -> Self {
        AttemptOut {
            attempt: a.attempt,
            started_at: a.started_at,
            latency_ms: a.latency_ms,
            status_code: a.status_code,
            error: a.error,
            response_excerpt: a.response_excerpt,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DeliveryDetail {
    #[serde(flatten)]
    delivery: DeliveryOut,
    /// Every attempt, first first.
    attempts_log: Vec<AttemptOut>,
}

/// Refuses URLs that are not http(s) or point inside the network: first from the URL alone, then
/// on the addresses its host resolves to now (a host that does not resolve yet is accepted;
/// delivery checks again at every send).
async fn check_url(url: &str) -> ApiResult<()> {
    if url.len() > 2000 || url.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid(
            "url",
            "must be an http:// or https:// URL with a host",
        ));
    }
    let policy = AddressPolicy::from_env().map_err(|e| ApiError::Internal(Box::new(e)))?;
    let target = policy
        .check_url(url)
        .map_err(|refused| ApiError::invalid("url", refused.to_string()))?;
    if let Target::Name(host, port) = target {
        let lookup = tokio::net::lookup_host((host.as_str(), port));
        if let Ok(Ok(addrs)) = tokio::time::timeout(Duration::from_secs(2), lookup).await {
            for addr in addrs {
                policy.check_ip(addr.ip()).map_err(|refused| {
                    ApiError::invalid(
                        "url",
                        format!("{host} resolves to {}: {refused}", addr.ip()),
                    )
                })?;
            }
        }
    }
    Ok(())
}

fn check_events(events: &[String]) -> ApiResult<()> {
    for (i, event) in events.iter().enumerate() {
        if !is_subscribable(event) {
            return Err(ApiError::invalid(
                &format!("events[{i}]"),
                format!(
                    "unknown event (call events: {}; outcome events are named after the bot's on_complete events, e.g. booking_created → booking.created)",
                    CALL_EVENTS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

async fn visible_webhook(
    ctx: &ApiContext,
    who: &Principal,
    id: &str,
) -> ApiResult<WebhookEndpoint> {
    let hook = ctx.store.get_webhook(id).await.not_found_as("webhook")?;
    who.can_access(&hook.company_id, "webhook")?;
    Ok(hook)
}

/// Add a webhook endpoint. The response holds the signing secret, once.
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", security(("bearer" = [])), request_body = CreateWebhook,
    responses((status = 201, body = CreatedWebhook), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_webhook(
    State(ctx): State<ApiContext>,
    who: Principal,
    Body(body): Body<CreateWebhook>,
) -> ApiResult<(StatusCode, Json<CreatedWebhook>)> {
    let company_id = who.company_for_create(body.company_id.as_deref())?;
    super::companies::visible_company(&ctx, &who, &company_id).await?;
    check_url(&body.url).await?;
    let events = body.events.unwrap_or_default();
    check_events(&events)?;
    let hook = ctx
        .store
        .create_webhook(
            &company_id,
            NewWebhookEndpoint {
                url: body.url,
                description: body.description,
                events,
            },
        )
        .await?;
    let secret = hook.secret.clone();
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            webhook: hook.into(),
            secret,
        }),
    ))
}

/// A company's webhook endpoints.
#[utoipa::path(get, path = "/webhooks", tag = "webhooks", security(("bearer" = [])), params(ListWebhooks),
    responses((status = 200, body = Vec<WebhookOut>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_webhooks(
    State(ctx): State<ApiContext>,
    who: Principal,
    Params(q): Params<ListWebhooks>,
) -> ApiResult<Json<Vec<WebhookOut>>> {
    let company_id = who
        .company_filter(q.company_id)?
        .ok_or_else(|| ApiError::invalid("company_id", "required when using the admin key"))?;
    Ok(Json(
        ctx.store
            .list_webhooks(&company_id)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// One webhook endpoint (without its secret).
#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = WebhookOut), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_webhook(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<Json<WebhookOut>> {
    Ok(Json(visible_webhook(&ctx, &who, &id).await?.into()))
}

/// Change a webhook's URL, events or description, or pause it.
#[utoipa::path(patch, path = "/webhooks/{id}", tag = "webhooks", security(("bearer" = [])), request_body = UpdateWebhook,
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = WebhookOut), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_webhook(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
    Body(body): Body<UpdateWebhook>,
) -> ApiResult<Json<WebhookOut>> {
    visible_webhook(&ctx, &who, &id).await?;
    if let Some(url) = &body.url {
        check_url(url).await?;
    }
    if let Some(events) = &body.events {
        check_events(events)?;
    }
    let patch = WebhookPatch {
        url: body.url,
        description: body.description,
        events: body.events,
        enabled: body.enabled,
    };
    Ok(Json(
        ctx.store
            .update_webhook(&id, patch)
            .await
            .not_found_as("webhook")?
            .into(),
    ))
}

/// Remove a webhook endpoint and its delivery history.
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_webhook(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<StatusCode> {
    visible_webhook(&ctx, &who, &id).await?;
    ctx.store
        .delete_webhook(&id)
        .await
        .not_found_as("webhook")?;
    Ok(StatusCode::NO_CONTENT)
}

/// Recent deliveries to an endpoint, newest first.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = Vec<DeliveryOut>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_deliveries(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<Json<Vec<DeliveryOut>>> {
    visible_webhook(&ctx, &who, &id).await?;
    Ok(Json(
        ctx.store
            .list_deliveries(&id, 100)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// A delivery the caller may see.
async fn visible_delivery(
    ctx: &ApiContext,
    who: &Principal,
    id: &str,
) -> ApiResult<WebhookDelivery> {
    let delivery = ctx
        .store
        .get_delivery(id)
        .await
        .not_found_as("webhook delivery")?;
    who.can_access(&delivery.company_id, "webhook delivery")?;
    Ok(delivery)
}

/// One delivery with the log of its attempts (status, latency, the start of each answer).
#[utoipa::path(get, path = "/webhook-deliveries/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "Delivery id (its webhook-id)")),
    responses((status = 200, body = DeliveryDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_delivery(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<Json<DeliveryDetail>> {
    let delivery = visible_delivery(&ctx, &who, &id).await?;
    let attempts = ctx.store.delivery_attempts(&id).await?;
    Ok(Json(DeliveryDetail {
        delivery: delivery.into(),
        attempts_log: attempts.into_iter().map(Into::into).collect(),
    }))
}

/// Send a delivery again now, with the same webhook-id (receivers that already have it drop the
/// copy). A delivery whose attempts ran out gets one more; an endpoint disabled by failures must
/// be enabled first.
#[utoipa::path(post, path = "/webhook-deliveries/{id}/replay", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "Delivery id (its webhook-id)")),
    responses((status = 202, body = DeliveryOut), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn replay_delivery(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<(StatusCode, Json<DeliveryOut>)> {
    let delivery = visible_delivery(&ctx, &who, &id).await?;
    let endpoint = ctx
        .store
        .get_webhook(&delivery.endpoint_id)
        .await
        .not_found_as("webhook")?;
    if !endpoint.enabled {
        return Err(ApiError::Conflict(match endpoint.disabled_reason {
            Some(reason) => format!("the endpoint is disabled ({reason}); enable it first"),
            None => "the endpoint is paused; enable it first".to_string(),
        }));
    }
    let replayed = ctx
        .store
        .replay_delivery(&id, callfleet_store::now_ms())
        .await
        .not_found_as("webhook delivery")?;
    Ok((StatusCode::ACCEPTED, Json(replayed.into())))
}
