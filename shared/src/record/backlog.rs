//! The backlog of unfinished executions per tenant and workflow, for the queue view (`GET /api/v1/queue`).

use super::RecordError;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// One workflow of one tenant with work not finished: how much is queued (and since when), how much is
/// dispatched or running, as the record says.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Backlog {
    pub tenant: String,
    pub workflow_name: String,
    pub queued: i64,
    pub in_flight: i64,
    /// Submit time of the oldest still queued; None when nothing is.
    pub oldest_queued_at: Option<DateTime<Utc>>,
}

/// The backlog of one tenant's workflows, or of every tenant's (`None`). One grouped scan of the unfinished
/// executions: `(tenant, status, id)` serves a tenant's, the partial indexes on queued and in-flight
/// executions an admin's.
pub async fn backlog(pool: &PgPool, tenant: Option<&str>) -> Result<Vec<Backlog>, RecordError> {
    let mut query = sqlx::QueryBuilder::new(
        "SELECT tenant, workflow_name, count(*) FILTER (WHERE status = 'queued') AS queued,
                count(*) FILTER (WHERE status <> 'queued') AS in_flight,
                min(queued_at) FILTER (WHERE status = 'queued') AS oldest_queued_at
         FROM executions WHERE status IN ('queued', 'dispatched', 'running')",
    );
    if let Some(tenant) = tenant {
        query.push(" AND tenant = ").push_bind(tenant.to_owned());
    }
    query.push(" GROUP BY tenant, workflow_name ORDER BY tenant, workflow_name");
    Ok(query.build_query_as().fetch_all(pool).await?)
}
