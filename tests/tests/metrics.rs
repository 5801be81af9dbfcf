//! The dispatcher's queue gauges, read from real Redis: what waits per tenant and priority, the age of the oldest
//! waiting execution, the limits in effect, the tenants past the label bound under "other", and the gauges
//! emptying once a dispatcher has run the work.

use flow_like_dispatcher::health::Metrics;
use flow_like_tests::api::{ADMIN_TOKEN, TestApi, sample_workflow};
use flow_like_tests::stack::{DispatcherArgs, InProcessDispatcher, submit, wait_terminal};
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
