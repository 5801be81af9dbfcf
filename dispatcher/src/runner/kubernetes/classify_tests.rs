use super::*;
use serde_json::{Value, json};

fn job(conditions: Value) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": "fl-x-a1"},
        "spec": {
            "activeDeadlineSeconds": 90,
            "template": {"spec": {"containers": [{
                "name": "executor", "image": "img",
                "resources": {"limits": {"memory": "512Mi", "cpu": "1"}}
            }]}}
        },
        "status": {"conditions": conditions}
    }))
    .unwrap()
}

fn failed(reason: &str, message: &str) -> Job {
    job(json!([
        {"type": "FailureTarget", "status": "True", "reason": reason, "message": message},
        {"type": "Failed", "status": "True", "reason": reason, "message": message},
    ]))
}

fn running() -> Job {
    job(json!([]))
}

fn pod(order: u64, status: Value) -> PodState {
    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": format!("fl-x-a1-p{order}")}, "status": status})).unwrap();
    PodState::from_pod(&pod, order)
}

fn terminated(order: u64, exit_code: i32, reason: &str, message: Option<&str>) -> PodState {
    pod(
        order,
        json!({"phase": "Failed", "containerStatuses": [{
            "name": "executor", "ready": false, "restartCount": 0, "image": "img", "imageID": "",
            "state": {"terminated": {"exitCode": exit_code, "reason": reason, "message": message}}
        }]}),
    )
}

fn waiting(order: u64, reason: &str) -> PodState {
    pod(
        order,
        json!({"phase": "Pending", "containerStatuses": [{
            "name": "executor", "ready": false, "restartCount": 0, "image": "img", "imageID": "",
            "state": {"waiting": {"reason": reason, "message": "details"}}
        }]}),
    )
}

fn evicted(order: u64) -> PodState {
    pod(
        order,
        json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory.",
               "conditions": [{"type": "DisruptionTarget", "status": "True",
                               "reason": "TerminationByKubelet", "message": "node pressure"}]}),
    )
}

fn retry_reason(end: Option<AttemptEnd>) -> String {
    match end {
        Some(AttemptEnd::Retry { reason }) => reason,
        other => panic!("expected a retry, got {other:?}"),
    }
}

#[test]
fn job_state_reads_terminal_conditions_only() {
    assert_eq!(job_state(&running()), JobState::Running);
    let interim = job(json!([{"type": "FailureTarget", "status": "True", "reason": "PodFailurePolicy"}]));
    assert_eq!(job_state(&interim), JobState::Running);
    let not_yet = job(json!([{"type": "Complete", "status": "False"}]));
    assert_eq!(job_state(&not_yet), JobState::Running);
    assert_eq!(job_state(&job(json!([{"type": "Complete", "status": "True"}]))), JobState::Complete);
    assert_eq!(
        job_state(&failed("BackoffLimitExceeded", "Job has reached the specified backoff limit")),
        JobState::Failed {
            reason: "BackoffLimitExceeded".into(),
            message: "Job has reached the specified backoff limit".into()
        }
    );
}

#[test]
fn running_jobs_have_no_ending() {
    assert_eq!(finished(&running(), &[terminated(0, 1, "Error", None)]), None);
}

#[test]
fn complete_is_reported_success() {
    let complete = job(json!([{"type": "Complete", "status": "True", "reason": "CompletionsReached"}]));
    assert_eq!(finished(&complete, &[]), Some(AttemptEnd::Reported { exit_code: 0 }));
}

#[test]
fn executor_verdicts_are_reported() {
    let job = failed(
        "PodFailurePolicy",
        "Container executor for pod ns/p failed with exit code 3 matching FailJob rule at index 1",
    );
    assert_eq!(finished(&job, &[terminated(0, 3, "Error", None)]), Some(AttemptEnd::Reported { exit_code: 3 }));
    assert_eq!(finished(&job, &[terminated(0, 4, "Error", None)]), Some(AttemptEnd::Reported { exit_code: 4 }));
    // Without pod information the condition message names the exit code.
    assert_eq!(finished(&job, &[]), Some(AttemptEnd::Reported { exit_code: 3 }));
}

#[test]
fn deadline_is_a_timeout_concluded_by_the_runner() {
    let job = failed("DeadlineExceeded", "Job was active longer than specified deadline");
    match finished(&job, &[terminated(0, 137, "Error", None)]) {
        Some(AttemptEnd::Concluded { outcome: FinishedOutcome::TimedOut, error: Some(error) }) => {
            assert!(error.contains("activeDeadlineSeconds 90"), "{error}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn oom_kill_is_retried_naming_the_memory_limit() {
    let job = failed("BackoffLimitExceeded", "Job has reached the specified backoff limit");
    let reason = retry_reason(finished(&job, &[terminated(0, 137, "OOMKilled", None)]));
    assert!(reason.contains("OOMKilled") && reason.contains("512Mi"), "{reason}");
    assert!(reason.contains("BackoffLimitExceeded"), "{reason}");
    let reason = retry_reason(finished(&job, &[terminated(0, 137, "Error", None)]));
    assert!(reason.contains("exit code 137") && reason.contains("SIGKILL"), "{reason}");
}

#[test]
fn infrastructure_exit_is_retried_with_the_last_log_line() {
    let job = failed("BackoffLimitExceeded", "Job has reached the specified backoff limit");
    let log = "starting\nreading executions/x/spec.json failed: NoSuchKey\n\n";
    let reason = retry_reason(finished(&job, &[terminated(0, 1, "Error", Some(log))]));
    assert!(reason.contains("code 1 (infrastructure failure)"), "{reason}");
    assert!(reason.contains("spec.json failed: NoSuchKey") && !reason.contains("starting"), "{reason}");
    let reason = retry_reason(finished(&job, &[terminated(0, 2, "Error", None)]));
    assert!(reason.contains("exited with code 2"), "{reason}");
}

#[test]
fn the_latest_pod_explains_the_failure() {
    let job = failed("BackoffLimitExceeded", "Job has reached the specified backoff limit");
    let pods = [terminated(7, 137, "OOMKilled", None), terminated(3, 1, "Error", None)];
    let reason = retry_reason(finished(&job, &pods));
    assert!(reason.contains("OOMKilled") && reason.contains("fl-x-a1-p7"), "{reason}");
}

#[test]
fn a_failed_job_without_pods_is_retried_with_its_condition() {
    let job = failed("BackoffLimitExceeded", "Job has reached the specified backoff limit");
    let reason = retry_reason(finished(&job, &[]));
    assert!(reason.contains("Job has reached the specified backoff limit"), "{reason}");
    assert!(!pods_explain_failure(&[]));
    assert!(!pods_explain_failure(&[waiting(0, "ContainerCreating")]));
    assert!(pods_explain_failure(&[terminated(0, 1, "Error", None)]));
    assert!(pods_explain_failure(&[evicted(0)]));
}

#[test]
fn evictions_are_retried() {
    assert_eq!(eviction(&[terminated(0, 1, "Error", None), waiting(1, "ContainerCreating")]), None);
    let reason = retry_reason(eviction(&[terminated(0, 1, "Error", None), evicted(1)]));
    assert!(reason.contains("evicted") && reason.contains("TerminationByKubelet: node pressure"), "{reason}");
    // A pod marked Evicted by an older kubelet, without the condition.
    let old = pod(2, json!({"phase": "Failed", "reason": "Evicted", "message": "low on ephemeral-storage"}));
    let reason = retry_reason(eviction(&[old]));
    assert!(reason.contains("low on ephemeral-storage"), "{reason}");
    // A job that failed with an evicted last pod says so too.
    let job = failed("BackoffLimitExceeded", "Job has reached the specified backoff limit");
    assert!(retry_reason(finished(&job, &[evicted(0)])).contains("evicted"));
}

#[test]
fn pods_that_cannot_start_are_named() {
    let why = start_failure(&[waiting(0, "ImagePullBackOff")]).unwrap();
    assert!(why.contains("image cannot be pulled") && why.contains("ImagePullBackOff: details"), "{why}");
    let why = start_failure(&[waiting(0, "CreateContainerConfigError")]).unwrap();
    assert!(why.contains("container cannot be created"), "{why}");
    assert_eq!(start_failure(&[waiting(0, "ContainerCreating")]), None);
    let mut gone = waiting(0, "ErrImagePull");
    gone.deleted = true;
    assert_eq!(start_failure(&[gone]), None);
    // Only the latest pod counts.
    assert_eq!(start_failure(&[waiting(0, "ErrImagePull"), terminated(1, 0, "Completed", None)]), None);
}

#[test]
fn reported_exit_is_a_verdict_of_the_latest_pod() {
    assert_eq!(reported_exit(&[terminated(0, 4, "Error", None)]), Some(4));
    assert_eq!(reported_exit(&[terminated(0, 0, "Completed", None)]), Some(0));
    assert_eq!(reported_exit(&[terminated(0, 137, "Error", None)]), None);
    assert_eq!(reported_exit(&[terminated(0, 4, "Error", None), waiting(1, "ContainerCreating")]), None);
    assert_eq!(reported_exit(&[]), None);
}

fn api_error(code: u16, reason: &str, message: &str) -> kube::Error {
    kube::Error::Api(kube::core::Status::failure(message, reason).with_code(code).boxed())
}

#[test]
fn refusals_fail_and_overload_retries() {
    let forbidden = api_error(403, "Forbidden", "jobs.batch is forbidden: User \"x\" cannot create resource \"jobs\"");
    match api_failure("the Job", &forbidden) {
        AttemptEnd::Fail { reason } => {
            assert!(reason.starts_with("Kubernetes refused the Job: forbidden: jobs.batch is forbidden"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let invalid = api_error(422, "Invalid", "Job.batch \"x\" is invalid: [spec.template.spec.nodeSelector: bad]");
    assert!(
        matches!(api_failure("the Job", &invalid), AttemptEnd::Fail { reason } if reason.contains("invalid: Job.batch"))
    );
    for code in [429, 500, 503] {
        let busy = api_error(code, "TooManyRequests", "try later");
        match api_failure("the Job", &busy) {
            AttemptEnd::Retry { reason } => assert!(reason.contains(&code.to_string()), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
    let unreachable = kube::Error::Service("connection refused".into());
    assert!(
        matches!(api_failure("the Job", &unreachable), AttemptEnd::Retry { reason } if reason.contains("could not be reached"))
    );
}

/// The runner reads pods off the wire as `SlimPod` (no spec): the state classification uses is the same as from
/// the full pod.
#[test]
fn a_slim_pod_gives_the_same_state_as_the_full_one() {
    let full: Pod = serde_json::from_value(json!({
        "metadata": {"name": "fl-x-a1-abcde", "labels": {"app.kubernetes.io/instance": "fl-x-a1"},
                     "annotations": {"a": "b"}},
        "spec": {"containers": [{"name": "executor", "image": "img", "env": [{"name": "A", "value": "1"}]}]},
        "status": {
            "phase": "Failed", "reason": "Evicted", "message": "node pressure",
            "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}],
            "containerStatuses": [{
                "name": "executor", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
            }]
        }
    }))
    .unwrap();
    let slim: crate::runner::kubernetes::slim::SlimPod =
        serde_json::from_slice(&serde_json::to_vec(&full).unwrap()).unwrap();
    assert_eq!(slim.0.spec, None);
    assert_eq!(slim.0.metadata.labels, full.metadata.labels);
    let state = PodState::from_pod(&full, 7);
    assert_eq!(PodState::from_pod(&slim.0, 7), state);
    assert_eq!(state.terminated.as_ref().map(|t| t.exit_code), Some(137));
    assert!(state.disruption.is_some(), "{state:?}");
}

/// Every ending this module decides maps to its own cause label (and an unknown sentence to `other`).
#[test]
fn endings_have_bounded_causes() {
    let backoff = failed("BackoffLimitExceeded", "Job has reached the specified backoff limit");
    let cases = [
        (finished(&job(json!([{"type": "Complete", "status": "True"}])), &[]), "succeeded"),
        (finished(&backoff, &[terminated(0, 3, "Error", None)]), "workflow_failed"),
        (finished(&backoff, &[terminated(0, 4, "Error", None)]), "cancelled"),
        (finished(&failed("DeadlineExceeded", "too long"), &[]), "deadline_exceeded"),
        (finished(&backoff, &[terminated(0, 137, "OOMKilled", None)]), "oom_killed"),
        (finished(&backoff, &[terminated(0, 137, "Error", None)]), "killed"),
        (finished(&backoff, &[terminated(0, 1, "Error", Some("boom"))]), "executor_exit_1"),
        (finished(&backoff, &[terminated(0, 2, "Error", None)]), "executor_exit_other"),
        (finished(&backoff, &[waiting(0, "ErrImagePull")]), "never_started"),
        (eviction(&[evicted(0)]), "evicted"),
        (finished(&backoff, &[evicted(0)]), "evicted"),
    ];
    for (end, expected) in cases {
        let end = end.expect("an ending");
        assert_eq!(cause(&end), expected, "{end:?}");
    }
    let stuck = start_failure(&[waiting(0, "ImagePullBackOff")]).unwrap();
    assert_eq!(cause(&AttemptEnd::Retry { reason: format!("{stuck} for 300 s; the Job was deleted") }), "image_pull");
    let stuck = start_failure(&[waiting(0, "CreateContainerConfigError")]).unwrap();
    assert_eq!(cause(&AttemptEnd::Retry { reason: stuck }), "create_container");
    assert_eq!(cause(&api_failure("the Job", &api_error(403, "Forbidden", "no"))), "refused_by_api");
    assert_eq!(cause(&api_failure("the Job", &api_error(503, "ServiceUnavailable", "busy"))), "api_unavailable");
    let unreachable = kube::Error::Service("connection refused".into());
    assert_eq!(cause(&api_failure("the Job", &unreachable)), "api_unavailable");
    assert_eq!(cause(&AttemptEnd::Retry { reason: "something new".into() }), "other");
}
