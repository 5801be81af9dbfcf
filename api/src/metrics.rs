//! The API's Prometheus metrics, prefixed `flowlike_api`. Labels are bounded: the route template, never an id.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubmitLabels {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// The problem type's slug with `_` for `-` (`invalid`, `malformed_request`, `unauthenticated`, ...).
    pub reason: &'static str,
}

/// The problem type of an error response (set by `ApiError`), so the metrics layer can name why a request was
/// refused, extractor rejections included.
#[derive(Debug, Clone, Copy)]
pub struct ProblemSlug(pub &'static str);

/// Counts one open event stream until dropped.
#[derive(Debug)]
pub struct OpenStream(Gauge);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RouteLabels, Counter>,
    pub request_seconds: Family<RouteLabels, Histogram>,
    pub submissions: Family<SubmitLabels, Counter>,
    pub refused: Family<RefusedLabels, Counter>,
    pub sse_open: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("flowlike_api");
        let requests = Family::<RouteLabels, Counter>::default();
        let request_seconds = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
        });
        let submissions = Family::<SubmitLabels, Counter>::default();
        let refused = Family::<RefusedLabels, Counter>::default();
        let sse_open = Gauge::default();
        registry.register("http_requests", "HTTP requests handled", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency", request_seconds.clone());
        registry.register(
            "submissions",
            "Execution submissions by outcome (accepted, replayed, refused, unavailable, enqueue_deferred)",
            submissions.clone(),
        );
        registry.register(
            "submissions_refused",
            "Submissions refused, by the problem type of the answer (invalid, malformed_request, unauthenticated, ...)",
            refused.clone(),
        );
        registry.register("sse_streams_open", "Event streams (Server-Sent Events) open now", sse_open.clone());
        Self { registry, requests, request_seconds, submissions, refused, sse_open }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn submission(&self, outcome: &'static str) {
        self.submissions.get_or_create(&SubmitLabels { outcome }).inc();
    }

    /// An event stream opened; it counts as open until the returned guard is dropped.
    pub fn stream_opened(&self) -> OpenStream {
        self.sse_open.inc();
        OpenStream(self.sse_open.clone())
    }
}

/// The route that submits executions, whose refusals are counted by reason.
const SUBMIT_ROUTE: &str = "/api/v1/executions";

/// Middleware recording every request by route template and status.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    let status = response.status();
    if method == "POST" && route == SUBMIT_ROUTE && (status.is_client_error() || status.is_server_error()) {
        let slug = response.extensions().get::<ProblemSlug>().map_or("other", |s| s.0);
        if slug == "unavailable" {
            metrics.submission("unavailable");
        } else {
            metrics.submission("refused");
            metrics.refused.get_or_create(&RefusedLabels { reason: reason_label(slug) }).inc();
        }
    }
    let labels = RouteLabels { method, route, status: status.as_u16() };
    metrics.requests.get_or_create(&labels).inc();
    metrics.request_seconds.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    response
}

/// `malformed-request` -> `malformed_request` (label values in the Prometheus style), from the fixed set of slugs.
fn reason_label(slug: &'static str) -> &'static str {
    match slug {
        "malformed-request" => "malformed_request",
        "too-large" => "too_large",
        "unsupported-media-type" => "unsupported_media_type",
        "not-found" => "not_found",
        "rate-limited" => "rate_limited",
        other => other,
    }
}
