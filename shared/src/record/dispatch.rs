//! What a dispatcher reads about the executions it claimed: enough to write the attempt spec and to skip
//! executions that ended meanwhile (cancelled while queued), in one query per admission batch.

use super::RecordError;
use super::executions::ExecutionStatus;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DispatchRow {
    pub id: Uuid,
    pub tenant: String,
    pub workflow_name: String,
    pub workflow: serde_json::Value,
    pub input: Option<serde_json::Value>,
    pub input_key: Option<String>,
    pub status: String,
    pub attempts: i32,
    pub workflow_version: Option<i32>,
    pub labels: serde_json::Value,
    pub priority: i16,
    pub queued_at: chrono::DateTime<chrono::Utc>,
    pub traceparent: Option<String>,
}

impl DispatchRow {
    pub fn status(&self) -> ExecutionStatus {
        ExecutionStatus::parse(&self.status).unwrap_or(ExecutionStatus::Failed)
    }

    /// The queue message of the execution's `attempt`, rebuilt from the record (its lane entry is gone).
    pub fn queue_message(&self, attempt: u32) -> crate::protocol::QueueMessage {
        let columns = super::executions::WaitingExecution {
            id: self.id,
            tenant: self.tenant.clone(),
            workflow_name: self.workflow_name.clone(),
            workflow_version: self.workflow_version,
            labels: self.labels.clone(),
            priority: self.priority,
            attempts: self.attempts,
            queued_at: self.queued_at,
            traceparent: self.traceparent.clone(),
        };
        columns.queue_message(attempt)
    }

    /// The workflow's `deadline_ms`, if it sets one.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.workflow.get("deadline_ms").and_then(serde_json::Value::as_u64)
    }

    /// The workflow's `resources`, if it asks for any (the document was validated at submit).
    pub fn resources(&self) -> Option<crate::workflow::Resources> {
        let resources =
            <crate::workflow::Resources as serde::Deserialize>::deserialize(self.workflow.get("resources")?).ok()?;
        (resources.cpu.is_some() || resources.memory.is_some()).then_some(resources)
    }
}

/// The rows of `ids` (missing ids are simply absent).
pub async fn rows(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<DispatchRow>, RecordError> {
    Ok(sqlx::query_as(
        "SELECT id, tenant, workflow_name, workflow, input, input_key, status, attempts, workflow_version, labels,
                priority, queued_at, traceparent
         FROM executions WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?)
}

/// Executions recorded as dispatched or running whose state has not changed for `min_age`, for the
/// reconciler to check against the leases: the same columns as a waiting execution.
pub type InFlight = super::executions::WaitingExecution;

pub async fn stale_in_flight(
    pool: &PgPool,
    min_age: std::time::Duration,
    limit: i64,
) -> Result<Vec<InFlight>, RecordError> {
    Ok(sqlx::query_as(
        "SELECT id, tenant, workflow_name, workflow_version, labels, priority, attempts, queued_at, traceparent
         FROM executions
         WHERE status IN ('dispatched', 'running') AND updated_at < now() - make_interval(secs => $1)
         ORDER BY updated_at LIMIT $2",
    )
    .bind(min_age.as_secs_f64())
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
