//! The dispatcher's health and metrics endpoint: `/healthz` (the process runs), `/readyz` (PostgreSQL and
//! Redis answer) and `/metrics` (Prometheus, prefixed `flowlike_dispatcher`).

use crate::reconciler::ReconcileReport;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconcile_passes: Counter,
    reconcile_requeued: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("flowlike_dispatcher");
        let reconcile_passes = Counter::default();
        let reconcile_requeued = Counter::default();
        registry.register("reconcile_passes", "Completed reconciler passes", reconcile_passes.clone());
        registry.register(
            "reconcile_requeued",
            "Executions put back in the queue because Redis did not know them",
            reconcile_requeued.clone(),
        );
        Self { registry: Arc::new(registry), reconcile_passes, reconcile_requeued }
    }
}

impl Metrics {
    pub fn reconciled(&self, report: ReconcileReport) {
        self.reconcile_passes.inc();
        self.reconcile_requeued.inc_by(report.requeued);
    }

    fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[derive(Clone)]
pub struct HealthState {
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub metrics: Metrics,
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

async fn metrics(State(state): State<HealthState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
}
