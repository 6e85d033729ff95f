//! Webhook endpoints: where a company's call events are POSTed (signed with the endpoint's
//! secret, shown once on creation), and the deliveries made to each.

use super::{Body, Id, Params};
use crate::error::{ApiError, ApiResult, ErrorBody, NotFoundAs};
use crate::{ApiContext, Principal};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use callfleet_store::{NewWebhookEndpoint, WebhookDelivery, WebhookEndpoint, WebhookPatch};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Events an endpoint can subscribe to.
pub const WEBHOOK_EVENTS: &[&str] = &["call.started", "call.completed", "call.failed"];

pub(super) fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(list_deliveries))
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
    id: String,
    event: String,
    call_id: Option<String>,
    #[schema(value_type = Object)]
    payload: Value,
    /// `pending`, `delivered` or `failed`.
    status: String,
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

fn check_url(url: &str) -> ApiResult<()> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    match host {
        Some(h) if !h.is_empty() && url.len() <= 2000 && !url.chars().any(char::is_whitespace) => {
            Ok(())
        }
        _ => Err(ApiError::invalid(
            "url",
            "must be an http:// or https:// URL with a host",
        )),
    }
}

fn check_events(events: &[String]) -> ApiResult<()> {
    for (i, event) in events.iter().enumerate() {
        if !WEBHOOK_EVENTS.contains(&event.as_str()) {
            return Err(ApiError::invalid(
                &format!("events[{i}]"),
                format!("unknown event (known: {})", WEBHOOK_EVENTS.join(", ")),
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
    check_url(&body.url)?;
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
        check_url(url)?;
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
