//! Pausing a tenant or one of its workflows: paused work stays queued and is not admitted (the waiting reason
//! says so), other tenants and workflows run, a resume lets it all run, the pause survives Redis losing it (the
//! reconciler restores it from PostgreSQL), and bad requests change nothing.

use flow_like_test_harness::{ADMIN_TOKEN, DispatcherArgs, InProcessDispatcher, TestApi};
use flow_like_tests::fixtures::{Submission, WorkflowDoc, assert_problem, wait_terminal};
use flow_like_tests::scripted_runner::{Script, ScriptedRunner};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

async fn post(api: &TestApi, path: &str, token: &str) -> reqwest::Response {
    api.http.post(api.url(path)).bearer_auth(token).send().await.unwrap()
}

async fn statuses(api: &TestApi, ids: &[Uuid]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        let (status,): (String,) =
            sqlx::query_as("SELECT status FROM executions WHERE id = $1").bind(id).fetch_one(&api.db).await.unwrap();
        out.push(status);
    }
    out
}

async fn waiting_reason(api: &TestApi, key: &str, id: Uuid) -> Value {
    let view: Value = api.get(&format!("/api/v1/executions/{id}"), key).await.unwrap().json().await.unwrap();
    view["waiting_reason"].clone()
}

fn named(name: &str) -> Value {
    WorkflowDoc::new().name(name).transform("t", ".input").build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_tenant_waits_and_others_run_until_it_is_resumed() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let (acme, globex) = (api.tenant_key("acme").await?, api.tenant_key("globex").await?);
    // Only an admin pauses.
    assert_problem(post(&api, "/api/v1/tenants/acme/pause", &acme).await, 403).await;
    let paused = post(&api, "/api/v1/tenants/acme/pause", ADMIN_TOKEN).await;
    assert_eq!(paused.status(), 200);
    assert_eq!(paused.json::<Value>().await?, json!({"tenant": "acme", "workflow": null, "paused": true}));
    assert_eq!(post(&api, "/api/v1/tenants/acme/pause", ADMIN_TOKEN).await.status(), 200, "idempotent");

    let runner = ScriptedRunner::new(|_| Script::Succeed(Duration::from_millis(10)));
    let dispatcher = InProcessDispatcher::start_with_runner(&DispatcherArgs::new(&api.configs, "d0")?, runner.clone())?;
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(Submission::sample().input(json!({"n": i})).submit(&api, &acme).await?);
    }
    let other = [Submission::sample().submit(&api, &globex).await?, Submission::sample().submit(&api, &globex).await?];
    assert_eq!(wait_terminal(&api.db, &other, Duration::from_secs(30)).await?, ["succeeded", "succeeded"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(statuses(&api, &held).await, ["queued", "queued", "queued"], "nothing of a paused tenant is admitted");
    assert_eq!(waiting_reason(&api, &acme, held[0]).await, "tenant acme is paused");

    // Redis loses the pause: the reconciler puts it back from PostgreSQL.
    let mut redis = api.redis.clone();
    let _: () = redis::cmd("DEL").arg(api.keys.paused("acme")).query_async(&mut redis).await?;
    let mut reconciler = api.reconciler(Duration::from_secs(3600));
    reconciler.pass().await?;
    let members: Vec<String> = redis::cmd("SMEMBERS").arg(api.keys.paused("acme")).query_async(&mut redis).await?;
    assert_eq!(members, ["*"]);

    let resumed = post(&api, "/api/v1/tenants/acme/resume", ADMIN_TOKEN).await;
    assert_eq!(resumed.json::<Value>().await?["paused"], false);
    assert_eq!(wait_terminal(&api.db, &held, Duration::from_secs(30)).await?, ["succeeded"; 3]);
    reconciler.pass().await?;
    let members: Vec<String> = redis::cmd("SMEMBERS").arg(api.keys.paused("acme")).query_async(&mut redis).await?;
    assert!(members.is_empty(), "a resume is not undone by the reconciler: {members:?}");
    dispatcher.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_workflow_waits_while_the_tenants_other_workflows_run() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    let paused = post(&api, "/api/v1/tenants/acme/workflows/nightly/pause", ADMIN_TOKEN).await;
    assert_eq!(paused.json::<Value>().await?, json!({"tenant": "acme", "workflow": "nightly", "paused": true}));
    let runner = ScriptedRunner::new(|_| Script::Succeed(Duration::from_millis(10)));
    let dispatcher = InProcessDispatcher::start_with_runner(&DispatcherArgs::new(&api.configs, "d0")?, runner.clone())?;
    let nightly = [
        Submission::of(named("nightly")).priority(9).submit(&api, &key).await?,
        Submission::of(named("nightly")).priority(9).submit(&api, &key).await?,
    ];
    let report = [
        Submission::of(named("report")).priority(1).submit(&api, &key).await?,
        Submission::of(named("report")).priority(1).submit(&api, &key).await?,
    ];
    assert_eq!(wait_terminal(&api.db, &report, Duration::from_secs(30)).await?, ["succeeded", "succeeded"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(statuses(&api, &nightly).await, ["queued", "queued"]);
    assert_eq!(waiting_reason(&api, &key, nightly[1]).await, "workflow nightly of tenant acme is paused");
    assert_eq!(post(&api, "/api/v1/tenants/acme/workflows/nightly/resume", ADMIN_TOKEN).await.status(), 200);
    assert_eq!(wait_terminal(&api.db, &nightly, Duration::from_secs(30)).await?, ["succeeded", "succeeded"]);
    dispatcher.stop().await?;
    Ok(())
}

#[tokio::test]
async fn bad_pause_requests_are_400_and_change_nothing() {
    let api = TestApi::start().await.unwrap();
    for path in [
        "/api/v1/tenants/Not_A_Tenant/pause",
        "/api/v1/tenants/acme/workflows/bad%20name/pause",
        "/api/v1/tenants/acme/workflows/*/pause",
    ] {
        assert_problem(post(&api, path, ADMIN_TOKEN).await, 400).await;
    }
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM paused").fetch_one(&api.db).await.unwrap();
    assert_eq!(rows, 0);
    assert!(api.redis_keys().await.unwrap().is_empty(), "no Redis key was written");
}
