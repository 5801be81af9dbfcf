//! Explicit decisions about one execution, taken by its tenant or an operator: cancel and redrive.
//!
//! Cancel moves a not-yet-finished execution to `cancelled` in one statement. Redrive moves a `failed` execution
//! back to `queued` for another attempt; it is the one documented exception to "a finished execution never
//! changes", allowed because an operator asked for it (a dead-lettered message usually failed on something the
//! operator has since fixed).

use super::RecordError;
use super::executions::{ExecutionRecord, ExecutionStatus, RecordRow};
use sqlx::PgPool;
use uuid::Uuid;

/// The error written on an execution cancelled through the API.
pub const CANCELLED_BY_REQUEST: &str = "cancelled by request";

/// The columns of `RecordRow`, as a macro so queries stay `&'static str`.
macro_rules! columns {
    ($table:literal) => {
        concat!(
            $table,
            ".id, ",
            $table,
            ".tenant, ",
            $table,
            ".workflow_name, ",
            $table,
            ".workflow_version, ",
            $table,
            ".status, ",
            $table,
            ".priority, ",
            $table,
            ".labels, ",
            $table,
            ".attempts, ",
            $table,
            ".error, ",
            $table,
            ".result_key, ",
            $table,
            ".queued_at, ",
            $table,
            ".claimed_at, ",
            $table,
            ".dispatched_at, ",
            $table,
            ".started_at, ",
            $table,
            ".finished_at"
        )
    };
}

#[derive(sqlx::FromRow)]
struct CancelRow {
    previous: String,
    #[sqlx(flatten)]
    row: RecordRow,
}

/// What a cancel did.
#[derive(Debug, Clone)]
pub enum Cancel {
    /// The execution was queued, dispatched or running and is now `cancelled`.
    Cancelled { previous: ExecutionStatus, record: Box<ExecutionRecord> },
    /// The execution had already finished (possibly cancelled before); nothing changed.
    AlreadyFinished(Box<ExecutionRecord>),
    /// No such execution for this tenant.
    NotFound,
}

/// Cancels one execution of one tenant: one UPDATE sets `cancelled`, `finished_at` and the error where the
/// status is not terminal, and returns the status it had (the row is locked, so a concurrent status update
/// either happened before and is seen, or waits and then finds the execution terminal).
/// `tenant` `None` cancels any tenant's (an admin).
pub async fn cancel(pool: &PgPool, tenant: Option<&str>, id: Uuid) -> Result<Cancel, RecordError> {
    let row: Option<CancelRow> = sqlx::query_as(concat!(
        "UPDATE executions e
         SET status = 'cancelled', finished_at = now(), error = $3, updated_at = now()
         FROM (SELECT id, status FROM executions WHERE id = $1 AND ($2::text IS NULL OR tenant = $2) FOR UPDATE) old
         WHERE e.id = old.id AND old.status IN ('queued', 'dispatched', 'running')
         RETURNING old.status AS previous, ",
        columns!("e")
    ))
    .bind(id)
    .bind(tenant)
    .bind(CANCELLED_BY_REQUEST)
    .fetch_optional(pool)
    .await?;
    if let Some(CancelRow { previous, row }) = row {
        let previous = ExecutionStatus::parse(&previous).unwrap_or(ExecutionStatus::Queued);
        return Ok(Cancel::Cancelled { previous, record: Box::new(row.into()) });
    }
    Ok(match super::executions::get(pool, tenant, id).await? {
        Some(record) => Cancel::AlreadyFinished(Box::new(record)),
        None => Cancel::NotFound,
    })
}

/// Cancels the executions among `ids` that are not finished yet, in one statement (rows locked in id order, so
/// two bulk cancels cannot deadlock), and returns those it cancelled with the status each had. The others had
/// finished meanwhile and are left as they are.
pub async fn cancel_many(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<(Uuid, ExecutionStatus)>, RecordError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "UPDATE executions e
         SET status = 'cancelled', finished_at = now(), error = $2, updated_at = now()
         FROM (SELECT id, status FROM executions WHERE id = ANY($1) ORDER BY id FOR UPDATE) old
         WHERE e.id = old.id AND old.status IN ('queued', 'dispatched', 'running')
         RETURNING e.id, old.status",
    )
    .bind(ids)
    .bind(CANCELLED_BY_REQUEST)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, previous)| (id, ExecutionStatus::parse(&previous).unwrap_or(ExecutionStatus::Queued)))
        .collect())
}

/// What a redrive did.
#[derive(Debug, Clone)]
pub enum Redrive {
    /// The execution is `queued` again with `attempts` one higher (the attempt to run next).
    Requeued(Box<ExecutionRecord>),
    /// The execution is not `failed` (its current status); nothing changed.
    NotFailed(ExecutionStatus),
    /// No such execution.
    NotFound,
}

/// Puts a `failed` execution (of any tenant) back to `queued` for one more attempt: `attempts + 1`, error and
/// `finished_at` cleared. The caller enqueues the attempt; if that fails, the dispatchers' reconciler queues
/// it later, as for any `queued` execution Redis does not know.
pub async fn redrive(pool: &PgPool, id: Uuid) -> Result<Redrive, RecordError> {
    let row: Option<RecordRow> = sqlx::query_as(concat!(
        "UPDATE executions SET status = 'queued', attempts = attempts + 1, error = NULL, finished_at = NULL,
             updated_at = now()
         WHERE id = $1 AND status = 'failed'
         RETURNING ",
        columns!("executions")
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    if let Some(row) = row {
        return Ok(Redrive::Requeued(Box::new(row.into())));
    }
    let status: Option<(String,)> =
        sqlx::query_as("SELECT status FROM executions WHERE id = $1").bind(id).fetch_optional(pool).await?;
    Ok(match status {
        Some((status,)) => Redrive::NotFailed(ExecutionStatus::parse(&status).unwrap_or(ExecutionStatus::Failed)),
        None => Redrive::NotFound,
    })
}
