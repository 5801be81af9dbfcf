//! The local development stack's servers (`scripts/stack.sh up`): PostgreSQL, Redis and s3s-fs started by the
//! same launchers as the test pool, but on the ports and in the directories the script chose once (recorded in
//! `.state/env`), with default durability, left running when this process exits, and with their data kept
//! across `down` and `up`.
//!
//! Stopping them, `status` and `clean` stay in the script: they read the pid files named here and must work even
//! when nothing is built.

use crate::ServiceError;
use crate::create_dir;
use crate::postgres::{Durability, cluster_running, create_database_if_missing, init_cluster, start_cluster};
use crate::process::{process_alive, process_name};
use crate::redis::{RedisOptions, start_redis};
use crate::s3::start_s3;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long `pg_ctl` waits for the stack's cluster to start (it may replay WAL after a crash).
const PG_START_WAIT: Duration = Duration::from_secs(60);

/// Where the local stack's servers live and listen (`flow-like-test-services stack-up`).
#[derive(Debug, Clone, clap::Args)]
pub struct StackConfig {
    /// The stack's state directory (`.state`): Redis files in `redis/`, S3 objects in `s3/data/`.
    #[arg(long)]
    pub state: PathBuf,
    /// Log directory (the s3s-fs log); default `<state>/logs`.
    #[arg(long)]
    pub logs: Option<PathBuf>,
    /// The PostgreSQL cluster's directory (data in `data/`, socket and `postgres.log` beside it).
    #[arg(long)]
    pub postgres_dir: PathBuf,
    #[arg(long, env = "STACK_PG_PORT")]
    pub postgres_port: u16,
    /// The database the services use, created when missing.
    #[arg(long)]
    pub database: String,
    #[arg(long, env = "STACK_REDIS_PORT")]
    pub redis_port: u16,
    #[arg(long, env = "STACK_S3_PORT")]
    pub s3_port: u16,
    #[arg(long, env = "S3_ACCESS_KEY_ID")]
    pub s3_access_key: String,
    #[arg(long, env = "S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_key: String,
    /// A bucket to create (s3s-fs keeps one directory per bucket); repeat for each.
    #[arg(long = "s3-bucket")]
    pub s3_buckets: Vec<String>,
}

/// One server `up` started (servers found running are not listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    Postgres { port: u16 },
    Redis { port: u16 },
    S3 { port: u16, buckets: Vec<String> },
}

impl std::fmt::Display for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Postgres { port } => write!(f, "PostgreSQL on 127.0.0.1:{port}"),
            Self::Redis { port } => write!(f, "Redis on 127.0.0.1:{port}"),
            Self::S3 { port, buckets } => {
                write!(f, "S3 (s3s-fs) on http://127.0.0.1:{port}, buckets {}", buckets.join(" and "))
            }
        }
    }
}

impl StackConfig {
    fn redis_dir(&self) -> PathBuf {
        self.state.join("redis")
    }

    fn s3_dir(&self) -> PathBuf {
        self.state.join("s3")
    }

    fn logs(&self) -> PathBuf {
        self.logs.clone().unwrap_or_else(|| self.state.join("logs"))
    }
}

/// Starts whichever of PostgreSQL, Redis and s3s-fs is not running, creates the database and the buckets when
/// missing, and returns what it started. The servers outlive this process.
pub fn up(config: &StackConfig) -> Result<Vec<Started>, ServiceError> {
    create_dir(&config.state)?;
    create_dir(&config.logs())?;
    let mut started = Vec::new();
    if ensure_postgres(config)? {
        started.push(Started::Postgres { port: config.postgres_port });
    }
    if ensure_redis(config)? {
        started.push(Started::Redis { port: config.redis_port });
    }
    if ensure_s3(config)? {
        started.push(Started::S3 { port: config.s3_port, buckets: config.s3_buckets.clone() });
    }
    Ok(started)
}

fn ensure_postgres(config: &StackConfig) -> Result<bool, ServiceError> {
    let dir = &config.postgres_dir;
    if !dir.join("data").join("PG_VERSION").is_file() {
        init_cluster(dir, Durability::Durable)?;
    }
    let start = !cluster_running(dir)?;
    if start {
        // No settings: default durability, this is the developer's data.
        start_cluster(dir, config.postgres_port, &[], PG_START_WAIT)?;
    }
    create_database_if_missing(config.postgres_port, &config.database)?;
    Ok(start)
}

fn ensure_redis(config: &StackConfig) -> Result<bool, ServiceError> {
    let dir = config.redis_dir();
    create_dir(&dir)?;
    // The launcher has Redis write this pid file.
    if pid_file_names(&dir.join("redis.pid"), "redis-server") {
        return Ok(false);
    }
    let options = RedisOptions { append_only: true, tls: None, shared: false };
    start_redis(&dir, config.redis_port, &options)?.detach();
    Ok(true)
}

fn ensure_s3(config: &StackConfig) -> Result<bool, ServiceError> {
    let dir = config.s3_dir();
    let data = dir.join("data");
    for bucket in &config.s3_buckets {
        create_dir(&data.join(bucket))?;
    }
    let pid_file = dir.join("s3s-fs.pid");
    if pid_file_names(&pid_file, "s3s-fs") {
        return Ok(false);
    }
    let log = config.logs().join("s3s-fs.log");
    let server = start_s3(&data, &log, config.s3_port, &config.s3_access_key, &config.s3_secret_key)?;
    let pid = server.detach();
    std::fs::write(&pid_file, format!("{pid}\n")).map_err(|source| ServiceError::Io {
        action: "write pid file",
        path: pid_file.clone(),
        source,
    })?;
    Ok(true)
}

/// Whether `pid_file` names a live process called `program` (pids get reused after a reboot).
fn pid_file_names(pid_file: &Path, program: &str) -> bool {
    std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok())
        .is_some_and(|pid| process_alive(pid) && process_name(pid).as_deref() == Some(program))
}
