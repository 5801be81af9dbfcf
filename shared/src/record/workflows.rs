//! Registered workflows and their immutable versions.

use super::RecordError;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkflowVersion {
    pub name: String,
    pub version: i32,
    pub document: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

type VersionRow = (String, i32, serde_json::Value, DateTime<Utc>);

fn from_row((name, version, document, created_at): VersionRow) -> WorkflowVersion {
    WorkflowVersion { name, version, document, created_at }
}

/// Registers a new version (1 for a new workflow). Concurrent registrations get distinct version numbers: the
/// workflow row is locked by the upsert.
pub async fn register(
    pool: &PgPool,
    tenant: &str,
    name: &str,
    document: &serde_json::Value,
) -> Result<WorkflowVersion, RecordError> {
    let mut tx = pool.begin().await?;
    super::ensure_tenant(&mut *tx, tenant).await?;
    let (version,): (i32,) = sqlx::query_as(
        "INSERT INTO workflows (tenant, name, latest_version) VALUES ($1, $2, 1)
         ON CONFLICT (tenant, name) DO UPDATE SET latest_version = workflows.latest_version + 1, updated_at = now()
         RETURNING latest_version",
    )
    .bind(tenant)
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    let row: VersionRow = sqlx::query_as(
        "INSERT INTO workflow_versions (tenant, name, version, document) VALUES ($1, $2, $3, $4)
         RETURNING name, version, document, created_at",
    )
    .bind(tenant)
    .bind(name)
    .bind(version)
    .bind(document)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(from_row(row))
}

/// One version, or the latest when `version` is None.
pub async fn get(
    pool: &PgPool,
    tenant: &str,
    name: &str,
    version: Option<i32>,
) -> Result<Option<WorkflowVersion>, RecordError> {
    let row: Option<VersionRow> = sqlx::query_as(
        "SELECT v.name, v.version, v.document, v.created_at FROM workflow_versions v
         JOIN workflows w ON w.tenant = v.tenant AND w.name = v.name
         WHERE v.tenant = $1 AND v.name = $2 AND v.version = COALESCE($3, w.latest_version)",
    )
    .bind(tenant)
    .bind(name)
    .bind(version)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(from_row))
}

/// The version numbers of a workflow, newest first.
pub async fn versions(pool: &PgPool, tenant: &str, name: &str) -> Result<Vec<i32>, RecordError> {
    let rows: Vec<(i32,)> =
        sqlx::query_as("SELECT version FROM workflow_versions WHERE tenant = $1 AND name = $2 ORDER BY version DESC")
            .bind(tenant)
            .bind(name)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|(v,)| v).collect())
}
