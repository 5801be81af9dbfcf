//! A runner for tests that starts no executor ([`ScriptedRunner`]): it plays a script per attempt and records what
//! it started and when.

use flow_like_dispatcher::runner::Runner;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What a [`ScriptedRunner`] does with one attempt.
#[derive(Debug, Clone)]
pub enum Script {
    /// Succeeds (reporting for the executor) after the delay.
    Succeed(Duration),
    /// Fails on infrastructure after the delay.
    InfraFailure(Duration),
}

/// A runner for tests that starts no executor: it plays a script per attempt and records what it started and
/// when, so tests can check ordering, fairness and concurrency without executor start-up noise.
pub struct ScriptedRunner {
    script: Box<dyn Fn(&flow_like_dispatcher::runner::Attempt) -> Script + Send + Sync>,
    pub started: std::sync::Mutex<Vec<(Uuid, u32, Instant)>>,
}

impl ScriptedRunner {
    pub fn new(script: impl Fn(&flow_like_dispatcher::runner::Attempt) -> Script + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self { script: Box::new(script), started: std::sync::Mutex::new(Vec::new()) })
    }

    /// Execution ids in the order their attempts started.
    pub fn start_order(&self) -> Vec<Uuid> {
        self.started.lock().unwrap().iter().map(|(id, _, _)| *id).collect()
    }
}

impl Runner for ScriptedRunner {
    fn name(&self) -> &'static str {
        "scripted"
    }

    fn needs_spec(&self) -> bool {
        false
    }

    fn run<'a>(
        &'a self,
        attempt: &'a flow_like_dispatcher::runner::Attempt,
        started: tokio::sync::oneshot::Sender<flow_like_dispatcher::runner::Started>,
        cancel: CancellationToken,
    ) -> futures::future::BoxFuture<'a, flow_like_dispatcher::runner::AttemptEnd> {
        use flow_like_dispatcher::runner::{AttemptEnd, Started};
        use flow_like_shared::status::FinishedOutcome;
        Box::pin(async move {
            self.started.lock().unwrap().push((attempt.execution_id, attempt.attempt, Instant::now()));
            let _ = started.send(Started { runner_ref: Some(format!("scripted {}", attempt.attempt)) });
            let script = (self.script)(attempt);
            let delay = match &script {
                Script::Succeed(d) | Script::InfraFailure(d) => *d,
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.cancelled() => {
                    return AttemptEnd::Concluded { outcome: FinishedOutcome::Cancelled, error: None };
                }
            }
            match script {
                Script::Succeed(_) => AttemptEnd::Concluded { outcome: FinishedOutcome::Succeeded, error: None },
                Script::InfraFailure(_) => AttemptEnd::Retry { reason: "scripted infrastructure failure".into() },
            }
        })
    }
}
