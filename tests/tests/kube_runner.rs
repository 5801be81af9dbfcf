//! The Kubernetes runner (`KubeRunner`) driven directly against the Kubernetes API simulator, whose kubelet runs
//! the real `flow-like-executor` binary against real Redis and S3: how every kind of ending is classified,
//! adoption of existing Jobs, API faults (429 storms, 500s, 403, 422), cancellation, watches surviving 410,
//! the rate limit, the sweep, and that the documented RBAC Role is exactly what the runner uses.
//!
//! The executor binary is found beside the test binary (`target/debug/flow-like-executor`); build it first
//! with `cargo build -p flow-like-executor`.

use aws_sdk_s3::primitives::ByteStream;
use flow_like_dispatcher::config::KubernetesConfig;
use flow_like_dispatcher::runner::kubernetes::client::RetryPolicy;
use flow_like_dispatcher::runner::kubernetes::manifest::{
    LABEL_ATTEMPT, LABEL_COMPONENT, LABEL_EXECUTION, LABEL_MANAGED_BY, LABEL_TENANT, LABEL_WORKFLOW,
};
use flow_like_dispatcher::runner::kubernetes::{
    ExecutorEnv, JobSettings, JobSpecInput, KubeRunner, RunnerTuning, job_manifest, job_name,
};
use flow_like_dispatcher::runner::{Attempt, AttemptEnd, Runner, Started};
use flow_like_kube_sim::{Access, Fault, KubeSim, KubeSimOptions, KubeletOptions};
use flow_like_shared::config::{LogFormat, TelemetryConfig};
use flow_like_shared::spec::AttemptSpec;
use flow_like_shared::status::{AttemptManifest, FinishedOutcome};
use flow_like_shared::storage::layout;
use flow_like_test_services::{S3Settings, TestServices, redis_config};
use flow_like_tests::fixtures::wait_until;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const TENANT: &str = "acme";
const NAMESPACE: &str = "default";

fn executor_binary() -> PathBuf {
    // The test binary is target/debug/deps/kube_runner-<hash>; the executor is target/debug/flow-like-executor.
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(|deps| deps.parent()).unwrap().join("flow-like-executor");
    assert!(path.exists(), "{} is missing: run `cargo build -p flow-like-executor` first", path.display());
    path
}

/// One test's world: a simulator, its own Redis prefix and buckets, the executor Secret in the simulator.
struct Fixture {
    sim: KubeSim,
    s3: S3Settings,
    env: ExecutorEnv,
}

enum Kubelet {
    /// Pods run the real executor.
    Executor,
    /// Pods run `sh -c <script>`.
    Script(&'static str),
    /// Jobs are stored, never run.
    None,
}

impl Fixture {
    async fn start(kubelet: Kubelet) -> Self {
        let services = TestServices::get().await.unwrap();
        let s3 = services.fresh_buckets().await.unwrap();
        let redis = redis_config(&services.redis_url(), &services.fresh_prefix());
        let kubelet = match kubelet {
            Kubelet::Executor => Some(KubeletOptions::executor(executor_binary())),
            Kubelet::Script(script) => Some(KubeletOptions::new(["sh", "-c", script])),
            Kubelet::None => None,
        };
        let sim = KubeSim::start(KubeSimOptions { kubelet, ..KubeSimOptions::default() }).await.unwrap();
        sim.create_secret(
            NAMESPACE,
            "flow-like-executor",
            &[
                ("REDIS_URL", redis.url.as_str()),
                ("S3_ACCESS_KEY_ID", s3.access_key_id.as_str()),
                ("S3_SECRET_ACCESS_KEY", s3.secret_access_key.as_str()),
            ],
        );
        let telemetry = TelemetryConfig { log_filter: "info".into(), log_format: LogFormat::Text };
        let env = ExecutorEnv::from_configs(&redis, &s3.to_config(), &telemetry);
        Self { sim, s3, env }
    }

    fn config(&self) -> KubernetesConfig {
        KubernetesConfig {
            qps: 500.0,
            burst: 500,
            image: "ghcr.io/flow-like/flow-like-executor:test".into(),
            service_account: "flow-like-executor".into(),
            ..KubernetesConfig::from_env().unwrap()
        }
    }

    fn tuning() -> RunnerTuning {
        RunnerTuning {
            retry: RetryPolicy {
                max_retries: 8,
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(500),
                max_elapsed: Duration::from_secs(20),
            },
            cancel_grace: Duration::from_secs(5),
            unseen_check: Duration::from_secs(2),
            ..RunnerTuning::default()
        }
    }

    /// A ready runner (its watchers have listed) with the test settings, adjusted.
    async fn runner_with(
        &self,
        adjust: impl FnOnce(&mut KubernetesConfig),
        tune: impl FnOnce(&mut RunnerTuning),
    ) -> KubeRunner {
        let mut config = self.config();
        adjust(&mut config);
        let mut tuning = Self::tuning();
        tune(&mut tuning);
        let client = self.sim.client_with(|c| c.default_retry = false);
        let runner = KubeRunner::with_tuning(&config, self.env.clone(), client, tuning).unwrap();
        tokio::time::timeout(Duration::from_secs(10), runner.ready())
            .await
            .expect("the runner's watchers never listed");
        // The watch requests follow the lists: let them connect, so injected request faults hit the test's own
        // requests only.
        tokio::time::sleep(Duration::from_millis(300)).await;
        runner
    }

    async fn runner(&self) -> KubeRunner {
        self.runner_with(|_| {}, |_| {}).await
    }

    /// Writes the execution's spec to the meta bucket, as the dispatcher does before it starts an attempt.
    async fn put_spec(&self, execution: Uuid, workflow: Value) {
        let spec = AttemptSpec {
            execution_id: execution,
            tenant: TENANT.into(),
            workflow_name: "report".into(),
            workflow,
            input: Some(json!({"n": 21})),
            input_key: None,
        };
        self.s3
            .client()
            .put_object()
            .bucket(&self.s3.meta_bucket)
            .key(layout::spec(execution))
            .body(ByteStream::from(serde_json::to_vec(&spec).unwrap()))
            .send()
            .await
            .unwrap();
    }

    /// A new execution whose spec runs `workflow`, and its first attempt.
    async fn execution(&self, workflow: Value) -> Attempt {
        let attempt = attempt(Uuid::now_v7(), 1);
        self.put_spec(attempt.execution_id, workflow).await;
        attempt
    }

    async fn manifest(&self, attempt: &Attempt) -> Option<AttemptManifest> {
        let key = layout::manifest(attempt.execution_id, attempt.attempt);
        let object = self.s3.client().get_object().bucket(&self.s3.content_bucket).key(key).send().await.ok()?;
        Some(serde_json::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap())
    }

    /// The Job the runner would create for `attempt` of `execution_id` (tenant `acme`, workflow `report`).
    fn job_manifest(&self, execution_id: Uuid, attempt: u32) -> Job {
        let settings = JobSettings::from_config(&self.config(), self.env.clone()).unwrap();
        let input = JobSpecInput {
            execution_id,
            attempt,
            tenant: TENANT.into(),
            workflow: "report".into(),
            deadline_ms: None,
            resources: None,
            traceparent: None,
        };
        job_manifest(&input, &settings).unwrap()
    }

    fn jobs_api(&self) -> Api<Job> {
        Api::namespaced(self.sim.client(), NAMESPACE)
    }

    fn job(&self, name: &str) -> Option<Job> {
        self.sim.jobs().into_iter().find(|j| j.metadata.name.as_deref() == Some(name))
    }

    fn pods_of(&self, job: &str) -> Vec<Pod> {
        let prefix = format!("{job}-");
        self.sim
            .pods()
            .into_iter()
            .filter(|p| p.metadata.name.as_ref().is_some_and(|n| n.starts_with(&prefix)))
            .collect()
    }

    /// Waits for a pod of `job` to be Running and returns its name.
    async fn running_pod(&self, job: &str) -> String {
        let start = Instant::now();
        loop {
            let running = self
                .pods_of(job)
                .into_iter()
                .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
            if let Some(pod) = running {
                return pod.metadata.name.unwrap();
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no pod of {job} started running");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn attempt(execution_id: Uuid, number: u32) -> Attempt {
    Attempt {
        execution_id,
        attempt: number,
        tenant: TENANT.into(),
        workflow: "report".into(),
        deadline_ms: None,
        resources: None,
        takeover: false,
        trace: None,
    }
}

fn transform_workflow() -> Value {
    json!({"nodes": {"double": {"type": "transform", "params": {"expr": ".input.n * 2"}}}, "output": "double"})
}

fn sleep_workflow(ms: u64) -> Value {
    json!({"nodes": {"wait": {"type": "sleep", "params": {"ms": ms}}}})
}

/// Runs one attempt to its end (at most 60 s) and returns how it ended and what `started` said.
async fn run(runner: &KubeRunner, attempt: &Attempt, cancel: CancellationToken) -> (AttemptEnd, Option<Started>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let end = tokio::time::timeout(Duration::from_secs(60), runner.run(attempt, tx, cancel))
        .await
        .expect("the attempt did not end within 60 s");
    (end, rx.await.ok())
}

/// The sum of the runner's `flowlike_dispatcher_kube_{family}` samples whose labels contain each of `labels`,
/// as the dispatcher's `/metrics` would show them.
fn kube_metric(runner: &KubeRunner, family: &str, labels: &[&str]) -> f64 {
    let text = flow_like_dispatcher::health::Metrics::new(runner).encode();
    flow_like_tests::inspect::metric_total(&text, &format!("flowlike_dispatcher_kube_{family}"), labels)
}

fn retry_reason(end: &AttemptEnd) -> &str {
    match end {
        AttemptEnd::Retry { reason } => reason,
        other => panic!("expected a retry, got {other:?}"),
    }
}

fn fail_reason(end: &AttemptEnd) -> &str {
    match end {
        AttemptEnd::Fail { reason } => reason,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn success_is_reported_by_the_executor_and_the_job_is_labelled() {
    let fx = Fixture::start(Kubelet::Executor).await;
    let runner = fx.runner().await;
    let attempt = fx.execution(transform_workflow()).await;
    let (end, started) = run(&runner, &attempt, CancellationToken::new()).await;
    assert_eq!(end, AttemptEnd::Reported { exit_code: 0 });
    let name = job_name(attempt.execution_id, 1);
    assert_eq!(started.and_then(|s| s.runner_ref), Some(name.clone()));
    assert_eq!(fx.sim.job_creates_seen(), 1);

    let job = fx.job(&name).expect("the finished Job stays until its TTL");
    let labels = job.metadata.labels.unwrap();
    assert_eq!(labels[LABEL_EXECUTION], attempt.execution_id.to_string());
    assert_eq!(labels[LABEL_ATTEMPT], "1");
    assert_eq!(labels[LABEL_TENANT], TENANT);
    assert_eq!(labels[LABEL_WORKFLOW], "report");
    assert_eq!(labels[LABEL_MANAGED_BY], "flow-like-dispatcher");
    assert_eq!(labels[LABEL_COMPONENT], "executor");
    assert_eq!(job.spec.unwrap().ttl_seconds_after_finished, Some(600));
    let manifest = fx.manifest(&attempt).await.expect("the executor wrote its manifest");
    assert_eq!(manifest.outcome, FinishedOutcome::Succeeded);
    assert_eq!(fx.pods_of(&name).len(), 1);
    // What the dispatcher's /metrics shows for it.
    assert_eq!(kube_metric(&runner, "jobs_total", &["action=\"created\""]), 1.0);
    let create = ["verb=\"create\"", "resource=\"jobs\"", "code=\"201\""];
    assert_eq!(kube_metric(&runner, "requests_total", &create), 1.0);
    assert_eq!(kube_metric(&runner, "requests_total", &["verb=\"list\"", "code=\"200\""]), 2.0, "a list per watcher");
    assert!(kube_metric(&runner, "requests_total", &["verb=\"watch\"", "resource=\"pods\""]) >= 1.0);
    let created = ["verb=\"create\"", "resource=\"jobs\""];
    assert_eq!(kube_metric(&runner, "request_duration_seconds_count", &created), 1.0);
    assert_eq!(kube_metric(&runner, "job_outcomes_total", &["cause=\"succeeded\""]), 1.0);
    assert_eq!(kube_metric(&runner, "job_outcomes_total", &[]), 1.0);
}

#[tokio::test]
async fn executor_verdicts_and_infrastructure_exits_are_classified() {
    let fx = Fixture::start(Kubelet::Executor).await;
    let runner = fx.runner().await;

    // The workflow fails: the executor reports it and exits 3; the pod failure policy fails the Job.
    let failing = fx.execution(json!({"nodes": {"stop": {"type": "fail", "params": {"message": "no"}}}})).await;
    // No spec at all: the executor cannot start the run and exits 1, an infrastructure failure.
    let no_spec = attempt(Uuid::now_v7(), 1);
    let ((failed, _), (infra, _)) = tokio::join!(
        run(&runner, &failing, CancellationToken::new()),
        run(&runner, &no_spec, CancellationToken::new())
    );
    assert_eq!(failed, AttemptEnd::Reported { exit_code: 3 });
    assert_eq!(fx.manifest(&failing).await.map(|m| m.outcome), Some(FinishedOutcome::Failed));
    let reason = retry_reason(&infra);
    assert!(reason.contains("exited with code 1 (infrastructure failure)"), "{reason}");
    assert!(reason.contains("BackoffLimitExceeded"), "{reason}");
    assert_eq!(kube_metric(&runner, "job_outcomes_total", &["cause=\"workflow_failed\""]), 1.0);
    assert_eq!(kube_metric(&runner, "job_outcomes_total", &["cause=\"executor_exit_1\""]), 1.0);
}

#[tokio::test]
async fn an_existing_job_is_adopted_not_created_again() {
    let fx = Fixture::start(Kubelet::Executor).await;
    let runner = fx.runner().await;
    let mut attempt = fx.execution(sleep_workflow(500)).await;
    attempt.takeover = true;
    // A dispatcher created the Job, then stopped before it could follow it.
    fx.jobs_api().create(&PostParams::default(), &fx.job_manifest(attempt.execution_id, 1)).await.unwrap();
    let name = job_name(attempt.execution_id, 1);
    fx.running_pod(&name).await;

    let (end, started) = run(&runner, &attempt, CancellationToken::new()).await;
    assert_eq!(end, AttemptEnd::Reported { exit_code: 0 });
    assert_eq!(started.and_then(|s| s.runner_ref), Some(name.clone()));
    assert_eq!(fx.sim.job_creates_seen(), 2, "the runner's create was answered 409");
    assert_eq!(fx.sim.jobs().len(), 1);
    assert_eq!(fx.pods_of(&name).len(), 1, "the attempt ran once");

    // Adopting again after it finished reads the same ending.
    let (again, _) = run(&runner, &attempt, CancellationToken::new()).await;
    assert_eq!(again, AttemptEnd::Reported { exit_code: 0 });
    assert_eq!(fx.pods_of(&name).len(), 1);
    assert_eq!(kube_metric(&runner, "jobs_total", &["action=\"adopted\""]), 2.0);
    assert_eq!(kube_metric(&runner, "jobs_total", &["action=\"created\""]), 0.0);
    assert_eq!(kube_metric(&runner, "requests_total", &["verb=\"create\"", "code=\"409\""]), 2.0);
}

#[tokio::test]
async fn a_job_of_another_attempt_under_the_name_is_not_adopted() {
    let fx = Fixture::start(Kubelet::None).await;
    let runner = fx.runner().await;
    let attempt = attempt(Uuid::now_v7(), 2);
    let mut foreign = fx.job_manifest(attempt.execution_id, 2);
    foreign.metadata.labels.as_mut().unwrap().insert(LABEL_ATTEMPT.into(), "7".into());
    fx.jobs_api().create(&PostParams::default(), &foreign).await.unwrap();

    let (end, started) = run(&runner, &attempt, CancellationToken::new()).await;
    let reason = retry_reason(&end);
    assert!(reason.contains("is not this attempt's") && reason.contains("attempt=7"), "{reason}");
    assert!(started.is_none(), "nothing was started");
    assert_eq!(fx.sim.jobs().len(), 1, "the other Job is left alone");
}

#[tokio::test]
async fn a_storm_of_429_with_retry_after_still_creates_the_job_once() {
    let fx = Fixture::start(Kubelet::Executor).await;
    let runner = fx.runner().await;
    let attempt = fx.execution(transform_workflow()).await;
    fx.sim.inject(Fault::TooManyRequests { count: 3, retry_after_secs: 1 });
    let begun = Instant::now();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let cancel = CancellationToken::new();
    let running = runner.run(&attempt, tx, cancel);
    let (end, started_after) = tokio::join!(running, async {
        rx.await.unwrap();
        begun.elapsed()
    });
    assert_eq!(end, AttemptEnd::Reported { exit_code: 0 });
    assert_eq!(fx.sim.responses_with_status(429), 3);
    assert_eq!(fx.sim.job_creates_seen(), 1, "one create reached the API");
    assert_eq!(fx.sim.jobs().len(), 1);
    // Each 429 asked for one second: the runner waited that long before each retry.
    assert!(started_after >= Duration::from_secs(3), "created after {started_after:?}");
    assert!(runner.api_stats().retries() >= 3);
    assert_eq!(kube_metric(&runner, "requests_total", &["verb=\"create\"", "code=\"429\""]), 3.0);
    assert_eq!(kube_metric(&runner, "requests_total", &["verb=\"create\"", "code=\"201\""]), 1.0);
}

#[tokio::test]
async fn throttling_beyond_the_retry_bound_retries_the_attempt() {
    let fx = Fixture::start(Kubelet::None).await;
    let runner = fx.runner_with(|_| {}, |t| t.retry.max_retries = 2).await;
    fx.sim.inject(Fault::TooManyRequests { count: 50, retry_after_secs: 0 });
    let attempt = attempt(Uuid::now_v7(), 1);
    let (end, started) = run(&runner, &attempt, CancellationToken::new()).await;
    let reason = retry_reason(&end);
    assert!(reason.contains("429 TooManyRequests") && reason.contains("also after retries"), "{reason}");
    assert!(started.is_none());
    assert_eq!(fx.sim.responses_with_status(429), 3, "one try and two retries");
    assert!(fx.sim.jobs().is_empty());
}

#[tokio::test]
async fn server_errors_are_retried() {
    let fx = Fixture::start(Kubelet::Executor).await;
    let runner = fx.runner().await;
    let attempt = fx.execution(transform_workflow()).await;
    fx.sim.inject(Fault::ServerError { count: 3 });
    let (end, _) = run(&runner, &attempt, CancellationToken::new()).await;
    assert_eq!(end, AttemptEnd::Reported { exit_code: 0 });
    assert_eq!(fx.sim.responses_with_status(500), 3);
    assert_eq!(fx.sim.job_creates_seen(), 1);
}

#[tokio::test]
async fn an_invalid_job_fails_the_attempt_naming_the_field() {
    let fx = Fixture::start(Kubelet::None).await;
    // An operator mistake the dispatcher does not check at start-up (it checks node selectors, tolerations,
    // affinity, names and resources: dispatcher/src/runner/kubernetes/settings_rules_tests.rs), but the API server
    // does: a Secret volume without a secret name.
    let runner = fx.runner_with(|c| c.extra_volumes = Some(r#"[{"name": "ca", "secret": {}}]"#.into()), |_| {}).await;
    let (end, started) = run(&runner, &attempt(Uuid::now_v7(), 1), CancellationToken::new()).await;
    let reason = fail_reason(&end);
    assert!(reason.starts_with("Kubernetes refused the Job: invalid: "), "{reason}");
    assert!(reason.contains("spec.template.spec.volumes[1].secret.secretName"), "{reason}");
    assert!(started.is_none());
    assert!(fx.sim.jobs().is_empty());
    assert_eq!(fx.sim.responses_with_status(422), 1, "refusals are not retried");
}

#[tokio::test]
async fn a_forbidden_job_fails_the_attempt_naming_the_permission() {
    let fx = Fixture::start(Kubelet::None).await;
    let runner = fx.runner().await;
    // The Role lacks `create` on Jobs.
    fx.sim.enforce_rbac(vec![
        rule("batch", "jobs", &["get", "list", "watch", "delete"]),
        rule("", "pods", &["list", "watch"]),
    ]);
    let (end, started) = run(&runner, &attempt(Uuid::now_v7(), 1), CancellationToken::new()).await;
    let reason = fail_reason(&end);
    assert!(reason.starts_with("Kubernetes refused the Job: forbidden: "), "{reason}");
    assert!(reason.contains("cannot create resource \"jobs\" in API group \"batch\""), "{reason}");
    assert!(started.is_none());
    assert_eq!(fx.sim.responses_with_status(403), 1, "refusals are not retried");
}

fn rule(group: &str, resource: &str, verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(vec![resource.into()]),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

/// The Role in docs/kubernetes-rbac.md (the chart renders the same rules; tests/chart checks that).
fn documented_rules() -> Vec<PolicyRule> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/kubernetes-rbac.md")).unwrap();
    let block = doc.split("```yaml\n").nth(1).and_then(|rest| rest.split("```").next()).unwrap();
    let role = block.split("\n---\n").next().unwrap();
    let role: Role = serde_yaml::from_str(role).unwrap();
    role.rules.unwrap()
}

#[tokio::test]
async fn the_documented_role_is_exactly_what_the_runner_uses() {
    let fx = Fixture::start(Kubelet::Executor).await;
    let rules = documented_rules();
    fx.sim.enforce_rbac(rules.clone());
    let runner = fx.runner().await;

    // Create and follow to the end; adopt (create 409, get); cancel (delete); the watchers (list, watch), which
    // also feed the sweep.
    let ok = fx.execution(transform_workflow()).await;
    let adopted = fx.execution(sleep_workflow(200)).await;
    fx.jobs_api().create(&PostParams::default(), &fx.job_manifest(adopted.execution_id, 1)).await.unwrap();
    let cancelled = fx.execution(sleep_workflow(60_000)).await;
    let cancel = CancellationToken::new();
    let cancelled_job = job_name(cancelled.execution_id, 1);
    let ((ok_end, _), (adopted_end, _), (cancelled_end, _), ()) = tokio::join!(
        run(&runner, &ok, CancellationToken::new()),
        run(&runner, &adopted, CancellationToken::new()),
        run(&runner, &cancelled, cancel.clone()),
        async {
            fx.running_pod(&cancelled_job).await;
            cancel.cancel();
        }
    );
    assert_eq!(ok_end, AttemptEnd::Reported { exit_code: 0 });
    assert_eq!(adopted_end, AttemptEnd::Reported { exit_code: 0 });
    assert!(matches!(cancelled_end, AttemptEnd::Concluded { outcome: FinishedOutcome::Cancelled, .. }));
    assert_eq!(fx.sim.responses_with_status(403), 0, "the Role allowed everything the runner did");

    let granted: BTreeSet<Access> = rules
        .iter()
        .flat_map(|rule| {
            let groups = rule.api_groups.clone().unwrap_or_default();
            let resources = rule.resources.clone().unwrap_or_default();
            groups.into_iter().flat_map(move |g| {
                let verbs = rule.verbs.clone();
                resources.clone().into_iter().flat_map(move |r| {
                    let g = g.clone();
                    verbs.clone().into_iter().map(move |v| Access::new(&g, &r, &v))
                })
            })
        })
        .collect();
    assert_eq!(fx.sim.accesses(), granted, "every documented right is used, and nothing else");
}

#[tokio::test]
async fn an_evicted_pod_ends_the_attempt_as_a_retry_and_its_job_is_deleted() {
    let fx = Fixture::start(Kubelet::Executor).await;
    let runner = fx.runner().await;
    let attempt = fx.execution(sleep_workflow(60_000)).await;
    let name = job_name(attempt.execution_id, 1);
    let ((end, _), evicted) = tokio::join!(run(&runner, &attempt, CancellationToken::new()), async {
        let pod = fx.running_pod(&name).await;
        fx.sim.inject(Fault::EvictPod { namespace: NAMESPACE.into(), name: pod.clone() });
        pod
    });
    let reason = retry_reason(&end);
    assert!(reason.contains(&format!("pod {evicted} was evicted")), "{reason}");
    assert!(reason.contains("DisruptionTarget") || reason.contains("EvictionByEvictionAPI"), "{reason}");
    // The Job controller's replacement pod does not run the same attempt again: the Job and pods are gone.
    assert!(fx.job(&name).is_none());
    assert!(fx.pods_of(&name).is_empty());
    assert_eq!(kube_metric(&runner, "job_outcomes_total", &["cause=\"evicted\""]), 1.0);
    assert_eq!(kube_metric(&runner, "jobs_total", &["action=\"deleted\""]), 1.0);
}

#[tokio::test]
async fn an_oom_killed_executor_is_retried() {
    let fx = Fixture::start(Kubelet::Executor).await;
    let runner = fx.runner().await;
    let attempt = fx.execution(transform_workflow()).await;
    fx.sim.inject(Fault::OomKill);
    let (end, _) = run(&runner, &attempt, CancellationToken::new()).await;
    let reason = retry_reason(&end);
    assert!(reason.contains("ran out of memory (OOMKilled, exit code 137, memory limit 512Mi)"), "{reason}");
    assert_eq!(kube_metric(&runner, "job_outcomes_total", &["cause=\"oom_killed\""]), 1.0);
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_is_retried_after_the_start_timeout() {
    let fx = Fixture::start(Kubelet::Executor).await;
    let runner = fx.runner_with(|c| c.start_timeout_secs = 1, |_| {}).await;
    let attempt = fx.execution(transform_workflow()).await;
    fx.sim.inject(Fault::ImagePullFailure);
    let begun = Instant::now();
    let (end, started) = run(&runner, &attempt, CancellationToken::new()).await;
    let reason = retry_reason(&end);
    assert!(reason.contains("the executor image cannot be pulled"), "{reason}");
    assert!(reason.contains("ImagePullBackOff") && reason.contains("for 1 s"), "{reason}");
    assert!(begun.elapsed() >= Duration::from_secs(1));
    assert!(started.is_some(), "the Job was created");
    let name = job_name(attempt.execution_id, 1);
    assert!(fx.job(&name).is_none(), "the stuck Job was deleted");
    assert_eq!(kube_metric(&runner, "job_outcomes_total", &["cause=\"image_pull\""]), 1.0);
}

#[tokio::test]
async fn a_job_past_its_deadline_is_concluded_as_timed_out() {
    let fx = Fixture::start(Kubelet::Executor).await;
    let runner = fx.runner_with(|c| c.deadline_secs = 1, |_| {}).await;
    let attempt = fx.execution(sleep_workflow(30_000)).await;
    let begun = Instant::now();
    let (end, _) = run(&runner, &attempt, CancellationToken::new()).await;
    match end {
        AttemptEnd::Concluded { outcome: FinishedOutcome::TimedOut, error: Some(error) } => {
            assert!(error.contains("activeDeadlineSeconds 1"), "{error}");
        }
        other => panic!("expected timed_out, got {other:?}"),
    }
    assert!(begun.elapsed() < Duration::from_secs(15));
    assert_eq!(kube_metric(&runner, "job_outcomes_total", &["cause=\"deadline_exceeded\""]), 1.0);
}

#[tokio::test]
async fn cancel_deletes_the_job_and_its_pods() {
    let fx = Fixture::start(Kubelet::Executor).await;
    let runner = fx.runner().await;
    let attempt = fx.execution(sleep_workflow(60_000)).await;
    let name = job_name(attempt.execution_id, 1);
    let cancel = CancellationToken::new();
    let begun = Instant::now();
    let ((end, started), ()) = tokio::join!(run(&runner, &attempt, cancel.clone()), async {
        fx.running_pod(&name).await;
        cancel.cancel();
    });
    assert_eq!(end, AttemptEnd::Concluded { outcome: FinishedOutcome::Cancelled, error: None });
    assert!(started.is_some());
    assert!(begun.elapsed() < Duration::from_secs(15));
    assert!(fx.job(&name).is_none());
    assert!(fx.pods_of(&name).is_empty(), "the pods were deleted with the Job");
    assert!(fx.manifest(&attempt).await.is_none(), "the run did not finish");

    // Cancelled before it started: nothing is created.
    let cancel = CancellationToken::new();
    cancel.cancel();
    let (end, started) = run(&runner, &fx.execution(transform_workflow()).await, cancel).await;
    assert_eq!(end, AttemptEnd::Concluded { outcome: FinishedOutcome::Cancelled, error: None });
    assert!(started.is_none());
    assert_eq!(fx.sim.job_creates_seen(), 1);
}

#[tokio::test]
async fn watchers_survive_forced_410_and_relist() {
    let fx = Fixture::start(Kubelet::Executor).await;
    let runner = fx.runner().await;
    let lists_before = runner.watch_stats().lists();
    let attempt = fx.execution(sleep_workflow(6_000)).await;
    let name = job_name(attempt.execution_id, 1);
    let stats = runner.watch_stats();
    let wait_lists = |at_least: u64| async move {
        let start = Instant::now();
        while stats.lists() < at_least {
            assert!(start.elapsed() < Duration::from_secs(10), "the watchers did not relist");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Then the watch requests reconnect.
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let ((end, _), ()) = tokio::join!(run(&runner, &attempt, CancellationToken::new()), async {
        fx.running_pod(&name).await;
        fx.sim.inject(Fault::ExpireWatches);
        wait_lists(lists_before + 2).await;
        fx.sim.inject(Fault::ExpireWatches);
        wait_lists(lists_before + 4).await;
    });
    assert_eq!(end, AttemptEnd::Reported { exit_code: 0 });
    assert!(fx.sim.watches_expired() >= 4, "both watches were expired twice: {}", fx.sim.watches_expired());
    assert!(runner.watch_stats().errors() >= 4);
    assert!(kube_metric(&runner, "watch_restarts_total", &["resource=\"jobs\"", "reason=\"expired\""]) >= 2.0);
    assert!(kube_metric(&runner, "watch_restarts_total", &["resource=\"pods\"", "reason=\"expired\""]) >= 2.0);
}

#[tokio::test]
async fn a_job_deleted_by_someone_else_is_retried_as_vanished() {
    let fx = Fixture::start(Kubelet::Executor).await;
    let runner = fx.runner().await;
    let seen_live = fx.execution(sleep_workflow(60_000)).await;
    let seen_by_relist = fx.execution(sleep_workflow(60_000)).await;
    let (live_job, relist_job) = (job_name(seen_live.execution_id, 1), job_name(seen_by_relist.execution_id, 1));
    let ((live, _), (relisted, _), ()) = tokio::join!(
        run(&runner, &seen_live, CancellationToken::new()),
        run(&runner, &seen_by_relist, CancellationToken::new()),
        async {
            fx.running_pod(&live_job).await;
            fx.running_pod(&relist_job).await;
            fx.jobs_api().delete(&live_job, &DeleteParams::background()).await.unwrap();
            // Deleted while the watches are being cut: the watchers learn it from the event or the relist.
            fx.sim.inject(Fault::ExpireWatches);
            fx.jobs_api().delete(&relist_job, &DeleteParams::background()).await.unwrap();
        }
    );
    for end in [live, relisted] {
        assert!(retry_reason(&end).starts_with("Job vanished"), "{end:?}");
    }
}

#[tokio::test]
async fn the_rate_limit_bounds_requests_per_second() {
    let fx = Fixture::start(Kubelet::None).await;
    let (qps, burst) = (5.0, 2);
    let runner = fx
        .runner_with(
            |c| {
                c.qps = qps;
                c.burst = burst;
            },
            |_| {},
        )
        .await;
    let begun = Instant::now();
    let names: Vec<String> = (0..12).map(|i| format!("absent-{i}")).collect();
    let deletes = futures::future::join_all(names.iter().map(|name| runner.delete_job(name))).await;
    assert!(deletes.iter().all(|d| matches!(d, Ok(false))), "{deletes:?}");
    // Start-up used 4 requests (a list and a watch per watcher); 12 more at 5/s with the burst spent.
    assert!(begun.elapsed() >= Duration::from_millis(1_800), "12 deletes took {:?}", begun.elapsed());
    let times = fx.sim.request_times();
    assert_eq!(times.len(), 16);
    let most_in_a_second = times
        .iter()
        .map(|start| {
            times.iter().filter(|t| **t >= *start && t.duration_since(*start) < Duration::from_secs(1)).count()
        })
        .max()
        .unwrap();
    assert!(most_in_a_second <= 5 + 2 + 1, "{most_in_a_second} requests within one second");
    assert_eq!(runner.api_stats().requests(), 16);
    // The requests past the burst waited for the limit, about 2.4 s in all at 5/s.
    assert!(kube_metric(&runner, "ratelimit_waits_total", &[]) >= 10.0);
    let waited = kube_metric(&runner, "ratelimit_wait_seconds_total", &[]);
    assert!(waited >= 1.0, "waited {waited} s for the rate limit");
    assert_eq!(kube_metric(&runner, "requests_total", &["verb=\"delete\"", "code=\"404\""]), 12.0);
}

/// With `KUBE_MAX_CONCURRENT_REQUESTS=3`, twelve attempts starting at once never have more than three Job creates
/// in flight at the API server, and all twelve Jobs are still created once each.
#[tokio::test]
async fn concurrent_requests_are_bounded() {
    let fx = Fixture::start(Kubelet::None).await;
    let runner = fx.runner_with(|c| c.max_concurrent_requests = 3, |_| {}).await;
    fx.sim.inject(Fault::Latency(Duration::from_millis(100)));
    let cancel = CancellationToken::new();
    let attempts: Vec<Attempt> = (0..12).map(|_| attempt(Uuid::now_v7(), 1)).collect();
    let begun = Instant::now();
    let started = futures::future::join_all(attempts.iter().map(|a| {
        let (runner, cancel) = (&runner, cancel.clone());
        async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let run = runner.run(a, tx, cancel);
            tokio::pin!(run);
            tokio::select! {
                started = rx => started.is_ok(),
                end = &mut run => panic!("the attempt ended before its Job was created: {end:?}"),
            }
        }
    }))
    .await;
    assert!(started.iter().all(|s| *s));
    // Four rounds of three creates, 100 ms each.
    assert!(begun.elapsed() >= Duration::from_millis(400), "12 creates took {:?}", begun.elapsed());
    assert_eq!(fx.sim.peak_concurrent_job_creates(), 3);
    assert_eq!(fx.sim.job_creates_seen(), 12);
    assert_eq!(fx.sim.jobs().len(), 12);
}

/// The sweep's view comes from the Job watcher: the installation's unfinished Jobs (not someone else's), without
/// the ones deleted or finished since, and without a list request of its own.
#[tokio::test]
async fn the_sweep_sees_the_unfinished_jobs_the_watcher_reports_and_delete_job_removes_them() {
    let fx = Fixture::start(Kubelet::Script("sleep 2")).await;
    let runner = fx.runner().await;
    let unfinished = || {
        let jobs = runner.unfinished_jobs().expect("the watcher has listed");
        assert!(jobs.iter().all(|j| j.created_at_ms.is_some()), "{jobs:?}");
        jobs.into_iter().map(|j| (j.execution_id, j.attempt, j.job_name)).collect::<BTreeSet<_>>()
    };
    assert_eq!(unfinished(), BTreeSet::new());
    let mut expected = BTreeSet::new();
    for number in 1..=3 {
        let execution_id = Uuid::now_v7();
        fx.jobs_api().create(&PostParams::default(), &fx.job_manifest(execution_id, number)).await.unwrap();
        expected.insert((execution_id, number, job_name(execution_id, number)));
    }
    // A Job of someone else in the namespace is not an executor Job.
    let other: Job = serde_json::from_value(json!({
        "metadata": {"name": "someone-elses", "labels": {"app.kubernetes.io/name": "other"}},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}
    }))
    .unwrap();
    fx.jobs_api().create(&PostParams::default(), &other).await.unwrap();
    wait_until(Duration::from_secs(20), "the watcher to report the three Jobs", || async {
        Ok(unfinished() == expected)
    })
    .await
    .unwrap();

    let gone = expected.pop_first().unwrap().2;
    assert!(runner.delete_job(&gone).await.unwrap());
    assert!(!runner.delete_job(&gone).await.unwrap(), "already gone");
    assert!(fx.pods_of(&gone).is_empty(), "deleted with its pods");
    wait_until(Duration::from_secs(20), "the deleted Job to leave the view", || async { Ok(unfinished() == expected) })
        .await
        .unwrap();
    // The pods exit 0 after two seconds: the Jobs complete and leave the view.
    wait_until(Duration::from_secs(20), "the finished Jobs to leave the view", || async {
        Ok(unfinished().is_empty())
    })
    .await
    .unwrap();
    assert_eq!(runner.watch_stats().lists(), 2, "one list per watcher, at start");
}
