//! The Kubernetes API simulator seen through kube-rs: CRUD, conflicts, validation, watches surviving 410,
//! the kubelet running Jobs (success, podFailurePolicy, backoff, deadline, TTL, eviction) and request faults.

use flow_like_dispatcher::config::KubernetesConfig;
use flow_like_dispatcher::runner::kubernetes::{ExecutorEnv, JobSettings, job_manifest, label_selector};
use flow_like_kube_sim::{Fault, KubeSim, KubeSimOptions, KubeletOptions};
use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::watcher;
use std::time::Duration;

fn settings() -> JobSettings {
    let config = KubernetesConfig {
        image: "ghcr.io/flow-like/flow-like-executor:test".into(),
        ..KubernetesConfig::from_env().unwrap()
    };
    JobSettings::from_config(&config, ExecutorEnv::default()).unwrap()
}

/// A real executor Job whose container runs `script` instead of the executor.
fn job(script: &str, adjust: impl FnOnce(&mut JobSettings)) -> Job {
    let mut settings = settings();
    adjust(&mut settings);
    let spec = flow_like_tests::fixtures::job_spec_input();
    let mut job = job_manifest(&spec, &settings).unwrap();
    let pod = job.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
    pod.containers[0].command = Some(vec!["sh".into(), "-c".into(), script.into()]);
    job
}

async fn sim(kubelet: bool) -> KubeSim {
    let options = KubeSimOptions {
        kubelet: kubelet.then(|| KubeletOptions::new(["sh", "-c", "exit 0"])),
        ..KubeSimOptions::default()
    };
    let sim = KubeSim::start(options).await.unwrap();
    sim.create_secret("default", "flow-like-executor", &[("REDIS_URL", "redis://secret@redis:6379")]);
    sim
}

/// Polls a Job until `done` holds for it (or it is gone and `done(None)` holds).
async fn wait_job(api: &Api<Job>, name: &str, what: &str, done: impl Fn(Option<&Job>) -> bool) -> Option<Job> {
    let start = tokio::time::Instant::now();
    loop {
        let job = api.get_opt(name).await.unwrap();
        if done(job.as_ref()) {
            return job;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}: {job:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn finished(job: Option<&Job>) -> Option<(String, String)> {
    let conditions = job?.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| (c.type_.clone(), c.reason.clone().unwrap_or_default()))
}

async fn wait_finished(api: &Api<Job>, name: &str) -> (String, String, Job) {
    let job = wait_job(api, name, "the Job to finish", |j| finished(j).is_some()).await.unwrap();
    let (kind, reason) = finished(Some(&job)).unwrap();
    (kind, reason, job)
}

fn name_of(job: &Job) -> String {
    job.metadata.name.clone().unwrap()
}

#[tokio::test]
async fn create_get_list_delete_and_conflicts() {
    let sim = sim(false).await;
    let api: Api<Job> = Api::default_namespaced(sim.client());
    let first = job("exit 0", |_| {});
    let name = name_of(&first);
    let created = api.create(&PostParams::default(), &first).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.resource_version.is_some());
    let labels = &created.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert_eq!(labels["job-name"], name);
    assert_eq!(labels["batch.kubernetes.io/job-name"], name);

    match api.create(&PostParams::default(), &first).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 409);
            assert_eq!(status.reason, "AlreadyExists");
        }
        other => panic!("expected 409, got {other:?}"),
    }
    assert_eq!(sim.job_creates_seen(), 2);

    let fetched = api.get(&name).await.unwrap();
    assert_eq!(fetched.metadata.uid, created.metadata.uid);
    assert!(api.get_opt("fl-missing-a1").await.unwrap().is_none());

    let other = api.create(&PostParams::default(), &job("exit 0", |_| {})).await.unwrap();
    let all = api.list(&ListParams::default().labels(&label_selector())).await.unwrap();
    assert_eq!(all.items.len(), 2);
    let one = api.list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={name}"))).await.unwrap();
    assert_eq!(one.items.len(), 1);
    let none = api
        .list(&ListParams::default().labels("flow-like.dev/tenant in (other,tenants),app.kubernetes.io/name"))
        .await
        .unwrap();
    assert!(none.items.is_empty());
    let not = api.list(&ListParams::default().labels(&format!("app.kubernetes.io/instance!={name}"))).await.unwrap();
    assert_eq!(not.items.len(), 1);
    assert_eq!(not.items[0].metadata.name, other.metadata.name);

    api.delete(&name, &DeleteParams::background()).await.unwrap();
    assert!(api.get_opt(&name).await.unwrap().is_none());
    match api.delete(&name, &DeleteParams::background()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"))
        }
        other => panic!("expected 404, got {other:?}"),
    }
    assert_eq!(sim.jobs().len(), 1);
}

#[tokio::test]
async fn invalid_jobs_are_refused_with_422() {
    let sim = sim(false).await;
    let dynamic: Api<DynamicObject> = Api::default_namespaced_with(sim.client(), &ApiResource::erase::<Job>(&()));
    let mut body = serde_json::to_value(job("exit 0", |_| {})).unwrap();
    body["spec"]["backofLimit"] = serde_json::json!(1);
    let object: DynamicObject = serde_json::from_value(body).unwrap();
    match dynamic.create(&PostParams::default(), &object).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422);
            assert_eq!(status.reason, "Invalid");
            assert!(status.message.contains("backofLimit"), "{}", status.message);
        }
        other => panic!("expected 422, got {other:?}"),
    }

    let api: Api<Job> = Api::default_namespaced(sim.client());
    let mut restarting = job("exit 0", |_| {});
    restarting.spec.as_mut().unwrap().template.spec.as_mut().unwrap().restart_policy = Some("Always".into());
    let err = api.create(&PostParams::default(), &restarting).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 422), "{err:?}");

    let mut long_name = job("exit 0", |_| {});
    long_name.metadata.name = Some("x".repeat(64));
    let err = api.create(&PostParams::default(), &long_name).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 422), "{err:?}");
    assert!(sim.jobs().is_empty());
}

#[tokio::test]
async fn watcher_sees_events_and_relists_after_410() {
    let sim = sim(false).await;
    let api: Api<Job> = Api::default_namespaced(sim.client());
    let config = watcher::Config::default().labels(&label_selector()).timeout(1);
    let mut events = watcher(api.clone(), config).boxed();

    let first = api.create(&PostParams::default(), &job("exit 0", |_| {})).await.unwrap();
    let mut seen_first = false;
    let mut saw_gone = false;
    let mut relisted = false;
    let mut second_name = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(5), events.next()).await else {
            continue;
        };
        match event {
            Ok(watcher::Event::Apply(j) | watcher::Event::InitApply(j)) => {
                if j.metadata.name == first.metadata.name && !seen_first {
                    seen_first = true;
                    // Compaction makes the watcher's next resume point too old.
                    sim.inject(Fault::CompactHistory);
                }
                if relisted && j.metadata.name == second_name {
                    break;
                }
            }
            Ok(watcher::Event::Init) if saw_gone => relisted = true,
            Ok(watcher::Event::InitDone) if relisted && second_name.is_none() => {
                let second = api.create(&PostParams::default(), &job("exit 0", |_| {})).await.unwrap();
                second_name = second.metadata.name;
            }
            Err(watcher::Error::WatchError(status)) if status.code == 410 => saw_gone = true,
            _ => {}
        }
    }
    assert!(seen_first, "the first Job was not seen");
    assert!(saw_gone, "no 410 reached the watcher");
    assert!(relisted, "the watcher did not relist after 410");
    assert!(second_name.is_some(), "no Job seen after the relist");
}

#[tokio::test]
async fn kubelet_runs_jobs_and_statuses_follow() {
    let sim = sim(true).await;
    let api: Api<Job> = Api::default_namespaced(sim.client());
    let pods: Api<Pod> = Api::default_namespaced(sim.client());

    // The container sees the Job env and the Secret's values through envFrom.
    let ok = job(
        r#"test "$REDIS_URL" = redis://secret@redis:6379 && test "$EXECUTION_ATTEMPT" = 1 && test "$REDIS_PREFIX" = flowlike"#,
        |_| {},
    );
    let ok = api.create(&PostParams::default(), &ok).await.unwrap();
    let (kind, _, done) = wait_finished(&api, &name_of(&ok)).await;
    assert_eq!(kind, "Complete", "{:?}", done.status);
    let status = done.status.unwrap();
    assert_eq!(status.succeeded, Some(1));
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    let pod_list = pods.list(&ListParams::default().labels(&format!("job-name={}", name_of(&ok)))).await.unwrap();
    assert_eq!(pod_list.items.len(), 1);
    let pod = &pod_list.items[0];
    assert!(pod.metadata.name.as_ref().unwrap().starts_with(&format!("{}-", name_of(&ok))));
    assert_eq!(pod.status.as_ref().unwrap().phase.as_deref(), Some("Succeeded"));

    // Exit 3 is "the workflow failed": the pod failure policy fails the Job without retries.
    let failing = api.create(&PostParams::default(), &job("exit 3", |s| s.backoff_limit = 5)).await.unwrap();
    let (kind, reason, done) = wait_finished(&api, &name_of(&failing)).await;
    assert_eq!((kind.as_str(), reason.as_str()), ("Failed", "PodFailurePolicy"));
    assert_eq!(done.status.unwrap().failed, Some(1));
    let pod_list = pods.list(&ListParams::default().labels(&format!("job-name={}", name_of(&failing)))).await.unwrap();
    assert_eq!(pod_list.items.len(), 1);
    let terminated = pod_list.items[0].status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(terminated.exit_code, 3);

    // Exit 1 is an infrastructure failure: retried until backoffLimit.
    let flaky = api.create(&PostParams::default(), &job("exit 1", |s| s.backoff_limit = 1)).await.unwrap();
    let (kind, reason, done) = wait_finished(&api, &name_of(&flaky)).await;
    assert_eq!((kind.as_str(), reason.as_str()), ("Failed", "BackoffLimitExceeded"));
    assert_eq!(done.status.unwrap().failed, Some(2));
    let pod_list = pods.list(&ListParams::default().labels(&format!("job-name={}", name_of(&flaky)))).await.unwrap();
    assert_eq!(pod_list.items.len(), 2);

    // Deleting a Job in the background deletes its pods.
    api.delete(&name_of(&flaky), &DeleteParams::background()).await.unwrap();
    let left = pods.list(&ListParams::default().labels(&format!("job-name={}", name_of(&flaky)))).await.unwrap();
    assert!(left.items.is_empty());
}

#[tokio::test]
async fn deadline_ttl_eviction_and_pod_faults() {
    let sim = sim(true).await;
    let api: Api<Job> = Api::default_namespaced(sim.client());

    let slow = job("sleep 30", |s| s.deadline_secs = 1);
    let started = tokio::time::Instant::now();
    let slow = api.create(&PostParams::default(), &slow).await.unwrap();
    let (kind, reason, _) = wait_finished(&api, &name_of(&slow)).await;
    assert_eq!((kind.as_str(), reason.as_str()), ("Failed", "DeadlineExceeded"));
    assert!(started.elapsed() < Duration::from_secs(10));

    let short_lived = api.create(&PostParams::default(), &job("exit 0", |s| s.ttl_secs = 1)).await.unwrap();
    let name = name_of(&short_lived);
    wait_job(&api, &name, "TTL deletion", |j| j.is_none()).await;
    assert!(sim.pods().iter().all(|p| !p.metadata.name.as_ref().unwrap().starts_with(&name)));

    // An evicted pod is ignored by the pod failure policy: a new pod runs, even with backoffLimit 0.
    let evicted = api.create(&PostParams::default(), &job("sleep 1; exit 0", |_| {})).await.unwrap();
    let name = name_of(&evicted);
    let pod_name = loop {
        let running = sim.pods().into_iter().find(|p| {
            p.metadata.name.as_ref().unwrap().starts_with(&name)
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        });
        if let Some(pod) = running {
            break pod.metadata.name.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    sim.inject(Fault::EvictPod { namespace: "default".into(), name: pod_name.clone() });
    let (kind, _, _) = wait_finished(&api, &name).await;
    assert_eq!(kind, "Complete");
    let evicted_pod = sim.pods().into_iter().find(|p| p.metadata.name.as_deref() == Some(&pod_name)).unwrap();
    let status = evicted_pod.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("Evicted"));
    assert!(status.conditions.unwrap().iter().any(|c| c.type_ == "DisruptionTarget"));

    // OOM kill: exit 137, reason OOMKilled, counted as a failure.
    sim.inject(Fault::OomKill);
    let oom = api.create(&PostParams::default(), &job("exit 0", |_| {})).await.unwrap();
    let (kind, reason, _) = wait_finished(&api, &name_of(&oom)).await;
    assert_eq!((kind.as_str(), reason.as_str()), ("Failed", "BackoffLimitExceeded"));
    let pod = sim.pods().into_iter().find(|p| p.metadata.name.as_ref().unwrap().starts_with(&name_of(&oom))).unwrap();
    let terminated = pod.status.unwrap().container_statuses.unwrap()[0].state.clone().unwrap().terminated.unwrap();
    assert_eq!((terminated.exit_code, terminated.reason.as_deref()), (137, Some("OOMKilled")));

    // Image pull failure: the pod never starts; the deadline ends the Job.
    sim.inject(Fault::ImagePullFailure);
    let pull = api.create(&PostParams::default(), &job("exit 0", |s| s.deadline_secs = 1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pod = sim.pods().into_iter().find(|p| p.metadata.name.as_ref().unwrap().starts_with(&name_of(&pull))).unwrap();
    let waiting = pod.status.unwrap().container_statuses.unwrap()[0].state.clone().unwrap().waiting.unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("ImagePullBackOff"));
    let (kind, reason, _) = wait_finished(&api, &name_of(&pull)).await;
    assert_eq!((kind.as_str(), reason.as_str()), ("Failed", "DeadlineExceeded"));
}

#[tokio::test]
async fn throttling_and_server_errors_reach_the_client() {
    let sim = sim(false).await;
    // kube's default client retries 429 and succeeds.
    sim.inject(Fault::TooManyRequests { count: 2, retry_after_secs: 0 });
    let api: Api<Job> = Api::default_namespaced(sim.client());
    api.create(&PostParams::default(), &job("exit 0", |_| {})).await.unwrap();
    assert_eq!(sim.responses_with_status(429), 2);

    // Without retries the client sees the 429 itself.
    let raw: Api<Job> = Api::default_namespaced(sim.client_with(|c| c.default_retry = false));
    sim.inject(Fault::TooManyRequests { count: 1, retry_after_secs: 1 });
    match raw.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!((status.code, status.reason.as_str()), (429, "TooManyRequests")),
        other => panic!("expected 429, got {other:?}"),
    }
    sim.inject(Fault::ServerError { count: 1 });
    let err = raw.list(&ListParams::default()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 500), "{err:?}");

    sim.inject(Fault::Latency(Duration::from_millis(200)));
    let started = tokio::time::Instant::now();
    raw.list(&ListParams::default()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
}
