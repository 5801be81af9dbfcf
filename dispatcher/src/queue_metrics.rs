//! Queue gauges, read from Redis when `/metrics` is scraped: what waits per tenant and priority, how long the
//! oldest waiting execution has waited, what runs per tenant and globally beside the limits, the dead letters
//! and the live dispatchers. Every replica reads the same Redis, so each reports the same values: aggregate
//! them with `max by (…)`, never `sum`.
//!
//! Cardinality is bounded by `DISPATCHER_METRICS_MAX_TENANTS`: the tenants with the most waiting work get their
//! own `tenant` label, the rest are added up under `tenant="other"`.

use flow_like_shared::protocol::keys::Keys;
use flow_like_shared::protocol::limits;
use flow_like_shared::protocol::{self, QueueError, reads::TenantQueue};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use redis::aio::ConnectionManager;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A dispatcher is alive while its heartbeat is this recent (as the API's queue view counts them).
const ALIVE_WITHIN: Duration = Duration::from_secs(15);

/// The label of the tenants past `DISPATCHER_METRICS_MAX_TENANTS`.
pub const OTHER_TENANTS: &str = "other";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    pub tenant: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaneLabels {
    pub tenant: String,
    pub priority: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Default)]
pub struct QueueGauges {
    waiting: Family<LaneLabels, Gauge>,
    oldest_age: Family<TenantLabel, FloatGauge>,
    running: Family<TenantLabel, Gauge>,
    tenant_limit: Family<TenantLabel, Gauge>,
    running_global: Gauge,
    global_limit: Gauge,
    dead_letters: Gauge,
    dispatchers_alive: Gauge,
    /// When the gauges were last read, so that frequent scrapes (several Prometheus replicas, a load generator
    /// polling counters) do not turn into Redis load.
    last_read: Arc<Mutex<Option<Instant>>>,
}

/// One tenant's numbers, before the top-N cut.
struct TenantNumbers {
    tenant: String,
    queue: TenantQueue,
    oldest_ms: Option<i64>,
    limit: Option<u32>,
}

impl QueueGauges {
    /// Registers the gauges under `registry`'s prefix (`flowlike_dispatcher_queue_…`).
    pub fn register(&self, registry: &mut Registry) {
        let queue = registry.sub_registry_with_prefix("queue");
        queue.register(
            "waiting",
            "Executions waiting in a lane, not yet claimed, per tenant and priority",
            self.waiting.clone(),
        );
        queue.register(
            "oldest_waiting_age_seconds",
            "Age of the oldest execution waiting in any of the tenant's lanes (absent when none waits)",
            self.oldest_age.clone(),
        );
        queue.register("running", "Executions of the tenant holding a concurrency lease", self.running.clone());
        queue.register("tenant_limit", "The tenant's concurrency limit in effect", self.tenant_limit.clone());
        queue.register(
            "running_global",
            "Executions holding a concurrency lease, all tenants",
            self.running_global.clone(),
        );
        queue.register("global_limit", "The global concurrency limit in effect", self.global_limit.clone());
        queue.register("dead_letters", "Entries on the dead-letter stream", self.dead_letters.clone());
        queue.register(
            "dispatchers_alive",
            "Dispatchers with a heartbeat in the last 15 s",
            self.dispatchers_alive.clone(),
        );
    }

    /// Reads the queue unless it was read less than `fresh` ago.
    pub async fn refresh_unless_fresh(
        &self,
        conn: &mut ConnectionManager,
        keys: &Keys,
        max_tenants: usize,
        fresh: Duration,
    ) -> Result<(), QueueError> {
        {
            let mut last = self.last_read.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if last.is_some_and(|at| at.elapsed() < fresh) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        self.refresh(conn, keys, max_tenants).await
    }

    /// Reads the queue from Redis and sets every gauge. On an error the per-tenant gauges are cleared, so that a
    /// scrape never shows stale numbers as current.
    pub async fn refresh(
        &self,
        conn: &mut ConnectionManager,
        keys: &Keys,
        max_tenants: usize,
    ) -> Result<(), QueueError> {
        let result = self.read(conn, keys, max_tenants).await;
        if result.is_err() {
            self.clear();
        }
        result
    }

    fn clear(&self) {
        self.waiting.clear();
        self.oldest_age.clear();
        self.running.clear();
        self.tenant_limit.clear();
    }

    async fn read(&self, conn: &mut ConnectionManager, keys: &Keys, max_tenants: usize) -> Result<(), QueueError> {
        let tenants = protocol::reads::tenants(conn, keys).await?;
        let mut numbers = Vec::with_capacity(tenants.len());
        for tenant in tenants {
            let (queue, oldest_ms) = protocol::reads::tenant_backlog(conn, keys, &tenant).await?;
            let limit = limits::effective(conn, keys, &tenant).await?.tenant;
            numbers.push(TenantNumbers { tenant, queue, oldest_ms, limit });
        }
        // The busiest tenants keep their names; the tie-break on the name keeps the cut the same on every replica.
        numbers.sort_by(|a, b| b.queue.waiting.cmp(&a.queue.waiting).then_with(|| a.tenant.cmp(&b.tenant)));
        let now_ms = chrono::Utc::now().timestamp_millis();
        let (running_global, alive) = protocol::reads::global_running(conn, keys, ALIVE_WITHIN).await?;
        let dead_letters = protocol::dead_letter::count(conn, keys).await?;
        let global_limit = limits::effective(conn, keys, "").await?.global;

        self.clear();
        for (index, tenant) in numbers.iter().enumerate() {
            let named = index < max_tenants;
            let label = if named { tenant.tenant.clone() } else { OTHER_TENANTS.to_string() };
            for (priority, waiting) in &tenant.queue.waiting_by_priority {
                let lane = LaneLabels { tenant: label.clone(), priority: priority.to_string() };
                self.waiting.get_or_create(&lane).inc_by(to_i64(*waiting));
            }
            let key = TenantLabel { tenant: label };
            self.running.get_or_create(&key).inc_by(to_i64(tenant.queue.running));
            if let Some(oldest) = tenant.oldest_ms {
                let age = (now_ms - oldest).max(0) as f64 / 1000.0;
                let gauge = self.oldest_age.get_or_create(&key);
                if age > gauge.get() {
                    gauge.set(age);
                }
            }
            // "other" has no single limit.
            if let (true, Some(limit)) = (named, tenant.limit) {
                self.tenant_limit.get_or_create(&key).set(i64::from(limit));
            }
        }
        self.running_global.set(to_i64(running_global));
        self.dispatchers_alive.set(to_i64(alive));
        self.dead_letters.set(to_i64(dead_letters));
        self.global_limit.set(global_limit.map_or(-1, i64::from));
        Ok(())
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
