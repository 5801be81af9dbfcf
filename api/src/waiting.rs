//! Why a queued execution is not running yet, and its place in its tenant's queue, for
//! `GET /api/v1/executions/{id}` (`waiting_reason`, `queue_position`). Both are computed on read, from Redis;
//! nothing is kept for them on submit or admission.
//!
//! The checks, in order: claimed by a dispatcher and starting; backing off before a retry after an
//! infrastructure failure; no dispatcher alive; the tenant or the workflow paused; the global, tenant or workflow
//! concurrency limit reached; not in the Redis queue (the reconciler will put it back); otherwise its place in
//! the tenant's queue. The place counts the entries not yet claimed that admission takes before it: those ahead
//! in its own lane and those of the tenant's other lanes that rank before it (higher priorities, adjusted by
//! priority aging; at most `MAX_COUNTED` per lane), at the moment of the request. Other tenants' work is not
//! counted: dispatchers share slots between tenants by weight, whatever their queue length.

use crate::rules::DISPATCHER_ALIVE_WITHIN;
use crate::views::ExecutionView;
use chrono::{DateTime, Utc};
use flow_like_shared::protocol::keys::Keys;
use flow_like_shared::protocol::{QueueError, limits, reads};
use flow_like_shared::record::{ExecutionRecord, ExecutionStatus};
use redis::aio::ConnectionManager;
use serde::Serialize;

/// Entries counted per lane when placing an execution in its tenant's queue.
pub const MAX_COUNTED: usize = 1000;

/// An execution as `GET /api/v1/executions/{id}` shows it: the list view plus why it waits.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExecutionDetail {
    #[serde(flatten)]
    pub execution: ExecutionView,
    /// While `queued`: why it is not running yet, e.g. "no dispatcher alive", "tenant acme at its limit 3/3",
    /// "waiting to be claimed: 4 ahead of it in tenant acme's queue". While `dispatched`: "starting: dispatched
    /// 1.2 s ago, ...". Null otherwise.
    pub waiting_reason: Option<String>,
    /// While `queued` in its lane and not yet claimed: its place in the order admission takes its tenant's work
    /// (1 is next), whatever holds the tenant back now. Null otherwise, and when more than 1,000 entries of one
    /// lane are ahead (the reason then says "more than").
    #[schema(minimum = 1)]
    pub queue_position: Option<u64>,
}

/// Why a queued execution waits, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub position: Option<u64>,
}

/// The detail view of a record; asks Redis for the waiting reason only while the execution is queued. A Redis
/// failure does not fail the read: the reason then says the queue state is unknown.
pub async fn detail(redis: &ConnectionManager, keys: &Keys, record: ExecutionRecord) -> ExecutionDetail {
    let waiting = if record.status == ExecutionStatus::Queued {
        let mut conn = redis.clone();
        Some(match waiting(&mut conn, keys, &record).await {
            Ok(waiting) => waiting,
            Err(err) => {
                tracing::warn!(execution_id = %record.id, cause = %err, "cannot tell why an execution waits");
                Waiting { reason: "unknown: the queue (Redis) is unavailable".to_string(), position: None }
            }
        })
    } else if record.status == ExecutionStatus::Dispatched {
        Some(Waiting { reason: starting(&record, Utc::now()), position: None })
    } else {
        None
    };
    let (waiting_reason, queue_position) = waiting.map_or((None, None), |w| (Some(w.reason), w.position));
    ExecutionDetail { execution: record.into(), waiting_reason, queue_position }
}

/// Why a dispatched execution has not started: its executor (a process, or a Kubernetes Job's pod) has not
/// reported `started` yet. The runner's own view (an unschedulable pod, an image pull) is not in the record.
fn starting(record: &ExecutionRecord, now: DateTime<Utc>) -> String {
    match record.dispatched_at {
        Some(at) => format!(
            "starting: dispatched {:.1} s ago, its executor has not reported started yet",
            ((now - at).num_milliseconds().max(0) as f64) / 1000.0
        ),
        None => "starting: its executor has not reported started yet".to_owned(),
    }
}

fn format_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Why a queued execution is not running yet, and its place in its tenant's queue.
pub async fn waiting(
    conn: &mut ConnectionManager,
    keys: &Keys,
    record: &ExecutionRecord,
) -> Result<Waiting, QueueError> {
    let (tenant, workflow) = (record.tenant.as_str(), record.workflow_name.as_str());
    let now_ms = Utc::now().timestamp_millis();
    let alive_since = now_ms - i64::try_from(DISPATCHER_ALIVE_WITHIN.as_millis()).unwrap_or(i64::MAX);
    let state = reads::waiting_state(conn, keys, record.id, tenant, workflow, alive_since).await?;
    // Waiting in its lane, unclaimed: its place, whatever holds the tenant back now.
    let ahead = match &state.queued_at {
        Some((lane, entry)) if state.lease_holder.is_none() && state.retry_due_ms.is_none() => {
            Some(reads::unclaimed_ahead(conn, keys, tenant, lane, entry, MAX_COUNTED).await?)
        }
        _ => None,
    };
    let position = ahead.filter(|a| !a.capped).map(|a| a.count as u64 + 1);
    let reason = reason(conn, keys, record, state, ahead).await?;
    Ok(Waiting { reason, position })
}

async fn reason(
    conn: &mut ConnectionManager,
    keys: &Keys,
    record: &ExecutionRecord,
    state: reads::WaitingState,
    ahead: Option<reads::Ahead>,
) -> Result<String, QueueError> {
    let (tenant, workflow) = (record.tenant.as_str(), record.workflow_name.as_str());
    let next_attempt = u32::try_from(record.attempts.max(1)).unwrap_or(1);
    if let Some(dispatcher) = state.lease_holder {
        let attempt = state.lease_attempt.unwrap_or(next_attempt);
        return Ok(format!("claimed by dispatcher {dispatcher}: attempt {attempt} is starting"));
    }
    if let Some(due) = state.retry_due_ms {
        let attempt = state.retry_attempt.unwrap_or(next_attempt);
        return Ok(format!(
            "retrying after an infrastructure failure: attempt {attempt} starts at {}",
            format_ms(due as i64)
        ));
    }
    if state.dispatchers_alive == 0 {
        return Ok("no dispatcher alive".into());
    }
    if state.tenant_paused {
        return Ok(format!("tenant {tenant} is paused"));
    }
    if state.workflow_paused {
        return Ok(format!("workflow {workflow} of tenant {tenant} is paused"));
    }
    let limits = limits::effective(conn, keys, tenant).await?;
    let (global, in_tenant, in_workflow) = (state.running_global, state.running_tenant, state.running_workflow);
    if let Some(limit) = limits.global
        && global >= u64::from(limit)
    {
        return Ok(format!("global limit {global}/{limit}"));
    }
    if let Some(limit) = limits.tenant
        && in_tenant >= u64::from(limit)
    {
        return Ok(format!("tenant {tenant} at its limit {in_tenant}/{limit}"));
    }
    if let Some(limit) = limits.workflow
        && in_workflow >= u64::from(limit)
    {
        return Ok(format!("workflow {workflow} of tenant {tenant} at its limit {in_workflow}/{limit}"));
    }
    let Some(ahead) = ahead else {
        return Ok("not in the Redis queue: a dispatcher's reconciler will queue it again".into());
    };
    let count = if ahead.capped { format!("more than {}", ahead.count) } else { ahead.count.to_string() };
    Ok(format!("waiting to be claimed: {count} ahead of it in tenant {tenant}'s queue"))
}
