//! Traces across the API, the dispatcher and the executor, received by a small OTLP/HTTP receiver: one trace per
//! execution with `submit` → `queued` and `attempt N` → (`kubernetes.create_job`) and `run` → `node <name>`,
//! through the process runner and through the Kubernetes runner (the simulator's kubelet runs the real
//! executor, which gets the endpoint and its parent span from the Job's environment).
//!
//! Needs the workspace binaries: `cargo build --workspace --bins`.

use flow_like_kube_sim::{KubeSim, KubeSimOptions, KubeletOptions};
use flow_like_test_harness::{DispatcherArgs, InProcessDispatcher, TestApi, workspace_binary};
use flow_like_test_services::TestServices;
use flow_like_tests::fixtures::{Submission, wait_terminal};
use flow_like_tests::otlp::{OtlpReceiver, ReceivedSpan};
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

async fn api_tracing_to(receiver: &OtlpReceiver) -> TestApi {
    let configs = TestServices::get().await.unwrap().fresh_configs().await.unwrap();
    let endpoint = receiver.endpoint.clone();
    TestApi::start_with(configs, |c| c.trace.otlp_endpoint = Some(endpoint)).await.unwrap()
}

async fn submit(api: &TestApi, key: &str, traceparent: Option<&str>) -> Uuid {
    let mut request = api.http.post(api.url("/api/v1/executions")).bearer_auth(key);
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.json(&Submission::sample().input(json!({"n": 21})).body()).send().await.unwrap();
    assert_eq!(response.status(), 202);
    response.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap()
}

/// The one span of `trace` named `name`.
fn one<'a>(spans: &'a [ReceivedSpan], trace: &str, name: &str) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.trace_id == trace && s.name == name).collect();
    assert_eq!(found.len(), 1, "spans named {name} in trace {trace}: {spans:#?}");
    found[0]
}

/// Checks the tree of one execution's trace and returns its spans: who is whose parent, which service sent
/// each, and that children sit inside their parent's time (the executor's `run` may end after the
/// dispatcher's `attempt` by a few milliseconds of clock reading, so only starts are compared there).
fn check_tree(spans: &[ReceivedSpan], trace: &str, execution: Uuid, runner: &str) -> Vec<ReceivedSpan> {
    let submit = one(spans, trace, "submit");
    let queued = one(spans, trace, "queued");
    let attempt = one(spans, trace, "attempt 1");
    let run = one(spans, trace, "run");
    let node = one(spans, trace, "node double");
    assert_eq!(submit.service, "flow-like-api");
    assert_eq!(submit.kind, 2, "server");
    assert_eq!(submit.attributes["flowlike.execution_id"], execution.to_string());
    assert_eq!((queued.service.as_str(), attempt.service.as_str()), ("flow-like-dispatcher", "flow-like-dispatcher"));
    assert_eq!((run.service.as_str(), node.service.as_str()), ("flow-like-executor", "flow-like-executor"));
    assert_eq!(queued.parent.as_deref(), Some(submit.span_id.as_str()));
    assert_eq!(attempt.parent.as_deref(), Some(submit.span_id.as_str()));
    assert_eq!(run.parent.as_deref(), Some(attempt.span_id.as_str()));
    assert_eq!(node.parent.as_deref(), Some(run.span_id.as_str()));
    assert_eq!(attempt.attributes["flowlike.runner"], runner);
    assert_eq!(attempt.attributes["flowlike.end"], "reported");
    assert_eq!(node.attributes["flowlike.node_type"], "transform");
    assert_eq!(run.attributes["process.exit.code"], "0");
    assert!(queued.end_ns <= attempt.start_ns + 1_000_000, "queued ends where the attempt starts");
    // `queued` starts at the enqueue time and `attempt` at the claim time, both read from Redis to the
    // millisecond, so each may sit up to 1 ms before the nanosecond clock that started its neighbour.
    const MS: u128 = 1_000_000;
    assert!(submit.start_ns <= queued.start_ns + MS, "queued starts after submit: {submit:?} {queued:?}");
    assert!(attempt.start_ns <= run.start_ns + MS, "run starts after its attempt: {attempt:?} {run:?}");
    assert!(run.start_ns <= node.start_ns, "node starts after run: {run:?} {node:?}");
    assert!(node.end_ns <= run.end_ns);
    assert!(spans.iter().all(|s| s.status != 2), "no span failed: {spans:#?}");
    spans.iter().filter(|s| s.trace_id == trace).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trace_per_execution_through_the_process_runner() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let api = api_tracing_to(&receiver).await;
    let key = api.tenant_key("acme").await.unwrap();
    let args = DispatcherArgs::new(&api.configs, "traces-process").unwrap().set("--otlp-endpoint", &receiver.endpoint);
    let dispatcher = InProcessDispatcher::start(&args).await.unwrap();

    // One joins the client's trace; the other starts a trace named by its execution id.
    let joined = submit(&api, &key, Some(&format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))).await;
    let own = submit(&api, &key, None).await;
    let statuses = wait_terminal(&api.db, &[joined, own], Duration::from_secs(60)).await.unwrap();
    assert_eq!(statuses, ["succeeded", "succeeded"]);
    let own_trace = own.simple().to_string();
    let spans = receiver
        .wait_for(Duration::from_secs(20), "both executions' run spans", |spans| {
            spans.iter().filter(|s| s.name == "run").count() == 2
                && spans.iter().filter(|s| s.name == "attempt 1").count() == 2
        })
        .await
        .unwrap();
    dispatcher.stop().await.unwrap();

    let joined_spans = check_tree(&spans, CLIENT_TRACE, joined, "process");
    assert_eq!(
        one(&spans, CLIENT_TRACE, "submit").parent.as_deref(),
        Some(CLIENT_SPAN),
        "a child of the client's span"
    );
    let own_spans = check_tree(&spans, &own_trace, own, "process");
    assert_eq!(one(&spans, &own_trace, "submit").parent, None, "the root of its own trace");
    // Both nodes of the sample ran for n = 21 (42 > 10).
    for trace in [CLIENT_TRACE, own_trace.as_str()] {
        assert_eq!(one(&spans, trace, "node big").attributes["flowlike.node_status"], "succeeded");
    }
    assert_eq!(joined_spans.len(), own_spans.len());
    assert_eq!(spans.len(), joined_spans.len() + own_spans.len(), "no stray spans: {spans:#?}");
    assert!(receiver.refusals().is_empty(), "{:?}", receiver.refusals());

    // The record keeps the context, so an attempt re-enqueued from PostgreSQL stays in the trace.
    let (stored,): (Option<String>,) = sqlx::query_as("SELECT traceparent FROM executions WHERE id = $1")
        .bind(joined)
        .fetch_one(&api.db)
        .await
        .unwrap();
    let submit_span = one(&spans, CLIENT_TRACE, "submit").span_id.clone();
    assert_eq!(stored, Some(format!("00-{CLIENT_TRACE}-{submit_span}-01")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trace_per_execution_through_the_kubernetes_runner() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let api = api_tracing_to(&receiver).await;
    let key = api.tenant_key("acme").await.unwrap();
    let kubelet = KubeletOptions::executor(workspace_binary("flow-like-executor").unwrap());
    let sim = KubeSim::start(KubeSimOptions { kubelet: Some(kubelet), ..KubeSimOptions::default() }).await.unwrap();
    let (redis, s3) = (&api.configs.redis, &api.configs.s3);
    sim.create_secret(
        "default",
        "flow-like-executor",
        &[
            ("REDIS_URL", redis.url.as_str()),
            ("S3_ACCESS_KEY_ID", s3.access_key_id.as_str()),
            ("S3_SECRET_ACCESS_KEY", s3.secret_access_key.as_str()),
        ],
    );
    let args = DispatcherArgs::new(&api.configs, "traces-kube")
        .unwrap()
        .set("--runner", "kubernetes")
        .set("--kubeconfig", sim.kubeconfig_path().unwrap().display())
        .set("--executor-image", "ghcr.io/flow-like/flow-like-executor:test")
        .set("--otlp-endpoint", &receiver.endpoint);
    let dispatcher = InProcessDispatcher::start(&args).await.unwrap();
    let id = submit(&api, &key, None).await;
    assert_eq!(wait_terminal(&api.db, &[id], Duration::from_secs(60)).await.unwrap(), ["succeeded"]);
    let trace = id.simple().to_string();
    let spans = receiver
        .wait_for(Duration::from_secs(20), "the run span", |spans| {
            spans.iter().any(|s| s.name == "run") && spans.iter().any(|s| s.name == "attempt 1")
        })
        .await
        .unwrap();
    dispatcher.stop().await.unwrap();

    check_tree(&spans, &trace, id, "kubernetes");
    let attempt = one(&spans, &trace, "attempt 1");
    let create = one(&spans, &trace, "kubernetes.create_job");
    assert_eq!(create.parent.as_deref(), Some(attempt.span_id.as_str()));
    assert_eq!(create.kind, 3, "client");
    assert_eq!(create.attributes["k8s.job.name"], flow_like_dispatcher::runner::kubernetes::job_name(id, 1));
    let run = one(&spans, &trace, "run");
    assert!(create.end_ns <= run.start_ns, "the Job exists before its executor runs");
    // The Job carried the context to the executor.
    let job = sim.jobs().into_iter().next().expect("the Job");
    let env = job.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap();
    let traceparent = env.iter().find(|e| e.name == "TRACEPARENT").and_then(|e| e.value.clone());
    assert_eq!(traceparent, Some(format!("00-{trace}-{}-01", attempt.span_id)));
    assert!(env.iter().any(|e| e.name == "OTEL_EXPORTER_OTLP_ENDPOINT"), "{env:?}");
    assert!(receiver.refusals().is_empty(), "{:?}", receiver.refusals());
}

/// With no endpoint set nothing is exported, and an unsupported protocol is refused at start-up by name.
#[tokio::test]
async fn traces_are_off_without_an_endpoint_and_other_protocols_are_refused() {
    let mut config = flow_like_shared::config::TraceConfig::default();
    assert!(!flow_like_shared::trace::Tracer::from_config(&config, "x").unwrap().is_enabled());
    config.otlp_endpoint = Some("http://127.0.0.1:4318".into());
    config.otlp_protocol = "grpc".into();
    let err = flow_like_shared::trace::Tracer::from_config(&config, "x").unwrap_err();
    assert!(err.to_string().contains("only http/json"), "{err}");
}
