//! The dispatcher's HTTP service for operators: LiveKit webhooks counted by how they were
//! answered, and `GET /metrics` (Prometheus text format) over a registry the binary may share
//! with other series.

use crate::webhook::{router as webhook_router, WebhookState};
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};

/// `GET /metrics` over `registry`.
pub fn metrics_router(registry: Registry) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move { render(&registry) }
        }),
    )
}

fn render(registry: &Registry) -> Response {
    let encoder = TextEncoder::new();
    let mut out = Vec::new();
    match encoder.encode(&registry.gather(), &mut out) {
        Ok(()) => ([(CONTENT_TYPE, encoder.format_type().to_string())], out).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding metrics failed");
            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// LiveKit webhooks at `POST /livekit/webhook`, counted in `registry` by answer
/// (`callfleet_dispatcher_webhooks_total{status}`: 200 handled, 401 bad signature, 503 failed),
/// `POST /livekit/agent-jobs` for workers LiveKit dispatched a room to, and `GET /metrics`.
pub fn http_router(state: WebhookState, registry: Registry) -> Result<Router, prometheus::Error> {
    let webhooks = IntCounterVec::new(
        Opts::new(
            "callfleet_dispatcher_webhooks_total",
            "LiveKit webhooks received, by the status they were answered with.",
        ),
        &["status"],
    )?;
    registry.register(Box::new(webhooks.clone()))?;
    let agent_jobs = crate::agent_jobs::router(state.agent_jobs());
    let counted = webhook_router(state).layer(axum::middleware::from_fn_with_state(
        webhooks,
        count_answers,
    ));
    Ok(counted.merge(agent_jobs).merge(metrics_router(registry)))
}

async fn count_answers(
    State(webhooks): State<IntCounterVec>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    webhooks
        .with_label_values(&[response.status().as_str()])
        .inc();
    response
}
