//! The dispatcher's queue gauges, read from real Redis: what waits per tenant and priority, the age of the oldest
//! waiting execution, the limits in effect, the tenants past the label bound under "other", and the gauges
//! emptying once a dispatcher has run the work.

use flow_like_dispatcher::health::Metrics;
use flow_like_test_harness::{ADMIN_TOKEN, DispatcherArgs, InProcessDispatcher, TestApi};
use flow_like_tests::fixtures::{sample_workflow, submit, wait_terminal};
use flow_like_tests::inspect::metric_total as total;
use serde_json::json;
use std::time::Duration;

/// The value of the sample `name{labels}` in an OpenMetrics text, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(api: &TestApi, metrics: &Metrics, max_tenants: usize) -> String {
    let mut redis = api.redis.clone();
    metrics.queue.refresh(&mut redis, &api.keys, max_tenants).await.unwrap();
    metrics.encode()
}

#[tokio::test]
async fn queue_gauges_follow_the_queue() {
    let api = TestApi::start().await.unwrap();
    let acme = api.tenant_key("acme").await.unwrap();
    let globex = api.tenant_key("globex").await.unwrap();
    let limits = api.http.put(api.url("/api/v1/tenants/acme/limits")).bearer_auth(ADMIN_TOKEN);
    assert_eq!(limits.json(&json!({"concurrency_limit": 3})).send().await.unwrap().status(), 200);
    let mut ids = Vec::new();
    for (key, priority) in [(&acme, 5), (&acme, 5), (&acme, 7), (&globex, 5)] {
        let body = json!({"workflow": sample_workflow(), "input": {"n": 1}, "priority": priority});
        ids.push(submit(&api, key, &body).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // No dispatcher yet: everything waits.
    let metrics = Metrics::default();
    let text = scrape(&api, &metrics, 100).await;
    let waiting = |text: &str, tenant: &str, priority: u8| {
        sample(text, &format!("flowlike_dispatcher_queue_waiting{{tenant=\"{tenant}\",priority=\"{priority}\"}}"))
    };
    assert_eq!(waiting(&text, "acme", 5), Some(2.0), "{text}");
    assert_eq!(waiting(&text, "acme", 7), Some(1.0), "{text}");
    assert_eq!(waiting(&text, "globex", 5), Some(1.0), "{text}");
    let age = sample(&text, "flowlike_dispatcher_queue_oldest_waiting_age_seconds{tenant=\"acme\"}").unwrap();
    assert!((1.0..60.0).contains(&age), "oldest waiting age {age}\n{text}");
    assert_eq!(sample(&text, "flowlike_dispatcher_queue_tenant_limit{tenant=\"acme\"}"), Some(3.0), "{text}");
    assert_eq!(sample(&text, "flowlike_dispatcher_queue_running_global"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "flowlike_dispatcher_queue_dead_letters"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "flowlike_dispatcher_queue_dispatchers_alive"), Some(0.0), "{text}");

    // One named tenant: the busiest (acme, 3 waiting) keeps its name, globex is counted under "other".
    let text = scrape(&api, &metrics, 1).await;
    assert_eq!(waiting(&text, "acme", 5), Some(2.0), "{text}");
    assert_eq!(waiting(&text, "globex", 5), None, "{text}");
    assert_eq!(waiting(&text, "other", 5), Some(1.0), "{text}");
    assert!(!text.contains("tenant_limit{tenant=\"other\"}"), "{text}");

    // A dispatcher runs it all: nothing waits any more, and the dispatcher counts itself alive.
    let dispatcher =
        InProcessDispatcher::start(&DispatcherArgs::new(&api.configs, "metrics-1").unwrap()).await.unwrap();
    wait_terminal(&api.db, &ids, Duration::from_secs(60)).await.unwrap();
    let text = scrape(&api, &metrics, 100).await;
    dispatcher.stop().await.unwrap();
    assert!(!text.contains("flowlike_dispatcher_queue_waiting{"), "{text}");
    assert!(!text.contains("flowlike_dispatcher_queue_oldest_waiting_age_seconds{"), "{text}");
    assert_eq!(sample(&text, "flowlike_dispatcher_queue_dispatchers_alive"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "flowlike_dispatcher_queue_global_limit"), Some(100.0), "{text}");
}

/// `promtool check metrics` on a scraped text: no lint problem. promtool comes from Debian's `prometheus`
/// package, which scripts/install-deps.sh installs; without it this fails rather than passing unchecked.
fn promtool_check(what: &str, text: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/install-deps.sh installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool check metrics on the {what}:\n{report}");
}

async fn scrape_url(http: &reqwest::Client, url: &str) -> String {
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.text().await.unwrap()
}

/// Real work through the API and two dispatchers (real executors, then a runner whose attempts always fail on
/// infrastructure) moves every family it should, and both servers' output passes `promtool check metrics`.
#[tokio::test]
async fn real_work_moves_the_families_and_promtool_accepts_them() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();

    // Refusals, each for its own reason, counted although some never reach the handler.
    let no_key = api.http.post(api.url("/api/v1/executions")).json(&json!({"workflow": sample_workflow()}));
    assert_eq!(no_key.send().await.unwrap().status(), 401);
    let broken =
        api.http.post(api.url("/api/v1/executions")).bearer_auth(&key).header("content-type", "application/json");
    assert_eq!(broken.body("{\"workflow\":").send().await.unwrap().status(), 400);
    let text_body = api.http.post(api.url("/api/v1/executions")).bearer_auth(&key).header("content-type", "text/plain");
    assert_eq!(text_body.body("hello").send().await.unwrap().status(), 415);
    let cyclic = json!({"workflow": {"nodes": {"a": {"type": "transform", "inputs": ["a"], "params": {"expr": "1"}}}}});
    assert_eq!(api.post_json("/api/v1/executions", &key, &cyclic).await.unwrap().status(), 422);

    // Three that succeed and one that fails, run by real executors.
    let mut ids = Vec::new();
    for n in 1..=3 {
        ids.push(submit(&api, &key, &json!({"workflow": sample_workflow(), "input": {"n": n}})).await.unwrap());
    }
    let failing = json!({"workflow": {"nodes": {"stop": {"type": "fail", "params": {"message": "no"}}}}});
    ids.push(submit(&api, &key, &failing).await.unwrap());
    let port = flow_like_test_services::free_port().unwrap();
    let args =
        DispatcherArgs::new(&api.configs, "metrics-real").unwrap().set("--metrics-listen", format!("127.0.0.1:{port}"));
    let dispatcher = InProcessDispatcher::start(&args).await.unwrap();
    let statuses = wait_terminal(&api.db, &ids, Duration::from_secs(60)).await.unwrap();
    assert_eq!(statuses.iter().filter(|s| *s == "succeeded").count(), 3, "{statuses:?}");
    // The status pipeline has applied the endings; give the last batch its metrics.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let real = scrape_url(&api.http, &format!("http://127.0.0.1:{port}/metrics")).await;
    dispatcher.stop().await.unwrap();

    assert_eq!(total(&real, "flowlike_dispatcher_admitted_total", &[]), 4.0, "{real}");
    assert!(total(&real, "flowlike_dispatcher_admission_duration_seconds_count", &[]) >= 1.0, "{real}");
    assert_eq!(total(&real, "flowlike_dispatcher_queue_wait_seconds_count", &["runner=\"process\""]), 4.0, "{real}");
    let ended = |outcome: &str| {
        total(
            &real,
            "flowlike_dispatcher_end_to_end_seconds_count",
            &["runner=\"process\"", &format!("outcome=\"{outcome}\"")],
        )
    };
    assert_eq!((ended("succeeded"), ended("failed")), (3.0, 1.0), "{real}");
    assert_eq!(total(&real, "flowlike_dispatcher_run_duration_seconds_count", &["runner=\"process\""]), 4.0, "{real}");
    // Started is usually applied after dispatched; when it wins the race the interval is not observed.
    let started = total(&real, "flowlike_dispatcher_dispatch_to_start_seconds_count", &["runner=\"process\""]);
    assert!((1.0..=4.0).contains(&started), "dispatch to start observed {started} times\n{real}");
    // dispatched + started + finished for each of the four.
    assert!(total(&real, "flowlike_dispatcher_status_events_applied_total", &[]) >= 8.0, "{real}");
    assert!(total(&real, "flowlike_dispatcher_status_lag_seconds_count", &[]) >= 12.0, "{real}");
    assert!(total(&real, "flowlike_dispatcher_outbox_batch_size_count", &[]) >= 1.0, "{real}");
    assert_eq!(total(&real, "flowlike_dispatcher_dead_lettered_total", &[]), 0.0, "{real}");
    // The nodes, as the executors reported them: `double` ran and `big` was skipped (n <= 5) three times.
    let nodes = |node_type: &str, outcome: &str| {
        let labels = [format!("node_type=\"{node_type}\""), format!("outcome=\"{outcome}\"")];
        total(&real, "flowlike_dispatcher_executor_node_runs_total", &[&labels[0], &labels[1]])
    };
    assert_eq!((nodes("transform", "succeeded"), nodes("transform", "skipped")), (3.0, 3.0), "{real}");
    assert_eq!(nodes("fail", "failed"), 1.0, "{real}");
    let timed = total(&real, "flowlike_dispatcher_executor_node_duration_seconds_count", &["node_type=\"transform\""]);
    assert!((3.0..=6.0).contains(&timed), "{timed}\n{real}");
    promtool_check("dispatcher's metrics (process runner)", &real);

    // One that fails on infrastructure every time: retried twice (3 attempts allowed), then dead-lettered.
    let doomed = submit(&api, &key, &json!({"workflow": sample_workflow(), "input": {"n": 9}})).await.unwrap();
    let port = flow_like_test_services::free_port().unwrap();
    let args = DispatcherArgs::new(&api.configs, "metrics-infra")
        .unwrap()
        .set("--metrics-listen", format!("127.0.0.1:{port}"));
    let runner = flow_like_tests::scripted_runner::ScriptedRunner::new(|_| {
        flow_like_tests::scripted_runner::Script::InfraFailure(Duration::from_millis(10))
    });
    let dispatcher = InProcessDispatcher::start_with_runner(&args, runner).unwrap();
    let statuses = wait_terminal(&api.db, &[doomed], Duration::from_secs(60)).await.unwrap();
    assert_eq!(statuses, ["failed"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let infra = scrape_url(&api.http, &format!("http://127.0.0.1:{port}/metrics")).await;
    dispatcher.stop().await.unwrap();
    assert_eq!(total(&infra, "flowlike_dispatcher_attempts_retried_total", &[]), 2.0, "{infra}");
    assert_eq!(
        total(&infra, "flowlike_dispatcher_dead_lettered_total", &["reason=\"attempts_exhausted\""]),
        1.0,
        "{infra}"
    );
    assert_eq!(total(&infra, "flowlike_dispatcher_queue_wait_seconds_count", &["runner=\"scripted\""]), 3.0, "{infra}");
    assert_eq!(total(&infra, "flowlike_dispatcher_queue_dead_letters", &[]), 1.0, "{infra}");
    assert_eq!(
        total(&infra, "flowlike_dispatcher_end_to_end_seconds_count", &["runner=\"scripted\"", "outcome=\"failed\""]),
        1.0,
        "{infra}"
    );
    promtool_check("dispatcher's metrics (attempts failing on infrastructure)", &infra);

    // The API counted what it accepted and refused, by reason.
    // A stream on an execution that is still queued stays open.
    let waiting = submit(&api, &key, &json!({"workflow": sample_workflow(), "input": {"n": 4}})).await.unwrap();
    let events = api.http.get(api.url(&format!("/api/v1/executions/{waiting}/events"))).bearer_auth(&key);
    let stream = events.send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let text = scrape_url(&api.http, &format!("{}/metrics", api.metrics_base)).await;
    assert_eq!(total(&text, "flowlike_api_submissions_total", &["outcome=\"accepted\""]), 6.0, "{text}");
    for reason in ["unauthenticated", "malformed_request", "unsupported_media_type", "invalid"] {
        let refused = total(&text, "flowlike_api_submissions_refused_total", &[&format!("reason=\"{reason}\"")]);
        assert_eq!(refused, 1.0, "{reason}\n{text}");
    }
    assert_eq!(total(&text, "flowlike_api_submissions_total", &["outcome=\"refused\""]), 4.0, "{text}");
    assert_eq!(total(&text, "flowlike_api_sse_streams_open", &[]), 1.0, "{text}");
    let created = ["method=\"POST\"", "route=\"/api/v1/executions\"", "status=\"202\""];
    assert_eq!(total(&text, "flowlike_api_http_requests_total", &created), 6.0, "{text}");
    promtool_check("API's metrics", &text);
    // Prometheus asks for OpenMetrics and gets it.
    let open = api
        .http
        .get(format!("{}/metrics", api.metrics_base))
        .header("accept", "application/openmetrics-text;version=1.0.0");
    let open = open.send().await.unwrap();
    assert!(open.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let open = open.text().await.unwrap();
    assert!(open.ends_with("# EOF\n") && open.contains("# TYPE flowlike_api_submissions counter"), "{open}");
    drop(stream);
}
