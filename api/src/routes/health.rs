//! Unauthenticated endpoints: liveness, readiness (PostgreSQL, Redis and S3 each answer), Prometheus metrics (served on the metrics listener).

use crate::error::RETRY_AFTER_SECS;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use std::time::Duration;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness: the process serves requests. It never checks dependencies, so an outage of PostgreSQL does not
/// restart every API pod.
#[utoipa::path(get, path = "/healthz", operation_id = "liveness", tag = "health", responses((status = 200, description = "alive", content_type = "text/plain", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub postgres: String,
    pub redis: String,
    pub s3: String,
}

fn outcome<E: std::fmt::Display>(result: Result<Result<(), E>, tokio::time::error::Elapsed>) -> (bool, String) {
    match result {
        Ok(Ok(())) => (true, "ok".into()),
        Ok(Err(err)) => (false, err.to_string()),
        Err(_) => (false, "timed out".into()),
    }
}

/// Readiness: PostgreSQL, Redis and both S3 buckets answer.
#[utoipa::path(get, path = "/readyz", operation_id = "readiness", tag = "health", responses(
    (status = 200, body = Readiness), (status = 503, body = Readiness)
))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut redis = state.redis.clone();
    let (pg, rd, s3) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, flow_like_shared::record::ping(&state.db)),
        tokio::time::timeout(CHECK_TIMEOUT, async {
            redis::cmd("PING").query_async::<String>(&mut redis).await.map(|_| ())
        }),
        tokio::time::timeout(CHECK_TIMEOUT, state.storage.ping()),
    );
    let (pg_ok, postgres) = outcome(pg);
    let (redis_ok, redis) = outcome(rd);
    let (s3_ok, s3) = outcome(s3);
    let ready = pg_ok && redis_ok && s3_ok;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut response = (status, Json(Readiness { ready, postgres, redis, s3 })).into_response();
    if !ready {
        response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static(RETRY_AFTER_SECS));
    }
    response
}

/// Prometheus metrics (OpenMetrics, or the text format 0.0.4 for scrapers that do not ask for OpenMetrics), on
/// the metrics listener (`API_METRICS_LISTEN`), not in the public API or its document.
pub async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = flow_like_shared::telemetry::metrics_response(accept, state.metrics.encode());
    ([(header::CONTENT_TYPE, content_type)], body)
}
