//! A runner that starts nothing: every attempt "succeeds" at once. It measures what the dispatcher itself
//! costs (admission, leases, status events, PostgreSQL state) without any executor.

use super::{Attempt, AttemptEnd, Runner, Started};
use flow_like_shared::status::FinishedOutcome;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default, Clone, Copy)]
pub struct NoopRunner;

impl Runner for NoopRunner {
    fn name(&self) -> &'static str {
        "noop"
    }

    fn needs_spec(&self) -> bool {
        false
    }

    fn run<'a>(
        &'a self,
        _attempt: &'a Attempt,
        started: tokio::sync::oneshot::Sender<Started>,
        _cancel: CancellationToken,
    ) -> BoxFuture<'a, AttemptEnd> {
        let _ = started.send(Started { runner_ref: None });
        Box::pin(std::future::ready(AttemptEnd::Concluded { outcome: FinishedOutcome::Succeeded, error: None }))
    }
}
