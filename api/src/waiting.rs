//! Why a queued execution is not running yet, for `GET /api/v1/executions/{id}` (`waiting_reason`).
//!
//! The checks, in order: claimed by a dispatcher and starting; backing off before a retry after an
//! infrastructure failure; no dispatcher alive; the global, tenant or workflow concurrency limit reached; not in
//! the Redis queue (the reconciler will put it back); otherwise its place in the tenant's queue. The place is an
//! approximation: it counts the entries not yet claimed ahead of it in its own lane and every such entry in the
//! tenant's higher-priority lanes (at most `MAX_COUNTED` per lane), at the moment of the request. Other tenants'
//! work is not counted: dispatchers serve tenants in turn, whatever their queue length.

use crate::rules::DISPATCHER_ALIVE_WITHIN;
use crate::views::ExecutionView;
use chrono::{DateTime, Utc};
use flow_like_shared::protocol::QueueError;
use flow_like_shared::protocol::keys::{DISPATCH_GROUP, Keys};
use flow_like_shared::protocol::limits;
use flow_like_shared::record::{ExecutionRecord, ExecutionStatus};
use redis::aio::ConnectionManager;
use serde::Serialize;
use std::collections::HashMap;

/// Entries counted per lane when placing an execution in its tenant's queue.
pub const MAX_COUNTED: usize = 1000;

/// An execution as `GET /api/v1/executions/{id}` shows it: the list view plus why it waits.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExecutionDetail {
    #[serde(flatten)]
    pub execution: ExecutionView,
    /// While `queued`: why it is not running yet, e.g. "no dispatcher alive", "tenant acme at its limit 3/3",
    /// "waiting to be claimed: 4 ahead of it in tenant acme's queue" (an approximation). Null otherwise.
    pub waiting_reason: Option<String>,
}

/// The detail view of a record; asks Redis for the waiting reason only while the execution is queued. A Redis
/// failure does not fail the read: the reason then says the queue state is unknown.
pub async fn detail(redis: &ConnectionManager, keys: &Keys, record: ExecutionRecord) -> ExecutionDetail {
    let waiting_reason = if record.status == ExecutionStatus::Queued {
        let mut conn = redis.clone();
        Some(match reason(&mut conn, keys, &record).await {
            Ok(reason) => reason,
            Err(err) => {
                tracing::warn!(execution_id = %record.id, cause = %err, "cannot tell why an execution waits");
                "unknown: the queue (Redis) is unavailable".to_string()
            }
        })
    } else {
        None
    };
    ExecutionDetail { execution: record.into(), waiting_reason }
}

fn format_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Why a queued execution is not running yet.
pub async fn reason(conn: &mut ConnectionManager, keys: &Keys, record: &ExecutionRecord) -> Result<String, QueueError> {
    let id = record.id.to_string();
    let (tenant, workflow) = (record.tenant.as_str(), record.workflow_name.as_str());
    let now_ms = Utc::now().timestamp_millis();
    let alive_since = now_ms - i64::try_from(DISPATCHER_ALIVE_WITHIN.as_millis()).unwrap_or(i64::MAX);
    #[allow(clippy::type_complexity)]
    let (lease_holder, lease_attempt, retry_due, retry_attempt, dispatchers, global, in_tenant, in_workflow, queued): (
        Option<String>,
        Option<u32>,
        Option<f64>,
        Option<u32>,
        u64,
        u64,
        u64,
        u64,
        Option<String>,
    ) = redis::pipe()
        .hget(keys.lease(&id), "dispatcher")
        .hget(keys.lease(&id), "attempt")
        .zscore(keys.retrying(), &id)
        .hget(keys.retry(&id), "attempt")
        .zcount(keys.dispatchers(), alive_since, "+inf")
        .zcard(keys.active())
        .zcard(keys.active_tenant(tenant))
        .zcard(keys.active_workflow(tenant, workflow))
        .hget(keys.queued(), &id)
        .query_async(conn)
        .await?;
    let next_attempt = u32::try_from(record.attempts.max(1)).unwrap_or(1);
    if let Some(dispatcher) = lease_holder {
        let attempt = lease_attempt.unwrap_or(next_attempt);
        return Ok(format!("claimed by dispatcher {dispatcher}: attempt {attempt} is starting"));
    }
    if let Some(due) = retry_due {
        let attempt = retry_attempt.unwrap_or(next_attempt);
        return Ok(format!(
            "retrying after an infrastructure failure: attempt {attempt} starts at {}",
            format_ms(due as i64)
        ));
    }
    if dispatchers == 0 {
        return Ok("no dispatcher alive".into());
    }
    let limits = limits::effective(conn, keys, tenant).await?;
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
    let Some((lane, entry)) = queued.as_deref().and_then(|q| q.split_once(' ')) else {
        return Ok("not in the Redis queue: a dispatcher's reconciler will queue it again".into());
    };
    let ahead = ahead_of(conn, keys, tenant, lane, entry).await?;
    let count = if ahead.capped { format!("more than {}", ahead.count) } else { ahead.count.to_string() };
    Ok(format!("waiting to be claimed: {count} ahead of it in tenant {tenant}'s queue"))
}

struct Ahead {
    count: usize,
    capped: bool,
}

/// The group's last delivered entry id on a lane (entries after it are not claimed yet).
fn last_delivered(groups: &[HashMap<String, redis::Value>]) -> String {
    groups
        .iter()
        .find(|g| matches!(g.get("name"), Some(redis::Value::BulkString(n)) if n == DISPATCH_GROUP.as_bytes()))
        .and_then(|g| match g.get("last-delivered-id") {
            Some(redis::Value::BulkString(id)) => String::from_utf8(id.clone()).ok(),
            Some(redis::Value::SimpleString(id)) => Some(id.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "0-0".into())
}

/// Unclaimed entries ahead of `entry`: in its own lane before it, and in every higher-priority lane of the tenant.
async fn ahead_of(
    conn: &mut ConnectionManager,
    keys: &Keys,
    tenant: &str,
    own_lane: &str,
    entry: &str,
) -> Result<Ahead, QueueError> {
    let priorities: Vec<u8> = redis::cmd("ZRANGE").arg(keys.lanes(tenant)).arg(0).arg(-1).query_async(conn).await?;
    let own_priority = priorities.iter().copied().find(|p| keys.lane(tenant, *p) == own_lane);
    // (lane, end of the range): the own lane up to the entry, higher lanes to their end.
    let mut lanes = vec![(own_lane.to_string(), format!("({entry}"))];
    for priority in priorities {
        if own_priority.is_some_and(|own| priority > own) {
            lanes.push((keys.lane(tenant, priority), "+".to_string()));
        }
    }
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for (lane, _) in &lanes {
        pipe.cmd("XINFO").arg("GROUPS").arg(lane);
    }
    // A lane listed in the tenant's lanes but already removed answers with an error: nothing waits there.
    let groups: Vec<redis::RedisResult<Vec<HashMap<String, redis::Value>>>> = pipe.query_async(conn).await?;
    let mut pipe = redis::pipe();
    let mut ranged = 0;
    for ((lane, end), groups) in lanes.iter().zip(&groups) {
        let Ok(groups) = groups else { continue };
        let start = format!("({}", last_delivered(groups));
        pipe.cmd("XRANGE").arg(lane).arg(start).arg(end).arg("COUNT").arg(MAX_COUNTED);
        ranged += 1;
    }
    let mut ahead = Ahead { count: 0, capped: false };
    if ranged == 0 {
        return Ok(ahead);
    }
    let ranges: Vec<redis::streams::StreamRangeReply> = pipe.query_async(conn).await?;
    for range in ranges {
        ahead.capped |= range.ids.len() >= MAX_COUNTED;
        ahead.count += range.ids.len();
    }
    Ok(ahead)
}
