//! The shared service pool: one PostgreSQL, one Redis and one s3s-fs per test run, shared by every test process.
//!
//! The first process to call [`TestServices::get`] starts the servers under an exclusive lock on
//! `<state dir>/pool.lock` and records their ports and pids in `<state dir>/pool.json`; later processes find
//! them alive (pid running and port accepting) and reuse them. Tests isolate themselves with a fresh database,
//! key prefix and bucket pair each, so they run in parallel; a test that needs to break a server (FLUSHALL,
//! shutdown) uses a dedicated instance instead. The shared Redis refuses FLUSHALL and FLUSHDB (NOPERM), so a test
//! that forgets this fails at once instead of wiping the keys of the tests running beside it.

use super::postgres::{
    DURABLE_POOL_SETTINGS, Durability, PG_DURABLE_ENV, POOL_SETTINGS, StopMode, cluster_base, database_url,
    init_cluster, postmaster_pid, start_cluster_on_free_port, stop_cluster,
};
use super::process::{accepts_tcp, process_alive, process_name, terminate_pid};
use super::redis::{RedisOptions, start_redis_on_free_port};
use super::s3::{REGION, S3Settings, client, create_unique_bucket, start_s3_on_free_port};
use super::{ServiceError, blocking, create_dir, unique_suffix};
use flow_like_shared::config::{DatabaseConfig, RedisConfig, S3Config};
use serde::{Deserialize, Serialize};
use sqlx::Connection;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// Environment variable naming the state directory.
pub const STATE_DIR_ENV: &str = "FLOWLIKE_TEST_STATE";
/// Access key of the pool's S3 server.
const S3_ACCESS_KEY: &str = "flowlike-test";
/// Time a server gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Attempts at CREATE DATABASE: concurrent creations from `template1` can fail transiently.
const CREATE_DATABASE_ATTEMPTS: u32 = 5;

/// Set to 1 to start the pool's Redis with an append-only file fsynced every second, as the chart configures it.
/// A running pool keeps the settings it started with, so give such a pool its own `FLOWLIKE_TEST_STATE`.
pub const REDIS_AOF_ENV: &str = "FLOWLIKE_TEST_REDIS_AOF";

/// The state directory: `FLOWLIKE_TEST_STATE`, else `<workspace>/target/test-services`.
pub fn state_dir() -> PathBuf {
    match std::env::var_os(STATE_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        // This crate is <workspace>/tools/services.
        None => {
            let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
            manifest_dir.ancestors().nth(2).unwrap_or(manifest_dir).join("target").join("test-services")
        }
    }
}

/// What `pool.json` records about the running servers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PoolState {
    postgres: Option<PostgresEntry>,
    redis: Option<ProcessEntry>,
    s3: Option<S3Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PostgresEntry {
    port: u16,
    dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ProcessEntry {
    port: u16,
    pid: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct S3Entry {
    port: u16,
    pid: u32,
    access_key: String,
    secret_key: String,
}

impl PostgresEntry {
    fn alive(&self) -> bool {
        postmaster_pid(&self.dir).is_some_and(process_alive) && accepts_tcp(self.port)
    }
}

/// Whether `pid` is still the server `name` listening on `port` (pids get reused after a reboot).
fn server_alive(pid: u32, name: &str, port: u16) -> bool {
    process_alive(pid) && process_name(pid).as_deref() == Some(name) && accepts_tcp(port)
}

fn stop_server(pid: u32, name: &str) -> Result<(), ServiceError> {
    if process_alive(pid) && process_name(pid).as_deref() == Some(name) {
        terminate_pid(pid, STOP_GRACE)?;
    }
    Ok(())
}

/// Holds the pool's exclusive lock until dropped (closing the file releases it).
struct PoolLock {
    _file: File,
}

impl PoolLock {
    fn acquire(dir: &Path) -> Result<Self, ServiceError> {
        create_dir(dir)?;
        let path = dir.join("pool.lock");
        let io_err = |action, source| ServiceError::Io { action, path: path.clone(), source };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| io_err("open lock file", source))?;
        file.lock().map_err(|source| io_err("lock", source))?;
        Ok(Self { _file: file })
    }
}

fn read_state(dir: &Path) -> Result<PoolState, ServiceError> {
    let path = dir.join("pool.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| ServiceError::State { path, source }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(PoolState::default()),
        Err(source) => Err(ServiceError::Io { action: "read", path, source }),
    }
}

fn write_state(dir: &Path, state: &PoolState) -> Result<(), ServiceError> {
    let path = dir.join("pool.json");
    let temp = dir.join("pool.json.tmp");
    let bytes =
        serde_json::to_vec_pretty(state).map_err(|source| ServiceError::State { path: path.clone(), source })?;
    // Write then rename, so a reader never sees half a file.
    std::fs::write(&temp, bytes).and_then(|()| std::fs::rename(&temp, &path)).map_err(|source| ServiceError::Io {
        action: "write",
        path,
        source,
    })
}

fn remove_dir(path: &Path) -> Result<(), ServiceError> {
    match std::fs::remove_dir_all(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(ServiceError::Io { action: "remove", path: path.to_owned(), source: err })
        }
        _ => Ok(()),
    }
}

fn ensure_postgres(dir: &Path, entry: Option<PostgresEntry>) -> Result<PostgresEntry, ServiceError> {
    if let Some(entry) = entry {
        if entry.alive() {
            return Ok(entry);
        }
        let _ = stop_cluster(&entry.dir, StopMode::Immediate);
    }
    let pg_dir = cluster_base(dir).join("postgres");
    remove_dir(&pg_dir)?;
    let durable = std::env::var(PG_DURABLE_ENV).is_ok_and(|v| v == "1");
    let (durability, settings) =
        if durable { (Durability::Durable, DURABLE_POOL_SETTINGS) } else { (Durability::Throwaway, POOL_SETTINGS) };
    init_cluster(&pg_dir, durability)?;
    let port = start_cluster_on_free_port(&pg_dir, settings)?;
    Ok(PostgresEntry { port, dir: pg_dir })
}

fn ensure_redis(dir: &Path, entry: Option<ProcessEntry>) -> Result<ProcessEntry, ServiceError> {
    if let Some(entry) = entry {
        if server_alive(entry.pid, "redis-server", entry.port) {
            return Ok(entry);
        }
        stop_server(entry.pid, "redis-server")?;
    }
    let redis_dir = dir.join("redis");
    remove_dir(&redis_dir)?;
    create_dir(&redis_dir)?;
    // Benchmarks of the chart's Redis settings (`appendonly yes`, `appendfsync everysec`) set REDIS_AOF_ENV.
    let append_only = std::env::var(REDIS_AOF_ENV).is_ok_and(|v| v == "1");
    let options = RedisOptions { append_only, tls: None, shared: true };
    let (port, server) = start_redis_on_free_port(&redis_dir, &options)?;
    Ok(ProcessEntry { port, pid: server.detach() })
}

fn ensure_s3(dir: &Path, entry: Option<S3Entry>) -> Result<S3Entry, ServiceError> {
    if let Some(entry) = entry {
        if server_alive(entry.pid, "s3s-fs", entry.port) {
            return Ok(entry);
        }
        stop_server(entry.pid, "s3s-fs")?;
    }
    let s3_dir = dir.join("s3");
    let data = s3_data_dir(dir);
    remove_dir(&s3_dir)?;
    remove_dir(&data)?;
    create_dir(&s3_dir)?;
    create_dir(&data)?;
    let secret_key = unique_suffix();
    let (port, server) = start_s3_on_free_port(&data, &s3_dir.join("s3s-fs.log"), S3_ACCESS_KEY, &secret_key)?;
    Ok(S3Entry { port, pid: server.detach(), access_key: S3_ACCESS_KEY.to_owned(), secret_key })
}

/// Where the pool's s3s-fs keeps its objects: in memory (`/dev/shm`) when the machine has it, one directory per
/// state dir. Every object is a file there; on a disk, creating tens of thousands of small files after deleting
/// the last run's made the S3 server spend its time in the filesystem's inode allocator, not serving requests.
fn s3_data_dir(dir: &Path) -> PathBuf {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() || shm_free_bytes(shm).is_none_or(|free| free < SHM_MIN_FREE_BYTES) {
        return dir.join("s3").join("data");
    }
    shm_s3_dir(dir)
}

/// The in-memory place of the pool's objects (one per state dir, so checkouts do not share it).
fn shm_s3_dir(dir: &Path) -> PathBuf {
    let hash = dir
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    Path::new("/dev/shm").join(format!("flow-like-test-s3-{hash:016x}"))
}

/// Below this much free memory in `/dev/shm` (a container's default is 64 MiB), the objects stay on disk.
const SHM_MIN_FREE_BYTES: u64 = 2 << 30;

/// Free bytes of the filesystem at `path`, from `df`.
fn shm_free_bytes(path: &Path) -> Option<u64> {
    let output = std::process::Command::new("df").args(["--output=avail", "-B1"]).arg(path).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    text.lines().nth(1)?.trim().parse().ok()
}

/// Stops the servers a crashed test left behind in `<state dir>/dedicated` and removes their files.
fn clean_dedicated(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base.join("dedicated")) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let _ = stop_cluster(&path, StopMode::Immediate);
        if let Some(pid) = std::fs::read_to_string(path.join("redis.pid")).ok().and_then(|pid| pid.trim().parse().ok())
        {
            let _ = stop_server(pid, "redis-server");
        }
        let _ = std::fs::remove_dir_all(&path);
    }
}

/// Handles to the shared pool's servers. Plain data: valid in any runtime and any process.
#[derive(Debug, Clone)]
pub struct TestServices {
    postgres_port: u16,
    redis_port: u16,
    s3_port: u16,
    s3_access_key: String,
    s3_secret_key: String,
}

static SHARED: OnceLock<TestServices> = OnceLock::new();

impl TestServices {
    /// The shared pool, started on first use by any test process of this run.
    pub async fn get() -> Result<&'static TestServices, ServiceError> {
        if let Some(services) = SHARED.get() {
            return Ok(services);
        }
        let services = blocking(Self::start_blocking).await?;
        Ok(SHARED.get_or_init(|| services))
    }

    /// Starts whichever pool servers are not running (or finds them all alive) and returns their handles.
    pub fn start_blocking() -> Result<TestServices, ServiceError> {
        let dir = state_dir();
        let _lock = PoolLock::acquire(&dir)?;
        let mut state = read_state(&dir)?;
        let postgres = ensure_postgres(&dir, state.postgres.take())?;
        state.postgres = Some(postgres.clone());
        write_state(&dir, &state)?;
        let redis = ensure_redis(&dir, state.redis.take())?;
        state.redis = Some(redis.clone());
        write_state(&dir, &state)?;
        let s3 = ensure_s3(&dir, state.s3.take())?;
        state.s3 = Some(s3.clone());
        write_state(&dir, &state)?;
        Ok(TestServices {
            postgres_port: postgres.port,
            redis_port: redis.port,
            s3_port: s3.port,
            s3_access_key: s3.access_key,
            s3_secret_key: s3.secret_key,
        })
    }

    /// Stops the pool's servers (and any dedicated server a crashed test left) and removes their files.
    pub fn stop_blocking() -> Result<(), ServiceError> {
        let dir = state_dir();
        let _lock = PoolLock::acquire(&dir)?;
        let state = read_state(&dir)?;
        if let Some(redis) = &state.redis {
            stop_server(redis.pid, "redis-server")?;
        }
        if let Some(s3) = &state.s3 {
            stop_server(s3.pid, "s3s-fs")?;
        }
        if let Some(postgres) = &state.postgres {
            stop_cluster(&postgres.dir, StopMode::Immediate)?;
            remove_dir(&postgres.dir)?;
        }
        clean_dedicated(&dir);
        clean_dedicated(&cluster_base(&dir));
        remove_dir(&dir.join("redis"))?;
        remove_dir(&dir.join("s3"))?;
        remove_dir(&shm_s3_dir(&dir))?;
        match std::fs::remove_file(dir.join("pool.json")) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(ServiceError::Io { action: "remove", path: dir.join("pool.json"), source: err })
            }
            _ => Ok(()),
        }
    }

    /// URL of `database` on the shared cluster (superuser `postgres`, trust authentication).
    pub fn database_url(&self, database: &str) -> String {
        database_url(self.postgres_port, database)
    }

    /// `redis://127.0.0.1:<port>` of the shared Redis. It refuses FLUSHALL and FLUSHDB: other tests use it at the
    /// same time.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.redis_port)
    }

    /// `http://127.0.0.1:<port>` of the shared S3 server.
    pub fn s3_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Creates an empty database with a unique name and returns its URL.
    pub async fn fresh_database(&self) -> Result<String, ServiceError> {
        let name = format!("t_{}", unique_suffix());
        let statement = format!("CREATE DATABASE \"{name}\"");
        let mut attempt = 1;
        loop {
            match self.execute_admin(&statement).await {
                Ok(()) => return Ok(self.database_url(&name)),
                Err(_) if attempt < CREATE_DATABASE_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn execute_admin(&self, statement: &str) -> Result<(), ServiceError> {
        let sql_err = |source| ServiceError::Sql { statement: statement.to_owned(), source };
        let mut connection = sqlx::PgConnection::connect(&self.database_url("postgres")).await.map_err(sql_err)?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned())).execute(&mut connection).await.map_err(sql_err)?;
        connection.close().await.map_err(sql_err)
    }

    /// A Redis key prefix no other test uses.
    pub fn fresh_prefix(&self) -> String {
        format!("t{}", unique_suffix())
    }

    /// Creates a unique meta and content bucket and returns the settings to reach them.
    pub async fn fresh_buckets(&self) -> Result<S3Settings, ServiceError> {
        let client = self.s3_client();
        let meta_bucket = create_unique_bucket(&client, "meta").await?;
        let content_bucket = create_unique_bucket(&client, "content").await?;
        Ok(S3Settings {
            endpoint: self.s3_endpoint(),
            region: REGION.to_owned(),
            access_key_id: self.s3_access_key.clone(),
            secret_access_key: self.s3_secret_key.clone(),
            meta_bucket,
            content_bucket,
        })
    }

    /// An S3 client for the shared server, with the right keys.
    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        client(&self.s3_endpoint(), REGION, &self.s3_access_key, &self.s3_secret_key)
    }

    /// A fresh database, key prefix and bucket pair, as the services' configuration groups.
    pub async fn fresh_configs(&self) -> Result<ServiceConfigs, ServiceError> {
        let database_url = self.fresh_database().await?;
        let s3 = self.fresh_buckets().await?;
        Ok(ServiceConfigs {
            database: database_config(&database_url),
            redis: redis_config(&self.redis_url(), &self.fresh_prefix()),
            s3: s3.to_config(),
            s3_settings: s3,
        })
    }

    /// Shell `export` lines for the pool (no buckets: create them per use).
    pub fn env_exports(&self) -> String {
        let dir = state_dir();
        [
            (STATE_DIR_ENV, dir.to_string_lossy().into_owned()),
            ("DATABASE_URL", self.database_url("postgres")),
            ("REDIS_URL", self.redis_url()),
            ("S3_ENDPOINT", self.s3_endpoint()),
            ("S3_REGION", REGION.to_owned()),
            ("S3_ACCESS_KEY_ID", self.s3_access_key.clone()),
            ("S3_SECRET_ACCESS_KEY", self.s3_secret_key.clone()),
            ("S3_FORCE_PATH_STYLE", "true".to_owned()),
        ]
        .iter()
        .map(|(name, value)| format!("export {name}='{value}'\n"))
        .collect()
    }
}

/// One test's settings for the services: its own database, key prefix and buckets.
#[derive(Debug, Clone)]
pub struct ServiceConfigs {
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub s3: S3Config,
    /// The same S3 settings, with a client builder.
    pub s3_settings: S3Settings,
}

impl ServiceConfigs {
    /// These settings as the environment variables every binary reads (for tests that start the binaries
    /// themselves), static S3 keys included; REDIS_CA_FILE when set.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let s3 = &self.s3;
        let mut env = vec![
            ("DATABASE_URL", self.database.url.clone()),
            ("REDIS_URL", self.redis.url.clone()),
            ("REDIS_PREFIX", self.redis.prefix.clone()),
            ("S3_ENDPOINT", s3.endpoint.clone()),
            ("S3_REGION", s3.region.clone()),
            ("S3_ACCESS_KEY_ID", s3.access_key_id.clone()),
            ("S3_SECRET_ACCESS_KEY", s3.secret_access_key.clone()),
            ("S3_META_BUCKET", s3.meta_bucket.clone()),
            ("S3_CONTENT_BUCKET", s3.content_bucket.clone()),
        ];
        if let Some(ca) = &self.redis.ca_file {
            env.push(("REDIS_CA_FILE", ca.display().to_string()));
        }
        env
    }
}

/// Database settings for `url` with a pool small enough for many tests in parallel.
pub fn database_config(url: &str) -> DatabaseConfig {
    DatabaseConfig { url: url.to_owned(), max_connections: 8 }
}

/// Redis settings for `url` and key `prefix`.
pub fn redis_config(url: &str, prefix: &str) -> RedisConfig {
    RedisConfig { url: url.to_owned(), prefix: prefix.to_owned(), ca_file: None }
}
