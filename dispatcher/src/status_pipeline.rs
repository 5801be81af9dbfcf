//! The status pipeline: every dispatcher consumes `{prefix}:status` in the consumer group `status` and turns the
//! events into PostgreSQL state, in batches, through the monotonic state machine of
//! `flow_like_shared::record::transitions`. An entry is acknowledged (and deleted) only after its batch is
//! committed; entries left pending by a consumer that died are claimed (XAUTOCLAIM) by the others.

use flow_like_shared::keys::{Keys, STATUS_GROUP};
use flow_like_shared::record::transitions::{self, Transition};
use flow_like_shared::status::{NodeRun, StatusEntry, StatusEvent};
use redis::Value;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Most entries applied in one PostgreSQL transaction.
const BATCH: usize = 500;
/// How long a read blocks waiting for new events.
const BLOCK_MS: u64 = 1000;
/// Entries pending this long in another consumer are taken over.
const CLAIM_IDLE: Duration = Duration::from_secs(30);

pub struct StatusPipeline {
    pub db: PgPool,
    /// A connection of its own: the blocking reads must not stall other commands.
    pub redis: ConnectionManager,
    pub keys: Keys,
    pub consumer: String,
    pub metrics: crate::health::Metrics,
    /// How long a finished execution's progress stream stays (RETENTION_PROGRESS_STREAM_SECS).
    pub progress_retention: std::time::Duration,
}

type Entries = Vec<(String, HashMap<String, Value>)>;

impl StatusPipeline {
    pub async fn run(mut self, stop: CancellationToken) {
        let mut failures = 0u32;
        // First our own pending entries (a restart with the same name), then new ones.
        let mut pending_first = true;
        let mut last_claim = Instant::now();
        while !stop.is_cancelled() {
            let read = if pending_first { self.read("0").await } else { self.read(">").await };
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
                    let delay = crate::dispatch::backoff(Duration::from_millis(100), Duration::from_secs(5), failures);
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
    }

    async fn read(&mut self, from: &str) -> Result<Entries, anyhow::Error> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(STATUS_GROUP).arg(&self.consumer).arg("COUNT").arg(BATCH);
        if from == ">" {
            cmd.arg("BLOCK").arg(BLOCK_MS);
        }
        cmd.arg("STREAMS").arg(self.keys.status()).arg(from);
        match cmd.query_async::<Value>(&mut self.redis).await {
            Ok(reply) => Ok(parse_read(reply)),
            Err(err) if err.code() == Some("NOGROUP") => {
                // First start, or Redis lost its data: (re)create the group from the start of the stream.
                self.ensure_group().await?;
                Ok(Vec::new())
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn ensure_group(&mut self) -> Result<(), redis::RedisError> {
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys.status())
            .arg(STATUS_GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.redis)
            .await;
        match created {
            Err(err) if err.code() != Some("BUSYGROUP") => Err(err),
            _ => Ok(()),
        }
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
        let applied = transitions::apply(&self.db, &batch).await?;
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
        let mut pipe = redis::pipe();
        pipe.cmd("XACK").arg(self.keys.status()).arg(STATUS_GROUP).arg(&ids).ignore();
        pipe.cmd("XDEL").arg(self.keys.status()).arg(&ids).ignore();
        for execution in finished {
            pipe.expire(self.keys.progress(&execution.to_string()), self.progress_retention.as_secs() as i64).ignore();
        }
        pipe.query_async::<()>(&mut self.redis).await?;
        Ok(())
    }

    /// Takes over entries another consumer left pending (it died between reading and acknowledging).
    async fn claim_stale(&mut self) -> Result<(), anyhow::Error> {
        let mut cursor = "0-0".to_owned();
        loop {
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(self.keys.status())
                .arg(STATUS_GROUP)
                .arg(&self.consumer)
                .arg(CLAIM_IDLE.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(BATCH)
                .query_async(&mut self.redis)
                .await?;
            let Value::Array(parts) = reply else { return Ok(()) };
            let next = match parts.first() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(Value::SimpleString(s)) => s.clone(),
                _ => return Ok(()),
            };
            let entries = parts.get(1).map(parse_entries).unwrap_or_default();
            if !entries.is_empty() {
                tracing::info!(entries = entries.len(), "claimed status entries left pending by another dispatcher");
            }
            self.apply(entries).await?;
            if next == "0-0" {
                return Ok(());
            }
            cursor = next;
        }
    }
}

/// Entries of an XREADGROUP reply on one stream.
fn parse_read(reply: Value) -> Entries {
    match reply {
        Value::Array(streams) => streams
            .into_iter()
            .flat_map(|stream| match stream {
                Value::Array(mut parts) if parts.len() == 2 => parse_entries(&parts.remove(1)),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().flat_map(|(_, entries)| parse_entries(&entries)).collect(),
        _ => Vec::new(),
    }
}

/// `[[id, [field, value, ...]], ...]`; entries deleted meanwhile come with nil fields and are skipped.
pub fn parse_entries(value: &Value) -> Entries {
    let Value::Array(items) = value else { return Vec::new() };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else { return None };
            let [id, Value::Array(fields)] = &pair[..] else { return None };
            let id = match id {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                Value::SimpleString(s) => s.clone(),
                _ => return None,
            };
            let map = fields
                .chunks(2)
                .filter_map(|kv| match kv {
                    [Value::BulkString(k), v] => Some((String::from_utf8_lossy(k).into_owned(), v.clone())),
                    _ => None,
                })
                .collect();
            Some((id, map))
        })
        .collect()
}
