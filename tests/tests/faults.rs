//! Backing services failing: a 503 with Retry-After and nothing left behind, and the reconciler putting
//! committed executions back in the queue after Redis lost them.

use flow_like_shared::protocol;
use flow_like_test_harness::{ADMIN_TOKEN, TestApi};
use flow_like_test_services::{DedicatedPostgres, DedicatedRedis, TestServices, database_config, redis_config};
use flow_like_tests::fixtures::sample_workflow;
use serde_json::{Value, json};
use std::time::Duration;

fn assert_unavailable(response: &reqwest::Response) {
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(response.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn redis_down_is_503_and_leaves_nothing() {
    let mut redis = DedicatedRedis::start().await.unwrap();
    let mut configs = TestServices::get().await.unwrap().fresh_configs().await.unwrap();
    configs.redis = redis_config(&redis.url(), "fl");
    let api = TestApi::start_with(configs, |_| {}).await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    redis.stop().await.unwrap();

    let response = api.post_json("/api/v1/executions", &key, &json!({"workflow": sample_workflow()})).await.unwrap();
    assert_unavailable(&response);
    // A large input too: its object must be removed again.
    let big = json!({"workflow": sample_workflow(), "input": "y".repeat(32 * 1024)});
    assert_unavailable(&api.post_json("/api/v1/executions", &key, &big).await.unwrap());
    assert_eq!(api.execution_rows().await.unwrap(), 0);
    assert_eq!(api.meta_objects().await.unwrap(), 0);
    let ready = api.http.get(api.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_ne!(ready.json::<Value>().await.unwrap()["redis"], "ok");

    redis.restart().await.unwrap();
    let mut accepted = None;
    for _ in 0..50 {
        let response =
            api.post_json("/api/v1/executions", &key, &json!({"workflow": sample_workflow()})).await.unwrap();
        if response.status() == 202 {
            accepted = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(accepted.is_some(), "submissions work again once Redis is back");
    assert_eq!(api.execution_rows().await.unwrap(), 1);
}

#[tokio::test]
async fn postgres_down_is_503_and_leaves_nothing() {
    let postgres = DedicatedPostgres::start().await.unwrap();
    let mut configs = TestServices::get().await.unwrap().fresh_configs().await.unwrap();
    configs.database = database_config(&postgres.url());
    // A key cache, so the request gets past authentication and fails at the insert.
    let api = TestApi::start_with(configs, |c| c.api_key_cache_secs = 60).await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    assert_eq!(api.get("/api/v1/queue", &key).await.unwrap().status(), 200, "the key is cached");
    postgres.stop().await.unwrap();

    let response = api.post_json("/api/v1/executions", &key, &json!({"workflow": sample_workflow()})).await.unwrap();
    assert_unavailable(&response);
    let response = api
        .post_json("/api/v1/executions", &key, &json!({"workflow": sample_workflow(), "input": "z".repeat(32 * 1024)}))
        .await
        .unwrap();
    assert_unavailable(&response);
    // An uncached key needs the database too.
    let response = api
        .post_json("/api/v1/executions", "flk_0123456789ab_secret", &json!({"workflow": sample_workflow()}))
        .await
        .unwrap();
    assert_unavailable(&response);
    let response = api.http.post(api.url("/api/v1/tenants/x/api-keys")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_unavailable(&response);
    assert!(api.redis_keys().await.unwrap().is_empty(), "nothing was queued");
    assert_eq!(api.meta_objects().await.unwrap(), 0);
    assert_eq!(api.http.get(api.url("/readyz")).send().await.unwrap().status(), 503);

    postgres.restart().await.unwrap();
    assert_eq!(api.execution_rows().await.unwrap(), 0);
}

#[tokio::test]
async fn the_reconciler_requeues_what_redis_lost() {
    let redis = DedicatedRedis::start().await.unwrap();
    let mut configs = TestServices::get().await.unwrap().fresh_configs().await.unwrap();
    configs.redis = redis_config(&redis.url(), "fl");
    let api = TestApi::start_with(configs, |_| {}).await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let mut ids = Vec::new();
    for priority in [2, 5, 9] {
        let body: Value = api
            .post_json(
                "/api/v1/executions",
                &key,
                &json!({"workflow": sample_workflow(), "priority": priority, "labels": {"k": "v"}}),
            )
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(body["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap());
    }
    api.http
        .put(api.url("/api/v1/tenants/acme/limits"))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({"concurrency_limit": 2, "workflow_limit": 1, "weight": 3, "submit_rate": 50.5, "submit_burst": 7}),
        )
        .send()
        .await
        .unwrap();

    let mut conn = api.redis.clone();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let mut reconciler = api.reconciler(Duration::ZERO);
    let report = reconciler.pass().await.unwrap();
    assert_eq!((report.checked, report.requeued), (3, 3));
    let known = protocol::reads::known_queued(&mut conn, &api.keys, &ids).await.unwrap();
    assert_eq!(known, vec![true; 3]);
    let view: Value = api.get("/api/v1/queue", &key).await.unwrap().json().await.unwrap();
    let view = &view["tenants"][0];
    assert_eq!(view["queue"]["waiting"], 3);
    assert_eq!(view["queue"]["waiting_by_priority"], json!({"2": 1, "5": 1, "9": 1}));
    assert_eq!(view["limits"]["tenant"], 2, "limit overrides are restored from PostgreSQL");
    assert_eq!(view["limits"]["workflow"], 1);
    let rate: (Option<f64>, Option<u32>) = redis::cmd("HMGET")
        .arg(api.keys.limits())
        .arg("rate:acme")
        .arg("burst:acme")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(rate, (Some(50.5), Some(7)), "the submit rate override is restored too");

    // A second pass (or another dispatcher's) changes nothing.
    let again = reconciler.pass().await.unwrap();
    assert_eq!((again.checked, again.requeued), (3, 0));
    let len: u64 = redis::cmd("XLEN").arg(api.keys.lane("acme", 9)).query_async(&mut conn).await.unwrap();
    assert_eq!(len, 1);

    // Young executions are left to their submitter.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let mut patient = api.reconciler(Duration::from_secs(3600));
    assert_eq!(patient.pass().await.unwrap().requeued, 0);
}
