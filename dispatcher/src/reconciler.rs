//! The reconciler: PostgreSQL is the source of truth, so every execution it records as queued must be in the
//! Redis queue (waiting in a lane, holding a lease, or scheduled for a retry). A pass pages through executions
//! queued for longer than a grace period and re-enqueues those Redis does not know, which covers an enqueue
//! that failed after the commit and a Redis that lost its data. Executions recorded as dispatched or running
//! whose lease is gone (Redis lost it, or the status event that ended them was lost) are settled: from the
//! attempt's manifest when the executor finished, otherwise as a new attempt. It also restores the tenants'
//! limit overrides. Enqueueing is idempotent per execution, so any number of dispatchers may reconcile at once.

use flow_like_shared::protocol::keys::Keys;
use flow_like_shared::protocol::limits;
use flow_like_shared::protocol::{self, Enqueued, QueueError};
use flow_like_shared::record::dispatch;
use flow_like_shared::record::{self, RecordError, executions};
use flow_like_shared::status::{AttemptManifest, FinishedOutcome, StatusEvent};
use flow_like_shared::storage::{Storage, layout};
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

const PAGE: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("reading the record failed")]
    Record(#[from] RecordError),
    #[error("talking to Redis failed")]
    Queue(#[from] QueueError),
    #[error("publishing a status event failed: {0}")]
    Publish(String),
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub checked: u64,
    pub requeued: u64,
    /// In-flight executions without a lease that were settled (finished from a manifest or retried).
    pub settled: u64,
}

pub struct Reconciler {
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub keys: Keys,
    /// Executions younger than this are left alone: their submit may still be enqueueing them. In-flight
    /// executions are left alone for twice as long after their last state change.
    pub grace: Duration,
    pub storage: Storage,
}

impl Reconciler {
    /// One full pass over the waiting executions.
    #[tracing::instrument(skip(self))]
    pub async fn pass(&mut self) -> Result<ReconcileReport, ReconcileError> {
        self.restore_limits().await?;
        let mut report = ReconcileReport::default();
        let mut after = None;
        loop {
            let page = executions::waiting(&self.db, self.grace, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            report.checked += page.len() as u64;
            let known = self.known(&page).await?;
            for (execution, known) in page.iter().zip(known) {
                if known {
                    continue;
                }
                if let Enqueued::Added { .. } =
                    protocol::enqueue(&mut self.redis, &self.keys, &execution.queue_message(execution.attempt()))
                        .await?
                {
                    tracing::warn!(execution_id = %execution.id, tenant = %execution.tenant, "re-enqueued an execution missing from Redis");
                    report.requeued += 1;
                }
            }
            if (page.len() as i64) < PAGE {
                break;
            }
        }
        report.settled = self.settle_in_flight().await?;
        Ok(report)
    }

    /// Settles executions PostgreSQL records as dispatched or running but no dispatcher holds.
    async fn settle_in_flight(&mut self) -> Result<u64, ReconcileError> {
        let stale = dispatch::stale_in_flight(&self.db, self.grace * 2, PAGE).await?;
        if stale.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = stale.iter().map(|execution| execution.id).collect();
        let known = protocol::reads::known(&mut self.redis, &self.keys, &ids).await?;
        let mut settled = 0;
        for (execution, held) in stale.iter().zip(known) {
            if held {
                continue;
            }
            let attempt = execution.attempt();
            let manifest = self.manifest(execution.id, attempt).await;
            let event = match manifest {
                Some(manifest) => StatusEvent::Finished {
                    outcome: manifest.outcome,
                    error: (manifest.outcome != FinishedOutcome::Succeeded)
                        .then(|| format!("attempt {attempt} ended {}", manifest.outcome)),
                    result_key: manifest.result_key,
                    duration_ms: 0,
                    nodes: Vec::new(),
                },
                None => StatusEvent::Retrying {
                    error: format!("attempt {attempt} lost: no dispatcher holds it and it left no manifest"),
                    next_attempt: attempt + 1,
                    retry_at_ms: chrono::Utc::now().timestamp_millis(),
                },
            };
            let retry = matches!(event, StatusEvent::Retrying { .. });
            crate::events::publish(&mut self.redis, &self.keys, execution.id, attempt, event)
                .await
                .map_err(|e| ReconcileError::Publish(e.to_string()))?;
            if retry {
                let message = execution.queue_message(attempt + 1);
                protocol::enqueue(&mut self.redis, &self.keys, &message).await?;
            }
            tracing::warn!(execution_id = %execution.id, attempt, retry, "settled an in-flight execution no dispatcher held");
            settled += 1;
        }
        Ok(settled)
    }

    async fn manifest(&self, id: Uuid, attempt: u32) -> Option<AttemptManifest> {
        let key = layout::manifest(id, attempt);
        match self.storage.get(&self.storage.content_bucket, &key).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).ok(),
            _ => None,
        }
    }

    /// Whether Redis knows each execution: waiting in a lane, holding a lease, or scheduled for a retry.
    async fn known(&mut self, page: &[executions::WaitingExecution]) -> Result<Vec<bool>, QueueError> {
        let ids: Vec<Uuid> = page.iter().map(|execution| execution.id).collect();
        protocol::reads::known(&mut self.redis, &self.keys, &ids).await
    }

    async fn restore_limits(&mut self) -> Result<(), ReconcileError> {
        for (tenant, overrides) in record::all_tenant_limits(&self.db).await? {
            limits::publish_tenant(&mut self.redis, &self.keys, &tenant, overrides).await?;
        }
        // Pauses: restored, then checked against PostgreSQL once more, so a resume that ran between the read and
        // the restore (PostgreSQL first, then Redis) is not undone.
        let paused = record::all_paused(&self.db).await?;
        for (tenant, member) in &paused {
            limits::set_paused(&mut self.redis, &self.keys, tenant, member, true).await?;
        }
        if !paused.is_empty() {
            let still = record::all_paused(&self.db).await?;
            for (tenant, member) in paused.iter().filter(|p| !still.contains(p)) {
                limits::set_paused(&mut self.redis, &self.keys, tenant, member, false).await?;
            }
        }
        Ok(())
    }
}
