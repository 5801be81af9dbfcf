//! The operator's API: listing with filters and across tenants (admins), cancelling and redriving by filter
//! with a dry run, the queue view's per-workflow figures, recent admissions and live dispatchers.
//!
//! Needs the workspace binaries for the dispatcher case: `cargo build --workspace --bins`.

use flow_like_test_harness::{ADMIN_TOKEN, DispatcherArgs, InProcessDispatcher, TestApi};
use flow_like_tests::fixtures::{Submission, assert_problem, sample_workflow, wait_terminal, wait_until};
use flow_like_tests::seed::{DeadLetterSeed, dead_letter};
use redis::AsyncCommands;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

async fn json_of(response: reqwest::Response, status: u16) -> Value {
    let code = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(code, status, "{body}");
    body
}

async fn submit(api: &TestApi, key: &str, labels: &[(&str, &str)]) -> Uuid {
    let mut submission = Submission::sample();
    for (name, value) in labels {
        submission = submission.label(name, value);
    }
    submission.submit(api, key).await.unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
}

async fn status(api: &TestApi, id: Uuid) -> String {
    let (status,): (String,) =
        sqlx::query_as("SELECT status FROM executions WHERE id = $1").bind(id).fetch_one(&api.db).await.unwrap();
    status
}

#[tokio::test]
async fn lists_filter_by_label_and_time_and_admins_see_every_tenant() {
    let api = TestApi::start().await.unwrap();
    let acme = api.tenant_key("acme").await.unwrap();
    let globex = api.tenant_key("globex").await.unwrap();
    let a1 = submit(&api, &acme, &[("team", "a")]).await;
    let b = submit(&api, &acme, &[("team", "b")]).await;
    let a2 = submit(&api, &acme, &[("team", "a")]).await;
    let g = submit(&api, &globex, &[("team", "a")]).await;

    let page = json_of(api.get("/api/v1/executions?label=team=a", &acme).await.unwrap(), 200).await;
    assert_eq!(ids(&page), [a2.to_string(), a1.to_string()], "newest first, only acme's team=a");
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let after = json_of(api.get(&format!("/api/v1/executions?submitted_after={future}"), &acme).await.unwrap(), 200);
    assert!(ids(&after.await).is_empty());
    let before = api.get(&format!("/api/v1/executions?submitted_before={future}"), &acme).await.unwrap();
    assert_eq!(ids(&json_of(before, 200).await).len(), 3);

    // A tenant key covers its own tenant only; naming another is refused, not ignored.
    assert_problem(api.get("/api/v1/executions?tenant=globex", &acme).await.unwrap(), 403).await;
    assert_eq!(ids(&json_of(api.get("/api/v1/executions?tenant=acme", &acme).await.unwrap(), 200).await).len(), 3);
    assert_problem(api.get("/api/v1/executions?label=team", &acme).await.unwrap(), 400).await;
    assert_problem(api.get("/api/v1/executions?submitted_after=yesterday", &acme).await.unwrap(), 400).await;

    // The admin token lists and reads every tenant's, and may narrow to one.
    let all = json_of(api.get("/api/v1/executions", ADMIN_TOKEN).await.unwrap(), 200).await;
    assert_eq!(ids(&all), [g, a2, b, a1].map(|id| id.to_string()));
    let only = json_of(api.get("/api/v1/executions?tenant=globex", ADMIN_TOKEN).await.unwrap(), 200).await;
    assert_eq!(ids(&only), [g.to_string()]);
    let read = json_of(api.get(&format!("/api/v1/executions/{g}"), ADMIN_TOKEN).await.unwrap(), 200).await;
    assert_eq!(read["id"], g.to_string());
    assert_problem(api.get(&format!("/api/v1/executions/{g}"), &acme).await.unwrap(), 404).await;

    // Dispatched and not started: the reason says it is starting.
    sqlx::query("UPDATE executions SET status = 'dispatched', claimed_at = now(), dispatched_at = now() WHERE id = $1")
        .bind(b)
        .execute(&api.db)
        .await
        .unwrap();
    let view = json_of(api.get(&format!("/api/v1/executions/{b}"), &acme).await.unwrap(), 200).await;
    assert!(view["waiting_reason"].as_str().unwrap().starts_with("starting: dispatched"), "{view}");
    assert!(view["queue_position"].is_null());
}

#[tokio::test]
async fn cancel_by_filter_counts_on_a_dry_run_and_cancels_only_the_matches() {
    let api = TestApi::start().await.unwrap();
    let acme = api.tenant_key("acme").await.unwrap();
    let globex = api.tenant_key("globex").await.unwrap();
    let mut batch = Vec::new();
    for _ in 0..3 {
        batch.push(submit(&api, &acme, &[("batch", "x")]).await);
    }
    let others = [submit(&api, &acme, &[]).await, submit(&api, &acme, &[("batch", "y")]).await];
    let globex_batch = submit(&api, &globex, &[("batch", "x")]).await;
    let filter = json!({"labels": {"batch": "x"}, "status": ["queued"]});

    let mut dry = filter.clone();
    dry["dry_run"] = json!(true);
    let outcome = json_of(api.post_json("/api/v1/executions/cancel", &acme, &dry).await.unwrap(), 200).await;
    assert_eq!((outcome["matched"].as_u64(), outcome["acted"].as_u64()), (Some(3), Some(0)), "{outcome}");
    assert_eq!(outcome["ids"], json!(batch.iter().map(Uuid::to_string).collect::<Vec<_>>()), "oldest first");
    assert!(outcome["next_cursor"].is_null());
    for id in &batch {
        assert_eq!(status(&api, *id).await, "queued", "a dry run changes nothing");
    }

    // Two per call: the cursor continues where the first call stopped.
    let mut first = filter.clone();
    first["limit"] = json!(2);
    let outcome = json_of(api.post_json("/api/v1/executions/cancel", &acme, &first).await.unwrap(), 200).await;
    assert_eq!((outcome["matched"].as_u64(), outcome["acted"].as_u64()), (Some(2), Some(2)), "{outcome}");
    let cursor = outcome["next_cursor"].as_str().expect("more may follow").to_owned();
    let mut rest = first.clone();
    rest["cursor"] = json!(cursor);
    let outcome = json_of(api.post_json("/api/v1/executions/cancel", &acme, &rest).await.unwrap(), 200).await;
    assert_eq!((outcome["matched"].as_u64(), outcome["acted"].as_u64()), (Some(1), Some(1)), "{outcome}");
    assert!(outcome["next_cursor"].is_null(), "{outcome}");

    let mut redis = api.redis.clone();
    for id in &batch {
        assert_eq!(status(&api, *id).await, "cancelled");
        let queued: bool = redis.hexists(api.keys.queued(), id.to_string()).await.unwrap();
        assert!(!queued, "a cancelled execution is withdrawn from its lane");
        let cancel_key: bool = redis.exists(api.keys.cancel(&id.to_string())).await.unwrap();
        assert!(cancel_key, "the cancel key tells a dispatcher holding it");
    }
    for id in others.iter().chain([&globex_batch]) {
        assert_eq!(status(&api, *id).await, "queued", "not matched: untouched");
    }
    // Nothing left to match.
    let outcome = json_of(api.post_json("/api/v1/executions/cancel", &acme, &filter).await.unwrap(), 200).await;
    assert_eq!(outcome["matched"], 0);

    // Bad filters change nothing.
    for (body, status, pointer) in [
        (json!({"status": ["succeeded"]}), 422, Some("/status/0")),
        (json!({"status": "queued"}), 422, Some("/status")),
        (json!({"colour": "red"}), 422, Some("/colour")),
        (json!({"limit": 1001}), 422, Some("/limit")),
        (json!({"submitted_after": "soon"}), 422, Some("/submitted_after")),
        (json!({"tenant": "globex"}), 403, None),
    ] {
        let problem = assert_problem(api.post_json("/api/v1/executions/cancel", &acme, &body).await.unwrap(), status);
        let problem = problem.await;
        if let Some(pointer) = pointer {
            assert_eq!(problem["errors"][0]["pointer"], pointer, "{body}: {problem}");
        }
    }
    assert_eq!(status(&api, others[0]).await, "queued");

    // An admin cancels across tenants, or in the one it names.
    let admin = json!({"tenant": "globex", "labels": {"batch": "x"}});
    let outcome = json_of(api.post_json("/api/v1/executions/cancel", ADMIN_TOKEN, &admin).await.unwrap(), 200).await;
    assert_eq!(outcome["ids"], json!([globex_batch.to_string()]));
    assert_eq!(status(&api, globex_batch).await, "cancelled");
}

#[tokio::test]
async fn redrive_by_reason_counts_on_a_dry_run_and_redrives_only_the_matches() {
    let api = TestApi::start().await.unwrap();
    let acme = api.tenant_key("acme").await.unwrap();
    let spec = [submit(&api, &acme, &[]).await, submit(&api, &acme, &[]).await];
    let poison = submit(&api, &acme, &[]).await;
    let mut entries = Vec::new();
    for id in spec {
        entries.push(dead_letter(&api, id, &DeadLetterSeed::new("acme", "spec unreadable: no such key")).await);
    }
    let poison_entry = dead_letter(&api, poison, &DeadLetterSeed::new("acme", "malformed queue entry")).await;

    let dry = json!({"reason": "spec unreadable", "dry_run": true});
    let outcome = json_of(api.post_json("/api/v1/dead-letters/redrive", ADMIN_TOKEN, &dry).await.unwrap(), 200).await;
    assert_eq!((outcome["matched"].as_u64(), outcome["acted"].as_u64()), (Some(2), Some(0)), "{outcome}");
    let newest_first: Vec<&String> = entries.iter().rev().collect();
    assert_eq!(outcome["ids"], json!(newest_first));
    assert!(outcome["next_cursor"].is_null());
    let mut redis = api.redis.clone();
    let left: usize = redis.xlen(api.keys.dead_letters()).await.unwrap();
    assert_eq!(left, 3, "a dry run changes nothing");
    assert_eq!(status(&api, spec[0]).await, "failed");

    let real = json!({"reason": "spec unreadable"});
    let outcome = json_of(api.post_json("/api/v1/dead-letters/redrive", ADMIN_TOKEN, &real).await.unwrap(), 200).await;
    assert_eq!((outcome["matched"].as_u64(), outcome["acted"].as_u64()), (Some(2), Some(2)), "{outcome}");
    for id in spec {
        assert_eq!(status(&api, id).await, "queued", "redriven: queued again");
        let queued: bool = redis.hexists(api.keys.queued(), id.to_string()).await.unwrap();
        assert!(queued, "and enqueued");
    }
    assert_eq!(status(&api, poison).await, "failed", "another reason: untouched");
    let remaining: redis::streams::StreamRangeReply = redis.xrange_all(api.keys.dead_letters()).await.unwrap();
    assert_eq!(remaining.ids.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), [poison_entry]);

    assert_problem(api.post_json("/api/v1/dead-letters/redrive", &acme, &real).await.unwrap(), 403).await;
    let bad = json!({"cursor": "not-an-id"});
    assert_problem(api.post_json("/api/v1/dead-letters/redrive", ADMIN_TOKEN, &bad).await.unwrap(), 422).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_queue_view_shows_recent_admissions_per_workflow_and_the_live_dispatchers() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let acme = api.tenant_key("acme").await?;
    let globex = api.tenant_key("globex").await?;
    let dispatcher = InProcessDispatcher::start(&DispatcherArgs::new(&api.configs, "d0")?).await?;
    let mut done = Vec::new();
    for _ in 0..4 {
        done.push(Submission::of(sample_workflow()).input(json!({"n": 1})).submit(&api, &acme).await?);
    }
    assert_eq!(wait_terminal(&api.db, &done, Duration::from_secs(60)).await?, ["succeeded"; 4]);
    Submission::sample().submit(&api, &globex).await?;

    let view = |key: String| {
        let api = &api;
        async move { json_of(api.get("/api/v1/queue", &key).await.unwrap(), 200).await }
    };
    let acme_ref = acme.clone();
    wait_until(Duration::from_secs(15), "the dispatcher's stats to show four admissions", || {
        let key = acme_ref.clone();
        let view = &view;
        async move { Ok(view(key).await["tenants"][0]["admitted_last_minute"] == 4) }
    })
    .await?;
    let whole = view(acme.clone()).await;
    let tenant = &whole["tenants"][0];
    assert_eq!(tenant["tenant"], "acme");
    assert!(tenant["wait_p50_ms"].as_f64().is_some(), "{tenant}");
    assert!(tenant["wait_p99_ms"].as_f64() >= tenant["wait_p50_ms"].as_f64(), "{tenant}");
    assert!(tenant["oldest_queued_age_secs"].is_null(), "nothing of acme is queued: {tenant}");
    assert_eq!(tenant["workflows"][0]["workflow"], "double");
    assert_eq!(tenant["workflows"][0]["admitted_last_minute"], 4);
    assert_eq!(whole["dispatchers_alive"], 1);
    assert_eq!(whole["dispatchers"][0]["id"], "d0");
    assert!(whole["dispatchers"][0]["in_flight"].is_u64(), "{whole}");
    assert!(whole["dispatchers"][0]["last_heartbeat"].is_string());

    // The admin sees every tenant with work, and may narrow to one; a tenant key may not name another.
    let all = view(ADMIN_TOKEN.to_owned()).await;
    let names: Vec<&str> = all["tenants"].as_array().unwrap().iter().filter_map(|t| t["tenant"].as_str()).collect();
    assert_eq!(names, ["acme", "globex"], "{all}");
    let one = json_of(api.get("/api/v1/queue?tenant=globex", ADMIN_TOKEN).await?, 200).await;
    assert_eq!(one["tenants"].as_array().map(Vec::len), Some(1));
    assert_eq!(one["tenants"][0]["tenant"], "globex");
    assert_problem(api.get("/api/v1/queue?tenant=globex", &acme).await?, 403).await;
    assert_problem(api.get("/api/v1/queue?tenant=Not_A_Tenant", ADMIN_TOKEN).await?, 400).await;
    dispatcher.stop().await?;
    Ok(())
}
