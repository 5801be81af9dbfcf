//! The status pipeline's state machine against real PostgreSQL: the same events, applied in order, shuffled,
//! duplicated and split into random batches, give the same final state, and a finished execution never goes
//! back.

use chrono::{DateTime, Utc};
use flow_like_shared::lifecycle::ExecutionStatus;
use flow_like_shared::record::transitions::{self, Change, Transition};
use flow_like_shared::record::{self, NewExecution, executions};
use flow_like_shared::status::FinishedOutcome;
use flow_like_test_services::TestServices;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;
use uuid::Uuid;

async fn database_with(ids: &[Uuid]) -> anyhow::Result<PgPool> {
    let services = TestServices::get().await?;
    let url = services.fresh_database().await?;
    let pool = PgPool::connect(&url).await?;
    record::migrate(&pool).await?;
    record::ensure_tenant(&pool, "acme").await?;
    for id in ids {
        let new = NewExecution {
            id: *id,
            tenant: "acme".into(),
            workflow_name: "wf".into(),
            workflow_version: None,
            workflow: serde_json::json!({"nodes": {}}),
            input: Some(serde_json::json!(null)),
            input_key: None,
            priority: 5,
            labels: serde_json::json!({}),
            traceparent: None,
        };
        executions::insert(&pool, &new, None).await?;
    }
    Ok(pool)
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap()
}

/// A plausible history per execution: some fail on infrastructure once and are retried, some are cancelled
/// while queued, the rest run to a verdict.
fn history(id: Uuid, variant: usize) -> Vec<Transition> {
    let t = |attempt, ms, change| Transition { execution: id, attempt, at: at(ms), change };
    let dispatched = |ms: i64| Change::Dispatched {
        dispatcher: "d1".into(),
        runner: "process".into(),
        runner_ref: Some("pid 1".into()),
        claimed_at: at(ms - 5),
    };
    let finished = |outcome, error: Option<&str>| Change::Finished {
        outcome,
        error: error.map(str::to_owned),
        result_key: Some(format!("executions/{id}/result.json")),
    };
    match variant % 4 {
        0 => vec![
            t(1, 10, dispatched(10)),
            t(1, 20, Change::Started),
            t(1, 90, finished(FinishedOutcome::Succeeded, None)),
        ],
        1 => vec![
            t(1, 10, dispatched(10)),
            t(1, 20, Change::Started),
            t(1, 30, Change::Retrying { error: "exit 137".into(), next_attempt: 2 }),
            t(2, 40, dispatched(40)),
            t(2, 50, Change::Started),
            t(2, 95, finished(FinishedOutcome::Failed, Some("node `x` failed"))),
        ],
        2 => vec![t(1, 10, dispatched(10)), t(1, 60, finished(FinishedOutcome::Cancelled, None))],
        _ => vec![
            t(1, 10, dispatched(10)),
            t(1, 20, Change::Started),
            t(1, 70, finished(FinishedOutcome::TimedOut, Some("deadline"))),
        ],
    }
}

type State = Vec<(
    Uuid,
    String,
    i32,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
)>;

async fn state(pool: &PgPool) -> anyhow::Result<(State, Vec<(Uuid, i32, String, Option<String>)>)> {
    let executions: State = sqlx::query_as(
        "SELECT id, status, attempts, error, result_key, claimed_at, dispatched_at, started_at, finished_at
         FROM executions ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    let attempts =
        sqlx::query_as("SELECT execution_id, attempt, status, error FROM attempts ORDER BY execution_id, attempt")
            .fetch_all(pool)
            .await?;
    Ok((executions, attempts))
}

#[tokio::test]
async fn shuffled_and_duplicated_replays_reach_the_same_state() -> anyhow::Result<()> {
    let ids: Vec<Uuid> = (0..40).map(|_| Uuid::now_v7()).collect();
    let events: Vec<Transition> = ids.iter().enumerate().flat_map(|(i, id)| history(*id, i)).collect();

    let in_order = database_with(&ids).await?;
    let mut finished_in_order = Vec::new();
    for event in &events {
        let applied = transitions::apply(&in_order, std::slice::from_ref(event), &[]).await?;
        finished_in_order.extend(applied.finished);
    }
    let expected = state(&in_order).await?;
    // Each execution is reported finished once, so the latency histograms time it once.
    assert_eq!(finished_in_order.len(), ids.len());
    let finished_times = |mut finished: Vec<transitions::ExecutionFinished>| {
        finished.sort_by_key(|f| f.execution);
        finished
    };
    let finished_in_order = finished_times(finished_in_order);
    // Sanity: the histories ended where they should.
    let statuses: Vec<&str> = expected.0.iter().map(|row| row.1.as_str()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == "succeeded").count(), 10);
    assert_eq!(statuses.iter().filter(|s| **s == "failed").count(), 10);
    let retried = expected.0.iter().find(|row| row.1 == "failed").unwrap();
    assert_eq!(retried.2, 2, "the retried execution ended on attempt 2");
    assert!(expected.0.iter().all(|row| row.8.is_some()), "every execution has a finish time");

    for seed in 0..3u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut replay = events.clone();
        // Every event at least once, some three times, in random order and random batch sizes.
        let duplicates: Vec<Transition> = events.iter().filter(|_| rng.random_bool(0.3)).cloned().collect();
        replay.extend(duplicates.iter().cloned());
        replay.extend(duplicates);
        replay.shuffle(&mut rng);
        let shuffled = database_with(&ids).await?;
        let mut rest = &replay[..];
        let (mut finished, mut counted) = (Vec::new(), 0);
        while !rest.is_empty() {
            let n = rng.random_range(1..=rest.len().min(25));
            let applied = transitions::apply(&shuffled, &rest[..n], &[]).await?;
            counted += applied.advanced + applied.duplicate + applied.stale;
            finished.extend(applied.finished);
            rest = &rest[n..];
        }
        assert_eq!(state(&shuffled).await?, expected, "seed {seed}");
        assert_eq!(counted, replay.len() as u64, "every event is counted once, seed {seed}");
        // When each execution ended is exact whatever the order; its runner and run time are what PostgreSQL
        // knew when the end was applied (an attempt's dispatched or started event may come after its end).
        let ends = |f: Vec<transitions::ExecutionFinished>| {
            finished_times(f).into_iter().map(|f| (f.execution, f.status, f.end_to_end)).collect::<Vec<_>>()
        };
        assert_eq!(ends(finished), ends(finished_in_order.clone()), "seed {seed}");
    }

    // A finished execution never goes back: replaying its early events changes nothing.
    let before = state(&in_order).await?;
    let early: Vec<Transition> =
        events.iter().filter(|e| !matches!(e.change, Change::Finished { .. })).cloned().collect();
    let applied = transitions::apply(&in_order, &early, &[]).await?;
    assert_eq!(state(&in_order).await?, before);
    assert_eq!((applied.advanced, applied.stale), (0, early.len() as u64));
    assert!(applied.started.is_empty() && applied.finished.is_empty(), "{applied:?}");
    Ok(())
}

/// The one lifecycle type and the SQL rank function the pipeline's updates use order every state the same way,
/// and the SQL ranks anything else as terminal, as `ExecutionStatus::rank_of` does.
#[tokio::test]
async fn sql_ranks_equal_the_lifecycle_ranks() -> anyhow::Result<()> {
    let pool = database_with(&[]).await?;
    let mut names: Vec<&str> = ExecutionStatus::ALL.iter().map(|s| s.as_str()).collect();
    names.push("no-such-state");
    for name in names {
        let (sql,): (i32,) = sqlx::query_as("SELECT flowlike_status_rank($1)").bind(name).fetch_one(&pool).await?;
        assert_eq!(sql, ExecutionStatus::rank_of(name), "rank of {name}");
    }
    Ok(())
}
