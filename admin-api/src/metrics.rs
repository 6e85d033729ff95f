//! Prometheus metrics of the HTTP layer: requests by route and status, latency by route.

use crate::ApiContext;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

pub(crate) struct HttpMetrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl HttpMetrics {
    pub(crate) fn new() -> HttpMetrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "callfleet_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["method", "route", "status"],
        )
        .expect("metric definition is valid");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "callfleet_http_request_duration_seconds",
                "HTTP request latency",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["method", "route"],
        )
        .expect("metric definition is valid");
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(latency.clone()))
            .expect("registered once");
        HttpMetrics {
            registry,
            requests,
            latency,
        }
    }

    /// The text exposition format.
    pub(crate) fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding of gathered metrics");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

pub(crate) async fn track(State(ctx): State<ApiContext>, request: Request, next: Next) -> Response {
    // The matched route template, never the raw path: ids would explode label cardinality.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    // Methods are a closed set here: any other token (clients may send anything) is one label.
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    };
    let timer = ctx
        .metrics
        .latency
        .with_label_values(&[method, &route])
        .start_timer();
    let response = next.run(request).await;
    timer.observe_duration();
    ctx.metrics
        .requests
        .with_label_values(&[method, &route, response.status().as_str()])
        .inc();
    response
}
