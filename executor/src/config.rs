//! The executor's settings. The dispatcher gives them as environment (a Job's env, or a local process's), and
//! the executor never touches PostgreSQL: what it needs is in the meta bucket and the environment.

use clap::Parser;
use flow_like_shared::config::{RedisConfig, S3Config, TelemetryConfig, TraceConfig};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "flow-like-executor",
    version,
    about = "flow-like executor: runs one attempt of one workflow execution"
)]
pub struct ExecutorConfig {
    /// Execution to run.
    #[arg(long = "execution-id", env = "EXECUTION_ID")]
    pub execution_id: String,
    /// Attempt number of this run (1 for the first).
    #[arg(long = "attempt", env = "EXECUTION_ATTEMPT")]
    pub attempt: u32,
    /// Tenant the execution belongs to; `object.get`/`object.put` keys live under its prefix.
    #[arg(long = "tenant", env = "EXECUTION_TENANT")]
    pub tenant: String,
    /// Seconds to report and exit after SIGTERM.
    #[arg(long = "shutdown-grace-secs", env = "EXECUTOR_SHUTDOWN_GRACE_SECS", default_value_t = 5)]
    pub shutdown_grace_secs: u64,
    /// Largest `http.request` response body in bytes.
    #[arg(long = "http-max-response-bytes", env = "EXECUTOR_HTTP_MAX_RESPONSE_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub http_max_response_bytes: usize,
    #[command(flatten)]
    pub redis: RedisConfig,
    #[command(flatten)]
    pub s3: S3Config,
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
    #[command(flatten)]
    pub trace: TraceConfig,
    /// W3C trace context of the dispatcher's attempt span (set by the runner when traces are on).
    #[arg(long = "traceparent", env = "TRACEPARENT")]
    pub traceparent: Option<String>,
}
