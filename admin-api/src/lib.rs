//! The admin HTTP API (axum). Routes are grouped by feature under `http/`, each module exposing a
//! `router()`; they are merged in [`router`] over one shared [`ApiContext`]. The OpenAPI document
//! is generated from the same route list, so `/openapi.json` cannot miss a route.
//!
//! Architecture invariant: handlers translate HTTP to store calls and core validation; business
//! rules (what a valid config is, how a phone number normalises) live in `callfleet-core`.

mod auth;
mod error;
mod http;
mod metrics;
mod rate_limit;

pub use auth::Principal;
pub use error::ApiError;

use callfleet_core::secret::Secret;
use callfleet_store::Store;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Settings of the admin API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The key that manages companies and issues company keys.
    pub admin_key: Secret,
    /// Requests per second each key may make on average; 0 disables the limit.
    pub rate_limit_per_sec: f64,
    /// Requests a key may make in a burst above the average.
    pub rate_limit_burst: u32,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest knowledge document accepted for upload, in bytes.
    pub max_upload_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            admin_key: Secret::default(),
            rate_limit_per_sec: 50.0,
            rate_limit_burst: 100,
            max_body_bytes: 1 << 20,
            max_upload_bytes: 20 << 20,
        }
    }
}

/// What browser calls need: a dispatcher to place the agent, and LiveKit to mint the caller's
/// token for.
pub struct BrowserCalls {
    pub dispatcher: Arc<callfleet_dispatcher::Dispatcher>,
    /// The LiveKit URL as a browser reaches it (`wss://…`).
    pub livekit_url: String,
    pub api_key: String,
    pub api_secret: Secret,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiContext {
    pub config: Arc<ApiConfig>,
    pub store: Store,
    pub(crate) knowledge: Option<callfleet_knowledge::KnowledgeService>,
    pub(crate) browser_calls: Option<Arc<BrowserCalls>>,
    pub(crate) limiter: Arc<rate_limit::RateLimiter>,
    pub(crate) metrics: Arc<metrics::HttpMetrics>,
}

impl ApiContext {
    pub fn new(config: ApiConfig, store: Store) -> ApiContext {
        let limiter =
            rate_limit::RateLimiter::new(config.rate_limit_per_sec, config.rate_limit_burst);
        ApiContext {
            config: Arc::new(config),
            store,
            knowledge: None,
            browser_calls: None,
            limiter: Arc::new(limiter),
            metrics: Arc::new(metrics::HttpMetrics::new()),
        }
    }

    /// Enables the `/bots/{id}/knowledge` routes (without it they answer 503).
    pub fn with_knowledge(
        mut self,
        knowledge: callfleet_knowledge::KnowledgeService,
    ) -> ApiContext {
        self.knowledge = Some(knowledge);
        self
    }

    /// Enables `POST /bots/{id}/sessions`.
    pub fn with_browser_calls(mut self, calls: BrowserCalls) -> ApiContext {
        self.browser_calls = Some(Arc::new(calls));
        self
    }
}

/// The whole API as an axum router.
pub fn router(ctx: ApiContext) -> axum::Router {
    let (router, _) = http::routes(ctx.clone()).split_for_parts();
    router
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            metrics::track,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            ctx.config.max_body_bytes,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    http::openapi_document()
}

/// Serves the API on `listener` until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    ctx: ApiContext,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(ctx))
        .with_graceful_shutdown(shutdown)
        .await
}
