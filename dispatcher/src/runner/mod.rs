//! Runners start one execution attempt and tell the dispatcher how it ended. The dispatcher owns everything
//! around them (admission, leases, status events, retries); a runner only starts, watches and stops.
//!
//! - [`process::ProcessRunner`] starts the real `flow-like-executor` binary as a local process, with exactly the
//!   environment a Kubernetes Job would give it.
//! - [`noop::NoopRunner`] starts nothing and reports success at once (measures the dispatcher's overhead).
//! - [`kubernetes::KubeRunner`] creates one Job per attempt and watches it to its end.

pub mod kubernetes;
pub mod noop;
pub mod process;

use flow_like_shared::status::FinishedOutcome;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The attempt a runner starts. The spec (workflow snapshot and input) is already in the meta bucket at
/// `storage::layout::spec(execution_id)`; the executor reads it from there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub execution_id: Uuid,
    pub attempt: u32,
    pub tenant: String,
    pub workflow: String,
    /// The workflow's `deadline_ms`, if it sets one (a Job's `activeDeadlineSeconds`).
    pub deadline_ms: Option<u64>,
    /// The workflow's `resources` (a Job's container requests, within the operator's limits).
    pub resources: Option<flow_like_shared::workflow::Resources>,
    /// True when this dispatcher took the attempt over from one that stopped heartbeating: the attempt may
    /// already be running (a Job with its deterministic name exists), and a runner that can should adopt it.
    pub takeover: bool,
    /// The dispatcher's `attempt` span, when traces are on: the runner's own spans go under it, and the
    /// executor gets it as `TRACEPARENT`.
    pub trace: Option<flow_like_shared::trace::SpanContext>,
}

/// How an attempt ended, as far as the runner can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptEnd {
    /// The executor ran to a verdict and reported it itself (exit code 0, 3 or 4): its `finished` event is on
    /// the status stream and its manifest in the content bucket.
    Reported { exit_code: i32 },
    /// The runner knows the outcome but the executor could not report it (a deadline enforced from outside,
    /// a runner that starts nothing): the dispatcher publishes `finished` on the executor's behalf.
    Concluded { outcome: FinishedOutcome, error: Option<String> },
    /// Infrastructure failed (the process died, the pod was evicted or OOM-killed, the image could not be
    /// pulled, the executor exited 1): another attempt may succeed. The dispatcher first checks the attempt's
    /// manifest, in case the executor finished and only the report was lost.
    Retry { reason: String },
    /// The attempt cannot run and retrying will not help (the API refused the Job as invalid or forbidden):
    /// the execution fails with this reason.
    Fail { reason: String },
}

/// Where a started attempt runs, for the `dispatched` event and the attempts table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// What was started: a Job name, `pid 1234`.
    pub runner_ref: Option<String>,
}

/// Something that can run attempts. One `run` call per attempt; the dispatcher runs many at once.
pub trait Runner: Send + Sync + 'static {
    /// Short name for logs, metrics and the `dispatched` event (`process`, `kubernetes`, `noop`).
    fn name(&self) -> &'static str;

    /// Whether the executor reads the attempt spec from the meta bucket (false only for runners that start
    /// nothing), so the dispatcher writes it before `run`.
    fn needs_spec(&self) -> bool {
        true
    }

    /// Adds the runner's own metric families to the dispatcher's registry (the Kubernetes runner's API and Job
    /// metrics); none by default.
    fn register_metrics(&self, _registry: &mut prometheus_client::registry::Registry) {}

    /// Hands the runner the dispatcher's tracer, for spans of its own under each attempt's (the Kubernetes
    /// runner's `kubernetes.create_job`); ignored by default.
    fn use_tracer(&self, _tracer: &flow_like_shared::trace::Tracer) {}

    /// Starts `attempt`, sends where it runs on `started` as soon as it is running (at most once; not at all
    /// when it could not start), and resolves when it has ended. When `cancel` fires the runner stops the
    /// attempt (SIGTERM to the executor, Job deletion with propagation) and still resolves with how it ended.
    fn run<'a>(
        &'a self,
        attempt: &'a Attempt,
        started: tokio::sync::oneshot::Sender<Started>,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, AttemptEnd>;
}
