//! Retention against real PostgreSQL, Redis and S3: the pruner deletes finished executions, their objects in both
//! buckets and dead letters past their retention, in bounded batches, with several pruners at once, and never
//! touches queued or running work. (A finished execution's progress leaves Redis when it is archived in
//! PostgreSQL: tests/tests/progress_archive.rs.)

use bytes::Bytes;
use chrono::Utc;
use flow_like_dispatcher::config::RetentionConfig;
use flow_like_dispatcher::pruner::{PruneReport, Pruner};
use flow_like_shared::storage::layout;
use flow_like_test_harness::TestApi;
use flow_like_tests::fixtures::{Submission, WorkflowDoc, submit};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn retention(executions_days: u32, objects_days: u32, dead_letters_days: u32) -> RetentionConfig {
    RetentionConfig {
        executions_days,
        objects_days,
        dead_letters_days,
        progress_stream_secs: 60,
        prune_interval_secs: 3600,
        prune_batch_size: 2,
    }
}

fn pruner(api: &TestApi, retention: RetentionConfig) -> Pruner {
    Pruner {
        db: api.db.clone(),
        redis: api.redis.clone(),
        keys: api.keys.clone(),
        storage: api.storage.clone(),
        retention,
    }
}

fn workflow() -> serde_json::Value {
    Submission::of(WorkflowDoc::new().transform("t", ".input").output("t").build()).input(json!(1)).body()
}

/// Submits an execution, sets its status and finish time `finished_days_ago` (None: unfinished) in the record,
/// and gives it a spec in the meta bucket and a result and logs in the content bucket.
async fn execution(api: &TestApi, key: &str, status: &str, finished_days_ago: Option<i64>) -> anyhow::Result<Uuid> {
    let id = submit(api, key, &workflow()).await?;
    sqlx::query(
        "UPDATE executions SET status = $2, attempts = 1,
             finished_at = CASE WHEN $3::bigint IS NULL THEN NULL ELSE now() - make_interval(days => $3::int) END
         WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(finished_days_ago)
    .execute(&api.db)
    .await?;
    sqlx::query("INSERT INTO attempts (execution_id, attempt, status) VALUES ($1, 1, $2)")
        .bind(id)
        .bind(status)
        .execute(&api.db)
        .await?;
    let storage = &api.storage;
    storage.put(&storage.meta_bucket, &layout::spec(id), Bytes::from_static(b"{}"), "application/json").await?;
    for object in [layout::result(id, 1), layout::logs(id, 1), layout::manifest(id, 1)] {
        storage.put(&storage.content_bucket, &object, Bytes::from_static(b"{}"), "application/json").await?;
    }
    Ok(id)
}

async fn row_exists(api: &TestApi, id: Uuid) -> anyhow::Result<bool> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM executions WHERE id = $1)").bind(id).fetch_one(&api.db).await?)
}

/// Objects under the execution's prefix in (meta, content).
async fn objects(api: &TestApi, id: Uuid) -> anyhow::Result<(usize, usize)> {
    let client = api.storage.client();
    let mut counts = [0; 2];
    for (count, bucket) in counts.iter_mut().zip([&api.storage.meta_bucket, &api.storage.content_bucket]) {
        let listed = client.list_objects_v2().bucket(bucket).prefix(layout::execution_prefix(id)).send().await?;
        *count = listed.contents().len();
    }
    Ok((counts[0], counts[1]))
}

#[tokio::test(flavor = "multi_thread")]
async fn finished_executions_past_retention_lose_objects_and_rows_and_nothing_else_is_touched() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    let old: Vec<Uuid> = futures::future::try_join_all(
        ["succeeded", "failed", "timed_out", "cancelled", "succeeded"].map(|s| execution(&api, &key, s, Some(40))),
    )
    .await?;
    let recent = execution(&api, &key, "succeeded", Some(10)).await?;
    // Work in progress, however old, is never pruned: no finish time.
    let running = execution(&api, &key, "running", None).await?;
    let queued = execution(&api, &key, "queued", None).await?;
    sqlx::query("UPDATE executions SET queued_at = now() - interval '90 days' WHERE id = ANY($1)")
        .bind([running, queued])
        .execute(&api.db)
        .await?;

    let report = pruner(&api, retention(30, 30, 0)).pass(Utc::now(), &CancellationToken::new()).await?;
    assert_eq!(
        report,
        PruneReport { object_sets: 5, objects: 20, executions: 5, dead_letters: 0 },
        "batches of 2 repeat until nothing is due"
    );
    for id in &old {
        assert!(!row_exists(&api, *id).await?, "{id} kept past its retention");
        assert_eq!(objects(&api, *id).await?, (0, 0));
        let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM attempts WHERE execution_id = $1")
            .bind(id)
            .fetch_one(&api.db)
            .await?;
        assert_eq!(attempts, 0);
    }
    for id in [recent, running, queued] {
        assert!(row_exists(&api, id).await?, "{id} deleted too early");
        assert_eq!(objects(&api, id).await?, (1, 3), "{id} lost objects too early");
    }
    let again = pruner(&api, retention(30, 30, 0)).pass(Utc::now(), &CancellationToken::new()).await?;
    assert_eq!(again, PruneReport::default(), "a second pass finds nothing");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn shorter_object_retention_keeps_the_row_readable_and_a_redriven_execution_is_out_of_reach() -> anyhow::Result<()>
{
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    let finished = execution(&api, &key, "succeeded", Some(10)).await?;
    let redriven = execution(&api, &key, "failed", Some(10)).await?;
    // A redrive puts it back in the queue and clears its finish time.
    sqlx::query("UPDATE executions SET status = 'queued', finished_at = NULL WHERE id = $1")
        .bind(redriven)
        .execute(&api.db)
        .await?;

    let report = pruner(&api, retention(0, 7, 0)).pass(Utc::now(), &CancellationToken::new()).await?;
    assert_eq!((report.object_sets, report.executions), (1, 0));
    assert_eq!(objects(&api, finished).await?, (0, 0));
    assert_eq!(objects(&api, redriven).await?, (1, 3));
    let answer = api.get(&format!("/api/v1/executions/{finished}"), &key).await?;
    assert_eq!(answer.status(), 200, "the record of a pruned execution stays readable");

    // Rows kept forever: a later pass with the same settings deletes nothing more.
    let again = pruner(&api, retention(0, 7, 0)).pass(Utc::now(), &CancellationToken::new()).await?;
    assert_eq!(again, PruneReport::default());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn several_pruners_at_once_share_the_work() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    let ids: Vec<Uuid> =
        futures::future::try_join_all((0..12).map(|_| execution(&api, &key, "succeeded", Some(40)))).await?;
    let stop = CancellationToken::new();
    let (mut a, mut b, mut c) =
        (pruner(&api, retention(30, 30, 0)), pruner(&api, retention(30, 30, 0)), pruner(&api, retention(30, 30, 0)));
    let now = Utc::now();
    let (ra, rb, rc) = tokio::try_join!(a.pass(now, &stop), b.pass(now, &stop), c.pass(now, &stop))?;
    assert_eq!(ra.executions + rb.executions + rc.executions, 12, "every row deleted exactly once");
    assert_eq!(ra.object_sets + rb.object_sets + rc.object_sets, 12, "every object set deleted exactly once");
    for id in ids {
        assert!(!row_exists(&api, id).await?);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_past_retention_are_trimmed() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let mut redis = api.redis.clone();
    let day_ms = 86_400_000_i64;
    let now_ms = Utc::now().timestamp_millis();
    for age_days in [40, 31, 29, 1] {
        let _: String = redis::cmd("XADD")
            .arg(api.keys.dead_letters())
            .arg(format!("{}-0", now_ms - age_days * day_ms))
            .arg("id")
            .arg(Uuid::now_v7().to_string())
            .query_async(&mut redis)
            .await?;
    }
    let report = pruner(&api, retention(0, 0, 30)).pass(Utc::now(), &CancellationToken::new()).await?;
    assert_eq!(report.dead_letters, 2);
    let left: u64 = redis::cmd("XLEN").arg(api.keys.dead_letters()).query_async(&mut redis).await?;
    assert_eq!(left, 2);
    Ok(())
}
