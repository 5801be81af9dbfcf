//! The PostgreSQL record: the source of truth for tenants, API keys, workflows and executions. Redis only holds
//! what can be rebuilt from here.

pub mod api_keys;
pub mod backlog;
pub mod batch;
pub mod dispatch;
pub mod executions;
pub mod operator;
pub mod progress;
pub mod retention;
pub mod transitions;
pub mod workflows;

pub use api_keys::{ApiKeyRecord, IssuedApiKey, hash_secret, parse_api_key};
pub use executions::{
    ExecutionFilter, ExecutionRecord, ExecutionStatus, IdempotentInsert, NewExecution, Page, WaitingExecution,
};
pub use workflows::WorkflowVersion;

use crate::config::DatabaseConfig;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::time::Duration;

/// Why a database operation failed. `Unavailable` means "try again later" (503), the rest are caller errors.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("database query failed")]
    Query(#[source] sqlx::Error),
    #[error("applying migrations failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A stored value cannot be encoded or decoded (the progress archive's MessagePack).
    #[error("stored data is malformed: {0}")]
    Encode(String),
}

impl From<sqlx::Error> for RecordError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(err),
            sqlx::Error::Database(db) if is_unavailable_code(db.code().as_deref()) => Self::Unavailable(err),
            _ => Self::Query(err),
        }
    }
}

/// SQLSTATE classes that mean the server cannot serve right now: connection exceptions (08), insufficient
/// resources (53), operator intervention such as shutdown (57) and system errors (58).
fn is_unavailable_code(code: Option<&str>) -> bool {
    code.is_some_and(|c| ["08", "53", "57", "58"].iter().any(|class| c.starts_with(class)))
}

/// The embedded migrations (shared/migrations).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens a pool. Connections are made lazily so a service starts (and reports not-ready) while PostgreSQL is down.
pub fn connect_lazy(config: &DatabaseConfig) -> Result<PgPool, RecordError> {
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy(&config.url)
        .map_err(RecordError::from)
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), RecordError> {
    MIGRATOR.run(pool).await.map_err(RecordError::Migrate)
}

/// Creates the tenant if it does not exist.
pub async fn ensure_tenant<'e>(db: impl sqlx::PgExecutor<'e>, tenant: &str) -> Result<(), RecordError> {
    sqlx::query("INSERT INTO tenants (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(tenant)
        .execute(db)
        .await?;
    Ok(())
}

/// A tenant's overrides (None: the default applies): concurrency (the dispatchers' defaults), the fair-share
/// weight (1) and the submit rate limit (the API's defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TenantLimits {
    pub concurrency_limit: Option<i32>,
    pub workflow_limit: Option<i32>,
    pub weight: Option<f64>,
    pub submit_rate: Option<f64>,
    pub submit_burst: Option<i32>,
}

/// Sets a tenant's overrides, creating the tenant if needed.
pub async fn set_tenant_limits(pool: &PgPool, tenant: &str, limits: TenantLimits) -> Result<(), RecordError> {
    sqlx::query(
        "INSERT INTO tenants (name, concurrency_limit, workflow_limit, weight, submit_rate, submit_burst)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (name) DO UPDATE
         SET concurrency_limit = $2, workflow_limit = $3, weight = $4, submit_rate = $5, submit_burst = $6",
    )
    .bind(tenant)
    .bind(limits.concurrency_limit)
    .bind(limits.workflow_limit)
    .bind(limits.weight)
    .bind(limits.submit_rate)
    .bind(limits.submit_burst)
    .execute(pool)
    .await?;
    Ok(())
}

/// Every tenant's overrides, for restoring the Redis copy after Redis lost its data.
pub async fn all_tenant_limits(pool: &PgPool) -> Result<Vec<(String, TenantLimits)>, RecordError> {
    type Row = (String, Option<i32>, Option<i32>, Option<f64>, Option<f64>, Option<i32>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT name, concurrency_limit, workflow_limit, weight, submit_rate, submit_burst FROM tenants
         WHERE concurrency_limit IS NOT NULL OR workflow_limit IS NOT NULL OR weight IS NOT NULL
            OR submit_rate IS NOT NULL OR submit_burst IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, concurrency_limit, workflow_limit, weight, submit_rate, submit_burst)| {
            (name, TenantLimits { concurrency_limit, workflow_limit, weight, submit_rate, submit_burst })
        })
        .collect())
}

/// Records a pause (`paused`) or its end of a tenant (`member` `*`) or one of its workflows (`member` its name).
pub async fn set_paused(pool: &PgPool, tenant: &str, member: &str, paused: bool) -> Result<(), RecordError> {
    let query = if paused {
        "INSERT INTO paused (tenant, workflow) VALUES ($1, $2) ON CONFLICT DO NOTHING"
    } else {
        "DELETE FROM paused WHERE tenant = $1 AND workflow = $2"
    };
    sqlx::query(query).bind(tenant).bind(member).execute(pool).await?;
    Ok(())
}

/// Every pause, as (tenant, member), for restoring the Redis copy after Redis lost its data.
pub async fn all_paused(pool: &PgPool) -> Result<Vec<(String, String)>, RecordError> {
    Ok(sqlx::query_as("SELECT tenant, workflow FROM paused ORDER BY tenant, workflow").fetch_all(pool).await?)
}

/// One cheap round trip, for readiness checks.
pub async fn ping(pool: &PgPool) -> Result<(), RecordError> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

impl From<TenantLimits> for crate::protocol::limits::TenantOverrides {
    fn from(limits: TenantLimits) -> Self {
        let TenantLimits { concurrency_limit, workflow_limit, weight, submit_rate, submit_burst } = limits;
        Self { concurrency_limit, workflow_limit, weight, submit_rate, submit_burst }
    }
}
