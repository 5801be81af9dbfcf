//! Retention: every dispatcher runs a pruner; there is no leader. Each pass deletes, in bounded batches, the
//! objects of finished executions past `RETENTION_OBJECTS_DAYS`, then the rows past `RETENTION_EXECUTIONS_DAYS`,
//! then dead letters past `RETENTION_DEAD_LETTERS_DAYS`. Rows are claimed with `SKIP LOCKED`, so pruners running
//! at once share the work instead of repeating it; a pruner that dies mid-batch leaves the batch unmarked (its
//! transaction rolls back) and the next pass deletes the rest. Queued and running executions are never touched.
//! Progress streams are not pruned here: the status pipeline archives a finished execution's stream in
//! PostgreSQL and deletes it (the archive goes with the row); a stream that received entries after its archived
//! run expires `RETENTION_PROGRESS_STREAM_SECS` later.

use crate::config::RetentionConfig;
use chrono::{DateTime, Utc};
use flow_like_shared::protocol::{self, Keys, QueueError};
use flow_like_shared::record::retention;
use flow_like_shared::storage::{Storage, layout};
use futures::StreamExt;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Object deletions one pruner runs at once (each is a list plus a delete per bucket).
const OBJECT_DELETE_CONCURRENCY: usize = 8;

/// What one pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PruneReport {
    /// Executions whose objects were deleted.
    pub object_sets: u64,
    /// Objects deleted from both buckets.
    pub objects: u64,
    /// Execution rows deleted (with their attempts).
    pub executions: u64,
    /// Dead-letter entries deleted.
    pub dead_letters: u64,
}

#[derive(Debug, Clone)]
pub struct Pruner {
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub keys: Keys,
    pub storage: Storage,
    pub retention: RetentionConfig,
}

fn days_ago(now: DateTime<Utc>, days: u32) -> Option<DateTime<Utc>> {
    (days > 0).then(|| now - chrono::Duration::days(i64::from(days)))
}

/// The `(objects, rows)` cutoffs of a pass at `now`: objects go at their own age or with their row, whichever
/// comes first; `None` keeps that kind forever.
fn cutoffs(retention: &RetentionConfig, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let rows = days_ago(now, retention.executions_days);
    let objects = match (days_ago(now, retention.objects_days), rows) {
        (Some(objects), Some(rows)) => Some(objects.max(rows)),
        (objects, rows) => objects.or(rows),
    };
    (objects, rows)
}

impl Pruner {
    /// Runs passes every `PRUNE_INTERVAL_SECS` (with up to 20% jitter) until `stop`; `on_pass` gets each
    /// successful pass's report (the dispatcher counts it in its metrics).
    pub async fn run(mut self, stop: CancellationToken, on_pass: impl Fn(PruneReport)) {
        let every = Duration::from_secs(self.retention.prune_interval_secs);
        loop {
            let jitter = every.mul_f64(rand::random::<f64>() * 0.2);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every + jitter) => {}
            }
            match self.pass(Utc::now(), &stop).await {
                Ok(report) => {
                    on_pass(report);
                    if report != PruneReport::default() {
                        tracing::info!(
                            executions = report.executions,
                            object_sets = report.object_sets,
                            objects = report.objects,
                            dead_letters = report.dead_letters,
                            "pruned finished work past its retention"
                        );
                    }
                }
                Err(err) => tracing::warn!(cause = %err, "pruner pass failed; retrying next interval"),
            }
        }
    }

    /// One pass as of `now`: repeats bounded batches until nothing more is due (or `stop`).
    pub async fn pass(&mut self, now: DateTime<Utc>, stop: &CancellationToken) -> Result<PruneReport, anyhow::Error> {
        let mut report = PruneReport::default();
        let batch = i64::from(self.retention.prune_batch_size);
        let (objects_cutoff, rows_cutoff) = cutoffs(&self.retention, now);
        if let Some(cutoff) = objects_cutoff {
            while !stop.is_cancelled() {
                let due = retention::claim_objects_due(&self.db, cutoff, batch).await?;
                if due.executions.is_empty() {
                    break;
                }
                let (pruned, objects) = self.delete_objects(&due.executions).await;
                report.object_sets += pruned.len() as u64;
                report.objects += objects;
                let stalled = pruned.len() < due.executions.len();
                due.mark_pruned(&pruned).await?;
                if stalled {
                    // S3 refused some deletions: leave them for the next pass rather than spin on them.
                    break;
                }
            }
        }
        if let Some(cutoff) = rows_cutoff {
            while !stop.is_cancelled() {
                let deleted = retention::delete_rows_due(&self.db, cutoff, batch).await?;
                report.executions += deleted;
                if deleted < batch as u64 {
                    break;
                }
            }
        }
        if let Some(cutoff) = days_ago(now, self.retention.dead_letters_days) {
            report.dead_letters = self.trim_dead_letters(cutoff).await?;
        }
        Ok(report)
    }

    /// Deletes the objects of each execution in both buckets. Returns the executions fully cleaned and the number
    /// of objects deleted; an execution with a failed deletion is left for the next pass.
    async fn delete_objects(&self, executions: &[Uuid]) -> (Vec<Uuid>, u64) {
        let results: Vec<(Uuid, Result<usize, _>)> = futures::stream::iter(executions.iter().copied())
            .map(|execution| async move {
                let prefix = layout::execution_prefix(execution);
                let mut deleted = 0;
                for bucket in [&self.storage.meta_bucket, &self.storage.content_bucket] {
                    match self.storage.delete_prefix(bucket, &prefix).await {
                        Ok(n) => deleted += n,
                        Err(err) => return (execution, Err(err)),
                    }
                }
                (execution, Ok(deleted))
            })
            .buffer_unordered(OBJECT_DELETE_CONCURRENCY)
            .collect()
            .await;
        let mut pruned = Vec::with_capacity(results.len());
        let mut objects = 0;
        for (execution, result) in results {
            match result {
                Ok(n) => {
                    pruned.push(execution);
                    objects += n as u64;
                }
                Err(err) => {
                    tracing::warn!(execution_id = %execution, cause = %err, "deleting an execution's objects failed")
                }
            }
        }
        (pruned, objects)
    }

    /// Dead-letter entry ids are their times of death (`XADD *`), so `XTRIM MINID` removes exactly the older ones.
    async fn trim_dead_letters(&mut self, cutoff: DateTime<Utc>) -> Result<u64, QueueError> {
        let min_id = format!("{}-0", cutoff.timestamp_millis());
        protocol::dead_letter::trim_before(&mut self.redis, &self.keys, &min_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(executions_days: u32, objects_days: u32) -> RetentionConfig {
        RetentionConfig {
            executions_days,
            objects_days,
            dead_letters_days: 0,
            progress_stream_secs: 60,
            prune_interval_secs: 1,
            prune_batch_size: 1,
        }
    }

    /// The cutoffs as days before now.
    fn days(executions_days: u32, objects_days: u32) -> (Option<i64>, Option<i64>) {
        let now = DateTime::<Utc>::from_timestamp(100 * 86_400, 0).unwrap();
        let (objects, rows) = cutoffs(&config(executions_days, objects_days), now);
        let age = |t: Option<DateTime<Utc>>| t.map(|t| (now - t).num_days());
        (age(objects), age(rows))
    }

    #[test]
    fn objects_never_outlive_their_row() {
        assert_eq!(days(30, 30), (Some(30), Some(30)));
        assert_eq!(days(30, 7), (Some(7), Some(30)));
        assert_eq!(days(7, 30), (Some(7), Some(7)), "objects go with the row at the latest");
        assert_eq!(days(30, 0), (Some(30), Some(30)), "0 keeps objects as long as the row");
        assert_eq!(days(0, 7), (Some(7), None), "rows kept forever, objects pruned");
        assert_eq!(days(0, 0), (None, None));
    }
}
