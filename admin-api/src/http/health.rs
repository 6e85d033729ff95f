//! Liveness, Prometheus metrics and the OpenAPI document. None needs a key.

use crate::error::ApiResult;
use crate::ApiContext;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
}

#[derive(Serialize, ToSchema)]
struct Health {
    status: &'static str,
    database: &'static str,
}

/// Whether the API and its database answer.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, body = Health)))]
async fn health(State(ctx): State<ApiContext>) -> ApiResult<Json<Health>> {
    let backend = match ctx.store.backend() {
        callfleet_store::Backend::Sqlite => "sqlite",
        callfleet_store::Backend::Postgres => "postgres",
    };
    ctx.store.ping().await?;
    Ok(Json(Health {
        status: "ok",
        database: backend,
    }))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, content_type = "text/plain", body = String)))]
async fn metrics(State(ctx): State<ApiContext>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.metrics.render(),
    )
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "system", responses((status = 200, content_type = "application/json", body = Object)))]
async fn openapi() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], super::openapi_json())
}
