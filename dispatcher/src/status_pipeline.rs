//! The status pipeline: every dispatcher consumes `{prefix}:status` in the consumer group `status` and turns the
//! events into PostgreSQL state, in batches, through the monotonic state machine of
//! `flow_like_shared::record::transitions`. An entry is acknowledged (and deleted) only after its batch is
//! committed; entries left pending by a consumer that died are claimed (XAUTOCLAIM) by the others.
//!
//! When a batch holds an execution's `finished` event, the execution's progress stream is read and archived in
//! PostgreSQL in the batch's transaction (`record::progress`), and deleted from Redis with the acknowledgement:
//! Redis keeps the progress of executions in flight only.

use flow_like_shared::protocol::Keys;
use flow_like_shared::protocol::streams::{self, ReadFrom, Settle};
use flow_like_shared::record::progress::{ArchivedEntry, Segment};
use flow_like_shared::record::transitions::{self, Transition};
use flow_like_shared::status::{NodeRun, StatusEntry, StatusEvent};
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Most entries applied in one PostgreSQL transaction.
const BATCH: usize = 500;
/// How long a read blocks waiting for new events.
const BLOCK: Duration = Duration::from_secs(1);
/// How long the reads after `stop` wait for entries still being written.
const FINAL_READ: Duration = Duration::from_millis(100);
/// Entries pending this long in another consumer are taken over.
const CLAIM_IDLE: Duration = Duration::from_secs(30);

pub struct StatusPipeline {
    pub db: PgPool,
    /// A connection of its own: the blocking reads must not stall other commands.
    pub redis: ConnectionManager,
    pub keys: Keys,
    pub consumer: String,
    pub metrics: crate::health::Metrics,
    /// How long a progress stream that received entries after its archived run stays
    /// (RETENTION_PROGRESS_STREAM_SECS).
    pub progress_retention: std::time::Duration,
}

type Entries = Vec<streams::Entry>;

impl StatusPipeline {
    pub async fn run(mut self, stop: CancellationToken) {
        let mut failures = 0u32;
        // First our own pending entries (a restart with the same name), then new ones.
        let mut pending_first = true;
        let mut last_claim = Instant::now();
        while !stop.is_cancelled() {
            let read =
                self.read(if pending_first { ReadFrom::OwnPending } else { ReadFrom::New { block: BLOCK } }).await;
            let result = match read {
                Ok(entries) => {
                    if pending_first && entries.is_empty() {
                        pending_first = false;
                    }
                    self.apply(entries).await
                }
                Err(err) => Err(err),
            };
            match result {
                Ok(()) => failures = 0,
                Err(err) => {
                    failures += 1;
                    tracing::warn!(cause = %err, "status pipeline step failed; retrying");
                    pending_first = true;
                    let delay = crate::backoff::backoff(Duration::from_millis(100), Duration::from_secs(5), failures);
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
            if last_claim.elapsed() >= CLAIM_IDLE / 3 {
                last_claim = Instant::now();
                if let Err(err) = self.claim_stale().await {
                    tracing::warn!(cause = %err, "claiming stale status entries failed");
                }
            }
        }
        self.apply_the_rest().await;
    }

    /// After `stop`: applies what is already on the stream (the last attempts' reports), so a stopping replica
    /// leaves nothing for the others that it could have applied itself.
    async fn apply_the_rest(&mut self) {
        for _ in 0..10 {
            match self.read(ReadFrom::New { block: FINAL_READ }).await {
                Ok(entries) if entries.is_empty() => return,
                Ok(entries) => {
                    if let Err(err) = self.apply(entries).await {
                        tracing::warn!(cause = %err, "applying the last status events failed; another dispatcher will");
                        return;
                    }
                }
                Err(err) => {
                    tracing::debug!(cause = %err, "reading the last status events failed; another dispatcher will");
                    return;
                }
            }
        }
    }

    async fn read(&mut self, from: ReadFrom) -> Result<Entries, anyhow::Error> {
        Ok(streams::read_status(&mut self.redis, &self.keys, &self.consumer, from, BATCH).await?)
    }

    async fn apply(&mut self, entries: Entries) -> Result<(), anyhow::Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut batch = Vec::with_capacity(entries.len());
        let mut finished = Vec::new();
        let mut written_ms = Vec::with_capacity(entries.len());
        let mut node_runs: HashMap<uuid::Uuid, (u32, Vec<NodeRun>)> = HashMap::new();
        for (entry_id, fields) in &entries {
            match StatusEntry::from_fields(fields) {
                Ok(entry) => {
                    written_ms.push(entry.at_ms);
                    if let StatusEvent::Finished { nodes, .. } = &entry.event
                        && !nodes.is_empty()
                    {
                        // The last attempt's, should a batch hold two.
                        let known = node_runs.get(&entry.execution).is_some_and(|(a, _)| *a > entry.attempt);
                        if !known {
                            node_runs.insert(entry.execution, (entry.attempt, nodes.clone()));
                        }
                    }
                    if let Some(transition) = Transition::from_entry(&entry) {
                        if matches!(transition.change, transitions::Change::Finished { .. }) {
                            finished.push(entry.execution);
                        }
                        batch.push(transition);
                    }
                }
                Err(err) => tracing::warn!(entry = %entry_id, cause = %err, "skipping a malformed status entry"),
            }
        }
        finished.sort_unstable();
        finished.dedup();
        let (segments, settle) = self.progress_of(&finished).await?;
        let applied = transitions::apply(&self.db, &batch, &segments).await?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let lags = written_ms.iter().map(|at| Duration::from_millis(u64::try_from(now_ms - at).unwrap_or(0)));
        self.metrics.status_batch(&applied, lags);
        // Node runs count once: with the event that ended the execution, not with replays of it.
        for finished in &applied.finished {
            if let Some((_, nodes)) = node_runs.get(&finished.execution) {
                self.metrics.node_runs(nodes);
            }
        }
        let ids: Vec<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
        streams::ack_status(&mut self.redis, &self.keys, &ids, &settle, self.progress_retention).await?;
        Ok(())
    }

    /// The progress streams of the executions that finished in this batch, as segments to archive with the
    /// batch, and how to settle each stream once the batch is committed.
    async fn progress_of(&mut self, finished: &[Uuid]) -> Result<(Vec<Segment>, Vec<Settle>), anyhow::Error> {
        let read = streams::read_progress_streams(&mut self.redis, &self.keys, finished).await?;
        let mut segments = Vec::with_capacity(finished.len());
        let mut settle = Vec::with_capacity(finished.len());
        for (execution, entries) in finished.iter().zip(read) {
            // The newest id read, parsed or not: a malformed entry is dropped here as the event stream drops it.
            let archived_through = entries.last().map(|(id, _)| id.clone());
            let archived = entries
                .into_iter()
                .filter_map(|(id, fields)| StatusEntry::from_fields(&fields).ok().map(|e| ArchivedEntry::new(id, e)))
                .collect();
            segments.extend(Segment::new(*execution, archived));
            settle.push(Settle { execution: *execution, archived_through });
        }
        Ok((segments, settle))
    }

    /// Takes over entries another consumer left pending (it died between reading and acknowledging).
    async fn claim_stale(&mut self) -> Result<(), anyhow::Error> {
        let mut cursor = "0-0".to_owned();
        loop {
            let (entries, next) =
                streams::claim_stale_status(&mut self.redis, &self.keys, &self.consumer, CLAIM_IDLE, &cursor, BATCH)
                    .await?;
            if !entries.is_empty() {
                tracing::info!(entries = entries.len(), "claimed status entries left pending by another dispatcher");
            }
            self.apply(entries).await?;
            match next {
                Some(next) => cursor = next,
                None => return Ok(()),
            }
        }
    }
}
