//! Many executions in one statement: the group commit of the submit path. One autocommit `INSERT … SELECT FROM
//! unnest(…)` commits a whole batch with one WAL flush, so the per-commit cost is paid once per batch instead of
//! once per submission. The statement is all or nothing: either every row of the batch is committed or none is.

use super::RecordError;
use super::executions::NewExecution;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::types::Json;
use std::collections::HashMap;
use uuid::Uuid;

/// Inserts `rows` (status `queued`) in one autocommit statement and returns each row's `queued_at`, in the order
/// of `rows`. An empty slice does nothing.
pub async fn insert_many(pool: &PgPool, rows: &[NewExecution]) -> Result<Vec<DateTime<Utc>>, RecordError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let n = rows.len();
    let mut ids = Vec::with_capacity(n);
    let mut tenants = Vec::with_capacity(n);
    let mut names = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    let mut workflows = Vec::with_capacity(n);
    let mut inputs = Vec::with_capacity(n);
    let mut input_keys = Vec::with_capacity(n);
    let mut priorities = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    let mut traceparents = Vec::with_capacity(n);
    for row in rows {
        ids.push(row.id);
        tenants.push(row.tenant.as_str());
        names.push(row.workflow_name.as_str());
        versions.push(row.workflow_version);
        workflows.push(Json(&row.workflow));
        inputs.push(row.input.as_ref().map(Json));
        input_keys.push(row.input_key.as_deref());
        priorities.push(row.priority);
        labels.push(Json(&row.labels));
        traceparents.push(row.traceparent.as_deref());
    }
    let returned: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
        "INSERT INTO executions
            (id, tenant, workflow_name, workflow_version, workflow, input, input_key, priority, labels, traceparent,
             status)
         SELECT id, tenant, workflow_name, workflow_version, workflow, input, input_key, priority, labels, traceparent,
                'queued'
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int4[], $5::jsonb[], $6::jsonb[], $7::text[],
                     $8::int2[], $9::jsonb[], $10::text[])
              AS t (id, tenant, workflow_name, workflow_version, workflow, input, input_key, priority, labels,
                    traceparent)
         RETURNING id, queued_at",
    )
    .bind(&ids)
    .bind(&tenants)
    .bind(&names)
    .bind(&versions)
    .bind(&workflows)
    .bind(&inputs)
    .bind(&input_keys)
    .bind(&priorities)
    .bind(&labels)
    .bind(&traceparents)
    .fetch_all(pool)
    .await?;
    // RETURNING's order is not promised to follow the input's: match by id.
    let by_id: HashMap<Uuid, DateTime<Utc>> = returned.into_iter().collect();
    ids.iter()
        .map(|id| {
            by_id.get(id).copied().ok_or_else(|| {
                RecordError::Query(sqlx::Error::Protocol(format!("the batch insert returned no row for {id}")))
            })
        })
        .collect()
}

/// Takes back executions whose enqueue failed, before anyone could have seen them (the many-row form of
/// [`super::executions::withdraw`]): one autocommit `DELETE`, only of still-queued, never-attempted executions.
/// Returns the ids that were removed.
pub async fn withdraw_many(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<Uuid>, RecordError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let removed: Vec<(Uuid,)> =
        sqlx::query_as("DELETE FROM executions WHERE id = ANY($1) AND status = 'queued' AND attempts = 0 RETURNING id")
            .bind(ids)
            .fetch_all(pool)
            .await?;
    Ok(removed.into_iter().map(|(id,)| id).collect())
}
