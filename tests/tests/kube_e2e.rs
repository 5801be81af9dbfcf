//! The whole product on the Kubernetes runner: the API, dispatchers (in this process, or as child processes to
//! `kill -9`) running executions as Jobs in the Kubernetes API simulator, whose kubelet runs the real
//! `flow-like-executor` against the test's Redis and S3. Success, cancellation, eviction, a dispatcher killed
//! right after creating a Job, 429 storms, deadlines and the Jobs' TTL, checked in PostgreSQL and in the
//! simulator.
//!
//! Needs the workspace binaries: `cargo build --workspace --bins`.

use flow_like_dispatcher::runner::kubernetes::manifest::{
    JobSpecInput, LABEL_ATTEMPT, LABEL_EXECUTION, LABEL_TENANT, LABEL_WORKFLOW, job_manifest, label_selector,
};
use flow_like_dispatcher::runner::kubernetes::{ExecutorEnv, JobSettings, job_name};
use flow_like_kube_sim::{Fault, KubeSim, KubeSimOptions, KubeletOptions};
use flow_like_shared::config::{LogFormat, TelemetryConfig};
use flow_like_shared::spec::AttemptSpec;
use flow_like_shared::storage::layout;
use flow_like_test_harness::{DispatcherArgs, DispatcherProcess, TestApi, workspace_binary};
use flow_like_tests::fixtures::{sample_workflow, sleepy, submit, wait_terminal, wait_until};
use flow_like_tests::inspect::{finished_outcomes, leftover_leases};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const TENANT: &str = "acme";
const NAMESPACE: &str = "default";

/// One test's world: the API on fresh state, a simulator whose kubelet runs the real executor, the executor
/// Secret, and a kubeconfig pointing at the simulator.
struct World {
    api: TestApi,
    key: String,
    sim: KubeSim,
    kubeconfig: PathBuf,
}

impl World {
    async fn start() -> anyhow::Result<Self> {
        let api = TestApi::start().await?;
        let key = api.tenant_key(TENANT).await?;
        let kubelet = KubeletOptions::executor(workspace_binary("flow-like-executor")?);
        let sim = KubeSim::start(KubeSimOptions { kubelet: Some(kubelet), ..KubeSimOptions::default() }).await?;
        let (redis, s3) = (&api.configs.redis, &api.configs.s3);
        sim.create_secret(
            NAMESPACE,
            "flow-like-executor",
            &[
                ("REDIS_URL", redis.url.as_str()),
                ("S3_ACCESS_KEY_ID", s3.access_key_id.as_str()),
                ("S3_SECRET_ACCESS_KEY", s3.secret_access_key.as_str()),
            ],
        );
        let kubeconfig = sim.kubeconfig_path()?;
        Ok(Self { api, key, sim, kubeconfig })
    }

    /// Dispatcher flags for the Kubernetes runner on the simulator.
    fn args(&self, id: &str) -> anyhow::Result<DispatcherArgs> {
        Ok(DispatcherArgs::new(&self.api.configs, id)?
            .set("--runner", "kubernetes")
            .set("--kubeconfig", self.kubeconfig.display())
            .set("--kube-qps", 200)
            .set("--kube-burst", 200)
            .set("--executor-image", "ghcr.io/flow-like/flow-like-executor:test"))
    }

    async fn submit(&self, body: &Value) -> anyhow::Result<Uuid> {
        submit(&self.api, &self.key, body).await
    }

    async fn status(&self, id: Uuid) -> anyhow::Result<String> {
        let (status,): (String,) =
            sqlx::query_as("SELECT status FROM executions WHERE id = $1").bind(id).fetch_one(&self.api.db).await?;
        Ok(status)
    }

    async fn wait_status(&self, id: Uuid, want: &str, timeout: Duration) -> anyhow::Result<()> {
        wait_until(timeout, &format!("{id} to be {want}"), || async move { Ok(self.status(id).await? == want) }).await
    }

    /// The simulator's Jobs of one execution.
    fn jobs_of(&self, id: Uuid) -> Vec<Job> {
        let id = id.to_string();
        self.sim.jobs().into_iter().filter(|job| label(job, LABEL_EXECUTION) == Some(id.as_str())).collect()
    }

    /// Name of the running pod of a Job, once there is one.
    fn running_pod(&self, job: &str) -> Option<String> {
        self.sim.pods().into_iter().find_map(|pod| {
            let labels = pod.metadata.labels.as_ref()?;
            let phase = pod.status.as_ref()?.phase.as_deref()?;
            (labels.get("job-name").map(String::as_str) == Some(job) && phase == "Running")
                .then(|| pod.metadata.name.clone())
                .flatten()
        })
    }

    /// `(attempt, status)` of every attempt row of an execution, in attempt order.
    async fn attempts(&self, id: Uuid) -> anyhow::Result<Vec<(i32, String)>> {
        Ok(sqlx::query_as("SELECT attempt, status FROM attempts WHERE execution_id = $1 ORDER BY attempt, started_at")
            .bind(id)
            .fetch_all(&self.api.db)
            .await?)
    }

    async fn result_key(&self, id: Uuid) -> anyhow::Result<Option<String>> {
        let (key,): (Option<String>,) =
            sqlx::query_as("SELECT result_key FROM executions WHERE id = $1").bind(id).fetch_one(&self.api.db).await?;
        Ok(key)
    }
}

fn label<'a>(job: &'a Job, name: &str) -> Option<&'a str> {
    job.metadata.labels.as_ref()?.get(name).map(String::as_str)
}

fn job_names(jobs: &[Job]) -> BTreeSet<String> {
    jobs.iter().filter_map(|job| job.metadata.name.clone()).collect()
}

/// A dispatcher as `flow-like-dispatcher run` runs it, in this process: the Kubernetes runner and its Job sweep.
struct KubeDispatcher {
    shutdown: CancellationToken,
    handle: Option<JoinHandle<Result<(), flow_like_dispatcher::RunError>>>,
}

impl KubeDispatcher {
    fn start(args: &DispatcherArgs) -> anyhow::Result<Self> {
        flow_like_shared::telemetry::install_crypto_provider();
        let config = args.config()?;
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(flow_like_dispatcher::run(config, shutdown.clone()));
        Ok(Self { shutdown, handle: Some(handle) })
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await??;
        }
        Ok(())
    }
}

impl Drop for KubeDispatcher {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A workflow runs as one Job with the attempt's labels; the execution succeeds in PostgreSQL with its result,
/// and the attempt names its Job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_workflow_runs_as_one_labelled_job() -> anyhow::Result<()> {
    let world = World::start().await?;
    let dispatcher = KubeDispatcher::start(&world.args("d1")?)?;
    let id = world.submit(&json!({"workflow": sample_workflow(), "input": {"n": 21}})).await?;
    assert_eq!(wait_terminal(&world.api.db, &[id], Duration::from_secs(60)).await?, ["succeeded"]);

    let jobs = world.sim.jobs();
    assert_eq!(jobs.len(), 1, "{:?}", job_names(&jobs));
    let job = &jobs[0];
    assert_eq!(job.metadata.name.as_deref(), Some(job_name(id, 1).as_str()));
    assert_eq!(label(job, LABEL_EXECUTION), Some(id.to_string().as_str()));
    assert_eq!(label(job, LABEL_TENANT), Some(TENANT));
    assert_eq!(label(job, LABEL_WORKFLOW), Some("double"));
    assert_eq!(label(job, LABEL_ATTEMPT), Some("1"));
    for pair in label_selector().split(',') {
        let (name, value) = pair.split_once('=').unwrap();
        assert_eq!(label(job, name), Some(value), "selector label {name}");
    }
    assert_eq!(world.sim.job_creates_seen(), 1);

    let rows: Vec<(i32, String, Option<String>)> =
        sqlx::query_as("SELECT attempt, status, runner_ref FROM attempts WHERE execution_id = $1")
            .bind(id)
            .fetch_all(&world.api.db)
            .await?;
    assert_eq!(rows, [(1, "succeeded".to_owned(), Some(job_name(id, 1)))]);
    let result_key = world.result_key(id).await?.expect("result key recorded");
    let object = world
        .api
        .configs
        .s3_settings
        .client()
        .get_object()
        .bucket(&world.api.configs.s3.content_bucket)
        .key(&result_key)
        .send()
        .await?;
    let result: Value = serde_json::from_slice(&object.body.collect().await?.into_bytes())?;
    assert_eq!(result["output"], 42);

    dispatcher.stop().await?;
    assert!(leftover_leases(&world.api).await?.is_empty());
    Ok(())
}

/// Cancelling a running execution deletes its Job; the execution ends cancelled and its slot is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_deletes_the_job() -> anyhow::Result<()> {
    let world = World::start().await?;
    let dispatcher = KubeDispatcher::start(&world.args("d1")?)?;
    let id = world.submit(&json!({"workflow": sleepy(60_000), "input": {"n": 1}})).await?;
    world.wait_status(id, "running", Duration::from_secs(60)).await?;
    assert_eq!(world.jobs_of(id).len(), 1);

    let started = std::time::Instant::now();
    let response = world.api.post_json(&format!("/api/v1/executions/{id}/cancel"), &world.key, &json!({})).await?;
    assert_eq!(response.status(), 202);
    assert_eq!(wait_terminal(&world.api.db, &[id], Duration::from_secs(30)).await?, ["cancelled"]);
    wait_until(Duration::from_secs(15), "the Job to be deleted", || async { Ok(world.jobs_of(id).is_empty()) }).await?;
    let api = &world.api;
    wait_until(Duration::from_secs(15), "the lease to be released", || async move {
        Ok(leftover_leases(api).await?.is_empty())
    })
    .await?;
    assert!(started.elapsed() < Duration::from_secs(20), "cancel took {:?}", started.elapsed());
    assert_eq!(world.sim.job_creates_seen(), 1);
    dispatcher.stop().await?;
    Ok(())
}

/// The running pod is evicted: the attempt is retried as a new attempt (a new Job), and the execution ends
/// with exactly one successful attempt and one result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_evicted_pod_becomes_a_new_attempt() -> anyhow::Result<()> {
    let world = World::start().await?;
    let dispatcher = KubeDispatcher::start(&world.args("d1")?)?;
    let id = world.submit(&json!({"workflow": sleepy(4_000), "input": {"n": 5}})).await?;
    let first = job_name(id, 1);
    world.wait_status(id, "running", Duration::from_secs(60)).await?;
    let mut pod = None;
    wait_until(Duration::from_secs(20), "the first pod to run", || {
        pod = world.running_pod(&first);
        let found = pod.is_some();
        async move { Ok(found) }
    })
    .await?;
    world.sim.inject(Fault::EvictPod { namespace: NAMESPACE.into(), name: pod.unwrap() });

    assert_eq!(wait_terminal(&world.api.db, &[id], Duration::from_secs(60)).await?, ["succeeded"]);
    let attempts = world.attempts(id).await?;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts.iter().filter(|(_, s)| s == "succeeded").count(), 1, "{attempts:?}");
    assert_eq!(attempts[1], (2, "succeeded".to_owned()), "{attempts:?}");
    assert!(world.result_key(id).await?.is_some());
    // The evicted attempt's Job was deleted; the second attempt ran in a Job of its own.
    assert_eq!(job_names(&world.jobs_of(id)), BTreeSet::from([job_name(id, 2)]));
    assert_eq!(world.sim.job_creates_seen(), 2);
    // One result document: the executor of the evicted pod never finished.
    let finished = finished_outcomes(&world.api, id).await?;
    assert_eq!(finished.len(), 1, "{finished:?}");
    dispatcher.stop().await?;
    assert!(leftover_leases(&world.api).await?.is_empty());
    Ok(())
}

/// A dispatcher process is killed (`kill -9`) right after it created a Job: another dispatcher takes the
/// execution over with the same attempt number, gets `409 AlreadyExists` for the Job and adopts it. There is
/// never a second Job, and the execution succeeds once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_of_a_killed_dispatcher_is_adopted_not_duplicated() -> anyhow::Result<()> {
    killed_after_creating_a_job(Duration::ZERO, 5_000).await
}

/// The same when the next dispatcher only comes up after the Job is older than the sweep's minimum age: the
/// sweep leaves the Job alone (its expired lease still names its attempt) and the takeover adopts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_dispatcher_adopts_the_job_instead_of_sweeping_it() -> anyhow::Result<()> {
    killed_after_creating_a_job(Duration::from_secs(6), 12_000).await
}

async fn killed_after_creating_a_job(survivor_delay: Duration, sleep_ms: u64) -> anyhow::Result<()> {
    let world = World::start().await?;
    let id = world.submit(&json!({"workflow": sleepy(sleep_ms), "input": {"n": 3}})).await?;
    let mut victim = DispatcherProcess::start(&world.args("victim")?)?;
    wait_until(Duration::from_secs(60), "the victim to create the Job", || async { Ok(!world.jobs_of(id).is_empty()) })
        .await?;
    victim.kill9().await?;
    assert_eq!(world.sim.job_creates_seen(), 1);
    tokio::time::sleep(survivor_delay).await;

    let survivor = KubeDispatcher::start(&world.args("survivor")?)?;
    assert_eq!(wait_terminal(&world.api.db, &[id], Duration::from_secs(60)).await?, ["succeeded"]);
    assert_eq!(job_names(&world.jobs_of(id)), BTreeSet::from([job_name(id, 1)]));
    // The survivor's create of the same Job was answered 409, then it adopted the Job.
    assert_eq!(world.sim.job_creates_seen(), 2);
    assert_eq!(world.sim.responses_with_status(409), 1);
    let attempts = world.attempts(id).await?;
    assert_eq!(attempts.iter().filter(|(_, s)| s == "succeeded").count(), 1, "{attempts:?}");
    assert!(attempts.iter().all(|(n, _)| *n == 1), "{attempts:?}");
    assert!(world.result_key(id).await?.is_some());
    // One pod ran the attempt: the Job was never deleted and recreated.
    let pods = world.sim.pods();
    assert_eq!(pods.len(), 1, "{:?}", pods.iter().map(|p| p.metadata.name.clone()).collect::<Vec<_>>());
    survivor.stop().await?;
    assert!(leftover_leases(&world.api).await?.is_empty());
    Ok(())
}

/// A storm of `429 TooManyRequests` while executions are dispatched loses nothing: every execution succeeds
/// and every Job is created exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_of_429s_loses_nothing() -> anyhow::Result<()> {
    let world = World::start().await?;
    let dispatcher = KubeDispatcher::start(&world.args("d1")?)?;
    // A first execution proves the runner is connected before the storm.
    let warm = world.submit(&json!({"workflow": sample_workflow(), "input": {"n": 0}})).await?;
    assert_eq!(wait_terminal(&world.api.db, &[warm], Duration::from_secs(60)).await?, ["succeeded"]);

    world.sim.inject(Fault::TooManyRequests { count: 60, retry_after_secs: 1 });
    let mut ids = vec![warm];
    for n in 0..12 {
        ids.push(world.submit(&json!({"workflow": sample_workflow(), "input": {"n": n}})).await?);
    }
    let statuses = wait_terminal(&world.api.db, &ids, Duration::from_secs(120)).await?;
    assert!(statuses.iter().all(|s| s == "succeeded"), "{statuses:?}");
    assert_eq!(world.sim.responses_with_status(429), 60, "the storm did not reach the dispatcher");

    let expected: BTreeSet<String> = ids.iter().map(|id| job_name(*id, 1)).collect();
    assert_eq!(job_names(&world.sim.jobs()), expected);
    assert_eq!(world.sim.job_creates_seen(), ids.len() as u64, "a Job was created more than once");
    let (attempts,): (i64,) = sqlx::query_as("SELECT count(*) FROM attempts").fetch_one(&world.api.db).await?;
    assert_eq!(attempts, ids.len() as i64);
    dispatcher.stop().await?;
    assert!(leftover_leases(&world.api).await?.is_empty());
    Ok(())
}

/// A Job that outlives its `activeDeadlineSeconds` is killed by the Job controller and the execution ends
/// `timed_out`, without a retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_jobs_active_deadline_times_the_execution_out() -> anyhow::Result<()> {
    let world = World::start().await?;
    let dispatcher = KubeDispatcher::start(&world.args("d1")?.set("--executor-deadline-secs", 2))?;
    let id = world.submit(&json!({"workflow": sleepy(60_000), "input": {"n": 1}})).await?;
    assert_eq!(wait_terminal(&world.api.db, &[id], Duration::from_secs(60)).await?, ["timed_out"]);
    let jobs = world.jobs_of(id);
    assert_eq!(jobs.len(), 1);
    let spec = jobs[0].spec.as_ref().unwrap();
    assert_eq!(spec.active_deadline_seconds, Some(2));
    let reason = jobs[0]
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Failed"))
        .and_then(|c| c.reason.clone());
    assert_eq!(reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(world.attempts(id).await?.len(), 1);
    dispatcher.stop().await?;
    assert!(leftover_leases(&world.api).await?.is_empty());
    Ok(())
}

/// A workflow's own `deadline_ms`: the executor reports `timed_out` itself, and its Job's
/// `activeDeadlineSeconds` is the deadline (rounded up) plus the grace for that report.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_workflow_deadline_ends_timed_out() -> anyhow::Result<()> {
    let world = World::start().await?;
    let dispatcher = KubeDispatcher::start(&world.args("d1")?)?;
    let mut workflow = sleepy(60_000);
    workflow["deadline_ms"] = json!(1_500);
    let id = world.submit(&json!({"workflow": workflow, "input": {"n": 1}})).await?;
    let started = std::time::Instant::now();
    assert_eq!(wait_terminal(&world.api.db, &[id], Duration::from_secs(60)).await?, ["timed_out"]);
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    let jobs = world.jobs_of(id);
    assert_eq!(jobs.len(), 1);
    let grace = flow_like_dispatcher::runner::kubernetes::manifest::DEADLINE_GRACE_SECS;
    assert_eq!(jobs[0].spec.as_ref().unwrap().active_deadline_seconds, Some(2 + grace));
    assert_eq!(world.attempts(id).await?.len(), 1);
    dispatcher.stop().await?;
    Ok(())
}

/// A running Job that no live attempt owns (no lease names it) is deleted by the dispatcher's sweep once it is
/// older than the sweep's minimum age (2 lease TTLs); the Job of a running execution is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweep_deletes_a_job_no_attempt_owns() -> anyhow::Result<()> {
    let world = World::start().await?;
    let args = world.args("d1")?;
    let config = args.config()?;

    // An executor Job of an execution no dispatcher holds, running a long sleep.
    let orphan = Uuid::now_v7();
    let spec = AttemptSpec {
        execution_id: orphan,
        tenant: TENANT.into(),
        workflow_name: "sleepy".into(),
        workflow: sleepy(60_000),
        input: Some(json!({"n": 1})),
        input_key: None,
    };
    world
        .api
        .configs
        .s3_settings
        .client()
        .put_object()
        .bucket(&world.api.configs.s3.meta_bucket)
        .key(layout::spec(orphan))
        .body(serde_json::to_vec(&spec)?.into())
        .send()
        .await?;
    let telemetry = TelemetryConfig { log_filter: "warn".into(), log_format: LogFormat::Text };
    let settings =
        JobSettings::from_config(&config.kubernetes, ExecutorEnv::from_configs(&config.redis, &config.s3, &telemetry))?;
    let input = JobSpecInput {
        execution_id: orphan,
        attempt: 1,
        tenant: TENANT.into(),
        workflow: "sleepy".into(),
        deadline_ms: None,
        resources: None,
        traceparent: None,
    };
    let orphan_job = job_name(orphan, 1);
    let jobs: Api<Job> = Api::namespaced(world.sim.client(), NAMESPACE);
    jobs.create(&PostParams::default(), &job_manifest(&input, &settings)?).await?;
    wait_until(Duration::from_secs(30), "the orphan's pod to run", || async {
        Ok(world.running_pod(&orphan_job).is_some())
    })
    .await?;

    let live = world.submit(&json!({"workflow": sleepy(30_000), "input": {"n": 1}})).await?;
    let dispatcher = KubeDispatcher::start(&args)?;
    wait_until(Duration::from_secs(30), "the sweep to delete the orphan Job", || async {
        Ok(world.sim.jobs().iter().all(|job| job.metadata.name.as_deref() != Some(orphan_job.as_str())))
    })
    .await?;
    // Past the minimum age too, the running execution's Job stays: its lease names its attempt.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(job_names(&world.jobs_of(live)), BTreeSet::from([job_name(live, 1)]));
    assert_eq!(world.status(live).await?, "running");
    dispatcher.stop().await?;
    Ok(())
}

/// A workflow's `resources` become its Job's container requests (the operator's limits stay); asking for more
/// than the limit fails the execution at once, naming the limit, with no Job created.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workflow_resources_become_the_jobs_requests_within_the_limits() -> anyhow::Result<()> {
    let world = World::start().await?;
    let dispatcher = KubeDispatcher::start(&world.args("d1")?)?;
    let mut workflow = sample_workflow();
    workflow["resources"] = json!({"cpu": "250m", "memory": "256Mi"});
    let id = world.submit(&json!({"workflow": workflow, "input": {"n": 1}})).await?;
    assert_eq!(wait_terminal(&world.api.db, &[id], Duration::from_secs(60)).await?, ["succeeded"]);
    let jobs = world.jobs_of(id);
    let container = &jobs[0].spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
    let resources = container.resources.as_ref().unwrap();
    let quantity =
        |map: &Option<std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
         key: &str| { map.as_ref().and_then(|m| m.get(key)).map(|q| q.0.clone()) };
    assert_eq!(quantity(&resources.requests, "cpu").as_deref(), Some("250m"));
    assert_eq!(quantity(&resources.requests, "memory").as_deref(), Some("256Mi"));
    assert_eq!(quantity(&resources.limits, "memory").as_deref(), Some("512Mi"), "the operator's limit stays");

    let mut greedy = sample_workflow();
    greedy["resources"] = json!({"cpu": "8"});
    let id = world.submit(&json!({"workflow": greedy, "input": {"n": 1}})).await?;
    assert_eq!(wait_terminal(&world.api.db, &[id], Duration::from_secs(60)).await?, ["failed"]);
    let (error,): (Option<String>,) =
        sqlx::query_as("SELECT error FROM executions WHERE id = $1").bind(id).fetch_one(&world.api.db).await?;
    let error = error.unwrap_or_default();
    assert!(error.contains("resources.cpu") && error.contains("limit"), "{error}");
    assert!(world.jobs_of(id).is_empty(), "no Job for a refused attempt");
    dispatcher.stop().await?;
    Ok(())
}

/// Finished Jobs are deleted after their `ttlSecondsAfterFinished`; the execution's record stays in PostgreSQL
/// and the API still serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finished_jobs_expire_while_the_record_stays() -> anyhow::Result<()> {
    let world = World::start().await?;
    let dispatcher = KubeDispatcher::start(&world.args("d1")?.set("--executor-ttl-secs", 1))?;
    let ok = world.submit(&json!({"workflow": sample_workflow(), "input": {"n": 4}})).await?;
    let mut failing = sleepy(60_000);
    failing["deadline_ms"] = json!(500);
    let timed_out = world.submit(&json!({"workflow": failing, "input": {"n": 4}})).await?;
    let statuses = wait_terminal(&world.api.db, &[ok, timed_out], Duration::from_secs(60)).await?;
    assert_eq!(statuses, ["succeeded", "timed_out"]);
    wait_until(Duration::from_secs(15), "finished Jobs to expire", || async { Ok(world.sim.jobs().is_empty()) })
        .await?;
    assert_eq!(world.sim.job_creates_seen(), 2);

    for (id, want) in [(ok, "succeeded"), (timed_out, "timed_out")] {
        assert_eq!(world.status(id).await?, want);
        assert_eq!(world.attempts(id).await?.len(), 1);
        let response = world.api.get(&format!("/api/v1/executions/{id}"), &world.key).await?;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await?;
        assert_eq!(body["status"], want, "{body}");
    }
    assert!(world.result_key(ok).await?.is_some());
    dispatcher.stop().await?;
    assert!(leftover_leases(&world.api).await?.is_empty());
    Ok(())
}
