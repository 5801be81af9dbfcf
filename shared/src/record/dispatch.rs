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
}

impl DispatchRow {
    pub fn status(&self) -> ExecutionStatus {
        ExecutionStatus::parse(&self.status).unwrap_or(ExecutionStatus::Failed)
    }

    /// The workflow's `deadline_ms`, if it sets one.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.workflow.get("deadline_ms").and_then(serde_json::Value::as_u64)
    }

    /// The workflow's `resources` (cpu, memory), if it asks for any.
    pub fn resources(&self) -> Option<(Option<String>, Option<String>)> {
        let resources = self.workflow.get("resources")?;
        let field = |name: &str| resources.get(name).and_then(serde_json::Value::as_str).map(str::to_owned);
        let (cpu, memory) = (field("cpu"), field("memory"));
        (cpu.is_some() || memory.is_some()).then_some((cpu, memory))
    }
}

/// The rows of `ids` (missing ids are simply absent).
pub async fn rows(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<DispatchRow>, RecordError> {
    Ok(sqlx::query_as(
        "SELECT id, tenant, workflow_name, workflow, input, input_key, status, attempts, workflow_version, labels,
                priority, queued_at
         FROM executions WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?)
}

/// Executions recorded as dispatched or running whose state has not changed for `min_age`, for the
/// reconciler to check against the leases.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InFlight {
    pub id: Uuid,
    pub tenant: String,
    pub workflow_name: String,
    pub workflow_version: Option<i32>,
    pub labels: serde_json::Value,
    pub priority: i16,
    pub attempts: i32,
    pub queued_at: chrono::DateTime<chrono::Utc>,
}

pub async fn stale_in_flight(
    pool: &PgPool,
    min_age: std::time::Duration,
    limit: i64,
) -> Result<Vec<InFlight>, RecordError> {
    Ok(sqlx::query_as(
        "SELECT id, tenant, workflow_name, workflow_version, labels, priority, attempts, queued_at FROM executions
         WHERE status IN ('dispatched', 'running') AND updated_at < now() - make_interval(secs => $1)
         ORDER BY updated_at LIMIT $2",
    )
    .bind(min_age.as_secs_f64())
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
