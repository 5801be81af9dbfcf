//! The dispatcher's settings: flags with environment fallbacks (see docs/configuration.md).

use clap::{Args, Parser, Subcommand, ValueEnum};
use flow_like_shared::config::{DatabaseConfig, RedisConfig, S3Config, TelemetryConfig, TraceConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "flow-like-dispatcher",
    version,
    about = "flow-like dispatcher: drains the queue under concurrency limits and starts one runner per attempt",
    after_help = "Settings: `flow-like-dispatcher run --help` lists every setting with its environment variable."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the dispatcher.
    Run(Box<DispatcherConfig>),
    /// Print, as YAML, the Job the Kubernetes runner would create for one execution attempt.
    JobManifest(Box<JobManifestArgs>),
}

/// The attempt whose Job to print, and the operator settings it is built from.
#[derive(Debug, Clone, Args)]
pub struct JobManifestArgs {
    /// Execution id.
    #[arg(long = "execution-id")]
    pub execution_id: uuid::Uuid,
    /// Attempt number (1 for the first).
    #[arg(long = "attempt", default_value_t = 1)]
    pub attempt: u32,
    /// Tenant of the execution.
    #[arg(long = "tenant")]
    pub tenant: String,
    /// Workflow name.
    #[arg(long = "workflow")]
    pub workflow: String,
    /// The workflow's deadline in milliseconds, if it sets one.
    #[arg(long = "deadline-ms")]
    pub deadline_ms: Option<u64>,
    /// CPU the workflow asks for (must not exceed EXECUTOR_CPU_LIMIT).
    #[arg(long = "cpu")]
    pub cpu: Option<String>,
    /// Memory the workflow asks for (must not exceed EXECUTOR_MEMORY_LIMIT).
    #[arg(long = "memory")]
    pub memory: Option<String>,
    /// Key prefix passed to the executor.
    #[arg(long = "redis-prefix", env = "REDIS_PREFIX", default_value = "flowlike")]
    pub redis_prefix: String,
    #[command(flatten)]
    pub kubernetes: KubernetesConfig,
}

/// Which runner starts execution attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunnerKind {
    /// One Kubernetes Job per attempt.
    Kubernetes,
    /// One local `flow-like-executor` process per attempt (development, tests, single machine).
    Process,
    /// Starts nothing and reports success at once: measures the dispatcher's own overhead.
    Noop,
}

#[derive(Debug, Clone, Args)]
pub struct DispatcherConfig {
    /// This replica's name in Redis (consumer name, lease owner); defaults to the host name plus a random suffix.
    #[arg(long = "dispatcher-id", env = "DISPATCHER_ID")]
    pub id: Option<String>,
    /// Runner that starts attempts.
    #[arg(long = "runner", env = "DISPATCHER_RUNNER", value_enum, default_value_t = RunnerKind::Process)]
    pub runner: RunnerKind,
    /// Most executions running at once across all tenants and dispatchers.
    #[arg(long = "global-limit", env = "DISPATCHER_GLOBAL_LIMIT", default_value_t = 100)]
    pub global_limit: u32,
    /// Default most executions running at once per tenant (overridable per tenant through the admin API).
    #[arg(long = "tenant-limit", env = "DISPATCHER_TENANT_LIMIT", default_value_t = 10)]
    pub tenant_limit: u32,
    /// Default most executions running at once per workflow of a tenant; 0 means only the tenant limit applies.
    #[arg(long = "workflow-limit", env = "DISPATCHER_WORKFLOW_LIMIT", default_value_t = 0)]
    pub workflow_limit: u32,
    /// Milliseconds of waiting worth one priority level within a tenant: an execution of priority p goes before
    /// any of priority p' > p submitted more than (p' - p) times this after it, so a priority-0 execution
    /// behind a steady stream of priority-9 work waits at most about 9 times this. 0 keeps priorities strict
    /// (low priorities may starve).
    #[arg(long = "priority-aging-ms", env = "DISPATCHER_PRIORITY_AGING_MS", default_value_t = 60_000)]
    pub priority_aging_ms: u32,
    /// Seconds a concurrency lease lives without a heartbeat before other dispatchers take it over.
    #[arg(
        long = "lease-ttl-secs",
        env = "DISPATCHER_LEASE_TTL_SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub lease_ttl_secs: u64,
    /// Attempts per execution when the infrastructure fails (the workflow failing is not retried).
    #[arg(
        long = "max-attempts",
        env = "DISPATCHER_MAX_ATTEMPTS",
        default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_attempts: u32,
    /// Deliveries of one queue message before it goes to the dead-letter stream.
    #[arg(
        long = "max-deliveries",
        env = "DISPATCHER_MAX_DELIVERIES",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_deliveries: u32,
    /// Most executions one admission step claims.
    #[arg(
        long = "admit-batch",
        env = "DISPATCHER_ADMIT_BATCH",
        default_value_t = 64,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub admit_batch: usize,
    /// Most attempts this dispatcher runs at once (bounds its memory; the concurrency limits apply on top).
    #[arg(
        long = "max-in-flight",
        env = "DISPATCHER_MAX_IN_FLIGHT",
        default_value_t = 1000,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub max_in_flight: usize,
    /// Backoff in milliseconds before the second attempt; doubles for each further attempt.
    #[arg(long = "retry-backoff-ms", env = "DISPATCHER_RETRY_BACKOFF_MS", default_value_t = 1000)]
    pub retry_backoff_ms: u64,
    /// Longest backoff between attempts, in milliseconds.
    #[arg(long = "retry-backoff-max-ms", env = "DISPATCHER_RETRY_BACKOFF_MAX_MS", default_value_t = 60_000)]
    pub retry_backoff_max_ms: u64,
    /// Seconds after SIGTERM to finish or hand back held work; keep it below the pod's grace period.
    #[arg(long = "drain-timeout-secs", env = "DISPATCHER_DRAIN_TIMEOUT_SECS", default_value_t = 25)]
    pub drain_timeout_secs: u64,
    /// Seconds between reconciler passes (re-enqueueing committed executions Redis lost).
    #[arg(
        long = "reconcile-interval-secs",
        env = "DISPATCHER_RECONCILE_INTERVAL_SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub reconcile_interval_secs: u64,
    /// Seconds a queued execution may be missing from Redis before the reconciler re-enqueues it (its submit may
    /// still be enqueueing it); in-flight executions without a lease are settled after twice this.
    #[arg(long = "reconcile-grace-secs", env = "DISPATCHER_RECONCILE_GRACE_SECS", default_value_t = 30)]
    pub reconcile_grace_secs: u64,
    /// Address of the health and Prometheus metrics endpoint (`/healthz`, `/readyz`, `/metrics`).
    #[arg(long = "metrics-listen", env = "DISPATCHER_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,
    /// Tenants that get a `tenant` label of their own in the queue gauges (those with the most waiting work);
    /// the rest are added up under `tenant="other"`. Bounds the gauges' cardinality.
    #[arg(long = "metrics-max-tenants", env = "DISPATCHER_METRICS_MAX_TENANTS", default_value_t = 100)]
    pub metrics_max_tenants: usize,
    /// Process runner: path of the `flow-like-executor` binary; defaults to the one beside this binary.
    #[arg(long = "executor-path", env = "DISPATCHER_EXECUTOR_PATH")]
    pub executor_path: Option<PathBuf>,
    #[command(flatten)]
    pub retention: RetentionConfig,
    #[command(flatten)]
    pub kubernetes: KubernetesConfig,
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub redis: RedisConfig,
    #[command(flatten)]
    pub s3: S3Config,
    #[command(flatten)]
    pub trace: TraceConfig,
}

/// How long finished work is kept, and how the pruner (every dispatcher runs one; they share the work through
/// row locks) deletes what is older. Running and queued executions are never touched.
#[derive(Debug, Clone, Args)]
pub struct RetentionConfig {
    /// Days a finished execution (with its attempts and idempotency key) stays in PostgreSQL; 0 keeps it forever.
    #[arg(long = "retention-executions-days", env = "RETENTION_EXECUTIONS_DAYS", default_value_t = 30)]
    pub executions_days: u32,
    /// Days a finished execution's objects (spec, input, results, logs, manifests) stay in both buckets; 0 keeps
    /// them as long as the execution. Never longer than the execution: they go with it at the latest.
    #[arg(long = "retention-objects-days", env = "RETENTION_OBJECTS_DAYS", default_value_t = 30)]
    pub objects_days: u32,
    /// Days a dead letter stays in the dead-letter stream; 0 keeps them forever.
    #[arg(long = "retention-dead-letters-days", env = "RETENTION_DEAD_LETTERS_DAYS", default_value_t = 30)]
    pub dead_letters_days: u32,
    /// Seconds a progress stream stays in Redis when it received entries after its execution's end was archived
    /// in PostgreSQL (a redrive started meanwhile); an archived stream is deleted at once.
    #[arg(
        long = "retention-progress-stream-secs",
        env = "RETENTION_PROGRESS_STREAM_SECS",
        default_value_t = 86_400,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub progress_stream_secs: u64,
    /// Seconds between pruner passes (each dispatcher; jittered so replicas do not start together).
    #[arg(
        long = "prune-interval-secs",
        env = "PRUNE_INTERVAL_SECS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub prune_interval_secs: u64,
    /// Most executions one pruner step deletes (rows or objects); a pass repeats steps until nothing is due.
    #[arg(
        long = "prune-batch-size",
        env = "PRUNE_BATCH_SIZE",
        default_value_t = 500,
        value_parser = clap::value_parser!(u32).range(1..=10_000)
    )]
    pub prune_batch_size: u32,
}

/// Kubernetes runner settings: where and how executor Jobs run.
#[derive(Debug, Clone, Args)]
pub struct KubernetesConfig {
    /// Kubeconfig file to reach the Kubernetes API with; unset uses `~/.kube/config` if present, else the
    /// in-cluster service account.
    #[arg(long = "kubeconfig", env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace the executor Jobs are created in; defaults to the dispatcher's own namespace.
    #[arg(long = "kube-namespace", env = "KUBE_NAMESPACE")]
    pub namespace: Option<String>,
    /// Client-side rate limit for Kubernetes API requests, per second (watches and retries included); 0 disables it.
    #[arg(long = "kube-qps", env = "KUBE_QPS", default_value_t = 50.0)]
    pub qps: f64,
    /// Requests allowed at once above the rate limit.
    #[arg(
        long = "kube-burst",
        env = "KUBE_BURST",
        default_value_t = 100,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub burst: u32,
    /// Most Kubernetes API requests (creates, reads, deletes, lists; not the long-lived watches) in flight at once;
    /// the rest wait their turn. Bounds the connections a dispatcher opens to the API server.
    #[arg(
        long = "kube-max-concurrent-requests",
        env = "KUBE_MAX_CONCURRENT_REQUESTS",
        default_value_t = 16,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_concurrent_requests: u32,
    /// Executor container image; defaults to this release's own tag (never `latest`, which nodes cache under
    /// `IfNotPresent`).
    #[arg(
        long = "executor-image",
        env = "EXECUTOR_IMAGE",
        default_value = concat!("ghcr.io/flow-like/flow-like-executor:", env!("CARGO_PKG_VERSION"))
    )]
    pub image: String,
    /// Executor image pull policy (Always, IfNotPresent, Never).
    #[arg(long = "executor-image-pull-policy", env = "EXECUTOR_IMAGE_PULL_POLICY", default_value = "IfNotPresent")]
    pub image_pull_policy: String,
    /// Comma-separated names of image pull secrets for executor pods.
    #[arg(long = "executor-image-pull-secrets", env = "EXECUTOR_IMAGE_PULL_SECRETS", value_delimiter = ',')]
    pub image_pull_secrets: Vec<String>,
    /// Service account executor pods run as (its token is never mounted).
    #[arg(long = "executor-service-account", env = "EXECUTOR_SERVICE_ACCOUNT", default_value = "default")]
    pub service_account: String,
    /// Secret holding the executor's REDIS_URL and S3 credentials, passed with `envFrom`.
    #[arg(long = "executor-secret", env = "EXECUTOR_SECRET", default_value = "flow-like-executor")]
    pub secret: String,
    /// RuntimeClass for executor pods (for example `kata`); unset uses the cluster default.
    #[arg(long = "executor-runtime-class", env = "EXECUTOR_RUNTIME_CLASS")]
    pub runtime_class: Option<String>,
    /// CPU request of an executor pod.
    #[arg(long = "executor-cpu-request", env = "EXECUTOR_CPU_REQUEST", default_value = "100m")]
    pub cpu_request: String,
    /// CPU limit of an executor pod (also the most a workflow may ask for).
    #[arg(long = "executor-cpu-limit", env = "EXECUTOR_CPU_LIMIT", default_value = "1")]
    pub cpu_limit: String,
    /// Memory request of an executor pod.
    #[arg(long = "executor-memory-request", env = "EXECUTOR_MEMORY_REQUEST", default_value = "128Mi")]
    pub memory_request: String,
    /// Memory limit of an executor pod (also the most a workflow may ask for).
    #[arg(long = "executor-memory-limit", env = "EXECUTOR_MEMORY_LIMIT", default_value = "512Mi")]
    pub memory_limit: String,
    /// Ephemeral storage limit of an executor pod, also the size limit of its /tmp.
    #[arg(long = "executor-ephemeral-storage-limit", env = "EXECUTOR_EPHEMERAL_STORAGE_LIMIT", default_value = "1Gi")]
    pub ephemeral_storage_limit: String,
    /// Deadline of an executor Job in seconds when the workflow sets none.
    #[arg(long = "executor-deadline-secs", env = "EXECUTOR_DEADLINE_SECS", default_value_t = 3600)]
    pub deadline_secs: u64,
    /// `backoffLimit` of executor Jobs (pod retries inside one attempt).
    #[arg(long = "executor-backoff-limit", env = "EXECUTOR_BACKOFF_LIMIT", default_value_t = 0)]
    pub backoff_limit: i32,
    /// Seconds a finished executor Job is kept before Kubernetes deletes it.
    #[arg(long = "executor-ttl-secs", env = "EXECUTOR_TTL_SECS", default_value_t = 600)]
    pub ttl_secs: i32,
    /// Seconds an executor pod may stay unable to start (image pull failure, missing Secret) before its Job is
    /// deleted and the attempt retried.
    #[arg(long = "executor-start-timeout-secs", env = "EXECUTOR_START_TIMEOUT_SECS", default_value_t = 120)]
    pub start_timeout_secs: u64,
    /// Node selector for executor pods, as a JSON object.
    #[arg(long = "executor-node-selector", env = "EXECUTOR_NODE_SELECTOR")]
    pub node_selector: Option<String>,
    /// Tolerations for executor pods, as a JSON array.
    #[arg(long = "executor-tolerations", env = "EXECUTOR_TOLERATIONS")]
    pub tolerations: Option<String>,
    /// Affinity for executor pods, as a JSON object.
    #[arg(long = "executor-affinity", env = "EXECUTOR_AFFINITY")]
    pub affinity: Option<String>,
    /// PriorityClass of executor pods.
    #[arg(long = "executor-priority-class", env = "EXECUTOR_PRIORITY_CLASS")]
    pub priority_class: Option<String>,
    /// Annotations added to executor pods, as a JSON object (e.g. `{"sidecar.istio.io/inject":"false"}`).
    #[arg(long = "executor-pod-annotations", env = "EXECUTOR_POD_ANNOTATIONS")]
    pub pod_annotations: Option<String>,
    /// Labels added to executor pods, as a JSON object; the dispatcher's own labels win on a clash.
    #[arg(long = "executor-pod-labels", env = "EXECUTOR_POD_LABELS")]
    pub pod_labels: Option<String>,
    /// Extra environment of the executor container, as a JSON array of Kubernetes EnvVar (e.g. HTTPS_PROXY).
    #[arg(long = "executor-extra-env", env = "EXECUTOR_EXTRA_ENV")]
    pub extra_env: Option<String>,
    /// Extra `envFrom` sources of the executor container, as a JSON array of Kubernetes EnvFromSource.
    #[arg(long = "executor-extra-env-from", env = "EXECUTOR_EXTRA_ENV_FROM")]
    pub extra_env_from: Option<String>,
    /// Extra volumes of executor pods, as a JSON array of Kubernetes Volume (e.g. the Redis CA bundle).
    #[arg(long = "executor-extra-volumes", env = "EXECUTOR_EXTRA_VOLUMES")]
    pub extra_volumes: Option<String>,
    /// Extra mounts of the executor container, as a JSON array of Kubernetes VolumeMount.
    #[arg(long = "executor-extra-volume-mounts", env = "EXECUTOR_EXTRA_VOLUME_MOUNTS")]
    pub extra_volume_mounts: Option<String>,
    /// runAsUser, runAsGroup and fsGroup of executor pods; empty leaves them unset for platforms that assign
    /// them (OpenShift's restricted SCC).
    #[arg(long = "executor-run-as-user", env = "EXECUTOR_RUN_AS_USER", default_value = "65532")]
    pub run_as_user: String,
}

impl KubernetesConfig {
    /// The settings `flow-like-dispatcher run` reads when given none of these flags: every default, with the
    /// `KUBE_*` / `EXECUTOR_*` environment variables applied as usual.
    pub fn from_env() -> Result<Self, clap::Error> {
        #[derive(Parser)]
        struct Flags {
            #[command(flatten)]
            kubernetes: KubernetesConfig,
        }
        Ok(Flags::try_parse_from(["flow-like-dispatcher"])?.kubernetes)
    }
}
