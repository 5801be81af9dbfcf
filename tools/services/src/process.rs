//! Process plumbing shared by the launchers: free ports, readiness waits, signals, liveness checks and finding
//! the server binaries.

use super::ServiceError;
use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to accept TCP connections after it was started.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness and exit are polled.
const POLL: Duration = Duration::from_millis(10);

/// A port that was free a moment ago. Another process may take it before the server binds it, so callers retry
/// start-up on a fresh port when the server fails to bind.
pub fn free_port() -> Result<u16, ServiceError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(ServiceError::FreePort)?;
    let port = listener.local_addr().map_err(ServiceError::FreePort)?.port();
    Ok(port)
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub(crate) fn accepts_tcp(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Whether `pid` is a live process (a zombie counts as dead: it no longer serves anything).
pub(crate) fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself contain spaces or parentheses.
    let state = stat.rfind(')').and_then(|end| stat[end + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

/// The command name of `pid`, used to make sure a recorded pid still belongs to the server before signalling it.
pub(crate) fn process_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|name| name.trim().to_owned())
}

/// Sends `signal` (for example `TERM` or `KILL`) to `pid` with the `kill` utility (the crate forbids `unsafe`).
pub(crate) fn send_signal(pid: u32, signal: &str) -> Result<(), ServiceError> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|source| ServiceError::Spawn { program: "kill".into(), source })?;
    // A process that is already gone is what the caller wanted.
    if status.success() || !process_alive(pid) { Ok(()) } else { Err(ServiceError::Signal { pid }) }
}

/// Waits until `pid` has exited; false on time-out.
pub(crate) fn wait_exit(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while process_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
    true
}

/// Asks `pid` to stop with SIGTERM, then kills it if it is still there after `grace`.
pub(crate) fn terminate_pid(pid: u32, grace: Duration) -> Result<(), ServiceError> {
    send_signal(pid, "TERM")?;
    if !wait_exit(pid, grace) {
        send_signal(pid, "KILL")?;
        wait_exit(pid, grace);
    }
    Ok(())
}

/// Whether this process runs as root (PostgreSQL refuses to; its tools then run as the `postgres` user).
pub(crate) fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// Finds `program` on PATH or in `extra_dirs`, or says how to install it.
pub(crate) fn find_binary(program: &str, extra_dirs: &[PathBuf]) -> Result<PathBuf, ServiceError> {
    let path_dirs =
        std::env::var_os("PATH").map(|path| std::env::split_paths(&path).collect::<Vec<_>>()).unwrap_or_default();
    path_dirs
        .iter()
        .chain(extra_dirs)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| ServiceError::MissingBinary { program: program.to_owned() })
}

/// The last lines of a log file, for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(15);
    lines[start..].join("\n")
}

/// Opens `path` for appending, as a server's stdout and stderr.
pub(crate) fn open_log(path: &Path) -> Result<File, ServiceError> {
    OpenOptions::new().create(true).append(true).open(path).map_err(|source| ServiceError::Io {
        action: "open log file",
        path: path.to_owned(),
        source,
    })
}

/// A server running in the foreground as a child of this process.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl ServerProcess {
    /// Spawns `command` detached from this process's stdio and process group, so that a test runner that kills
    /// a test's process group or waits for its pipes to close is not held up by the server.
    pub(crate) fn spawn(mut command: Command, name: &'static str, log: &Path) -> Result<Self, ServiceError> {
        let out = open_log(log)?;
        let err = out.try_clone().map_err(|source| ServiceError::Io {
            action: "duplicate log handle",
            path: log.to_owned(),
            source,
        })?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|source| ServiceError::Spawn { program: name.into(), source })?;
        Ok(Self { child, name, log: log.to_owned() })
    }

    /// Waits until the server accepts TCP on `port`; fails at once if it exits (usually: port already taken).
    pub(crate) fn wait_ready(&mut self, port: u16) -> Result<(), ServiceError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(ServiceError::Exited {
                    name: self.name,
                    status: status.to_string(),
                    log_tail: log_tail(&self.log),
                });
            }
            if accepts_tcp(port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(ServiceError::NotReady { name: self.name, port, log_tail: log_tail(&self.log) });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Graceful stop: SIGTERM, then SIGKILL after `grace`. Reaps the child.
    pub(crate) fn terminate(mut self, grace: Duration) -> Result<(), ServiceError> {
        send_signal(self.child.id(), "TERM")?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
        self.kill();
        Ok(())
    }

    /// Crash: SIGKILL, no chance to flush anything. Reaps the child.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the child is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Leaves the server running after this handle is gone (the shared pool outlives the test that started it).
    pub(crate) fn detach(self) -> u32 {
        self.child.id()
    }
}

/// Runs a command to completion and fails with its output when it does not succeed.
pub(crate) fn run_checked(mut command: Command, what: &'static str) -> Result<String, ServiceError> {
    let output =
        command.stdin(Stdio::null()).output().map_err(|source| ServiceError::Spawn { program: what.into(), source })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(ServiceError::CommandFailed {
            what,
            status: output.status.to_string(),
            output: format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
        })
    }
}
