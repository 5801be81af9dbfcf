//! `GET /api/v1/executions/{id}/logs`: a finished attempt's lines from its log object, a running attempt's from
//! its progress events, through the process runner and the real executor; bad queries and other tenants' ids.
//!
//! Needs the workspace binaries: `cargo build --workspace --bins`.

use flow_like_test_harness::{DispatcherArgs, InProcessDispatcher, TestApi};
use flow_like_tests::fixtures::{Submission, WorkflowDoc, assert_problem, wait_terminal, wait_until};
use flow_like_tests::sse::read_events;
use serde_json::{Value, json};
use std::time::Duration;

fn logging(sleep_ms: u64) -> Value {
    WorkflowDoc::new()
        .name("chatty")
        .node("say", json!({"type": "log", "params": {"message": "\"n is \\(.input.n)\"", "level": "warn"}}))
        .sleep("wait", sleep_ms)
        .build()
}

async fn logs(api: &TestApi, key: &str, path: &str) -> Value {
    let response = api.get(path, key).await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attempts_log_lines_come_from_its_events_while_it_runs_and_from_its_object_after() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    let dispatcher = InProcessDispatcher::start(&DispatcherArgs::new(&api.configs, "d0")?).await?;

    let running = Submission::of(logging(60_000)).input(json!({"n": 7})).submit(&api, &key).await?;
    let path = format!("/api/v1/executions/{running}/logs");
    let (api_ref, key_ref, path_ref) = (&api, key.as_str(), path.as_str());
    wait_until(Duration::from_secs(30), "the running attempt's log line", || async move {
        Ok(logs(api_ref, key_ref, path_ref).await["lines"].as_array().is_some_and(|l| !l.is_empty()))
    })
    .await?;
    let live = logs(&api, &key, &path).await;
    assert_eq!(live["source"], "events", "{live}");
    assert_eq!(live["attempt"], 1);
    assert_eq!(live["lines"][0]["message"], "n is 7");
    assert_eq!(live["lines"][0]["node"], "say");
    assert_eq!(live["lines"][0]["level"], "warn");

    let done = Submission::of(logging(10)).input(json!({"n": 8})).submit(&api, &key).await?;
    assert_eq!(wait_terminal(&api.db, &[done], Duration::from_secs(30)).await?, ["succeeded"]);
    let stored = logs(&api, &key, &format!("/api/v1/executions/{done}/logs?attempt=1")).await;
    assert_eq!(stored["source"], "stored", "{stored}");
    let messages: Vec<&str> =
        stored["lines"].as_array().unwrap().iter().filter_map(|l| l["message"].as_str()).collect();
    assert!(messages.contains(&"n is 8"), "{stored}");

    // Bad queries are 400; attempts that do not exist and other tenants' executions are 404.
    for query in ["attempt=0", "attempt=x", "attempt=1&follow=maybe"] {
        assert_problem(api.get(&format!("/api/v1/executions/{done}/logs?{query}"), &key).await?, 400).await;
    }
    assert_problem(api.get(&format!("/api/v1/executions/{done}/logs?attempt=2"), &key).await?, 404).await;
    let other = api.tenant_key("globex").await?;
    assert_problem(api.get(&format!("/api/v1/executions/{done}/logs"), &other).await?, 404).await;
    dispatcher.stop().await?;
    Ok(())
}

/// `?follow=true`: the lines of a running attempt as Server-Sent Events, as they are logged, then `end` with the
/// outcome; a finished attempt's lines then `end` at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn following_an_attempts_logs_streams_its_lines_then_ends_with_the_outcome() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    let dispatcher = InProcessDispatcher::start(&DispatcherArgs::new(&api.configs, "d0")?).await?;
    let id = Submission::of(logging(1_500)).input(json!({"n": 9})).submit(&api, &key).await?;
    let follow = api.get(&format!("/api/v1/executions/{id}/logs?follow=true"), &key).await?;
    let events = read_events(follow, Duration::from_secs(60)).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds.last(), Some(&"end"), "{events:?}");
    assert_eq!(events.last().unwrap().data, json!({"status": "succeeded"}));
    let lines: Vec<&Value> = events.iter().filter(|e| e.event == "log").map(|e| &e.data).collect();
    assert!(lines.iter().any(|l| l["message"] == "n is 9" && l["node"] == "say" && l["level"] == "warn"), "{events:?}");
    assert!(events.iter().filter(|e| e.event == "log").all(|e| !e.id.is_empty()), "log events carry their entry id");

    // Finished: the same lines again from the archive, and the end at once.
    let again = read_events(
        api.get(&format!("/api/v1/executions/{id}/logs?follow=true"), &key).await?,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(again.iter().filter(|e| e.event == "log").count(), lines.len());
    assert_eq!(again.last().unwrap().data, json!({"status": "succeeded"}));
    dispatcher.stop().await?;
    Ok(())
}
