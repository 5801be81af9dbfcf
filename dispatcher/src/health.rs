//! The dispatcher's health and metrics endpoint: `/healthz` (the process runs), `/readyz` (PostgreSQL and
//! Redis answer) and `/metrics` (Prometheus, prefixed `flowlike_dispatcher`; the queue gauges are read from Redis
//! on each scrape, see `crate::queue_metrics`).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use std::time::Duration;

pub use crate::metrics::Metrics;

/// Scrapes within this long of the last one reuse its queue gauges.
const QUEUE_GAUGES_FRESH: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct HealthState {
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub keys: flow_like_shared::protocol::keys::Keys,
    pub metrics: Metrics,
    /// `DISPATCHER_METRICS_MAX_TENANTS`: tenants with a label of their own in the queue gauges.
    pub metrics_max_tenants: usize,
}

pub fn app(state: HealthState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<HealthState>) -> impl IntoResponse {
    let timeout = Duration::from_secs(2);
    let mut redis = state.redis.clone();
    let pg = tokio::time::timeout(timeout, flow_like_shared::record::ping(&state.db)).await;
    let rd = tokio::time::timeout(timeout, redis::cmd("PING").query_async::<String>(&mut redis)).await;
    match (pg, rd) {
        (Ok(Ok(())), Ok(Ok(_))) => (StatusCode::OK, "ready"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "PostgreSQL or Redis is not answering"),
    }
}

async fn metrics(State(state): State<HealthState>, headers: axum::http::HeaderMap) -> impl IntoResponse {
    let mut redis = state.redis.clone();
    let refreshed = tokio::time::timeout(
        Duration::from_secs(5),
        state.metrics.queue.refresh_unless_fresh(
            &mut redis,
            &state.keys,
            state.metrics_max_tenants,
            QUEUE_GAUGES_FRESH,
        ),
    )
    .await;
    match refreshed {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "queue gauges not read from Redis"),
        Err(_) => tracing::warn!("queue gauges not read from Redis within 5 s"),
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = flow_like_shared::telemetry::metrics_response(accept, state.metrics.encode());
    ([(header::CONTENT_TYPE, content_type)], body)
}
