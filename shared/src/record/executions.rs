//! Executions: the insert on the submit path (with idempotency keys), reads for the API, and the scan the
//! reconciler uses to find executions Redis lost.

use super::RecordError;
pub use crate::lifecycle::ExecutionStatus;
use crate::protocol::message::{DEFAULT_PRIORITY, MAX_PRIORITY, QueueBody, QueueMessage};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// What the submit path inserts.
#[derive(Debug, Clone)]
pub struct NewExecution {
    pub id: Uuid,
    pub tenant: String,
    pub workflow_name: String,
    pub workflow_version: Option<i32>,
    pub workflow: serde_json::Value,
    /// Exactly one of `input` (inline) and `input_key` (meta bucket object) is set.
    pub input: Option<serde_json::Value>,
    pub input_key: Option<String>,
    pub priority: i16,
    pub labels: serde_json::Value,
    /// The submit span's W3C trace context (traces on).
    pub traceparent: Option<String>,
}

/// The outcome of an insert with an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotentInsert {
    /// A new execution was committed.
    Created { queued_at: DateTime<Utc> },
    /// The key was used before with the same request: this is the original execution.
    Existing(Uuid),
    /// The key was used before with a different request.
    Conflict,
}

/// Inserts an execution in one transaction with its idempotency key, if any. Two concurrent requests with the same
/// key serialize on the key's primary key: the second waits for the first to commit, then sees its execution.
pub async fn insert(
    pool: &PgPool,
    new: &NewExecution,
    idempotency: Option<(&str, &[u8; 32])>,
) -> Result<IdempotentInsert, RecordError> {
    let Some((key, request_sha256)) = idempotency else {
        // One autocommit statement: a third of the round trips of BEGIN/INSERT/COMMIT on the hottest path.
        let queued_at = insert_row(pool, new).await?;
        return Ok(IdempotentInsert::Created { queued_at });
    };
    let mut tx = pool.begin().await?;
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (tenant, key, request_sha256, execution_id) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant, key) DO NOTHING",
    )
    .bind(&new.tenant)
    .bind(key)
    .bind(request_sha256.as_slice())
    .bind(new.id)
    .execute(&mut *tx)
    .await?;
    if claimed.rows_affected() == 0 {
        let (stored_hash, execution_id): (Vec<u8>, Uuid) =
            sqlx::query_as("SELECT request_sha256, execution_id FROM idempotency_keys WHERE tenant = $1 AND key = $2")
                .bind(&new.tenant)
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
        tx.rollback().await?;
        return Ok(if stored_hash == request_sha256.as_slice() {
            IdempotentInsert::Existing(execution_id)
        } else {
            IdempotentInsert::Conflict
        });
    }
    let queued_at = insert_row(&mut *tx, new).await?;
    tx.commit().await?;
    Ok(IdempotentInsert::Created { queued_at })
}

/// An Idempotency-Key seen before: `Existing` when `request_sha256` matches the request it was first used with,
/// `Conflict` when it does not; `None` when the key is new.
pub async fn find_idempotent(
    pool: &PgPool,
    tenant: &str,
    key: &str,
    request_sha256: &[u8; 32],
) -> Result<Option<IdempotentInsert>, RecordError> {
    let seen: Option<(Vec<u8>, Uuid)> =
        sqlx::query_as("SELECT request_sha256, execution_id FROM idempotency_keys WHERE tenant = $1 AND key = $2")
            .bind(tenant)
            .bind(key)
            .fetch_optional(pool)
            .await?;
    Ok(seen.map(|(stored, execution)| {
        if stored == request_sha256.as_slice() {
            IdempotentInsert::Existing(execution)
        } else {
            IdempotentInsert::Conflict
        }
    }))
}

async fn insert_row<'e>(db: impl sqlx::PgExecutor<'e>, new: &NewExecution) -> Result<DateTime<Utc>, RecordError> {
    let (queued_at,): (DateTime<Utc>,) = sqlx::query_as(
        "INSERT INTO executions
            (id, tenant, workflow_name, workflow_version, workflow, input, input_key, priority, labels, traceparent,
             status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued')
         RETURNING queued_at",
    )
    .bind(new.id)
    .bind(&new.tenant)
    .bind(&new.workflow_name)
    .bind(new.workflow_version)
    .bind(&new.workflow)
    .bind(&new.input)
    .bind(&new.input_key)
    .bind(new.priority)
    .bind(&new.labels)
    .bind(&new.traceparent)
    .fetch_one(db)
    .await?;
    Ok(queued_at)
}

/// Takes back an execution whose enqueue failed, before anyone could have seen it. Only a still-queued
/// execution is removed; its idempotency key goes with it (cascade).
pub async fn withdraw(pool: &PgPool, id: Uuid) -> Result<bool, RecordError> {
    let done = sqlx::query("DELETE FROM executions WHERE id = $1 AND status = 'queued' AND attempts = 0")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// An execution as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutionRecord {
    pub id: Uuid,
    pub tenant: String,
    pub workflow_name: String,
    pub workflow_version: Option<i32>,
    pub status: ExecutionStatus,
    pub priority: i16,
    pub labels: serde_json::Value,
    pub attempts: i32,
    pub error: Option<String>,
    pub result_key: Option<String>,
    pub queued_at: DateTime<Utc>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The columns of `RecordRow`, as a macro so queries stay `&'static str`.
macro_rules! record_columns {
    () => {
        "id, tenant, workflow_name, workflow_version, status, priority, labels, attempts, error, result_key, \
         queued_at, claimed_at, dispatched_at, started_at, finished_at"
    };
}

#[derive(sqlx::FromRow)]
pub(super) struct RecordRow {
    id: Uuid,
    tenant: String,
    workflow_name: String,
    workflow_version: Option<i32>,
    status: String,
    priority: i16,
    labels: serde_json::Value,
    attempts: i32,
    error: Option<String>,
    result_key: Option<String>,
    queued_at: DateTime<Utc>,
    claimed_at: Option<DateTime<Utc>>,
    dispatched_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<RecordRow> for ExecutionRecord {
    fn from(r: RecordRow) -> Self {
        Self {
            id: r.id,
            tenant: r.tenant,
            workflow_name: r.workflow_name,
            workflow_version: r.workflow_version,
            // The column only ever holds values written from ExecutionStatus.
            status: ExecutionStatus::parse(&r.status).unwrap_or(ExecutionStatus::Failed),
            priority: r.priority,
            labels: r.labels,
            attempts: r.attempts,
            error: r.error,
            result_key: r.result_key,
            queued_at: r.queued_at,
            claimed_at: r.claimed_at,
            dispatched_at: r.dispatched_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        }
    }
}

/// One execution of one tenant (another tenant's execution is simply not found); `None` reads any tenant's
/// (an admin).
pub async fn get(pool: &PgPool, tenant: Option<&str>, id: Uuid) -> Result<Option<ExecutionRecord>, RecordError> {
    let row: Option<RecordRow> = match tenant {
        Some(tenant) => {
            sqlx::query_as(concat!("SELECT ", record_columns!(), " FROM executions WHERE id = $1 AND tenant = $2"))
                .bind(id)
                .bind(tenant)
                .fetch_optional(pool)
                .await?
        }
        None => {
            sqlx::query_as(concat!("SELECT ", record_columns!(), " FROM executions WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?
        }
    };
    Ok(row.map(ExecutionRecord::from))
}

/// Which executions a list or a bulk operation takes. Every field narrows; the default matches everything.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    /// One tenant; `None` is every tenant (an admin).
    pub tenant: Option<String>,
    /// Any of these statuses; empty is any status.
    pub statuses: Vec<ExecutionStatus>,
    pub workflow: Option<String>,
    /// Labels the execution must all carry with these values (`labels @> ...`).
    pub labels: std::collections::BTreeMap<String, String>,
    /// Submitted at or after.
    pub submitted_after: Option<DateTime<Utc>>,
    /// Submitted before.
    pub submitted_before: Option<DateTime<Utc>>,
}

/// Where a page starts and how long it is. Lists go newest first (`before` is the last id of the previous
/// page); bulk operations go oldest first (`after`), so work cancelled while the operation runs is behind them.
#[derive(Debug, Clone, Copy)]
pub enum Page {
    NewestFirst { before: Option<Uuid>, limit: i64 },
    OldestFirst { after: Option<Uuid>, limit: i64 },
}

fn push_filter(query: &mut sqlx::QueryBuilder<sqlx::Postgres>, filter: &ExecutionFilter) {
    query.push(" WHERE true");
    if let Some(tenant) = &filter.tenant {
        query.push(" AND tenant = ").push_bind(tenant.clone());
    }
    if !filter.statuses.is_empty() {
        let statuses: Vec<String> = filter.statuses.iter().map(|s| s.as_str().to_owned()).collect();
        query.push(" AND status = ANY(").push_bind(statuses).push(")");
    }
    if let Some(workflow) = &filter.workflow {
        query.push(" AND workflow_name = ").push_bind(workflow.clone());
    }
    if !filter.labels.is_empty() {
        query.push(" AND labels @> ").push_bind(serde_json::json!(filter.labels)).push("::jsonb");
    }
    if let Some(after) = filter.submitted_after {
        query.push(" AND queued_at >= ").push_bind(after);
    }
    if let Some(before) = filter.submitted_before {
        query.push(" AND queued_at < ").push_bind(before);
    }
}

/// Executions matching `filter`, one page of them (an index on `(tenant, ...)` serves a tenant's; the primary
/// key serves an admin's across tenants).
pub async fn list(pool: &PgPool, filter: &ExecutionFilter, page: Page) -> Result<Vec<ExecutionRecord>, RecordError> {
    let mut query = sqlx::QueryBuilder::new(concat!("SELECT ", record_columns!(), " FROM executions"));
    push_filter(&mut query, filter);
    match page {
        Page::NewestFirst { before, limit } => {
            if let Some(before) = before {
                query.push(" AND id < ").push_bind(before);
            }
            query.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        }
        Page::OldestFirst { after, limit } => {
            if let Some(after) = after {
                query.push(" AND id > ").push_bind(after);
            }
            query.push(" ORDER BY id ASC LIMIT ").push_bind(limit);
        }
    }
    let rows: Vec<RecordRow> = query.build_query_as().fetch_all(pool).await?;
    Ok(rows.into_iter().map(ExecutionRecord::from).collect())
}

/// The columns an execution's queue message is rebuilt from (when Redis lost it, or it must be queued again).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WaitingExecution {
    pub id: Uuid,
    pub tenant: String,
    pub workflow_name: String,
    pub workflow_version: Option<i32>,
    pub labels: serde_json::Value,
    pub priority: i16,
    pub attempts: i32,
    pub queued_at: DateTime<Utc>,
    pub traceparent: Option<String>,
}

impl From<&ExecutionRecord> for WaitingExecution {
    /// The queue-message columns of a record read for the API, which does not carry the trace context: an
    /// attempt queued from it (a redrive) is not joined to the execution's trace (docs/tracing.md).
    fn from(record: &ExecutionRecord) -> Self {
        Self {
            id: record.id,
            tenant: record.tenant.clone(),
            workflow_name: record.workflow_name.clone(),
            workflow_version: record.workflow_version,
            labels: record.labels.clone(),
            priority: record.priority,
            attempts: record.attempts,
            queued_at: record.queued_at,
            traceparent: None,
        }
    }
}

impl WaitingExecution {
    /// The current attempt's number (`attempts` is 0 before the first attempt was dispatched).
    pub fn attempt(&self) -> u32 {
        u32::try_from(self.attempts).unwrap_or(0).max(1)
    }

    /// The queue message of the execution's `attempt`: priority clamped to the lanes (0-9), labels that are not
    /// a string map dropped.
    pub fn queue_message(&self, attempt: u32) -> QueueMessage {
        QueueMessage {
            execution_id: self.id,
            tenant: self.tenant.clone(),
            workflow: self.workflow_name.clone(),
            priority: u8::try_from(self.priority).map_or(DEFAULT_PRIORITY, |p| p.min(MAX_PRIORITY)),
            attempt,
            queued_at_ms: self.queued_at.timestamp_millis(),
            body: QueueBody {
                workflow_version: self.workflow_version,
                labels: serde_json::from_value(self.labels.clone()).unwrap_or_default(),
                traceparent: self.traceparent.clone(),
            },
        }
    }
}

/// Executions waiting in the queue for longer than `min_age`, oldest first, in pages after `after`.
pub async fn waiting(
    pool: &PgPool,
    min_age: std::time::Duration,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<WaitingExecution>, RecordError> {
    let rows = sqlx::query_as(
        "SELECT id, tenant, workflow_name, workflow_version, labels, priority, attempts, queued_at, traceparent
         FROM executions
         WHERE status = 'queued' AND queued_at < now() - make_interval(secs => $1)
           AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3",
    )
    .bind(min_age.as_secs_f64())
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}
