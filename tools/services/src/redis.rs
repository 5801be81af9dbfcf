//! Redis servers: the launcher used by the shared pool and [`DedicatedRedis`] for fault tests.

use super::process::{READY_TIMEOUT, ServerProcess, find_binary, free_port};
use super::{ServiceError, blocking, create_dir, unique_suffix};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How many fresh ports are tried when another process takes the chosen one first.
const START_ATTEMPTS: u32 = 5;
/// Time a SIGTERMed Redis gets to flush its append-only file before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How a Redis instance keeps data, and how it is reached.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// Keep an append-only file fsynced every second (for "Redis restarts, nothing queued is lost" tests);
    /// off means the data lives in memory only.
    pub append_only: bool,
    /// Serve TLS only (`--tls-port`, no plain port) with this certificate; clients are not asked for one.
    pub tls: Option<crate::tls::ServerCertificate>,
    /// Shared by tests running at once: the default user may not run `FLUSHALL` or `FLUSHDB`, which would wipe
    /// the keys of every other test (a test that needs them starts a [`DedicatedRedis`]).
    pub shared: bool,
}

/// Starts Redis on `port` with its files in `dir`, in the foreground, and waits until it accepts connections.
pub(crate) fn start_redis(dir: &Path, port: u16, options: &RedisOptions) -> Result<ServerProcess, ServiceError> {
    let binary = find_binary("redis-server", &[])?;
    let mut command = Command::new(binary);
    match &options.tls {
        None => command.args(["--port", &port.to_string()]),
        Some(tls) => command
            .args(["--port", "0", "--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
            .arg("--tls-cert-file")
            .arg(&tls.cert)
            .arg("--tls-key-file")
            .arg(&tls.key)
            .arg("--tls-ca-cert-file")
            .arg(&tls.ca),
    };
    command
        .args(["--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(dir)
        // Recorded so `flow-like-test-services stop` can end a server a crashed test left behind.
        .arg("--pidfile")
        .arg(dir.join("redis.pid"))
        .args(["--save", "", "--daemonize", "no", "--maxclients", "10000"]);
    if options.shared {
        command.args(["--user", "default", "on", "nopass", "~*", "&*", "+@all", "-flushall", "-flushdb"]);
    }
    if options.append_only {
        command.args(["--appendonly", "yes", "--appendfsync", "everysec"]);
    } else {
        command.args(["--appendonly", "no"]);
    }
    let mut server = ServerProcess::spawn(command, "redis-server", &dir.join("redis.log"))?;
    server.wait_ready(port)?;
    if options.tls.is_none() {
        // A TLS-only server has no append-only file to load; the inline PING below speaks plain TCP.
        wait_loaded(port)?;
    }
    Ok(server)
}

/// Waits until Redis answers PING with PONG: it accepts connections while still loading its append-only file and
/// answers `-LOADING` to every command until it is done.
fn wait_loaded(port: u16) -> Result<(), ServiceError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match ping(port) {
            Ok(true) => return Ok(()),
            _ if Instant::now() >= deadline => {
                return Err(ServiceError::NotReady {
                    name: "redis-server",
                    port,
                    log_tail: "PING did not return PONG".into(),
                });
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// One inline PING over a fresh connection; true on `+PONG`.
fn ping(port: u16) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.write_all(b"PING\r\n")?;
    let mut reply = [0_u8; 64];
    let read = stream.read(&mut reply)?;
    Ok(reply[..read].starts_with(b"+PONG"))
}

/// Starts Redis on a free port, retrying on a port another process took in the meantime.
pub(crate) fn start_redis_on_free_port(
    dir: &Path,
    options: &RedisOptions,
) -> Result<(u16, ServerProcess), ServiceError> {
    let mut last = None;
    for _ in 0..START_ATTEMPTS {
        let port = free_port()?;
        match start_redis(dir, port, options) {
            Ok(server) => return Ok((port, server)),
            Err(err @ ServiceError::MissingBinary { .. }) => return Err(err),
            Err(err) => last = Some(err),
        }
    }
    Err(retries_error("start redis-server", last))
}

pub(crate) fn retries_error(what: &'static str, last: Option<ServiceError>) -> ServiceError {
    match last {
        Some(last) => ServiceError::Retries { what, attempts: START_ATTEMPTS, last: Box::new(last) },
        None => ServiceError::FreePort(std::io::Error::other("no attempt made")),
    }
}

/// A Redis server owned by one test: it can be stopped, killed and restarted on the same port (so clients
/// configured with its URL reconnect to the restarted server). Killed and its files removed on drop.
#[derive(Debug)]
pub struct DedicatedRedis {
    port: u16,
    dir: PathBuf,
    options: RedisOptions,
    server: Option<ServerProcess>,
}

impl DedicatedRedis {
    /// Starts an in-memory Redis on a free port.
    pub async fn start() -> Result<Self, ServiceError> {
        Self::start_with(RedisOptions::default()).await
    }

    /// Starts a Redis with `options` on a free port.
    pub async fn start_with(options: RedisOptions) -> Result<Self, ServiceError> {
        let dir = super::state_dir().join("dedicated").join(format!("redis-{}", unique_suffix()));
        blocking(move || {
            create_dir(&dir)?;
            let (port, server) = start_redis_on_free_port(&dir, &options)?;
            Ok(Self { port, dir, options, server: Some(server) })
        })
        .await
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` for a TLS server); stays valid across restarts.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.server.as_mut().is_some_and(ServerProcess::is_running)
    }

    /// Graceful shutdown (SIGTERM: Redis flushes its append-only file, when enabled, and exits).
    pub async fn stop(&mut self) -> Result<(), ServiceError> {
        match self.server.take() {
            Some(server) => blocking(move || server.terminate(STOP_GRACE)).await,
            None => Ok(()),
        }
    }

    /// Crash (SIGKILL): whatever was not yet in the append-only file is lost.
    pub async fn kill(&mut self) -> Result<(), ServiceError> {
        match self.server.take() {
            Some(server) => {
                blocking(move || {
                    server.kill();
                    Ok(())
                })
                .await
            }
            None => Ok(()),
        }
    }

    /// Starts the server again on the same port with the same files (stops it first if it is running).
    pub async fn restart(&mut self) -> Result<(), ServiceError> {
        self.stop().await?;
        let (dir, port, options) = (self.dir.clone(), self.port, self.options.clone());
        let server = blocking(move || start_redis(&dir, port, &options)).await?;
        self.server = Some(server);
        Ok(())
    }
}

impl Drop for DedicatedRedis {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
