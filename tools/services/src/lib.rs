//! Real, throwaway PostgreSQL, Redis and S3 (s3s-fs) servers for tests and benchmarks, and the same launchers
//! for the local development stack.
//!
//! Three kinds of instances:
//! - the shared pool ([`TestServices`]): one of each server per test run, started by the first test that needs
//!   them and reused by every other test process (cargo-nextest runs each test in its own process); tests stay
//!   isolated through a fresh database, Redis key prefix and bucket pair each. `flow-like-test-services stop`
//!   ends the pool.
//! - dedicated instances ([`DedicatedRedis`], [`DedicatedPostgres`]) that one test owns and may stop, kill and
//!   restart on the same port, for fault tests.
//! - the local stack's servers ([`stack`]): durable, on the ports and in the directories `scripts/stack.sh`
//!   chose, kept across `down` and `up` (`flow-like-test-services stack-up|stack-down`).
//!
//! It depends on no flow-like service crate, only on `flow-like-shared`'s configuration groups: the integration
//! tests (`flow-like-tests`), the product launchers (`flow-like-test-harness`) and the load generator all build on
//! it.

mod pool;
mod postgres;
mod process;
mod redis;
mod s3;
pub mod stack;
pub mod tls;

pub use pool::{STATE_DIR_ENV, ServiceConfigs, TestServices, database_config, redis_config, state_dir};
pub use postgres::DedicatedPostgres;
pub use process::free_port;
pub use redis::{DedicatedRedis, RedisOptions};
pub use s3::S3Settings;

use std::path::PathBuf;

/// Why a test service could not be started, stopped or used.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("`{program}` is not installed: run scripts/install-deps.sh")]
    MissingBinary { program: String },
    #[error("no free TCP port")]
    FreePort(#[source] std::io::Error),
    #[error("failed to start `{program}`")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed ({status}):\n{output}")]
    CommandFailed { what: &'static str, status: String, output: String },
    #[error("{name} exited during start-up ({status}); log tail:\n{log_tail}")]
    Exited { name: &'static str, status: String, log_tail: String },
    #[error("{name} did not accept connections on port {port} in time; log tail:\n{log_tail}")]
    NotReady { name: &'static str, port: u16, log_tail: String },
    #[error("could not signal process {pid}")]
    Signal { pid: u32 },
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("service state file {path} is unreadable")]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} failed after {attempts} attempts")]
    Retries {
        what: &'static str,
        attempts: u32,
        #[source]
        last: Box<ServiceError>,
    },
    #[error("PostgreSQL statement failed: {statement}")]
    Sql {
        statement: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("S3 request failed: {operation}")]
    S3 {
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("background task failed")]
    Join(#[source] tokio::task::JoinError),
}

/// Runs blocking launcher code off the async runtime (the launchers poll with sleeps).
async fn blocking<T, F>(work: F) -> Result<T, ServiceError>
where
    F: FnOnce() -> Result<T, ServiceError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work).await.map_err(ServiceError::Join)?
}

/// A short unique lowercase name part (valid in database, bucket and key names).
fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Creates `path` and its parents.
fn create_dir(path: &std::path::Path) -> Result<(), ServiceError> {
    std::fs::create_dir_all(path).map_err(|source| ServiceError::Io {
        action: "create directory",
        path: path.to_owned(),
        source,
    })
}
