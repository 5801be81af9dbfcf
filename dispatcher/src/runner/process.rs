//! The local runner: one `flow-like-executor` process per attempt, started with exactly the environment a
//! Kubernetes Job would give it (the execution, the attempt, the tenant, Redis and S3 settings) and nothing
//! else: the process environment is cleared first, and the executor never gets PostgreSQL access.

use super::{Attempt, AttemptEnd, Runner, Started};
use flow_like_shared::status::exit_code;
use futures::future::BoxFuture;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// How long a cancelled executor gets between SIGTERM and SIGKILL (it reports within its own grace of 5 s).
const KILL_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct ProcessRunner {
    executor: PathBuf,
    /// `(name, value)` pairs every executor gets: Redis and S3 settings and credentials, log settings.
    env: Vec<(String, String)>,
}

impl ProcessRunner {
    pub fn new(executor: PathBuf, env: Vec<(String, String)>) -> Self {
        Self { executor, env }
    }

    /// The executor binary beside the running one (both are built and installed together).
    pub fn default_executor_path() -> PathBuf {
        let name = "flow-like-executor";
        std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join(name))).unwrap_or(name.into())
    }

    async fn run_process(
        &self,
        attempt: &Attempt,
        started: tokio::sync::oneshot::Sender<Started>,
        cancel: CancellationToken,
    ) -> AttemptEnd {
        let mut command = Command::new(&self.executor);
        command
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("EXECUTION_ID", attempt.execution_id.to_string())
            .env("EXECUTION_ATTEMPT", attempt.attempt.to_string())
            .env("EXECUTION_TENANT", &attempt.tenant)
            .envs(attempt.trace.map(|t| ("TRACEPARENT", t.traceparent())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(err) => {
                return AttemptEnd::Retry { reason: format!("starting {} failed: {err}", self.executor.display()) };
            }
        };
        let pid = child.id();
        let _ = started.send(Started { runner_ref: pid.map(|pid| format!("pid {pid}")) });
        let status = tokio::select! {
            status = child.wait() => status,
            () = cancel.cancelled() => {
                if let Some(pid) = pid {
                    terminate(pid).await;
                }
                match tokio::time::timeout(KILL_AFTER, child.wait()).await {
                    Ok(status) => status,
                    Err(_) => {
                        let _ = child.start_kill();
                        child.wait().await
                    }
                }
            }
        };
        match status {
            Err(err) => AttemptEnd::Retry { reason: format!("waiting for the executor failed: {err}") },
            Ok(status) => match status.code() {
                Some(code @ (exit_code::SUCCEEDED | exit_code::WORKFLOW_FAILED | exit_code::CANCELLED)) => {
                    AttemptEnd::Reported { exit_code: code }
                }
                Some(code) => AttemptEnd::Retry { reason: format!("the executor exited with code {code}") },
                None => AttemptEnd::Retry { reason: format!("the executor was killed ({status})") },
            },
        }
    }
}

/// Sends SIGTERM through `kill(1)` (the workspace forbids `unsafe`, so no direct libc call).
async fn terminate(pid: u32) {
    let sent = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
    if let Err(err) = sent {
        tracing::warn!(pid, cause = %err, "sending SIGTERM to the executor failed");
    }
}

impl Runner for ProcessRunner {
    fn name(&self) -> &'static str {
        "process"
    }

    fn run<'a>(
        &'a self,
        attempt: &'a Attempt,
        started: tokio::sync::oneshot::Sender<Started>,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, AttemptEnd> {
        Box::pin(self.run_process(attempt, started, cancel))
    }
}
