//! How an attempt's Job ended, decided from the Job's conditions and its pods' statuses, and what the
//! Kubernetes API's refusals mean for the attempt. Pure functions, so every case is unit-tested without a
//! cluster.
//!
//! | Seen | Attempt ends as |
//! |---|---|
//! | Job `Complete` | `Reported { 0 }`: the executor reported success itself |
//! | pod exit 3 (workflow failed) or 4 (cancelled); the pod failure policy fails the Job | `Reported { 3 / 4 }` |
//! | Job `Failed`, reason `DeadlineExceeded` | `Concluded { TimedOut }`: killed from outside, nobody reported |
//! | pod `OOMKilled` / exit 137, exit 1, any other exit | `Retry`, naming the cause |
//! | pod with condition `DisruptionTarget` or reason `Evicted` | `Retry`: the runner deletes the Job at once |
//! | pod that cannot start (image pull, missing Secret) for the start timeout | `Retry`: the runner deletes the Job |
//! | `403 Forbidden`, `422 Invalid`, `400`, `404` on create | `Fail`: retrying the same Job cannot help |
//! | 429 / 5xx / unreachable after the client's bounded retries | `Retry` |
//!
//! Evictions are not left to the Job controller's replacement pod (the pod failure policy ignores them so
//! they never count as failures): a replacement would run the same attempt a second time, and the attempt's
//! status events, numbered from 1 by each executor process, would collide with the first run's. Each pod run
//! is its own attempt instead.
//!
//! An image that cannot be pulled is retried rather than failed: the kubelet has kept retrying the pull for
//! the whole start timeout, so what is left is a registry outage, a node-local problem (disk, network) or a
//! wrong image; a new attempt lands on a fresh pod, possibly on another node, and a wrong image still fails
//! the execution after the dispatcher's last attempt, with this reason.

use super::manifest::CONTAINER_NAME;
use crate::runner::AttemptEnd;
use flow_like_shared::status::FinishedOutcome;
use flow_like_shared::status::exit_code;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;

/// Container waiting reasons that mean the pod cannot start until something changes outside it.
const START_FAILURES: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminated {
    pub exit_code: i32,
    pub reason: Option<String>,
    /// With `terminationMessagePolicy: FallbackToLogsOnError`, the tail of the executor's log on failure.
    pub message: Option<String>,
}

/// What the runner keeps of one pod of an attempt's Job: the parts of its status that explain an ending.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodState {
    pub name: String,
    /// When the runner first saw the pod, in its own order: a Job's later pods replace earlier ones.
    pub seen_order: u64,
    pub phase: String,
    /// `status.reason` (`Evicted`, `DeadlineExceeded`) and `status.message`.
    pub reason: Option<String>,
    pub message: Option<String>,
    /// Reason and message of a true `DisruptionTarget` condition (eviction, preemption, node shutdown).
    pub disruption: Option<String>,
    /// The executor container's waiting reason and message.
    pub waiting: Option<(String, String)>,
    pub terminated: Option<Terminated>,
    /// The pod is gone from the API (its last known state is kept).
    pub deleted: bool,
}

impl PodState {
    pub fn from_pod(pod: &Pod, seen_order: u64) -> Self {
        let status = pod.status.as_ref();
        let container = status
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|all| all.iter().find(|c| c.name == CONTAINER_NAME).or_else(|| all.first()));
        let state = container.and_then(|c| c.state.as_ref());
        let disruption = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|conditions| conditions.iter().find(|c| c.type_ == "DisruptionTarget" && c.status == "True"))
            .map(|c| join(c.reason.as_deref(), c.message.as_deref()));
        Self {
            name: pod.metadata.name.clone().unwrap_or_default(),
            seen_order,
            phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
            reason: status.and_then(|s| s.reason.clone()),
            message: status.and_then(|s| s.message.clone()),
            disruption,
            waiting: state
                .and_then(|s| s.waiting.as_ref())
                .map(|w| (w.reason.clone().unwrap_or_default(), w.message.clone().unwrap_or_default())),
            terminated: state.and_then(|s| s.terminated.as_ref()).map(|t| Terminated {
                exit_code: t.exit_code,
                reason: t.reason.clone(),
                message: t.message.clone(),
            }),
            deleted: false,
        }
    }

    fn evicted(&self) -> bool {
        self.disruption.is_some() || self.reason.as_deref() == Some("Evicted")
    }
}

/// Where a Job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Running,
    Complete,
    Failed { reason: String, message: String },
}

/// The Job's terminal condition, if it has one (`Complete` or `Failed` with status True).
pub fn job_state(job: &Job) -> JobState {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    for condition in conditions.iter().filter(|c| c.status == "True") {
        match condition.type_.as_str() {
            "Complete" => return JobState::Complete,
            "Failed" => {
                return JobState::Failed {
                    reason: condition.reason.clone().unwrap_or_default(),
                    message: condition.message.clone().unwrap_or_default(),
                };
            }
            _ => {}
        }
    }
    JobState::Running
}

/// The most recent pod (the one the Job's ending is about).
pub fn latest<'a>(pods: impl IntoIterator<Item = &'a PodState>) -> Option<&'a PodState> {
    pods.into_iter().max_by_key(|p| p.seen_order)
}

/// Whether the pods say enough to explain a failed Job: the latest one has ended or was evicted.
pub fn pods_explain_failure<'a>(pods: impl IntoIterator<Item = &'a PodState>) -> bool {
    latest(pods).is_some_and(|p| p.terminated.is_some() || p.evicted())
}

/// How the attempt ended, once its Job has a terminal condition (`None` while it runs).
pub fn finished<'a>(job: &Job, pods: impl IntoIterator<Item = &'a PodState> + Clone) -> Option<AttemptEnd> {
    match job_state(job) {
        JobState::Running => None,
        JobState::Complete => Some(AttemptEnd::Reported { exit_code: 0 }),
        JobState::Failed { reason, message } if reason == "DeadlineExceeded" => {
            let deadline = job.spec.as_ref().and_then(|s| s.active_deadline_seconds);
            let error = match deadline {
                Some(secs) => format!("the Job ran past its deadline (activeDeadlineSeconds {secs}) and was stopped"),
                None => format!("the Job ran past its deadline and was stopped: {message}"),
            };
            Some(AttemptEnd::Concluded { outcome: FinishedOutcome::TimedOut, error: Some(error) })
        }
        JobState::Failed { reason, message } => {
            // The pod failure policy fails the Job on the executor's own verdicts: it has reported them.
            let verdict = pods
                .clone()
                .into_iter()
                .filter_map(|p| p.terminated.as_ref())
                .map(|t| t.exit_code)
                .find(|c| is_verdict(*c))
                .or_else(|| {
                    (reason == "PodFailurePolicy").then(|| exit_code_in(&message)).flatten().filter(|c| is_verdict(*c))
                });
            if let Some(exit_code) = verdict {
                return Some(AttemptEnd::Reported { exit_code });
            }
            let cause =
                latest(pods).map(|pod| pod_cause(pod, job)).unwrap_or_else(|| join(Some(&reason), Some(&message)));
            Some(AttemptEnd::Retry { reason: format!("the Job failed ({reason}): {cause}") })
        }
    }
}

/// A pod of the Job was evicted (or otherwise disrupted): the attempt is over, as a retry.
pub fn eviction<'a>(pods: impl IntoIterator<Item = &'a PodState>) -> Option<AttemptEnd> {
    let pod = pods.into_iter().filter(|p| p.evicted()).max_by_key(|p| p.seen_order)?;
    Some(AttemptEnd::Retry { reason: evicted_cause(pod) })
}

/// The latest pod cannot start (image pull failure, missing Secret): what it is waiting on, while it waits.
pub fn start_failure<'a>(pods: impl IntoIterator<Item = &'a PodState>) -> Option<String> {
    let pod = latest(pods).filter(|p| !p.deleted && p.terminated.is_none())?;
    let (reason, message) = pod.waiting.as_ref().filter(|(reason, _)| START_FAILURES.contains(&reason.as_str()))?;
    let what = if reason.contains("Image") {
        "the executor image cannot be pulled"
    } else {
        "the executor container cannot be created"
    };
    Some(format!("{what} (pod {}: {})", pod.name, join(Some(reason), Some(message))))
}

/// The latest pod ended with one of the executor's reported verdicts (0 succeeded, 3 failed, 4 cancelled).
pub fn reported_exit<'a>(pods: impl IntoIterator<Item = &'a PodState>) -> Option<i32> {
    latest(pods).and_then(|p| p.terminated.as_ref()).map(|t| t.exit_code).filter(|c| *c == 0 || is_verdict(*c))
}

fn is_verdict(code: i32) -> bool {
    code == exit_code::WORKFLOW_FAILED || code == exit_code::CANCELLED
}

/// Why a pod ended, in words, with the executor's last log line when Kubernetes kept it.
fn pod_cause(pod: &PodState, job: &Job) -> String {
    if pod.evicted() {
        return evicted_cause(pod);
    }
    let Some(terminated) = &pod.terminated else {
        return match &pod.waiting {
            Some((reason, message)) => format!("pod {} never started: {}", pod.name, join(Some(reason), Some(message))),
            None => format!("pod {} ended without a recorded exit ({})", pod.name, pod.phase),
        };
    };
    let code = terminated.exit_code;
    let mut cause = if terminated.reason.as_deref() == Some("OOMKilled") {
        match memory_limit(job) {
            Some(limit) => {
                format!("the executor ran out of memory (OOMKilled, exit code {code}, memory limit {limit})")
            }
            None => format!("the executor ran out of memory (OOMKilled, exit code {code})"),
        }
    } else if code == 137 {
        "the executor was killed (exit code 137, SIGKILL: likely out of memory)".to_owned()
    } else if code == 1 {
        "the executor exited with code 1 (infrastructure failure)".to_owned()
    } else {
        format!("the executor exited with code {code}")
    };
    if let Some(line) = terminated.message.as_deref().and_then(last_line) {
        cause.push_str(": ");
        cause.push_str(&line);
    }
    format!("pod {}: {cause}", pod.name)
}

fn evicted_cause(pod: &PodState) -> String {
    let detail = pod
        .disruption
        .clone()
        .or_else(|| pod.message.clone())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "Evicted".to_owned());
    format!("pod {} was evicted ({detail})", pod.name)
}

fn memory_limit(job: &Job) -> Option<String> {
    let pod = job.spec.as_ref()?.template.spec.as_ref()?;
    let container = pod.containers.iter().find(|c| c.name == CONTAINER_NAME)?;
    Some(container.resources.as_ref()?.limits.as_ref()?.get("memory")?.0.clone())
}

/// The last non-empty line of a termination message, at most 300 characters.
fn last_line(message: &str) -> Option<String> {
    let line = message.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    Some(line.chars().take(300).collect())
}

/// "exit code N" in a Job condition message ("... failed with exit code 3 matching FailJob rule at index 1").
fn exit_code_in(message: &str) -> Option<i32> {
    let rest = &message[message.find("exit code ")? + "exit code ".len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn join(reason: Option<&str>, message: Option<&str>) -> String {
    match (reason.filter(|r| !r.is_empty()), message.filter(|m| !m.is_empty())) {
        (Some(r), Some(m)) => format!("{r}: {m}"),
        (Some(r), None) => r.to_owned(),
        (None, Some(m)) => m.to_owned(),
        (None, None) => "no reason given".to_owned(),
    }
}

/// What a failed API call about `what` ("the Job") means for the attempt: `Fail` when the API refused the
/// request for good, `Retry` when it may work later (overload that outlasted the client's retries, the API
/// server unreachable).
pub fn api_failure(what: &str, err: &kube::Error) -> AttemptEnd {
    match err {
        kube::Error::Api(status) => {
            let cause = match status.code {
                403 => Some("forbidden"),
                422 => Some("invalid"),
                400 => Some("bad request"),
                404 => Some("not found"),
                _ => None,
            };
            match cause {
                Some(cause) => {
                    AttemptEnd::Fail { reason: format!("Kubernetes refused {what}: {cause}: {}", status.message) }
                }
                None => AttemptEnd::Retry {
                    reason: format!(
                        "Kubernetes did not accept {what} ({} {}, also after retries): {}",
                        status.code, status.reason, status.message
                    ),
                },
            }
        }
        other => AttemptEnd::Retry { reason: format!("the Kubernetes API could not be reached for {what}: {other}") },
    }
}

/// How an attempt ended, as one of a fixed set of causes: the `cause` label of
/// `flowlike_dispatcher_kube_job_outcomes_total`. Read from the ending this module decided (the retry reasons
/// are the sentences built above, so the two stay side by side).
pub fn cause(end: &AttemptEnd) -> &'static str {
    match end {
        AttemptEnd::Reported { exit_code: 0 } => "succeeded",
        AttemptEnd::Reported { exit_code: exit_code::WORKFLOW_FAILED } => "workflow_failed",
        AttemptEnd::Reported { exit_code: exit_code::CANCELLED } => "cancelled",
        AttemptEnd::Reported { .. } => "exit_other",
        AttemptEnd::Concluded { outcome: FinishedOutcome::TimedOut, .. } => "deadline_exceeded",
        AttemptEnd::Concluded { outcome: FinishedOutcome::Cancelled, .. } => "cancelled",
        AttemptEnd::Concluded { .. } => "concluded_other",
        AttemptEnd::Fail { .. } => "refused_by_api",
        AttemptEnd::Retry { reason } => retry_cause(reason),
    }
}

fn retry_cause(reason: &str) -> &'static str {
    const CAUSES: &[(&str, &str)] = &[
        (" was evicted (", "evicted"),
        ("(OOMKilled", "oom_killed"),
        ("(exit code 137, SIGKILL", "killed"),
        ("exited with code 1 (infrastructure failure)", "executor_exit_1"),
        ("the executor exited with code ", "executor_exit_other"),
        ("the executor image cannot be pulled", "image_pull"),
        ("the executor container cannot be created", "create_container"),
        (" never started: ", "never_started"),
        ("Job vanished: ", "job_deleted"),
        ("Kubernetes did not accept ", "api_unavailable"),
        ("the Kubernetes API could not be reached", "api_unavailable"),
        (" exists but is not this attempt's ", "name_conflict"),
    ];
    CAUSES.iter().find(|(needle, _)| reason.contains(needle)).map_or("other", |(_, cause)| cause)
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
