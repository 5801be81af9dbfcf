//! PostgreSQL clusters: initdb + pg_ctl for the shared pool and [`DedicatedPostgres`] for fault tests.
//!
//! `initdb` refuses to run as root, so as root every PostgreSQL tool runs as the `postgres` user and the cluster
//! directory belongs to it.

use super::process::{free_port, log_tail, run_checked, running_as_root};
use super::redis::retries_error;
use super::{ServiceError, blocking, create_dir, unique_suffix};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How many fresh ports are tried when another process takes the chosen one first.
const START_ATTEMPTS: u32 = 5;
/// Longest Unix socket path the kernel accepts is 107 bytes; beyond this the cluster listens on TCP only.
const MAX_SOCKET_DIR_LEN: usize = 90;

/// Server settings of the shared pool: durability off (tests only), room for many parallel test pools.
pub(crate) const POOL_SETTINGS: &[&str] =
    &["fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=500"];
/// The shared pool's settings when `FLOWLIKE_TEST_PG_DURABLE=1` (benchmarks at the server's default durability:
/// fsync, synchronous_commit and full_page_writes on).
pub(crate) const DURABLE_POOL_SETTINGS: &[&str] = &["max_connections=500"];
/// Set to 1 to start the pool's PostgreSQL at default durability. A running pool keeps the settings it started
/// with, so give such a pool its own `FLOWLIKE_TEST_STATE`.
pub const PG_DURABLE_ENV: &str = "FLOWLIKE_TEST_PG_DURABLE";
/// Server settings of dedicated clusters, which fault tests crash. A commit still writes its WAL before it
/// returns (synchronous_commit stays on), so a killed server recovers every committed transaction; only fsync
/// is off, which matters for a machine crash alone, and these tests do not simulate one.
const DEDICATED_SETTINGS: &[&str] = &["fsync=off", "max_connections=200"];

/// Directory of the PostgreSQL server binaries: `PG_BIN`, else the newest `/usr/lib/postgresql/<v>/bin`.
fn bin_dir() -> Result<PathBuf, ServiceError> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let missing = || ServiceError::MissingBinary { program: "initdb (PostgreSQL server)".into() };
    let versions = std::fs::read_dir("/usr/lib/postgresql").map_err(|_| missing())?;
    versions
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
        .ok_or_else(missing)
}

/// A PostgreSQL tool, run as the `postgres` user when this process is root.
fn pg_command(program: &str) -> Result<Command, ServiceError> {
    let path = bin_dir()?.join(program);
    if !path.is_file() {
        return Err(ServiceError::MissingBinary { program: program.into() });
    }
    Ok(if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    })
}

/// Where clusters may live under `base`: `base` itself when the `postgres` user can reach it, else a directory in
/// the system temp dir (a state dir under a private home directory is not reachable by `postgres`).
pub(crate) fn cluster_base(base: &Path) -> PathBuf {
    if !running_as_root() {
        return base.to_owned();
    }
    let reachable = Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(base)
        .status()
        .is_ok_and(|status| status.success());
    if reachable {
        return base.to_owned();
    }
    // A stable name per state dir, so `stop` finds the same place.
    let hash = base
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    std::env::temp_dir().join(format!("flow-like-test-pg-{hash:016x}"))
}

/// Whether a new cluster's files must reach the disk before `initdb` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// A test cluster: `initdb --no-sync`, lost with the machine anyway.
    Throwaway,
    /// The local stack's cluster: the developer's data.
    Durable,
}

/// How long `pg_ctl` waits for a test cluster to start or stop.
pub(crate) const PG_CTL_WAIT: Duration = Duration::from_secs(30);

/// Creates a cluster in `dir` (data in `dir/data`, socket and log in `dir`).
pub(crate) fn init_cluster(dir: &Path, durability: Durability) -> Result<(), ServiceError> {
    create_dir(dir)?;
    if running_as_root() {
        let mut chown = Command::new("chown");
        chown.args(["-R", "postgres:postgres"]).arg(dir);
        run_checked(chown, "chown of the PostgreSQL directory to postgres")?;
    }
    let mut initdb = pg_command("initdb")?;
    initdb.arg("-D").arg(dir.join("data")).args(["-U", "postgres", "-A", "trust", "-E", "UTF8"]);
    if durability == Durability::Throwaway {
        initdb.arg("--no-sync");
    }
    run_checked(initdb, "initdb").map(drop)
}

/// Starts the cluster in `dir` on `port` and waits up to `wait` until it accepts connections.
pub(crate) fn start_cluster(dir: &Path, port: u16, settings: &[&str], wait: Duration) -> Result<(), ServiceError> {
    let socket_dir =
        if dir.as_os_str().len() <= MAX_SOCKET_DIR_LEN { dir.to_string_lossy().into_owned() } else { String::new() };
    // pg_ctl passes `-o` through a shell: quote the path.
    let mut options = format!("-p {port} -k '{socket_dir}' -c listen_addresses=127.0.0.1");
    for setting in settings {
        options.push_str(" -c ");
        options.push_str(setting);
    }
    let log = dir.join("postgres.log");
    let wait = wait.as_secs().to_string();
    let mut pg_ctl = pg_command("pg_ctl")?;
    pg_ctl.arg("-D").arg(dir.join("data")).arg("-l").arg(&log).args(["-w", "-t", &wait, "-o", &options, "start"]);
    run_checked(pg_ctl, "pg_ctl start").map(drop).map_err(|err| match err {
        // pg_ctl only says "Examine the log output": the cause is in the server's log.
        ServiceError::CommandFailed { what, status, output } => ServiceError::CommandFailed {
            what,
            status,
            output: format!("{output}\n{} (last lines):\n{}", log.display(), log_tail(&log)),
        },
        other => other,
    })
}

/// Starts the cluster in `dir` on a free port, retrying on a port another process took in the meantime.
pub(crate) fn start_cluster_on_free_port(dir: &Path, settings: &[&str]) -> Result<u16, ServiceError> {
    let mut last = None;
    for _ in 0..START_ATTEMPTS {
        let port = free_port()?;
        match start_cluster(dir, port, settings, PG_CTL_WAIT) {
            Ok(()) => return Ok(port),
            Err(err @ ServiceError::MissingBinary { .. }) => return Err(err),
            Err(err) => last = Some(err),
        }
    }
    Err(retries_error("start PostgreSQL", last))
}

/// How to stop a cluster: `fast` disconnects clients and shuts down cleanly; `immediate` is a crash (recovery runs
/// on the next start).
#[derive(Debug, Clone, Copy)]
pub(crate) enum StopMode {
    Fast,
    Immediate,
}

/// Stops the cluster in `dir`; a cluster that is not running is not an error.
pub(crate) fn stop_cluster(dir: &Path, mode: StopMode) -> Result<(), ServiceError> {
    if !dir.join("data").join("postmaster.pid").exists() {
        return Ok(());
    }
    let mode = match mode {
        StopMode::Fast => "fast",
        StopMode::Immediate => "immediate",
    };
    let mut pg_ctl = pg_command("pg_ctl")?;
    pg_ctl.arg("-D").arg(dir.join("data")).args(["-m", mode, "-w", "-t", "30", "stop"]);
    run_checked(pg_ctl, "pg_ctl stop").map(drop)
}

/// Whether `pg_ctl status` finds the cluster in `dir` running (a stale `postmaster.pid` after a crash does not
/// count).
pub(crate) fn cluster_running(dir: &Path) -> Result<bool, ServiceError> {
    let mut pg_ctl = pg_command("pg_ctl")?;
    pg_ctl
        .arg("-D")
        .arg(dir.join("data"))
        .arg("status")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let status = pg_ctl.status().map_err(|source| ServiceError::Spawn { program: "pg_ctl status".into(), source })?;
    Ok(status.success())
}

/// Creates database `name` on the local cluster listening on `port` unless it exists.
pub(crate) fn create_database_if_missing(port: u16, name: &str) -> Result<(), ServiceError> {
    let port = port.to_string();
    let connection = ["-h", "127.0.0.1", "-p", port.as_str(), "-U", "postgres"];
    let mut psql = pg_command("psql")?;
    psql.args(connection).args(["-d", "postgres", "-tAc", "SELECT datname FROM pg_database"]);
    if run_checked(psql, "psql (list databases)")?.lines().any(|line| line == name) {
        return Ok(());
    }
    let mut createdb = pg_command("createdb")?;
    createdb.args(connection).arg(name);
    run_checked(createdb, "createdb").map(drop)
}

/// The postmaster's pid, from the first line of `postmaster.pid`.
pub(crate) fn postmaster_pid(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("data").join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// URL of database `database` on a local cluster (trust authentication, superuser `postgres`).
pub(crate) fn database_url(port: u16, database: &str) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/{database}")
}

/// A PostgreSQL cluster owned by one test: it can be stopped, crashed and restarted on the same port. Crashed and
/// its files removed on drop.
#[derive(Debug)]
pub struct DedicatedPostgres {
    port: u16,
    dir: PathBuf,
}

impl DedicatedPostgres {
    /// Creates and starts a new cluster on a free port.
    pub async fn start() -> Result<Self, ServiceError> {
        blocking(|| {
            let base = cluster_base(&super::state_dir());
            let dir = base.join("dedicated").join(format!("pg-{}", unique_suffix()));
            create_dir(&base.join("dedicated"))?;
            // Dropping the half-built value removes the directory if start-up fails.
            let mut cluster = Self { port: 0, dir };
            init_cluster(&cluster.dir, Durability::Throwaway)?;
            cluster.port = start_cluster_on_free_port(&cluster.dir, DEDICATED_SETTINGS)?;
            Ok(cluster)
        })
        .await
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of the `postgres` database; stays valid across restarts.
    pub fn url(&self) -> String {
        database_url(self.port, "postgres")
    }

    /// URL of `database` on this cluster.
    pub fn database_url(&self, database: &str) -> String {
        database_url(self.port, database)
    }

    /// Clean shutdown: clients are disconnected, committed data is kept.
    pub async fn stop(&self) -> Result<(), ServiceError> {
        let dir = self.dir.clone();
        blocking(move || stop_cluster(&dir, StopMode::Fast)).await
    }

    /// Crash (immediate shutdown): no checkpoint; the next start runs crash recovery.
    pub async fn kill(&self) -> Result<(), ServiceError> {
        let dir = self.dir.clone();
        blocking(move || stop_cluster(&dir, StopMode::Immediate)).await
    }

    /// Starts the cluster again on the same port (stops it first if it is running).
    pub async fn restart(&self) -> Result<(), ServiceError> {
        let (dir, port) = (self.dir.clone(), self.port);
        blocking(move || {
            stop_cluster(&dir, StopMode::Fast)?;
            start_cluster(&dir, port, DEDICATED_SETTINGS, PG_CTL_WAIT)
        })
        .await
    }
}

impl Drop for DedicatedPostgres {
    fn drop(&mut self) {
        let _ = stop_cluster(&self.dir, StopMode::Immediate);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
