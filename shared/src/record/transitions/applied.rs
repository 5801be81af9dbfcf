//! What one batch of transitions did, for the dispatcher's metrics: which transitions moved their execution,
//! which were duplicates or stale, which attempts started and which executions ended, with their durations.
//! Computed from the rows' state before and after the batch, inside its transaction.

use super::Transition;
use crate::lifecycle::ExecutionStatus;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use uuid::Uuid;

const RANK_RUNNING: i32 = ExecutionStatus::Running.rank();
const RANK_TERMINAL: i32 = ExecutionStatus::TERMINAL_RANK;

/// What one batch did, for the dispatcher's metrics. Counted against the state the rows had before the batch,
/// so a replayed or duplicated event is never counted (or timed) twice.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Applied {
    /// Transitions that moved their execution forward.
    pub advanced: u64,
    /// Transitions whose target the execution had already reached (the same event again).
    pub duplicate: u64,
    /// Transitions behind the execution's state (it had moved past them, or ended, or no longer exists).
    pub stale: u64,
    /// Attempts this batch first saw running: the time from their `dispatched` to their `started` event.
    pub started: Vec<AttemptStarted>,
    /// Executions this batch ended.
    pub finished: Vec<ExecutionFinished>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttemptStarted {
    pub runner: Option<String>,
    pub dispatch_to_start: std::time::Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionFinished {
    pub execution: Uuid,
    /// The runner of the last attempt (none when the execution ended without being dispatched).
    pub runner: Option<String>,
    pub status: String,
    /// Queued (first submission) to finished.
    pub end_to_end: std::time::Duration,
    /// The last attempt's start to its end, when it started.
    pub run: Option<std::time::Duration>,
}

fn between(from: DateTime<Utc>, to: DateTime<Utc>) -> std::time::Duration {
    (to - from).to_std().unwrap_or_default()
}

/// An execution row as the batch left it: id, attempts, status, queued_at, finished_at.
pub(super) type ExecutionAfter = (Uuid, i32, String, DateTime<Utc>, Option<DateTime<Utc>>);

/// An attempt row as the batch left it.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct AttemptTimes {
    execution_id: Uuid,
    attempt: i32,
    /// Its `dispatched` event has been applied, so `created_at` is the dispatch time.
    dispatched: bool,
    runner: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
}

/// Compares the rows before and after the batch: see [`Applied`].
pub(super) fn report(
    batch: &[Transition],
    before: &BTreeMap<Uuid, (u32, i32)>,
    after: &[ExecutionAfter],
    attempts: &[AttemptTimes],
) -> Applied {
    let mut applied = Applied::default();
    for t in batch {
        let target = t.position();
        match before.get(&t.execution) {
            Some(&(attempt, rank)) if rank < RANK_TERMINAL && target > (attempt, rank) => applied.advanced += 1,
            Some(&(attempt, rank)) if target == (attempt, rank) => applied.duplicate += 1,
            _ => applied.stale += 1,
        }
    }
    let attempt_rows: BTreeMap<(Uuid, u32), &AttemptTimes> =
        attempts.iter().map(|a| ((a.execution_id, a.attempt.max(0) as u32), a)).collect();
    for (id, attempts_after, status, queued_at, finished_at) in after {
        let Some(&(attempt_before, rank_before)) = before.get(id) else { continue };
        let attempts_after = (*attempts_after).max(0) as u32;
        let rank_after = ExecutionStatus::rank_of(status);
        if (attempts_after, rank_after) <= (attempt_before, rank_before) || rank_before == RANK_TERMINAL {
            continue;
        }
        // Every attempt whose `running` state this batch crossed, and that shows its dispatch and start.
        for number in attempt_before.max(1)..=attempts_after {
            let crossed = (attempt_before, rank_before) < (number, RANK_RUNNING)
                && (number, RANK_RUNNING) <= (attempts_after, rank_after);
            if let Some(row) = attempt_rows.get(&(*id, number)).filter(|_| crossed)
                && let (true, Some(started)) = (row.dispatched, row.started_at)
            {
                applied.started.push(AttemptStarted {
                    runner: row.runner.clone(),
                    dispatch_to_start: between(row.created_at, started),
                });
            }
        }
        if rank_after == RANK_TERMINAL
            && let Some(finished) = finished_at
        {
            let last = attempt_rows.get(&(*id, attempts_after));
            applied.finished.push(ExecutionFinished {
                execution: *id,
                runner: last.and_then(|a| a.runner.clone()),
                status: status.clone(),
                end_to_end: between(*queued_at, *finished),
                run: last.and_then(|a| a.started_at).map(|started| between(started, *finished)),
            });
        }
    }
    applied
}
