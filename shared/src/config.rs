//! Configuration groups shared by the binaries. Each is a clap `Args` struct with an environment fallback per
//! field; binaries `#[command(flatten)]` the groups they need. The names are a contract with the Helm chart and
//! docs/configuration.md (a test checks that all three agree).

use clap::{Args, ValueEnum};

/// PostgreSQL connection (API and dispatcher only; the executor never touches the database).
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// PostgreSQL connection URL.
    #[arg(id = "database_url", long = "database-url", env = "DATABASE_URL")]
    pub url: String,
    /// Largest number of pooled PostgreSQL connections.
    #[arg(long = "database-max-connections", env = "DATABASE_MAX_CONNECTIONS", default_value_t = 32)]
    pub max_connections: u32,
}

/// Redis connection and key prefix.
#[derive(Debug, Clone, Args)]
pub struct RedisConfig {
    /// Redis URL (redis:// or rediss://), may carry an ACL user and password.
    #[arg(id = "redis_url", long = "redis-url", env = "REDIS_URL")]
    pub url: String,
    /// Prefix of every Redis key this installation uses (several installations can share one Redis).
    #[arg(long = "redis-prefix", env = "REDIS_PREFIX", default_value = "flowlike")]
    pub prefix: String,
    /// PEM bundle of the CAs that sign the Redis server's certificate, for `rediss://` with a private CA; replaces
    /// the system roots for Redis connections. Unset: the system roots.
    #[arg(long = "redis-ca-file", env = "REDIS_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
}

/// S3-compatible object storage.
#[derive(Debug, Clone, Args)]
pub struct S3Config {
    /// S3 endpoint URL; empty means the AWS default endpoint for the region.
    #[arg(long = "s3-endpoint", env = "S3_ENDPOINT", default_value = "")]
    pub endpoint: String,
    /// S3 region.
    #[arg(long = "s3-region", env = "S3_REGION", default_value = "us-east-1")]
    pub region: String,
    /// S3 access key id. Leave it and the secret empty to use the AWS SDK's default credential chain
    /// (AWS_* environment, web identity token file as with IRSA, EKS Pod Identity, container and instance metadata).
    #[arg(long = "s3-access-key-id", env = "S3_ACCESS_KEY_ID", default_value = "")]
    pub access_key_id: String,
    /// S3 secret access key (with S3_ACCESS_KEY_ID; both or neither).
    #[arg(long = "s3-secret-access-key", env = "S3_SECRET_ACCESS_KEY", hide_env_values = true, default_value = "")]
    pub secret_access_key: String,
    /// Bucket for immutable execution inputs (workflow snapshots, large input documents).
    #[arg(long = "s3-meta-bucket", env = "S3_META_BUCKET")]
    pub meta_bucket: String,
    /// Bucket for results, logs and `object.put` data.
    #[arg(long = "s3-content-bucket", env = "S3_CONTENT_BUCKET")]
    pub content_bucket: String,
    /// Address buckets by path (`endpoint/bucket/key`) instead of virtual host; needed by most self-hosted servers.
    #[arg(long = "s3-force-path-style", env = "S3_FORCE_PATH_STYLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub force_path_style: bool,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logging. `RUST_LOG` holds the filter (for example `info,flow_like_api=debug`).
#[derive(Debug, Clone, Args)]
pub struct TelemetryConfig {
    /// Log filter in `tracing_subscriber::EnvFilter` syntax.
    #[arg(long = "log-filter", env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,
    /// Log format.
    #[arg(long = "log-format", env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Traces over OTLP/HTTP (JSON), with the standard OpenTelemetry variables; off unless an endpoint is set.
#[derive(Debug, Clone, Args)]
pub struct TraceConfig {
    /// OTLP/HTTP endpoint that receives traces at `/v1/traces` (for example `http://otel-collector:4318`).
    /// Unset: no traces are recorded.
    #[arg(long = "otlp-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Full URL for traces; overrides OTEL_EXPORTER_OTLP_ENDPOINT.
    #[arg(long = "otlp-traces-endpoint", env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    pub otlp_traces_endpoint: Option<String>,
    /// Headers sent with every export, `key=value` pairs separated by commas (values may be %-escaped).
    #[arg(long = "otlp-headers", env = "OTEL_EXPORTER_OTLP_HEADERS", hide_env_values = true)]
    pub otlp_headers: Option<String>,
    /// OTLP protocol: only `http/json` is supported (the OpenTelemetry Collector's OTLP/HTTP receiver accepts it).
    #[arg(long = "otlp-protocol", env = "OTEL_EXPORTER_OTLP_PROTOCOL", default_value = "http/json")]
    pub otlp_protocol: String,
    /// The `service.name` of exported spans. Default: the binary's name (`flow-like-api`, ...).
    #[arg(long = "otel-service-name", env = "OTEL_SERVICE_NAME")]
    pub service_name: Option<String>,
}

impl Default for TraceConfig {
    /// No traces.
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            otlp_traces_endpoint: None,
            otlp_headers: None,
            otlp_protocol: "http/json".into(),
            service_name: None,
        }
    }
}
