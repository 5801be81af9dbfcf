//! The reconciler: PostgreSQL is the source of truth, so every execution it records as queued must be in the
//! Redis queue (or hold a lease). A pass pages through executions queued for longer than a grace period and
//! re-enqueues those Redis does not know, which covers an enqueue that failed after the commit and a Redis
//! that lost its data. It also restores the tenants' limit overrides. Enqueueing is idempotent per execution,
//! so any number of dispatchers may reconcile at once.

use flow_like_shared::keys::Keys;
use flow_like_shared::limits;
use flow_like_shared::queue::{self, DEFAULT_PRIORITY, Enqueued, MAX_PRIORITY, QueueBody, QueueError, QueueMessage};
use flow_like_shared::record::{self, RecordError, executions};
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use std::time::Duration;

const PAGE: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("reading the record failed")]
    Record(#[from] RecordError),
    #[error("talking to Redis failed")]
    Queue(#[from] QueueError),
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub checked: u64,
    pub requeued: u64,
}

pub struct Reconciler {
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub keys: Keys,
    /// Executions younger than this are left alone: their submit may still be enqueueing them.
    pub grace: Duration,
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
                if let Enqueued::Added { .. } = queue::enqueue(&mut self.redis, &self.keys, &message(execution)).await?
                {
                    tracing::warn!(execution_id = %execution.id, tenant = %execution.tenant, "re-enqueued an execution missing from Redis");
                    report.requeued += 1;
                }
            }
            if (page.len() as i64) < PAGE {
                break;
            }
        }
        Ok(report)
    }

    /// Whether Redis knows each execution: waiting in a lane, or holding a lease.
    async fn known(&mut self, page: &[executions::WaitingExecution]) -> Result<Vec<bool>, QueueError> {
        let mut pipe = redis::pipe();
        for execution in page {
            let id = execution.id.to_string();
            pipe.hexists(self.keys.queued(), &id).exists(self.keys.lease(&id));
        }
        let flags: Vec<bool> = pipe.query_async(&mut self.redis).await?;
        Ok(flags.chunks(2).map(|pair| pair.iter().any(|f| *f)).collect())
    }

    async fn restore_limits(&mut self) -> Result<(), ReconcileError> {
        for (tenant, overrides) in record::all_tenant_limits(&self.db).await? {
            limits::publish_tenant(&mut self.redis, &self.keys, &tenant, overrides).await?;
        }
        Ok(())
    }
}

fn message(execution: &executions::WaitingExecution) -> QueueMessage {
    let labels = serde_json::from_value(execution.labels.clone()).unwrap_or_default();
    QueueMessage {
        execution_id: execution.id,
        tenant: execution.tenant.clone(),
        workflow: execution.workflow_name.clone(),
        priority: u8::try_from(execution.priority).map_or(DEFAULT_PRIORITY, |p| p.min(MAX_PRIORITY)),
        attempt: u32::try_from(execution.attempts).unwrap_or(0) + 1,
        queued_at_ms: execution.queued_at.timestamp_millis(),
        body: QueueBody { workflow_version: execution.workflow_version, labels },
    }
}
