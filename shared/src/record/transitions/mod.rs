//! The status pipeline's state machine: status events become execution and attempt state in PostgreSQL.
//!
//! Every event maps to a target state ordered by `(attempt, rank)`: `queued` 0 < `dispatched` 2 < `running` 3 <
//! terminal 9, where a `retrying` event means "attempt n+1 is queued" and so outranks everything of attempt n.
//! An event applies only when its target is above the current state and the execution is not terminal, and the
//! timeline columns keep the earliest time ever reported (`LEAST`). Both rules are order-independent, so
//! duplicated, replayed and shuffled events give the same final state, and a finished execution never goes
//! back. A batch is folded per execution first (one row update each) and written in one transaction, with rows
//! locked in id order so concurrent consumers cannot deadlock.

use super::RecordError;
use super::progress::Segment;
use crate::lifecycle::ExecutionStatus;
use crate::status::{FinishedOutcome, StatusEntry, StatusEvent};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::BTreeMap;
use uuid::Uuid;

mod applied;
pub use applied::{Applied, AttemptStarted, ExecutionFinished};
use applied::{AttemptTimes, ExecutionAfter, report};

/// One state change, from a status event.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub execution: Uuid,
    pub attempt: u32,
    pub at: DateTime<Utc>,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Dispatched {
        dispatcher: String,
        /// The runner kind (`process`, `kubernetes`, `noop`).
        runner: String,
        runner_ref: Option<String>,
        claimed_at: DateTime<Utc>,
    },
    Started,
    /// The attempt failed on infrastructure; `next_attempt` is queued.
    Retrying {
        error: String,
        next_attempt: u32,
    },
    Finished {
        outcome: FinishedOutcome,
        error: Option<String>,
        result_key: Option<String>,
    },
}

impl Transition {
    /// The transition an event causes; progress and log events change no state.
    pub fn from_entry(entry: &StatusEntry) -> Option<Self> {
        let change = match &entry.event {
            StatusEvent::Dispatched { dispatcher, runner, runner_ref, claimed_at_ms } => Change::Dispatched {
                dispatcher: dispatcher.clone(),
                runner: runner.clone(),
                runner_ref: runner_ref.clone(),
                claimed_at: from_ms(*claimed_at_ms),
            },
            StatusEvent::Started { .. } => Change::Started,
            StatusEvent::Retrying { error, next_attempt, .. } => {
                Change::Retrying { error: error.clone(), next_attempt: *next_attempt }
            }
            StatusEvent::Finished { outcome, error, result_key, .. } => {
                Change::Finished { outcome: *outcome, error: error.clone(), result_key: result_key.clone() }
            }
            StatusEvent::Node { .. } | StatusEvent::Log { .. } => return None,
        };
        Some(Self { execution: entry.execution, attempt: entry.attempt, at: from_ms(entry.at_ms), change })
    }

    /// The execution state this transition targets: (attempt, status).
    fn target(&self) -> (u32, ExecutionStatus) {
        match &self.change {
            Change::Dispatched { .. } => (self.attempt, ExecutionStatus::Dispatched),
            Change::Started => (self.attempt, ExecutionStatus::Running),
            Change::Retrying { next_attempt, .. } => (*next_attempt, ExecutionStatus::Queued),
            Change::Finished { outcome, .. } => (self.attempt, ExecutionStatus::from(*outcome)),
        }
    }

    /// Where the target sits in the state machine's order: (attempt, rank).
    fn position(&self) -> (u32, i32) {
        let (attempt, status) = self.target();
        (attempt, status.rank())
    }

    /// The attempt row's status after this transition.
    fn attempt_status(&self) -> ExecutionStatus {
        match &self.change {
            Change::Dispatched { .. } => ExecutionStatus::Dispatched,
            Change::Started => ExecutionStatus::Running,
            // The attempt failed; the execution's next attempt is queued.
            Change::Retrying { .. } => ExecutionStatus::Failed,
            Change::Finished { outcome, .. } => ExecutionStatus::from(*outcome),
        }
    }
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The folded effect of a batch on one execution.
#[derive(Debug, Default)]
struct ExecutionFold {
    target: Option<(u32, ExecutionStatus)>,
    error: Option<String>,
    result_key: Option<String>,
    finished_at: Option<DateTime<Utc>>,
    claimed_at: Option<DateTime<Utc>>,
    dispatched_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
}

/// The folded effect of a batch on one attempt row.
#[derive(Debug, Default)]
struct AttemptFold {
    status: Option<ExecutionStatus>,
    dispatcher: Option<String>,
    runner: Option<String>,
    runner_ref: Option<String>,
    error: Option<String>,
    created_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

/// Whether event row `u` moves execution row `e` forward: `e` is not terminal and `(u.attempt, u.rank)` is above
/// `(e.attempts, rank of e.status)`.
macro_rules! advance {
    () => {
        "(e.status NOT IN ('succeeded', 'failed', 'timed_out', 'cancelled')
          AND (u.attempt > e.attempts OR (u.attempt = e.attempts AND u.rank > flowlike_status_rank(e.status))))"
    };
}

/// Applies a batch of transitions in one transaction, with the progress segments of the executions that finished
/// in it (`record::progress`). Idempotent and order-independent (see the module doc).
pub async fn apply(pool: &PgPool, batch: &[Transition], progress: &[Segment]) -> Result<Applied, RecordError> {
    if batch.is_empty() && progress.is_empty() {
        return Ok(Applied::default());
    }
    let mut executions: BTreeMap<Uuid, ExecutionFold> = BTreeMap::new();
    let mut attempts: BTreeMap<(Uuid, u32), AttemptFold> = BTreeMap::new();
    for t in batch {
        let fold = executions.entry(t.execution).or_default();
        let target = t.target();
        let wins = fold.target.is_none_or(|(a, s)| t.position() > (a, s.rank()));
        if wins {
            fold.target = Some(target);
            (fold.error, fold.result_key, fold.finished_at) = match &t.change {
                Change::Retrying { error, .. } => (Some(error.clone()), None, None),
                Change::Finished { error, result_key, .. } => (error.clone(), result_key.clone(), Some(t.at)),
                _ => (None, None, None),
            };
        }
        let row = attempts.entry((t.execution, t.attempt)).or_default();
        let attempt_status = t.attempt_status();
        if row.status.is_none_or(|s| attempt_status.rank() > s.rank()) {
            row.status = Some(attempt_status);
        }
        match &t.change {
            Change::Dispatched { dispatcher, runner, runner_ref, claimed_at } => {
                fold.claimed_at = earliest(fold.claimed_at, Some(*claimed_at));
                fold.dispatched_at = earliest(fold.dispatched_at, Some(t.at));
                row.dispatcher.get_or_insert_with(|| dispatcher.clone());
                row.runner.get_or_insert_with(|| runner.clone());
                if row.runner_ref.is_none() {
                    row.runner_ref.clone_from(runner_ref);
                }
                row.created_at = earliest(row.created_at, Some(t.at));
            }
            Change::Started => {
                fold.started_at = earliest(fold.started_at, Some(t.at));
                row.started_at = earliest(row.started_at, Some(t.at));
            }
            Change::Retrying { error, .. } => {
                row.error = Some(error.clone());
                row.finished_at = earliest(row.finished_at, Some(t.at));
            }
            Change::Finished { error, .. } => {
                if error.is_some() {
                    row.error.clone_from(error);
                }
                row.finished_at = earliest(row.finished_at, Some(t.at));
            }
        }
    }

    let mut ids = Vec::with_capacity(executions.len());
    let (mut e_attempt, mut e_rank, mut e_status) = (Vec::new(), Vec::new(), Vec::new());
    let (mut e_error, mut e_result, mut e_finished) = (Vec::new(), Vec::new(), Vec::new());
    let (mut e_claimed, mut e_dispatched, mut e_started) = (Vec::new(), Vec::new(), Vec::new());
    for (id, fold) in &executions {
        let Some((attempt, status)) = fold.target else { continue };
        ids.push(*id);
        e_attempt.push(attempt as i32);
        e_rank.push(status.rank());
        e_status.push(status.as_str());
        e_error.push(fold.error.clone());
        e_result.push(fold.result_key.clone());
        e_finished.push(fold.finished_at);
        e_claimed.push(fold.claimed_at);
        e_dispatched.push(fold.dispatched_at);
        e_started.push(fold.started_at);
    }

    let mut tx = pool.begin().await?;
    // Lock the rows in id order first: concurrent batches touching the same executions cannot deadlock. Their
    // state before the batch tells which transitions move them.
    let before: Vec<(Uuid, i32, i32)> = sqlx::query_as(
        "SELECT id, attempts, flowlike_status_rank(status) FROM executions WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let before: BTreeMap<Uuid, (u32, i32)> =
        before.into_iter().map(|(id, attempt, rank)| (id, (attempt.max(0) as u32, rank))).collect();
    let after: Vec<ExecutionAfter> = sqlx::query_as(concat!(
        "UPDATE executions e SET
            status = CASE WHEN ",
        advance!(),
        " THEN u.status ELSE e.status END,
            attempts = CASE WHEN ",
        advance!(),
        " THEN u.attempt ELSE e.attempts END,
            error = CASE WHEN ",
        advance!(),
        " AND (u.rank = 9 OR u.rank = 0) THEN u.error ELSE e.error END,
            result_key = CASE WHEN ",
        advance!(),
        " AND u.rank = 9 THEN u.result_key ELSE e.result_key END,
            finished_at = CASE WHEN ",
        advance!(),
        " AND u.rank = 9 THEN u.finished_at ELSE e.finished_at END,
            claimed_at = LEAST(e.claimed_at, u.claimed_at),
            dispatched_at = LEAST(e.dispatched_at, u.dispatched_at),
            started_at = LEAST(e.started_at, u.started_at),
            updated_at = CASE WHEN ",
        advance!(),
        " THEN now() ELSE e.updated_at END
         FROM unnest($1::uuid[], $2::int[], $3::int[], $4::text[], $5::text[], $6::text[], $7::timestamptz[],
                     $8::timestamptz[], $9::timestamptz[], $10::timestamptz[])
              AS u(id, attempt, rank, status, error, result_key, finished_at, claimed_at, dispatched_at, started_at)
         WHERE e.id = u.id
         RETURNING e.id, e.attempts, e.status, e.queued_at, e.finished_at"
    ))
    .bind(&ids)
    .bind(&e_attempt)
    .bind(&e_rank)
    .bind(&e_status)
    .bind(&e_error)
    .bind(&e_result)
    .bind(&e_finished)
    .bind(&e_claimed)
    .bind(&e_dispatched)
    .bind(&e_started)
    .fetch_all(&mut *tx)
    .await?;

    let (mut a_id, mut a_attempt, mut a_status, mut a_dispatcher, mut a_runner, mut a_ref) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut a_error, mut a_created, mut a_started, mut a_finished) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((id, attempt), row) in &attempts {
        a_id.push(*id);
        a_attempt.push(*attempt as i32);
        a_status.push(row.status.map(ExecutionStatus::as_str));
        a_dispatcher.push(row.dispatcher.clone());
        a_runner.push(row.runner.clone());
        a_ref.push(row.runner_ref.clone());
        a_error.push(row.error.clone());
        a_created.push(row.created_at);
        a_started.push(row.started_at);
        a_finished.push(row.finished_at);
    }
    let attempt_rows: Vec<AttemptTimes> = sqlx::query_as(
        "INSERT INTO attempts AS a
            (execution_id, attempt, status, dispatcher, runner, runner_ref, error, created_at, started_at,
             finished_at)
         SELECT u.id, u.attempt, u.status, u.dispatcher, u.runner, u.runner_ref, u.error, COALESCE(u.created_at, now()),
                u.started_at, u.finished_at
         FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::timestamptz[], $9::timestamptz[], $10::timestamptz[])
              AS u(id, attempt, status, dispatcher, runner, runner_ref, error, created_at, started_at, finished_at)
         WHERE EXISTS (SELECT 1 FROM executions e WHERE e.id = u.id)
         ON CONFLICT (execution_id, attempt) DO UPDATE SET
            status = CASE WHEN flowlike_status_rank(EXCLUDED.status) > flowlike_status_rank(a.status)
                          THEN EXCLUDED.status ELSE a.status END,
            dispatcher = COALESCE(a.dispatcher, EXCLUDED.dispatcher),
            runner = COALESCE(a.runner, EXCLUDED.runner),
            runner_ref = COALESCE(a.runner_ref, EXCLUDED.runner_ref),
            error = COALESCE(a.error, EXCLUDED.error),
            created_at = LEAST(a.created_at, EXCLUDED.created_at),
            started_at = LEAST(a.started_at, EXCLUDED.started_at),
            finished_at = LEAST(a.finished_at, EXCLUDED.finished_at)
         RETURNING a.execution_id, a.attempt, a.dispatcher IS NOT NULL AS dispatched, a.runner, a.created_at,
                   a.started_at",
    )
    .bind(&a_id)
    .bind(&a_attempt)
    .bind(&a_status)
    .bind(&a_dispatcher)
    .bind(&a_runner)
    .bind(&a_ref)
    .bind(&a_error)
    .bind(&a_created)
    .bind(&a_started)
    .bind(&a_finished)
    .fetch_all(&mut *tx)
    .await?;
    super::progress::archive(&mut tx, progress).await?;
    tx.commit().await?;
    Ok(report(batch, &before, &after, &attempt_rows))
}

/// One attempt as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct AttemptRecord {
    pub attempt: i32,
    pub status: String,
    pub dispatcher: Option<String>,
    pub runner_ref: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The attempts of one execution, first first.
pub async fn attempts(pool: &PgPool, execution: Uuid) -> Result<Vec<AttemptRecord>, RecordError> {
    Ok(sqlx::query_as(
        "SELECT attempt, status, dispatcher, runner_ref, error, created_at, started_at, finished_at
         FROM attempts WHERE execution_id = $1 ORDER BY attempt",
    )
    .bind(execution)
    .fetch_all(pool)
    .await?)
}
