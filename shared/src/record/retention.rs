//! Retention in the record: finished executions due for pruning, claimed with `FOR UPDATE SKIP LOCKED` so the
//! pruners of all dispatchers run at once without taking the same rows, and deleted in bounded batches.
//!
//! An execution's objects go first (`objects_pruned_at` records it), its row after: a row is never deleted while
//! objects it points to may still exist, so no object is ever orphaned. Only executions whose status is terminal
//! and whose `finished_at` is older than the cutoff qualify; a redrive clears `finished_at`, so an execution that
//! runs again is out of reach until it finishes again (and its new objects are pruned again).

use super::{ExecutionStatus, RecordError};
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

fn terminal_statuses() -> Vec<&'static str> {
    ExecutionStatus::ALL.into_iter().filter(|s| s.is_terminal()).map(ExecutionStatus::as_str).collect()
}

/// A batch of executions whose objects are due, locked until [`ObjectsDue::mark_pruned`] or drop (rollback).
pub struct ObjectsDue {
    tx: Transaction<'static, Postgres>,
    pub executions: Vec<Uuid>,
}

impl std::fmt::Debug for ObjectsDue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectsDue").field("executions", &self.executions.len()).finish()
    }
}

/// Locks up to `limit` finished executions older than `cutoff` whose objects have not been pruned since they
/// last finished. Rows another pruner holds are skipped.
pub async fn claim_objects_due(db: &PgPool, cutoff: DateTime<Utc>, limit: i64) -> Result<ObjectsDue, RecordError> {
    let mut tx = db.begin().await?;
    let executions: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM executions
         WHERE finished_at < $1 AND status = ANY($2)
           AND (objects_pruned_at IS NULL OR objects_pruned_at < finished_at)
         ORDER BY finished_at
         LIMIT $3
         FOR UPDATE SKIP LOCKED",
    )
    .bind(cutoff)
    .bind(terminal_statuses())
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    Ok(ObjectsDue { tx, executions })
}

impl ObjectsDue {
    /// Records that the objects of `pruned` (a subset of the claimed executions) are gone, and releases the locks.
    pub async fn mark_pruned(mut self, pruned: &[Uuid]) -> Result<(), RecordError> {
        if !pruned.is_empty() {
            sqlx::query("UPDATE executions SET objects_pruned_at = now() WHERE id = ANY($1)")
                .bind(pruned)
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}

/// Deletes up to `limit` finished executions older than `cutoff` whose objects are already gone; attempts and
/// idempotency keys go with them (`ON DELETE CASCADE`). Returns how many were deleted.
pub async fn delete_rows_due(db: &PgPool, cutoff: DateTime<Utc>, limit: i64) -> Result<u64, RecordError> {
    let deleted = sqlx::query(
        "DELETE FROM executions WHERE id IN (
             SELECT id FROM executions
             WHERE finished_at < $1 AND status = ANY($2) AND objects_pruned_at >= finished_at
             ORDER BY finished_at
             LIMIT $3
             FOR UPDATE SKIP LOCKED)",
    )
    .bind(cutoff)
    .bind(terminal_statuses())
    .bind(limit)
    .execute(db)
    .await?
    .rows_affected();
    Ok(deleted)
}
