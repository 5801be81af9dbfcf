//! Following one attempt's Job to its end through the runner's shared watchers: the Job's conditions, its pods'
//! evictions and start failures (deleted after `EXECUTOR_START_TIMEOUT_SECS`), a Job the watcher never reports,
//! and cancellation (delete the Job, then give the executor its grace to report).

use super::KubeRunner;
use crate::runner::AttemptEnd;
use crate::runner::kubernetes::classify::{self, JobState};
use crate::runner::kubernetes::watch::Subscription;
use flow_like_shared::status::FinishedOutcome;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

impl KubeRunner {
    /// Waits for the attempt's Job to end, acting on what its pods show on the way.
    pub(super) async fn follow(
        &self,
        name: &str,
        subscription: &mut Subscription,
        cancel: &CancellationToken,
    ) -> AttemptEnd {
        let mut pods_listed = false;
        let mut stuck_since: Option<Instant> = None;
        let mut next_unseen_check = Instant::now() + self.tuning.unseen_check;
        loop {
            let view = subscription.view();
            if let Some(job) = &view.job {
                match classify::job_state(job) {
                    JobState::Running if view.deleted => return AttemptEnd::Retry { reason: vanished(name) },
                    JobState::Running => {}
                    JobState::Failed { .. } if !pods_listed && !classify::pods_explain_failure(view.pods.values()) => {
                        // The pod watch may lag the Job's: read the pods once before deciding.
                        pods_listed = true;
                        Box::pin(self.list_pods(name)).await;
                        continue;
                    }
                    JobState::Complete | JobState::Failed { .. } => {
                        if let Some(end) = classify::finished(job, view.pods.values()) {
                            return end;
                        }
                    }
                }
            }
            if let Some(end) = classify::eviction(view.pods.values()) {
                // The Job controller would start a replacement pod for the same attempt: stop it.
                Box::pin(self.delete_quietly(name)).await;
                return end;
            }
            let stuck = classify::start_failure(view.pods.values());
            stuck_since = match (&stuck, stuck_since) {
                (Some(_), None) => Some(Instant::now()),
                (Some(_), since) => since,
                (None, _) => None,
            };
            if let (Some(why), Some(since)) = (&stuck, stuck_since)
                && since.elapsed() >= self.start_timeout
            {
                Box::pin(self.delete_quietly(name)).await;
                let secs = self.start_timeout.as_secs();
                return AttemptEnd::Retry { reason: format!("{why} for {secs} s; the Job was deleted") };
            }

            let wake =
                [(!view.watched).then_some(next_unseen_check), stuck_since.map(|since| since + self.start_timeout)]
                    .into_iter()
                    .flatten()
                    .min();
            tokio::select! {
                () = cancel.cancelled() => return Box::pin(self.cancel(name, subscription)).await,
                () = subscription.changed() => {}
                () = sleep_until(wake) => {
                    if !view.watched && Instant::now() >= next_unseen_check {
                        next_unseen_check = Instant::now() + self.tuning.unseen_check;
                        match Box::pin(self.jobs.get_opt(name)).await {
                            Ok(Some(job)) => self.tracker.offer_job(name, job),
                            Ok(None) => return AttemptEnd::Retry { reason: vanished(name) },
                            Err(err) => tracing::warn!(job = name, cause = %err, "reading an unwatched Job failed"),
                        }
                    }
                }
            }
        }
    }

    /// The attempt is cancelled: delete its Job unless it has ended, then give the executor its grace to
    /// report the cancellation itself.
    async fn cancel(&self, name: &str, subscription: &mut Subscription) -> AttemptEnd {
        let view = subscription.view();
        if let Some(end) = view.job.as_ref().and_then(|job| classify::finished(job, view.pods.values())) {
            return end;
        }
        if !view.deleted
            && let Err(err) = self.delete_job(name).await
        {
            tracing::warn!(job = name, cause = %err, "deleting a cancelled attempt's Job failed");
            return cancelled(Some(format!("the Job {name} could not be deleted ({err}); the sweep will retry")));
        }
        let deadline = Instant::now() + self.tuning.cancel_grace;
        loop {
            let view = subscription.view();
            if let Some(exit_code) = classify::reported_exit(view.pods.values()) {
                return AttemptEnd::Reported { exit_code };
            }
            if view.pods.values().all(|p| p.deleted || p.terminated.is_some()) {
                return cancelled(None);
            }
            tokio::select! {
                () = subscription.changed() => {}
                () = tokio::time::sleep_until(deadline) => return cancelled(None),
            }
        }
    }
}

pub(super) fn cancelled(error: Option<String>) -> AttemptEnd {
    AttemptEnd::Concluded { outcome: FinishedOutcome::Cancelled, error }
}

pub(super) fn vanished(name: &str) -> String {
    format!("Job vanished: {name} was deleted before it finished")
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
