//! The dispatcher's health and metrics endpoint: `/healthz` (the process runs), `/readyz` (PostgreSQL and
//! Redis answer) and `/metrics` (Prometheus, prefixed `flowlike_dispatcher`; the queue gauges are read from Redis
//! on each scrape, see `crate::queue_metrics`).

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
    admitted: Counter,
    finished: Counter,
    retried: Counter,
    dead_lettered: Counter,
    taken_over: Counter,
    status_applied: Counter,
    pruned_executions: Counter,
    pruned_objects: Counter,
    pruned_dead_letters: Counter,
    /// Read from Redis on every scrape.
    pub queue: crate::queue_metrics::QueueGauges,
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
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let admitted = counter(&mut registry, "admitted", "Executions admitted (claimed with a concurrency lease)");
        let finished = counter(&mut registry, "attempts_finished", "Attempts that ended with a verdict");
        let retried =
            counter(&mut registry, "attempts_retried", "Attempts that failed on infrastructure and were retried");
        let dead_lettered = counter(&mut registry, "dead_lettered", "Messages moved to the dead-letter stream");
        let taken_over = counter(&mut registry, "leases_taken_over", "Leases taken over from dispatchers that stopped");
        let status_applied = counter(&mut registry, "status_events_applied", "Status events applied to PostgreSQL");
        let pruned_executions =
            counter(&mut registry, "pruned_executions", "Finished executions deleted from PostgreSQL (retention)");
        let pruned_objects =
            counter(&mut registry, "pruned_objects", "Objects of finished executions deleted from S3 (retention)");
        let pruned_dead_letters = counter(&mut registry, "pruned_dead_letters", "Dead letters deleted (retention)");
        let queue = crate::queue_metrics::QueueGauges::default();
        queue.register(&mut registry);
        Self {
            registry: Arc::new(registry),
            reconcile_passes,
            reconcile_requeued,
            admitted,
            finished,
            retried,
            dead_lettered,
            taken_over,
            status_applied,
            pruned_executions,
            pruned_objects,
            pruned_dead_letters,
            queue,
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, report: ReconcileReport) {
        self.reconcile_passes.inc();
        self.reconcile_requeued.inc_by(report.requeued);
    }

    pub fn pruned(&self, report: crate::pruner::PruneReport) {
        self.pruned_executions.inc_by(report.executions);
        self.pruned_objects.inc_by(report.objects);
        self.pruned_dead_letters.inc_by(report.dead_letters);
    }

    pub fn admitted(&self, n: u64) {
        self.admitted.inc_by(n);
    }

    pub fn finished(&self) {
        self.finished.inc();
    }

    pub fn retried(&self) {
        self.retried.inc();
    }

    pub fn dead_lettered(&self) {
        self.dead_lettered.inc();
    }

    pub fn taken_over(&self, n: u64) {
        self.taken_over.inc_by(n);
    }

    pub fn status_applied(&self, n: u64) {
        self.status_applied.inc_by(n);
    }

    /// Attempts admitted so far (the load generator reads it through `/metrics`).
    pub fn admitted_total(&self) -> u64 {
        self.admitted.get()
    }

    /// The OpenMetrics text `/metrics` serves.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Scrapes within this long of the last one reuse its queue gauges.
const QUEUE_GAUGES_FRESH: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct HealthState {
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub keys: flow_like_shared::keys::Keys,
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

async fn metrics(State(state): State<HealthState>) -> impl IntoResponse {
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
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
}
