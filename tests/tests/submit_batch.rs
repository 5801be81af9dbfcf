//! The batched submit path (group commit): many concurrent submissions end up committed and queued exactly once,
//! one row PostgreSQL refuses does not spoil the rest of its batch, and Redis failing while batches are written
//! gives 503s and leaves no row behind (or, for every 202, a row that is queued).

use flow_like_shared::protocol::{self, QueueMessage};
use flow_like_test_harness::TestApi;
use flow_like_test_services::{DedicatedRedis, RedisOptions, TestServices, redis_config};
use flow_like_tests::fixtures::sample_workflow;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

const TENANTS: [&str; 2] = ["acme", "globex"];

/// id, tenant, priority, labels, input, queued_at of a committed execution.
type RowView = (Uuid, String, i16, Value, Option<Value>, chrono::DateTime<chrono::Utc>);

/// Sends every body at once (one task each) and returns each answer's status and JSON body, in order.
async fn submit_all(
    api: &Arc<TestApi>,
    key_of: &HashMap<&str, String>,
    bodies: Vec<(&str, Value)>,
) -> Vec<(u16, Value)> {
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|(tenant, body)| {
            let api = api.clone();
            let key = key_of[tenant].clone();
            tokio::spawn(async move {
                let response = api.post_json("/api/v1/executions", &key, &body).await.unwrap();
                let status = response.status().as_u16();
                if status == 503 {
                    assert_eq!(response.headers()["retry-after"], "5");
                    assert_eq!(response.headers()["content-type"], "application/problem+json");
                }
                (status, response.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

/// Every entry of every lane of the tenants, as parsed queue messages.
async fn lane_messages(api: &TestApi) -> Vec<QueueMessage> {
    let mut conn = api.redis.clone();
    let mut out = Vec::new();
    for tenant in TENANTS {
        for priority in 0..=protocol::MAX_PRIORITY {
            let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(api.keys.lane(tenant, priority))
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
                .unwrap();
            for entry in reply.ids {
                let message = QueueMessage::from_fields(&entry.map).unwrap();
                assert_eq!(message.tenant, tenant);
                assert_eq!(message.priority, priority, "an entry sits on its priority's lane");
                out.push(message);
            }
        }
    }
    out
}

async fn queued_index(api: &TestApi) -> HashMap<String, String> {
    let mut conn = api.redis.clone();
    redis::cmd("HGETALL").arg(api.keys.queued()).query_async(&mut conn).await.unwrap()
}

async fn tenant_keys(api: &TestApi) -> HashMap<&'static str, String> {
    let mut keys = HashMap::new();
    for tenant in TENANTS {
        keys.insert(tenant, api.tenant_key(tenant).await.unwrap());
    }
    keys
}

#[tokio::test]
async fn concurrent_submissions_are_committed_and_queued_exactly_once() {
    const N: usize = 400;
    let api = Arc::new(TestApi::start().await.unwrap());
    let keys = tenant_keys(&api).await;
    let bodies = (0..N)
        .map(|i| {
            let tenant = TENANTS[i % TENANTS.len()];
            let body = json!({
                "workflow": sample_workflow(),
                "input": {"n": i},
                "priority": i % 10,
                "labels": {"i": i.to_string()},
            });
            (tenant, body)
        })
        .collect();
    let answers = submit_all(&api, &keys, bodies).await;

    // Every answer is a 202 with its own id, and what it says is what was committed.
    let mut accepted: HashMap<Uuid, Value> = HashMap::new();
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 202, "submission {i}: {body}");
        assert_eq!(body["priority"], i % 10);
        let id: Uuid = body["id"].as_str().unwrap().parse().unwrap();
        assert!(accepted.insert(id, body.clone()).is_none(), "id {id} answered twice");
    }
    assert_eq!(api.execution_rows().await.unwrap(), N as i64);
    let rows: Vec<RowView> = sqlx::query_as("SELECT id, tenant, priority, labels, input, queued_at FROM executions")
        .fetch_all(&api.db)
        .await
        .unwrap();
    for (id, tenant, priority, labels, input, queued_at) in &rows {
        let answer = &accepted[id];
        let i = input.as_ref().unwrap()["n"].as_u64().unwrap() as usize;
        assert_eq!(tenant, TENANTS[i % TENANTS.len()], "row {id} belongs to its submitter's tenant");
        assert_eq!(*priority as usize, i % 10);
        assert_eq!(labels, &json!({"i": i.to_string()}));
        let answered: chrono::DateTime<chrono::Utc> = answer["queued_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(&answered, queued_at, "the 202 carries the committed queued_at");
    }

    // Queued exactly once: one index field and one lane entry per execution, on the right lane.
    let index = queued_index(&api).await;
    assert_eq!(index.len(), N);
    let messages = lane_messages(&api).await;
    assert_eq!(messages.len(), N, "one lane entry per execution");
    let mut seen = HashSet::new();
    for message in &messages {
        assert!(seen.insert(message.execution_id), "{} is on the lanes twice", message.execution_id);
        let answer = &accepted[&message.execution_id];
        assert_eq!(message.attempt, 1);
        assert_eq!(message.workflow, "double");
        assert_eq!(json!(message.priority), answer["priority"]);
        let queued_at: chrono::DateTime<chrono::Utc> = answer["queued_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(message.queued_at_ms, queued_at.timestamp_millis());
        let i = message.body.labels["i"].parse::<usize>().unwrap();
        assert_eq!(message.tenant, TENANTS[i % TENANTS.len()]);
        let field = &index[&message.execution_id.to_string()];
        assert!(field.starts_with(&api.keys.lane(&message.tenant, message.priority)), "{field}");
    }
}

#[tokio::test]
async fn a_row_postgres_refuses_does_not_spoil_its_batch() {
    const N: usize = 200;
    let api = Arc::new(TestApi::start().await.unwrap());
    let keys = tenant_keys(&api).await;
    // jsonb cannot hold a NUL character: PostgreSQL refuses that row, and only that row.
    let bodies = (0..N)
        .map(|i| {
            let input = if i == N / 2 { json!({"text": "a\u{0}b"}) } else { json!({"n": i}) };
            ("acme", json!({"workflow": sample_workflow(), "input": input}))
        })
        .collect();
    let answers = submit_all(&api, &keys, bodies).await;
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for (i, (status, body)) in answers.iter().enumerate() {
        *statuses.entry(*status).or_default() += 1;
        if i == N / 2 {
            assert_eq!(*status, 422, "the refused row is the client's input: {body}");
            assert_eq!(body["status"], 422);
        } else {
            assert_eq!(*status, 202, "submission {i}: {body}");
        }
    }
    assert_eq!(api.execution_rows().await.unwrap(), (N - 1) as i64, "{statuses:?}");
    assert_eq!(queued_index(&api).await.len(), N - 1);
    assert_eq!(lane_messages(&api).await.len(), N - 1);
}

#[tokio::test]
async fn redis_down_during_batches_is_503_and_leaves_no_rows() {
    let mut redis = DedicatedRedis::start().await.unwrap();
    let mut configs = TestServices::get().await.unwrap().fresh_configs().await.unwrap();
    configs.redis = redis_config(&redis.url(), "fl");
    let api = Arc::new(TestApi::start_with(configs, |_| {}).await.unwrap());
    let keys = tenant_keys(&api).await;
    redis.stop().await.unwrap();

    // Enough at once to make batches of many: each batch's pipeline fails, each member is withdrawn.
    let bodies = (0..150)
        .map(|i| {
            let input = if i % 50 == 0 { json!("y".repeat(32 * 1024)) } else { json!({"n": i}) };
            (TENANTS[i % 2], json!({"workflow": sample_workflow(), "input": input}))
        })
        .collect();
    let answers = submit_all(&api, &keys, bodies).await;
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 503, "submission {i}: {body}");
    }
    assert_eq!(api.execution_rows().await.unwrap(), 0, "every execution was withdrawn");
    assert_eq!(api.meta_objects().await.unwrap(), 0, "large inputs were removed again");

    redis.restart().await.unwrap();
    let mut accepted = false;
    for _ in 0..50 {
        let response =
            api.post_json("/api/v1/executions", &keys["acme"], &json!({"workflow": sample_workflow()})).await.unwrap();
        if response.status() == 202 {
            accepted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(accepted, "submissions work again once Redis is back");
    assert_eq!(api.execution_rows().await.unwrap(), 1);
}

#[tokio::test]
async fn redis_stopping_mid_burst_leaves_a_queued_row_for_every_202_and_nothing_else() {
    // Redis keeps its data across the stop (append-only file, flushed on SIGTERM), so what was queued can be
    // checked after the restart.
    let mut redis = DedicatedRedis::start_with(RedisOptions { append_only: true, ..Default::default() }).await.unwrap();
    let mut configs = TestServices::get().await.unwrap().fresh_configs().await.unwrap();
    configs.redis = redis_config(&redis.url(), "fl");
    let api = Arc::new(TestApi::start_with(configs, |_| {}).await.unwrap());
    let keys = tenant_keys(&api).await;

    let bodies: Vec<_> =
        (0..400).map(|i| (TENANTS[i % 2], json!({"workflow": sample_workflow(), "input": {"n": i}}))).collect();
    let burst = {
        let api = api.clone();
        let keys = keys.clone();
        tokio::spawn(async move { submit_all(&api, &keys, bodies).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    redis.stop().await.unwrap();
    let answers = burst.await.unwrap();

    let mut accepted = HashSet::new();
    for (i, (status, body)) in answers.iter().enumerate() {
        match status {
            202 => {
                accepted.insert(body["id"].as_str().unwrap().to_string());
            }
            503 => {}
            other => panic!("submission {i}: unexpected {other}: {body}"),
        }
    }
    let rows: Vec<(Uuid,)> = sqlx::query_as("SELECT id FROM executions").fetch_all(&api.db).await.unwrap();
    let rows: HashSet<String> = rows.into_iter().map(|(id,)| id.to_string()).collect();
    assert_eq!(rows, accepted, "a row exactly for every 202");

    redis.restart().await.unwrap();
    let mut index = HashMap::new();
    for _ in 0..50 {
        let mut conn = api.redis.clone();
        match redis::cmd("HGETALL").arg(api.keys.queued()).query_async::<HashMap<String, String>>(&mut conn).await {
            Ok(found) => {
                index = found;
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    for id in &accepted {
        assert!(index.contains_key(id), "accepted execution {id} is queued");
    }
}
