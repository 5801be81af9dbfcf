//! The API's settings: flags with environment fallbacks (see docs/configuration.md).

use clap::{Args, Parser, Subcommand};
use flow_like_shared::config::{DatabaseConfig, RedisConfig, S3Config, TelemetryConfig, TraceConfig};
use std::net::SocketAddr;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "flow-like-api",
    version,
    about = "flow-like HTTP API: accepts workflow executions and queues them",
    after_help = "Settings: `flow-like-api serve --help` lists every setting with its environment variable."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve the HTTP API.
    Serve(Box<ApiConfig>),
    /// Apply the database migrations and exit (for the chart's migration Job).
    Migrate(DatabaseConfig),
    /// Print the OpenAPI document and exit.
    Openapi,
}

#[derive(Debug, Clone, Args)]
pub struct ApiConfig {
    /// Address the HTTP server listens on.
    #[arg(long = "listen", env = "API_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Address `/metrics` is served on: a listener of its own, so that the public port (and an Ingress in front
    /// of it) never exposes it.
    #[arg(long = "metrics-listen", env = "API_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,
    /// Bootstrap admin token: grants the admin endpoints (creating tenants' API keys). Unset disables it.
    #[arg(long = "admin-token", env = "FLOWLIKE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Apply database migrations at start-up; turn off when a migration Job runs them.
    #[arg(long = "migrate-on-start", env = "API_MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,
    /// Largest accepted request body in bytes; larger bodies are refused with 413 while streaming.
    #[arg(long = "max-body-bytes", env = "API_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Inputs larger than this many bytes (serialized JSON) are stored in the meta bucket instead of the record.
    #[arg(long = "inline-input-max-bytes", env = "API_INLINE_INPUT_MAX_BYTES", default_value_t = 64 * 1024)]
    pub inline_input_max_bytes: usize,
    /// Submissions per second each tenant may sustain, counted across every API replica in Redis; over it a
    /// submission gets 429 with Retry-After. 0 means no limit. A tenant's own rate (set with
    /// `PUT /api/v1/tenants/{tenant}/limits`) replaces it.
    #[arg(long = "submit-rate", env = "API_SUBMIT_RATE", default_value_t = 0.0, value_parser = submit_rate)]
    pub submit_rate: f64,
    /// Submissions a tenant may make at once after a quiet spell (the bucket's size). 0 means the rate rounded
    /// up, at least 1.
    #[arg(long = "submit-burst", env = "API_SUBMIT_BURST", default_value_t = 0)]
    pub submit_burst: u32,
    /// Seconds a verified API key is cached; a revoked key stops working within this time on every replica.
    #[arg(long = "api-key-cache-secs", env = "API_KEY_CACHE_SECS", default_value_t = 5)]
    pub api_key_cache_secs: u64,
    /// Seconds to finish in-flight requests after SIGTERM before exiting.
    #[arg(long = "shutdown-grace-secs", env = "API_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub redis: RedisConfig,
    #[command(flatten)]
    pub s3: S3Config,
    #[command(flatten)]
    pub trace: TraceConfig,
}

/// A submit rate: a finite number from 0 to 1,000,000 per second.
fn submit_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.parse().map_err(|_| format!("`{text}` is not a number"))?;
    if rate.is_finite() && (0.0..=crate::routes::admin::MAX_SUBMIT_RATE).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("a submit rate is from 0 (no limit) to {} per second", crate::routes::admin::MAX_SUBMIT_RATE))
    }
}
