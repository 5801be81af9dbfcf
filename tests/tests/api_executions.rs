//! The execution endpoints that follow a submission: Server-Sent Events of the progress stream, the result,
//! cancel, why a queued execution waits, and the admin dead-letter list and redrive. Against real PostgreSQL,
//! Redis and S3; the dispatcher's and executor's part is played by hand, writing the state they would write
//! (progress stream entries, row updates, result objects, leases, dead letters).

use flow_like_shared::protocol::QueueMessage;
use flow_like_shared::protocol::limits::{self, DefaultLimits, TenantOverrides};
use flow_like_shared::status::{FinishedOutcome, NodePhase, StatusEntry, StatusEvent};
use flow_like_shared::workflow::LogLevel;
use flow_like_test_harness::{ADMIN_TOKEN, TestApi};
use flow_like_tests::fixtures::{Submission, assert_problem};
use flow_like_tests::seed::DeadLetterSeed;
use flow_like_tests::sse::{open_events, read_events};
use redis::AsyncCommands;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// Submits the sample workflow and returns the execution id.
async fn submit(api: &TestApi, key: &str, priority: u8) -> Uuid {
    let response =
        api.post_json("/api/v1/executions", key, &Submission::sample().priority(priority).body()).await.unwrap();
    assert_eq!(response.status(), 202);
    response.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap()
}

/// Appends one event to the execution's progress stream, as the executor or dispatcher would.
async fn xadd_event(api: &TestApi, id: Uuid, attempt: u32, seq: u64, event: StatusEvent) -> String {
    let entry = StatusEntry { execution: id, attempt, seq, at_ms: 1_700_000_000_000 + seq as i64, event };
    let fields = entry.to_fields().unwrap();
    let mut redis = api.redis.clone();
    redis.xadd(api.keys.progress(&id.to_string()), "*", &fields).await.unwrap()
}

fn finished(outcome: FinishedOutcome) -> StatusEvent {
    StatusEvent::Finished { outcome, error: None, result_key: None, duration_ms: 42, nodes: Vec::new() }
}

async fn set_status(api: &TestApi, id: Uuid, status: &str, result_key: Option<&str>) {
    sqlx::query(
        "UPDATE executions SET status = $2, result_key = $3, attempts = GREATEST(attempts, 1),
             finished_at = CASE WHEN $2 IN ('succeeded', 'failed', 'timed_out', 'cancelled') THEN now() END
         WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(result_key)
    .execute(&api.db)
    .await
    .unwrap();
}

#[tokio::test]
async fn events_come_in_order_with_their_ids_and_end_after_finished() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let id = submit(&api, &key, 5).await;
    let mut ids = vec![
        xadd_event(
            &api,
            id,
            1,
            0,
            StatusEvent::Dispatched {
                dispatcher: "d-1".into(),
                runner: "process".into(),
                runner_ref: Some("pid 7".into()),
                claimed_at_ms: 1_700_000_000_000,
            },
        )
        .await,
        xadd_event(&api, id, 1, 1, StatusEvent::Started { startup_ms: 3 }).await,
    ];
    // The client follows live: the rest arrives while it waits in a blocking read.
    let response = open_events(&api, &key, id, None).await;
    let reader = tokio::spawn(read_events(response, Duration::from_secs(20)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    ids.push(
        xadd_event(
            &api,
            id,
            1,
            2,
            StatusEvent::Node {
                node: "double".into(),
                phase: NodePhase::Succeeded,
                attempt: 1,
                duration_ms: Some(2),
                error: None,
                retry_in_ms: None,
            },
        )
        .await,
    );
    ids.push(
        xadd_event(
            &api,
            id,
            1,
            3,
            StatusEvent::Log { node: Some("double".into()), item: None, level: LogLevel::Info, message: "hi".into() },
        )
        .await,
    );
    ids.push(xadd_event(&api, id, 1, 4, finished(FinishedOutcome::Succeeded)).await);
    let events = reader.await.unwrap();
    // An entry after `finished` is never sent: the stream ended.
    xadd_event(&api, id, 1, 5, StatusEvent::Started { startup_ms: 1 }).await;

    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["dispatched", "started", "node", "log", "finished"]);
    assert_eq!(events.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), ids);
    for (seq, event) in events.iter().enumerate() {
        assert_eq!(event.data["execution"], id.to_string());
        assert_eq!(event.data["attempt"], 1);
        assert_eq!(event.data["seq"], seq);
        assert_eq!(event.data["at"], 1_700_000_000_000_i64 + seq as i64);
        assert_eq!(event.data["kind"], event.event);
    }
    assert_eq!(events[0].data["dispatcher"], "d-1");
    assert_eq!(events[2].data["node"], "double");
    assert_eq!(events[2].data["phase"], "succeeded");
    assert_eq!(events[3].data["message"], "hi");
    assert_eq!(events[4].data["outcome"], "succeeded");
    assert_eq!(events[4].data["duration_ms"], 42);

    // Another tenant does not see the stream.
    let other = api.tenant_key("globex").await.unwrap();
    assert_problem(open_events(&api, &other, id, None).await, 404).await;
}

#[tokio::test]
async fn a_resumed_stream_gets_only_later_events() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let id = submit(&api, &key, 5).await;
    let mut ids = Vec::new();
    for seq in 1..=3 {
        ids.push(
            xadd_event(
                &api,
                id,
                1,
                seq,
                StatusEvent::Log { node: None, item: None, level: LogLevel::Info, message: format!("m{seq}") },
            )
            .await,
        );
    }
    ids.push(xadd_event(&api, id, 1, 4, finished(FinishedOutcome::Failed)).await);

    let events = read_events(open_events(&api, &key, id, Some(&ids[1])).await, Duration::from_secs(20)).await;
    assert_eq!(events.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), ids[2..]);
    assert_eq!(events[0].data["message"], "m3");

    // The query parameter works too (for clients that cannot set headers).
    let response = api
        .http
        .get(api.url(&format!("/api/v1/executions/{id}/events?last_event_id={}", ids[2])))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let events = read_events(response, Duration::from_secs(20)).await;
    assert_eq!(events.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(), ["finished"]);

    // Not an event id: 400.
    assert_problem(open_events(&api, &key, id, Some("yesterday")).await, 400).await;
}

#[tokio::test]
async fn the_stream_of_a_finished_execution_whose_events_are_gone_ends() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let id = submit(&api, &key, 5).await;
    set_status(&api, id, "failed", None).await;
    let started = std::time::Instant::now();
    let events = read_events(open_events(&api, &key, id, None).await, Duration::from_secs(20)).await;
    assert!(events.is_empty(), "{events:?}");
    // One block interval of silence, not forever.
    assert!(started.elapsed() < Duration::from_secs(12), "{:?}", started.elapsed());

    // A cancelled queued execution's stream ends the same way (no executor will write `finished`).
    let queued = submit(&api, &key, 5).await;
    let response = open_events(&api, &key, queued, None).await;
    let reader = tokio::spawn(read_events(response, Duration::from_secs(25)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancelled =
        api.http.post(api.url(&format!("/api/v1/executions/{queued}/cancel"))).bearer_auth(&key).send().await.unwrap();
    assert_eq!(cancelled.status(), 202);
    assert!(reader.await.unwrap().is_empty());
}

#[tokio::test]
async fn the_result_is_served_once_finished() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let id = submit(&api, &key, 5).await;
    let path = format!("/api/v1/executions/{id}/result");

    let body = assert_problem(api.get(&path, &key).await.unwrap(), 409).await;
    assert!(body["title"].as_str().unwrap().contains("queued"), "{body}");
    set_status(&api, id, "running", None).await;
    let body = assert_problem(api.get(&path, &key).await.unwrap(), 409).await;
    assert!(body["title"].as_str().unwrap().contains("running"), "{body}");

    let result_key = flow_like_shared::storage::layout::result(id, 1);
    let document = json!({"output": 42, "nodes": {"double": {"status": "succeeded"}}});
    api.configs
        .s3_settings
        .client()
        .put_object()
        .bucket(&api.configs.s3.content_bucket)
        .key(&result_key)
        .body(serde_json::to_vec(&document).unwrap().into())
        .send()
        .await
        .unwrap();
    set_status(&api, id, "succeeded", Some(&result_key)).await;
    let response = api.get(&path, &key).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.json::<Value>().await.unwrap(), document);
    // The execution links to it.
    let view: Value = api.get(&format!("/api/v1/executions/{id}"), &key).await.unwrap().json().await.unwrap();
    assert_eq!(view["result"], path);

    // Another tenant: 404 like everywhere.
    let other = api.tenant_key("globex").await.unwrap();
    assert_problem(api.get(&path, &other).await.unwrap(), 404).await;

    // Cancelled while queued: finished, but there is no result.
    let cancelled = submit(&api, &key, 5).await;
    set_status(&api, cancelled, "cancelled", None).await;
    let body =
        assert_problem(api.get(&format!("/api/v1/executions/{cancelled}/result"), &key).await.unwrap(), 409).await;
    assert!(body["title"].as_str().unwrap().contains("without a result"), "{body}");
}

/// Removes the execution's lane entry and queued field, as a dispatcher's claim or dead-lettering does.
async fn take_out_of_lane(api: &TestApi, id: Uuid) {
    let mut redis = api.redis.clone();
    let entry: String = redis.hget(api.keys.queued(), id.to_string()).await.unwrap();
    let (lane, entry_id) = entry.split_once(' ').unwrap();
    let _: () = redis.xdel(lane, &[entry_id]).await.unwrap();
    let _: () = redis.hdel(api.keys.queued(), id.to_string()).await.unwrap();
}

async fn hexists(api: &TestApi, key: &str, field: &str) -> bool {
    let mut redis = api.redis.clone();
    redis.hexists(key, field).await.unwrap()
}

async fn lane_len(api: &TestApi, tenant: &str, priority: u8) -> usize {
    let mut redis = api.redis.clone();
    redis.xlen(api.keys.lane(tenant, priority)).await.unwrap()
}

#[tokio::test]
async fn cancelling_a_queued_execution_takes_it_out_of_the_queue() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let id = submit(&api, &key, 5).await;
    let keep = submit(&api, &key, 5).await;
    assert_eq!(lane_len(&api, "acme", 5).await, 2);
    assert!(hexists(&api, &api.keys.queued(), &id.to_string()).await);

    let path = format!("/api/v1/executions/{id}/cancel");
    let response = api.http.post(api.url(&path)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let view: Value = response.json().await.unwrap();
    assert_eq!(view["status"], "cancelled");
    assert_eq!(view["error"], "cancelled by request");
    assert!(view["timeline"]["finished_at"].is_string());

    // Its lane entry and queued field are gone; the other execution's are not.
    assert_eq!(lane_len(&api, "acme", 5).await, 1);
    assert!(!hexists(&api, &api.keys.queued(), &id.to_string()).await);
    assert!(hexists(&api, &api.keys.queued(), &keep.to_string()).await);
    let mut redis = api.redis.clone();
    let ttl: i64 = redis.ttl(api.keys.cancel(&id.to_string())).await.unwrap();
    assert!((1..=86_400).contains(&ttl), "cancel key TTL {ttl}");
    let (status, error, finished): (String, Option<String>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT status, error, finished_at FROM executions WHERE id = $1")
            .bind(id)
            .fetch_one(&api.db)
            .await
            .unwrap();
    assert_eq!((status.as_str(), error.as_deref()), ("cancelled", Some("cancelled by request")));
    assert!(finished.is_some());

    // Again: still 202 (a retry after a 503 is safe), nothing else changes.
    let again = api.http.post(api.url(&path)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.json::<Value>().await.unwrap()["status"], "cancelled");
    assert_eq!(lane_len(&api, "acme", 5).await, 1);

    // Another tenant cannot cancel it, nor see that it exists.
    let other = api.tenant_key("globex").await.unwrap();
    let response =
        api.http.post(api.url(&format!("/api/v1/executions/{keep}/cancel"))).bearer_auth(&other).send().await.unwrap();
    assert_problem(response, 404).await;
    assert!(hexists(&api, &api.keys.queued(), &keep.to_string()).await);
}

#[tokio::test]
async fn cancelling_removes_a_pending_retry_and_a_running_attempt_gets_the_cancel_key() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    // Backing off before attempt 2, as the dispatcher leaves it after an infrastructure failure.
    let id = submit(&api, &key, 5).await;
    take_out_of_lane(&api, id).await;
    let mut redis = api.redis.clone();
    let _: () = redis.zadd(api.keys.retrying(), id.to_string(), 4_000_000_000_000_i64).await.unwrap();
    let _: () = redis
        .hset_multiple(api.keys.retry(&id.to_string()), &[("id", id.to_string()), ("attempt", "2".into())])
        .await
        .unwrap();
    let response =
        api.http.post(api.url(&format!("/api/v1/executions/{id}/cancel"))).bearer_auth(&key).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let retrying: Option<f64> = redis.zscore(api.keys.retrying(), id.to_string()).await.unwrap();
    assert_eq!(retrying, None);
    let exists: bool = redis.exists(api.keys.retry(&id.to_string())).await.unwrap();
    assert!(!exists);

    // Running: a lease exists, no lane entry. The row is cancelled and the cancel key tells the dispatcher.
    let running = submit(&api, &key, 5).await;
    set_status(&api, running, "running", None).await;
    let response =
        api.http.post(api.url(&format!("/api/v1/executions/{running}/cancel"))).bearer_auth(&key).send().await.unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "cancelled");
    let exists: bool = redis.exists(api.keys.cancel(&running.to_string())).await.unwrap();
    assert!(exists);
}

#[tokio::test]
async fn cancelling_a_finished_execution_is_409_and_changes_nothing() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let id = submit(&api, &key, 5).await;
    sqlx::query(
        "UPDATE executions SET status = 'succeeded', attempts = 1, finished_at = '2024-01-01T00:00:00Z' WHERE id = $1",
    )
    .bind(id)
    .execute(&api.db)
    .await
    .unwrap();
    let response =
        api.http.post(api.url(&format!("/api/v1/executions/{id}/cancel"))).bearer_auth(&key).send().await.unwrap();
    let body = assert_problem(response, 409).await;
    assert!(body["title"].as_str().unwrap().contains("succeeded"), "{body}");
    let (status, error, finished): (String, Option<String>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT status, error, finished_at FROM executions WHERE id = $1")
            .bind(id)
            .fetch_one(&api.db)
            .await
            .unwrap();
    assert_eq!((status.as_str(), error), ("succeeded", None));
    assert_eq!(finished.to_rfc3339(), "2024-01-01T00:00:00+00:00");
    let mut redis = api.redis.clone();
    let exists: bool = redis.exists(api.keys.cancel(&id.to_string())).await.unwrap();
    assert!(!exists, "no cancel key for a finished execution");
    // Its queue entry (left there by this hand-made state) was not touched either.
    assert!(hexists(&api, &api.keys.queued(), &id.to_string()).await);
    let response = api
        .http
        .post(api.url(&format!("/api/v1/executions/{}/cancel", Uuid::now_v7())))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_problem(response, 404).await;
}

async fn waiting_reason(api: &TestApi, key: &str, id: Uuid) -> Value {
    let view: Value = api.get(&format!("/api/v1/executions/{id}"), key).await.unwrap().json().await.unwrap();
    view["waiting_reason"].clone()
}

async fn zadd_members(api: &TestApi, key: &str, n: usize) {
    let mut redis = api.redis.clone();
    for i in 0..n {
        let _: () = redis.zadd(key, format!("other-{i}"), 4_000_000_000_000_i64).await.unwrap();
    }
}

#[tokio::test]
async fn a_queued_execution_says_why_it_waits() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let id = submit(&api, &key, 5).await;
    let mut redis = api.redis.clone();

    assert_eq!(waiting_reason(&api, &key, id).await, "no dispatcher alive");
    // A heartbeat older than 15 s does not count.
    let now = chrono::Utc::now().timestamp_millis();
    let _: () = redis.zadd(api.keys.dispatchers(), "d-old", now - 60_000).await.unwrap();
    assert_eq!(waiting_reason(&api, &key, id).await, "no dispatcher alive");
    let _: () = redis.zadd(api.keys.dispatchers(), "d-1", now).await.unwrap();

    limits::publish_defaults(
        &mut redis,
        &api.keys,
        DefaultLimits { global: 2, tenant: 10, workflow: 0, priority_aging_ms: 0 },
    )
    .await
    .unwrap();
    zadd_members(&api, &api.keys.active(), 2).await;
    assert_eq!(waiting_reason(&api, &key, id).await, "global limit 2/2");

    limits::publish_defaults(
        &mut redis,
        &api.keys,
        DefaultLimits { global: 10, tenant: 10, workflow: 0, priority_aging_ms: 0 },
    )
    .await
    .unwrap();
    limits::publish_tenant(
        &mut redis,
        &api.keys,
        "acme",
        TenantOverrides { concurrency_limit: Some(3), workflow_limit: Some(2), ..TenantOverrides::default() },
    )
    .await
    .unwrap();
    zadd_members(&api, &api.keys.active(), 3).await;
    zadd_members(&api, &api.keys.active_tenant("acme"), 3).await;
    assert_eq!(waiting_reason(&api, &key, id).await, "tenant acme at its limit 3/3");

    limits::publish_tenant(
        &mut redis,
        &api.keys,
        "acme",
        TenantOverrides { concurrency_limit: Some(5), workflow_limit: Some(2), ..TenantOverrides::default() },
    )
    .await
    .unwrap();
    zadd_members(&api, &api.keys.active_workflow("acme", "double"), 2).await;
    assert_eq!(waiting_reason(&api, &key, id).await, "workflow double of tenant acme at its limit 2/2");
    // Another workflow's slots do not hold it back.
    let _: () = redis.del(api.keys.active_workflow("acme", "double")).await.unwrap();
    zadd_members(&api, &api.keys.active_workflow("acme", "other"), 2).await;
    assert_eq!(waiting_reason(&api, &key, id).await, "waiting to be claimed: 0 ahead of it in tenant acme's queue");

    // Two more at the same priority and one at a higher one: the last same-priority one has 3 ahead.
    let _second = submit(&api, &key, 5).await;
    let third = submit(&api, &key, 5).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let urgent = submit(&api, &key, 9).await;
    assert_eq!(waiting_reason(&api, &key, third).await, "waiting to be claimed: 3 ahead of it in tenant acme's queue");
    assert_eq!(waiting_reason(&api, &key, id).await, "waiting to be claimed: 1 ahead of it in tenant acme's queue");
    // A dispatcher claims the first entry of the lane: one less ahead.
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("dispatchers")
        .arg("d-1")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(api.keys.lane("acme", 5))
        .arg(">")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(waiting_reason(&api, &key, third).await, "waiting to be claimed: 2 ahead of it in tenant acme's queue");
    // With priority aging, what ranks ahead depends on when it was queued: at 1 ms per level, the priority-9
    // execution queued 50 ms after `third` ranks behind it, and the priority-5 ones queued before it rank ahead.
    let aging = |ms| DefaultLimits { global: 10, tenant: 10, workflow: 0, priority_aging_ms: ms };
    limits::publish_defaults(&mut redis, &api.keys, aging(1)).await.unwrap();
    assert_eq!(waiting_reason(&api, &key, third).await, "waiting to be claimed: 1 ahead of it in tenant acme's queue");
    assert_eq!(waiting_reason(&api, &key, urgent).await, "waiting to be claimed: 2 ahead of it in tenant acme's queue");
    // At a minute per level, 50 ms is nothing: priority decides, as without aging.
    limits::publish_defaults(&mut redis, &api.keys, aging(60_000)).await.unwrap();
    assert_eq!(waiting_reason(&api, &key, third).await, "waiting to be claimed: 2 ahead of it in tenant acme's queue");
    assert_eq!(waiting_reason(&api, &key, urgent).await, "waiting to be claimed: 0 ahead of it in tenant acme's queue");
    limits::publish_defaults(&mut redis, &api.keys, aging(0)).await.unwrap();
    // Another tenant's queue does not count.
    let globex = api.tenant_key("globex").await.unwrap();
    let theirs = submit(&api, &globex, 9).await;
    assert_eq!(
        waiting_reason(&api, &globex, theirs).await,
        "waiting to be claimed: 0 ahead of it in tenant globex's queue"
    );

    // Not in the Redis queue at all (Redis lost it): the reconciler will put it back.
    let _: () = redis.hdel(api.keys.queued(), third.to_string()).await.unwrap();
    let reason = waiting_reason(&api, &key, third).await;
    assert!(reason.as_str().unwrap().contains("reconciler"), "{reason}");

    // Backing off before a retry wins over everything else.
    let due = chrono::DateTime::parse_from_rfc3339("2031-02-03T04:05:06Z").unwrap().timestamp_millis();
    let _: () = redis.zadd(api.keys.retrying(), id.to_string(), due).await.unwrap();
    let _: () = redis.hset(api.keys.retry(&id.to_string()), "attempt", 2).await.unwrap();
    let _: () = redis.zrem(api.keys.dispatchers(), "d-1").await.unwrap();
    let reason = waiting_reason(&api, &key, id).await;
    assert_eq!(
        reason, "retrying after an infrastructure failure: attempt 2 starts at 2031-02-03T04:05:06.000Z",
        "{reason}"
    );

    // Claimed, not yet dispatched: the lease says by whom.
    let _: () =
        redis.hset_multiple(api.keys.lease(&id.to_string()), &[("dispatcher", "d-7"), ("attempt", "2")]).await.unwrap();
    let reason = waiting_reason(&api, &key, id).await;
    assert_eq!(reason, "claimed by dispatcher d-7: attempt 2 is starting");

    // Not queued: no reason, and the view has the timeline, attempts, error and result link.
    sqlx::query(
        "UPDATE executions SET status = 'failed', attempts = 2, error = 'boom', result_key = 'r',
             claimed_at = now(), dispatched_at = now(), started_at = now(), finished_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .execute(&api.db)
    .await
    .unwrap();
    let view: Value = api.get(&format!("/api/v1/executions/{id}"), &key).await.unwrap().json().await.unwrap();
    assert!(view["waiting_reason"].is_null(), "{view}");
    assert_eq!(view["attempts"], 2);
    assert_eq!(view["error"], "boom");
    assert_eq!(view["result"], format!("/api/v1/executions/{id}/result"));
    for moment in ["queued_at", "claimed_at", "dispatched_at", "started_at", "finished_at"] {
        assert!(view["timeline"][moment].is_string(), "{moment}: {view}");
    }
}

/// Leaves the execution as the dispatcher leaves a dead-lettered one. Returns the entry id.
async fn dead_letter(api: &TestApi, id: Uuid, attempts: i32, reason: &str) -> String {
    let seed = DeadLetterSeed { attempts, dead_at_ms: 1_700_000_001_000, ..DeadLetterSeed::new("acme", reason) };
    flow_like_tests::seed::dead_letter(api, id, &seed).await
}

async fn queue_position(api: &TestApi, key: &str, id: Uuid) -> Value {
    let view: Value = api.get(&format!("/api/v1/executions/{id}"), key).await.unwrap().json().await.unwrap();
    view["queue_position"].clone()
}

/// `queue_position` is the place in the order admission takes the tenant's work, whatever holds the tenant back:
/// at its limit, three executions are 1, 2 and 3; a higher priority goes first; a claimed one has none.
#[tokio::test]
async fn a_queued_execution_has_its_place_in_the_tenants_queue() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let mut redis = api.redis.clone();
    let limits = DefaultLimits { global: 10, tenant: 0, workflow: 0, priority_aging_ms: 0 };
    limits::publish_defaults(&mut redis, &api.keys, limits).await.unwrap();
    let _: () = redis.zadd(api.keys.dispatchers(), "d-1", chrono::Utc::now().timestamp_millis()).await.unwrap();
    let ids = [submit(&api, &key, 5).await, submit(&api, &key, 5).await, submit(&api, &key, 5).await];
    for (place, id) in ids.iter().enumerate() {
        assert_eq!(queue_position(&api, &key, *id).await, place + 1);
        assert_eq!(waiting_reason(&api, &key, *id).await, "tenant acme at its limit 0/0");
    }
    let urgent = submit(&api, &key, 9).await;
    assert_eq!(queue_position(&api, &key, urgent).await, 1);
    assert_eq!(queue_position(&api, &key, ids[2]).await, 4);
    // Claimed by a dispatcher: no place any more.
    let _: () = redis.hset(api.keys.lease(&urgent.to_string()), "dispatcher", "d-1").await.unwrap();
    assert_eq!(queue_position(&api, &key, urgent).await, Value::Null);
    // Another tenant's queue does not count.
    let globex = api.tenant_key("globex").await.unwrap();
    assert_eq!(queue_position(&api, &globex, submit(&api, &globex, 5).await).await, 1);
}

#[tokio::test]
async fn dead_letters_are_listed_and_redriven() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let first = submit(&api, &key, 5).await;
    let second = submit(&api, &key, 5).await;
    let first_entry = dead_letter(&api, first, 1, "delivered 5 times without a lease").await;
    let second_entry = dead_letter(&api, second, 3, "spec unreadable").await;

    let page = |query: &'static str| {
        let api = &api;
        async move {
            let response =
                api.http.get(api.url(&format!("/api/v1/dead-letters{query}"))).bearer_auth(ADMIN_TOKEN).send().await;
            let response = response.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let all = page("").await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    // Newest first.
    assert_eq!(items[0]["entry_id"], second_entry);
    assert_eq!(items[0]["execution_id"], second.to_string());
    assert_eq!(items[0]["tenant"], "acme");
    assert_eq!(items[0]["workflow"], "double");
    assert_eq!(items[0]["attempt"], 3);
    assert_eq!(items[0]["reason"], "spec unreadable");
    assert_eq!(items[0]["deliveries"], 5);
    assert_eq!(items[0]["dead_at"], "2023-11-14T22:13:21Z");
    assert!(all["next_cursor"].is_null());
    // One per page.
    let one = page("?limit=1").await;
    assert_eq!(one["items"][0]["entry_id"], second_entry);
    let cursor = one["next_cursor"].as_str().unwrap().to_string();
    let next: Value = api
        .http
        .get(api.url(&format!("/api/v1/dead-letters?limit=1&cursor={cursor}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(next["items"][0]["entry_id"], first_entry);
    let bad = api.http.get(api.url("/api/v1/dead-letters?limit=0")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_problem(bad, 400).await;
    let bad = api.http.get(api.url("/api/v1/dead-letters?cursor=x")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_problem(bad, 400).await;

    // Redrive the first: queued again for attempt 2, on its lane, the dead letter gone.
    let response = api
        .http
        .post(api.url(&format!("/api/v1/dead-letters/{first_entry}/redrive")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["execution"]["status"], "queued");
    assert_eq!(body["execution"]["attempts"], 2);
    let (status, attempts, error, finished): (String, i32, Option<String>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT status, attempts, error, finished_at FROM executions WHERE id = $1")
            .bind(first)
            .fetch_one(&api.db)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts, error, finished), ("queued", 2, None, None));
    let mut redis = api.redis.clone();
    let lane: redis::streams::StreamRangeReply = redis.xrange_all(api.keys.lane("acme", 5)).await.unwrap();
    let messages: Vec<QueueMessage> = lane
        .ids
        .iter()
        .map(|e| QueueMessage::from_fields(&e.map.clone().into_iter().collect::<HashMap<_, _>>()).unwrap())
        .collect();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!((messages[0].execution_id, messages[0].attempt), (first, 2));
    assert!(hexists(&api, &api.keys.queued(), &first.to_string()).await);
    let left: redis::streams::StreamRangeReply = redis.xrange_all(api.keys.dead_letters()).await.unwrap();
    assert_eq!(left.ids.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), [second_entry.as_str()]);

    // The same entry again: gone.
    let again = api
        .http
        .post(api.url(&format!("/api/v1/dead-letters/{first_entry}/redrive")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_problem(again, 404).await;
    for unknown in ["1-0", "not-an-id"] {
        let response = api
            .http
            .post(api.url(&format!("/api/v1/dead-letters/{unknown}/redrive")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_problem(response, 404).await;
    }

    // An execution that is not failed (it succeeded after all) is not redriven, and nothing is deleted.
    sqlx::query("UPDATE executions SET status = 'succeeded', error = NULL WHERE id = $1")
        .bind(second)
        .execute(&api.db)
        .await
        .unwrap();
    let response = api
        .http
        .post(api.url(&format!("/api/v1/dead-letters/{second_entry}/redrive")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, 409).await;
    assert!(body["title"].as_str().unwrap().contains("succeeded"), "{body}");
    let (status, attempts): (String, i32) = sqlx::query_as("SELECT status, attempts FROM executions WHERE id = $1")
        .bind(second)
        .fetch_one(&api.db)
        .await
        .unwrap();
    assert_eq!((status.as_str(), attempts), ("succeeded", 3));
    let left: redis::streams::StreamRangeReply = redis.xrange_all(api.keys.dead_letters()).await.unwrap();
    assert_eq!(left.ids.len(), 1);
    assert_eq!(lane_len(&api, "acme", 5).await, 1);
}

#[tokio::test]
async fn dead_letters_need_an_admin() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let id = submit(&api, &key, 5).await;
    let entry = dead_letter(&api, id, 1, "poison").await;
    let redrive = format!("/api/v1/dead-letters/{entry}/redrive");

    assert_problem(api.http.get(api.url("/api/v1/dead-letters")).send().await.unwrap(), 401).await;
    assert_problem(api.http.get(api.url("/api/v1/dead-letters")).bearer_auth("wrong").send().await.unwrap(), 401).await;
    assert_problem(api.http.post(api.url(&redrive)).send().await.unwrap(), 401).await;
    // A tenant's key is not an admin's.
    assert_problem(api.get("/api/v1/dead-letters", &key).await.unwrap(), 403).await;
    assert_problem(api.http.post(api.url(&redrive)).bearer_auth(&key).send().await.unwrap(), 403).await;
    // Nothing changed.
    let (status,): (String,) =
        sqlx::query_as("SELECT status FROM executions WHERE id = $1").bind(id).fetch_one(&api.db).await.unwrap();
    assert_eq!(status, "failed");
    let mut redis = api.redis.clone();
    let left: usize = redis.xlen(api.keys.dead_letters()).await.unwrap();
    assert_eq!(left, 1);
}
