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

pub use auth::{Principal, SessionCaller};
pub use error::ApiError;

use callfleet_core::secret::Secret;
use callfleet_store::Store;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
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
    /// How long a client may take to send a request's headers; then the connection is closed.
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's body; then the request fails with 408.
    pub body_read_timeout: Duration,
    /// Largest request head (request line and headers) accepted; a larger one gets 431.
    pub max_header_bytes: usize,
    /// Requests with a wrong or missing key each source address may make a minute; past that it
    /// gets 429 before any key is looked up.
    pub auth_failures_per_min: u32,
    /// Config versions a bot may save; past that a save is refused with 403 `quota_exceeded`.
    pub max_config_versions_per_bot: i64,
    /// Browser calls an embed key may start a minute, and each source address with one.
    pub embed_sessions_per_min: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            admin_key: Secret::default(),
            rate_limit_per_sec: 50.0,
            rate_limit_burst: 100,
            max_body_bytes: 1 << 20,
            max_upload_bytes: 20 << 20,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            max_header_bytes: 64 << 10,
            auth_failures_per_min: 30,
            max_config_versions_per_bot: 1_000,
            embed_sessions_per_min: 30,
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
    /// LiveKit SIP provisioning of phone numbers; without it numbers are only stored.
    pub(crate) sip: Option<Arc<callfleet_dispatcher::SipProvisioner>>,
    pub(crate) limiter: Arc<rate_limit::RateLimiter>,
    /// Failed authentications per source address.
    pub(crate) auth_failures: Arc<rate_limit::RateLimiter>,
    /// Browser calls started with embed keys, per key and per source address.
    pub(crate) embed_sessions: Arc<rate_limit::RateLimiter>,
    pub(crate) metrics: Arc<metrics::HttpMetrics>,
    /// Where call recordings are kept; without it no recording is served.
    pub(crate) recordings: Option<Arc<dyn callfleet_recording::RecordingStore>>,
}

impl ApiContext {
    pub fn new(config: ApiConfig, store: Store) -> ApiContext {
        let limiter =
            rate_limit::RateLimiter::new(config.rate_limit_per_sec, config.rate_limit_burst);
        let auth_failures = rate_limit::RateLimiter::new(
            f64::from(config.auth_failures_per_min) / 60.0,
            config.auth_failures_per_min,
        );
        let embed_sessions = rate_limit::RateLimiter::new(
            f64::from(config.embed_sessions_per_min) / 60.0,
            config.embed_sessions_per_min.clamp(1, 10),
        );
        ApiContext {
            config: Arc::new(config),
            store,
            knowledge: None,
            browser_calls: None,
            sip: None,
            limiter: Arc::new(limiter),
            auth_failures: Arc::new(auth_failures),
            embed_sessions: Arc::new(embed_sessions),
            metrics: Arc::new(metrics::HttpMetrics::new()),
            recordings: None,
        }
    }

    /// Serves `GET /calls/{id}/recording` from `recordings` (and deletes from it).
    pub fn with_recordings(
        mut self,
        recordings: Arc<dyn callfleet_recording::RecordingStore>,
    ) -> ApiContext {
        self.recordings = Some(recordings);
        self
    }

    /// Enables the `/bots/{id}/knowledge` routes (without it they answer 503).
    pub fn with_knowledge(
        mut self,
        knowledge: callfleet_knowledge::KnowledgeService,
    ) -> ApiContext {
        self.knowledge = Some(knowledge);
        self
    }

    /// Carries phone number changes to LiveKit SIP (trunks and dispatch rules).
    pub fn with_sip_provisioning(
        mut self,
        provisioner: Arc<callfleet_dispatcher::SipProvisioner>,
    ) -> ApiContext {
        self.sip = Some(provisioner);
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
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            ctx.config.body_read_timeout,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    http::openapi_document()
}

/// Serves the API on `listener` until `shutdown` completes, then finishes in-flight requests.
///
/// Connections are served here rather than by `axum::serve` for what a public endpoint needs and
/// it does not offer: a client that trickles its headers is cut off after `header_read_timeout`,
/// a request head over `max_header_bytes` is refused with 431 before it is buffered, and each
/// request carries its source address (for the failed-authentication limit).
pub async fn serve(
    listener: TcpListener,
    ctx: ApiContext,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;

    let config = ctx.config.clone();
    let app = router(ctx);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "Accepting a connection failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error.");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The source address of a request, when it came through [`serve`].
pub(crate) fn peer_of(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
}
