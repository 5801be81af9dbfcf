//! The dispatcher's Prometheus metrics, prefixed `flowlike_dispatcher` (docs/metrics.md lists them all): what
//! this replica did (counters and histograms), the queue as Redis holds it (`crate::queue_metrics`, read at
//! scrape), and the runner's own families (the Kubernetes runner's API and Job metrics).
//!
//! The latency histograms are observed where each interval is known exactly once: queue wait by the replica
//! that claims the attempt, the rest by the status pipeline when a batch moves an execution forward (a
//! replayed or duplicated event moves nothing, so it is never timed twice).

use crate::runner::Runner;
use flow_like_shared::record::transitions::Applied;
use flow_like_shared::workflow::NodeKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

/// Buckets of the execution latencies: 5 ms to 6 h.
const LATENCY_BUCKETS: [f64; 20] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    7200.0, 21600.0,
];

/// Buckets of the dispatcher's own steps: 0.1 ms to 2.5 s.
const STEP_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunnerLabels {
    pub runner: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunnerOutcomeLabels {
    pub runner: String,
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node_type: &'static str,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeTypeLabels {
    pub node_type: &'static str,
}

/// Why a message went to the dead-letter stream: the `reason` label of `dead_lettered_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// Every attempt allowed (`DISPATCHER_MAX_ATTEMPTS`) failed on infrastructure.
    AttemptsExhausted,
    /// Delivered `DISPATCHER_MAX_DELIVERIES` times without an attempt ending (a poison message).
    DeliveriesExhausted,
    /// The queue entry could not be parsed.
    Malformed,
}

impl DeadLetterReason {
    fn label(self) -> &'static str {
        match self {
            Self::AttemptsExhausted => "attempts_exhausted",
            Self::DeliveriesExhausted => "deliveries_exhausted",
            Self::Malformed => "malformed",
        }
    }
}

fn latency() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconcile_passes: Counter,
    reconcile_requeued: Counter,
    admitted: Counter,
    finished: Counter,
    retried: Counter,
    dead_lettered: Family<ReasonLabels, Counter>,
    taken_over: Counter,
    status_applied: Counter,
    status_ignored: Family<ReasonLabels, Counter>,
    status_lag: Histogram,
    admission_seconds: Histogram,
    outbox_batch: Histogram,
    /// This replica's own series of `queue_wait_seconds` (its runner), resolved once: admission observes it
    /// without a label lookup.
    queue_wait: Histogram,
    dispatch_to_start: Family<RunnerLabels, Histogram>,
    run_seconds: Family<RunnerOutcomeLabels, Histogram>,
    end_to_end: Family<RunnerOutcomeLabels, Histogram>,
    node_runs: Family<NodeLabels, Counter>,
    node_seconds: Family<NodeTypeLabels, Histogram>,
    pruned_executions: Counter,
    pruned_objects: Counter,
    pruned_dead_letters: Counter,
    /// Read from Redis on every scrape.
    pub queue: crate::queue_metrics::QueueGauges,
}

impl Default for Metrics {
    /// Without a runner's own families (tests, tools).
    fn default() -> Self {
        Self::build("none", |_| {})
    }
}

impl Metrics {
    /// The dispatcher's metrics, with `runner`'s own families registered beside them.
    pub fn new(runner: &dyn Runner) -> Self {
        Self::build(runner.name(), |registry| runner.register_metrics(registry))
    }

    /// Every family the dispatcher may expose, whatever its runner (the docs test and `promtool` read it).
    pub fn every_family() -> Self {
        Self::build("none", |registry| crate::runner::kubernetes::metrics::KubeMetrics::default().register(registry))
    }

    fn build(runner: &'static str, extra: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::with_prefix("flowlike_dispatcher");
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let reconcile_passes = counter(&mut registry, "reconcile_passes", "Completed reconciler passes");
        let reconcile_requeued = counter(
            &mut registry,
            "reconcile_requeued",
            "Executions put back in the queue because Redis did not know them",
        );
        let admitted = counter(&mut registry, "admitted", "Executions admitted (claimed with a concurrency lease)");
        let finished = counter(&mut registry, "attempts_finished", "Attempts that ended with a verdict");
        let retried = counter(
            &mut registry,
            "attempts_retried",
            "Retries scheduled: attempts that failed on infrastructure and will run again after a backoff",
        );
        let dead_lettered = Family::<ReasonLabels, Counter>::default();
        // Every reason from 0, so that `increase()` sees the first dead letter of each.
        registry.register(
            "dead_lettered",
            "Messages moved to the dead-letter stream, by reason (attempts_exhausted, deliveries_exhausted, malformed)",
            dead_lettered.clone(),
        );
        for why in
            [DeadLetterReason::AttemptsExhausted, DeadLetterReason::DeliveriesExhausted, DeadLetterReason::Malformed]
        {
            dead_lettered.get_or_create(&ReasonLabels { reason: why.label() }).inc_by(0);
        }
        let taken_over = counter(&mut registry, "leases_taken_over", "Leases taken over from dispatchers that stopped");
        let status_applied =
            counter(&mut registry, "status_events_applied", "Status events that moved an execution forward");
        let status_ignored = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "status_events_ignored",
            "Status events that changed no state: duplicate (already applied) or stale (behind the execution)",
            status_ignored.clone(),
        );
        let status_lag = Histogram::new(STEP_BUCKETS.iter().copied().chain([5.0, 10.0, 30.0, 60.0, 300.0]));
        registry.register(
            "status_lag_seconds",
            "Time from a status event being written to its batch being committed to PostgreSQL",
            status_lag.clone(),
        );
        let admission_seconds = Histogram::new(STEP_BUCKETS);
        registry.register(
            "admission_duration_seconds",
            "Duration of one admission step (one admit script call, up to DISPATCHER_ADMIT_BATCH executions)",
            admission_seconds.clone(),
        );
        let outbox_batch = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]);
        registry.register(
            "outbox_batch_size",
            "Status events written to Redis in one round trip by the outbox",
            outbox_batch.clone(),
        );
        let queue_wait = Family::<RunnerLabels, Histogram>::new_with_constructor(latency);
        registry.register(
            "queue_wait_seconds",
            "Time an attempt waited in the queue: from submission (a retry: from its backoff ending) to its claim",
            queue_wait.clone(),
        );
        let queue_wait = queue_wait.get_or_create(&RunnerLabels { runner: runner.to_owned() }).clone();
        let dispatch_to_start = Family::<RunnerLabels, Histogram>::new_with_constructor(latency);
        registry.register(
            "dispatch_to_start_seconds",
            "Time from an attempt's dispatched event (Job created, process spawned) to the executor's started event",
            dispatch_to_start.clone(),
        );
        let run_seconds = Family::<RunnerOutcomeLabels, Histogram>::new_with_constructor(latency);
        registry.register(
            "run_duration_seconds",
            "Run time of an execution's last attempt: its started event to the execution's end, by outcome",
            run_seconds.clone(),
        );
        let end_to_end = Family::<RunnerOutcomeLabels, Histogram>::new_with_constructor(latency);
        registry.register(
            "end_to_end_seconds",
            "Time from submission to the execution's end, retries included, by outcome",
            end_to_end.clone(),
        );
        let node_runs = Family::<NodeLabels, Counter>::default();
        registry.register(
            "executor_node_runs",
            "Workflow nodes as the executors reported them at the end of a run, by node type and outcome",
            node_runs.clone(),
        );
        let node_seconds = Family::<NodeTypeLabels, Histogram>::new_with_constructor(latency);
        registry.register(
            "executor_node_duration_seconds",
            "Node run time (first attempt's start to its end, retries included), by node type",
            node_seconds.clone(),
        );
        let pruned_executions =
            counter(&mut registry, "pruned_executions", "Finished executions deleted from PostgreSQL (retention)");
        let pruned_objects =
            counter(&mut registry, "pruned_objects", "Objects of finished executions deleted from S3 (retention)");
        let pruned_dead_letters = counter(&mut registry, "pruned_dead_letters", "Dead letters deleted (retention)");
        let queue = crate::queue_metrics::QueueGauges::default();
        queue.register(&mut registry);
        extra(&mut registry);
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
            status_ignored,
            status_lag,
            admission_seconds,
            outbox_batch,
            queue_wait,
            dispatch_to_start,
            run_seconds,
            end_to_end,
            node_runs,
            node_seconds,
            pruned_executions,
            pruned_objects,
            pruned_dead_letters,
            queue,
        }
    }

    pub fn reconciled(&self, report: crate::reconciler::ReconcileReport) {
        self.reconcile_passes.inc();
        self.reconcile_requeued.inc_by(report.requeued);
    }

    pub fn pruned(&self, report: crate::pruner::PruneReport) {
        self.pruned_executions.inc_by(report.executions);
        self.pruned_objects.inc_by(report.objects);
        self.pruned_dead_letters.inc_by(report.dead_letters);
    }

    /// One admission step that claimed `n` attempts in `took`.
    pub fn admission(&self, n: u64, took: Duration) {
        self.admitted.inc_by(n);
        self.admission_seconds.observe(took.as_secs_f64());
    }

    /// An attempt claimed after waiting `waited` in the queue.
    pub fn queue_waited(&self, waited: Duration) {
        self.queue_wait.observe(waited.as_secs_f64());
    }

    pub fn outbox_batch(&self, events: usize) {
        self.outbox_batch.observe(events as f64);
    }

    pub fn finished(&self) {
        self.finished.inc();
    }

    pub fn retried(&self) {
        self.retried.inc();
    }

    pub fn dead_lettered(&self, reason: DeadLetterReason) {
        self.dead_lettered.get_or_create(&ReasonLabels { reason: reason.label() }).inc();
    }

    pub fn taken_over(&self, n: u64) {
        self.taken_over.inc_by(n);
    }

    /// A status batch committed: what its events did, and how long after being written (`lags`).
    pub fn status_batch(&self, applied: &Applied, lags: impl IntoIterator<Item = Duration>) {
        self.status_applied.inc_by(applied.advanced);
        if applied.duplicate > 0 {
            self.status_ignored.get_or_create(&ReasonLabels { reason: "duplicate" }).inc_by(applied.duplicate);
        }
        if applied.stale > 0 {
            self.status_ignored.get_or_create(&ReasonLabels { reason: "stale" }).inc_by(applied.stale);
        }
        for lag in lags {
            self.status_lag.observe(lag.as_secs_f64());
        }
        let runner = |r: &Option<String>| r.clone().unwrap_or_else(|| "none".to_owned());
        for started in &applied.started {
            self.dispatch_to_start
                .get_or_create(&RunnerLabels { runner: runner(&started.runner) })
                .observe(started.dispatch_to_start.as_secs_f64());
        }
        for finished in &applied.finished {
            let labels = RunnerOutcomeLabels { runner: runner(&finished.runner), outcome: finished.status.clone() };
            self.end_to_end.get_or_create(&labels).observe(finished.end_to_end.as_secs_f64());
            if let Some(run) = finished.run {
                self.run_seconds.get_or_create(&labels).observe(run.as_secs_f64());
            }
        }
    }

    /// The nodes of one finished run. Types outside the document's set count as `other`.
    pub fn node_runs(&self, nodes: &[flow_like_shared::status::NodeRun]) {
        use flow_like_shared::status::NodePhase;
        for node in nodes {
            let node_type = NodeKind::TYPES.iter().find(|t| **t == node.node_type).copied().unwrap_or("other");
            let outcome = match node.phase {
                NodePhase::Succeeded => "succeeded",
                NodePhase::Failed => "failed",
                NodePhase::Skipped => "skipped",
                NodePhase::Cancelled => "cancelled",
                NodePhase::Started | NodePhase::AttemptFailed => "other",
            };
            self.node_runs.get_or_create(&NodeLabels { node_type, outcome }).inc();
            if let Some(ms) = node.duration_ms {
                self.node_seconds.get_or_create(&NodeTypeLabels { node_type }).observe(ms as f64 / 1000.0);
            }
        }
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
