//! Typed reads of the queue's state for the API's views and the dispatcher's gauges: what waits and runs per
//! tenant, the oldest waiting entry, running totals and live dispatchers. Nothing here writes.

use super::keys::{DISPATCH_GROUP, Keys};
use super::message::QueueError;
use super::scripts::QUEUE_AHEAD;
use redis::Value;
use redis::aio::ConnectionManager;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use uuid::Uuid;

/// What is waiting and running for one tenant, as `GET /queue` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TenantQueue {
    /// Executions waiting in the tenant's lanes, not yet claimed by a dispatcher.
    pub waiting: u64,
    /// Executions holding a concurrency lease (dispatched or running).
    pub running: u64,
    /// Waiting executions per priority lane (only lanes with work).
    pub waiting_by_priority: BTreeMap<u8, u64>,
}

/// One lane of a tenant as the dispatch group sees it.
struct Lane {
    priority: u8,
    key: String,
    /// Entries not yet delivered to the group.
    lag: u64,
    /// The group's last delivered entry; the waiting entries come after it.
    last_delivered: Option<String>,
}

/// Reads a tenant's lanes (one XINFO GROUPS and XLEN per lane, pipelined) and its running count.
async fn lanes(conn: &mut ConnectionManager, keys: &Keys, tenant: &str) -> Result<(Vec<Lane>, u64), QueueError> {
    let (priorities, running): (Vec<u8>, u64) =
        redis::pipe().zrange(keys.lanes(tenant), 0, -1).zcard(keys.active_tenant(tenant)).query_async(conn).await?;
    if priorities.is_empty() {
        return Ok((Vec::new(), running));
    }
    let mut pipe = redis::pipe();
    for priority in &priorities {
        let lane = keys.lane(tenant, *priority);
        pipe.cmd("XINFO").arg("GROUPS").arg(&lane).xlen(&lane);
    }
    let replies: Vec<redis::Value> = pipe.query_async(conn).await?;
    let int = |value: Option<&redis::Value>| match value {
        Some(redis::Value::Int(n)) => u64::try_from(*n).ok(),
        _ => None,
    };
    let mut lanes = Vec::with_capacity(priorities.len());
    for (priority, reply) in priorities.iter().zip(replies.chunks(2)) {
        let [groups, length] = reply else { continue };
        let groups: Vec<HashMap<String, redis::Value>> = redis::from_redis_value_ref(groups)
            .map_err(|e| QueueError::Malformed(format!("XINFO GROUPS reply: {e}")))?;
        let length = int(Some(length)).unwrap_or(0);
        let group = dispatch_group(&groups);
        // Redis reports no lag once an entry between the group's last delivery and the stream's end was deleted
        // (a cancelled queued execution). Every entry that is acknowledged is also deleted, so the lane holds
        // exactly the delivered-but-unacknowledged entries plus the waiting ones.
        let lag = match group {
            Some(g) => int(g.get("lag")).unwrap_or_else(|| length.saturating_sub(int(g.get("pending")).unwrap_or(0))),
            None => length,
        };
        let last_delivered = group.and_then(last_delivered_id);
        lanes.push(Lane { priority: *priority, key: keys.lane(tenant, *priority), lag, last_delivered });
    }
    Ok((lanes, running))
}

fn tenant_queue_of(lanes: &[Lane], running: u64) -> TenantQueue {
    let mut out = TenantQueue { running, ..TenantQueue::default() };
    for lane in lanes.iter().filter(|lane| lane.lag > 0) {
        out.waiting_by_priority.insert(lane.priority, lane.lag);
        out.waiting += lane.lag;
    }
    out
}

/// Counts one tenant's waiting (group lag over its lanes) and running executions.
pub async fn tenant_queue(conn: &mut ConnectionManager, keys: &Keys, tenant: &str) -> Result<TenantQueue, QueueError> {
    let (lanes, running) = lanes(conn, keys, tenant).await?;
    Ok(tenant_queue_of(&lanes, running))
}

/// [`tenant_queue`], and when the oldest execution still waiting was queued (ms since the epoch; `None` when
/// nothing waits): the first entry after each waiting lane's last delivery, one XRANGE per such lane, pipelined.
pub async fn tenant_backlog(
    conn: &mut ConnectionManager,
    keys: &Keys,
    tenant: &str,
) -> Result<(TenantQueue, Option<i64>), QueueError> {
    let (lanes, running) = lanes(conn, keys, tenant).await?;
    let queue = tenant_queue_of(&lanes, running);
    let waiting: Vec<&Lane> = lanes.iter().filter(|lane| lane.lag > 0).collect();
    if waiting.is_empty() {
        return Ok((queue, None));
    }
    let mut pipe = redis::pipe();
    for lane in &waiting {
        let start = lane.last_delivered.as_ref().map_or_else(|| "-".to_string(), |id| format!("({id}"));
        pipe.cmd("XRANGE").arg(&lane.key).arg(start).arg("+").arg("COUNT").arg(1);
    }
    let firsts: Vec<redis::streams::StreamRangeReply> = pipe.query_async(conn).await?;
    let oldest = firsts
        .iter()
        .filter_map(|reply| reply.ids.first())
        .filter_map(|entry| entry.id.split_once('-').and_then(|(ms, _)| ms.parse::<i64>().ok()))
        .min();
    Ok((queue, oldest))
}

/// Overall numbers: running executions and live dispatchers (heartbeat within `alive_within`).
pub async fn global_running(
    conn: &mut ConnectionManager,
    keys: &Keys,
    alive_within: Duration,
) -> Result<(u64, u64), QueueError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let since = now_ms - i64::try_from(alive_within.as_millis()).unwrap_or(i64::MAX);
    let (running, dispatchers): (u64, u64) =
        redis::pipe().zcard(keys.active()).zcount(keys.dispatchers(), since, "+inf").query_async(conn).await?;
    Ok((running, dispatchers))
}

/// Executions holding a lease, per workflow of `tenant` (in the order of `workflows`), in one round trip.
pub async fn workflow_running(
    conn: &mut ConnectionManager,
    keys: &Keys,
    tenant: &str,
    workflows: &[String],
) -> Result<Vec<u64>, QueueError> {
    if workflows.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for workflow in workflows {
        pipe.zcard(keys.active_workflow(tenant, workflow));
    }
    Ok(pipe.query_async(conn).await?)
}

/// The tenants that may have queued work (the fair-share set), in serving order (smallest tag first).
pub async fn tenants(conn: &mut ConnectionManager, keys: &Keys) -> Result<Vec<String>, QueueError> {
    Ok(redis::cmd("ZRANGE").arg(keys.tenants()).arg(0).arg(-1).query_async(conn).await?)
}

/// The attempt number each execution's lease is for (`None` when no lease is held), in one round trip.
pub async fn leased_attempts(
    conn: &mut ConnectionManager,
    keys: &Keys,
    ids: &[Uuid],
) -> Result<Vec<Option<u32>>, QueueError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.hget(keys.lease(&id.to_string()), "attempt");
    }
    Ok(pipe.query_async(conn).await?)
}

/// Whether Redis knows each execution: waiting in a lane, holding a lease, or scheduled for a retry (its
/// `retrying` member or its retry hash), in one round trip.
pub async fn known(conn: &mut ConnectionManager, keys: &Keys, ids: &[Uuid]) -> Result<Vec<bool>, QueueError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in ids {
        let id = id.to_string();
        pipe.hexists(keys.queued(), &id).exists(keys.lease(&id)).exists(keys.retry(&id)).zscore(keys.retrying(), &id);
    }
    let flags: Vec<Value> = pipe.query_async(conn).await?;
    let set = |v: &Value| matches!(v, Value::Int(1) | Value::BulkString(_) | Value::Double(_));
    Ok(flags.chunks(4).map(|group| group.iter().any(set)).collect())
}

/// Which of these executions the queued index knows (one round trip).
pub async fn known_queued(conn: &mut ConnectionManager, keys: &Keys, ids: &[Uuid]) -> Result<Vec<bool>, QueueError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.hexists(keys.queued(), id.to_string());
    }
    Ok(pipe.query_async(conn).await?)
}

/// What Redis knows about one queued execution, for the API's "why is it waiting" answer: one pipelined read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WaitingState {
    /// The dispatcher holding its lease, and the leased attempt.
    pub lease_holder: Option<String>,
    pub lease_attempt: Option<u32>,
    /// When its retry is due (ms since the epoch), and the attempt that will start then.
    pub retry_due_ms: Option<f64>,
    pub retry_attempt: Option<u32>,
    /// Dispatchers that heartbeated since `alive_since_ms`.
    pub dispatchers_alive: u64,
    /// Leases held: globally, by the tenant, by the tenant's workflow.
    pub running_global: u64,
    pub running_tenant: u64,
    pub running_workflow: u64,
    /// Its queued-index entry: the lane and the entry id it waits at.
    pub queued_at: Option<(String, String)>,
    /// The tenant is paused, or this execution's workflow is.
    pub tenant_paused: bool,
    pub workflow_paused: bool,
}

/// Reads [`WaitingState`] of execution `id` of `tenant`'s `workflow` in one round trip.
pub async fn waiting_state(
    conn: &mut ConnectionManager,
    keys: &Keys,
    id: Uuid,
    tenant: &str,
    workflow: &str,
    alive_since_ms: i64,
) -> Result<WaitingState, QueueError> {
    let id = id.to_string();
    #[allow(clippy::type_complexity)]
    let (
        lease_holder,
        lease_attempt,
        retry_due_ms,
        retry_attempt,
        dispatchers_alive,
        running_global,
        running_tenant,
        running_workflow,
        queued,
        paused,
    ): (Option<String>, Option<u32>, Option<f64>, Option<u32>, u64, u64, u64, u64, Option<String>, Vec<String>) =
        redis::pipe()
            .hget(keys.lease(&id), "dispatcher")
            .hget(keys.lease(&id), "attempt")
            .zscore(keys.retrying(), &id)
            .hget(keys.retry(&id), "attempt")
            .zcount(keys.dispatchers(), alive_since_ms, "+inf")
            .zcard(keys.active())
            .zcard(keys.active_tenant(tenant))
            .zcard(keys.active_workflow(tenant, workflow))
            .hget(keys.queued(), &id)
            .smembers(keys.paused(tenant))
            .query_async(conn)
            .await?;
    let queued_at = queued.and_then(|q| q.split_once(' ').map(|(lane, entry)| (lane.to_owned(), entry.to_owned())));
    Ok(WaitingState {
        lease_holder,
        lease_attempt,
        retry_due_ms,
        retry_attempt,
        dispatchers_alive,
        running_global,
        running_tenant,
        running_workflow,
        queued_at,
        tenant_paused: paused.iter().any(|m| m == super::limits::WHOLE_TENANT),
        workflow_paused: paused.iter().any(|m| m == workflow),
    })
}

/// Unclaimed entries ahead of one waiting entry, counted up to a cap per lane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ahead {
    pub count: usize,
    /// Some lane had at least the cap: the true count is larger.
    pub capped: bool,
}

/// Unclaimed entries ahead of `entry` in its tenant's queue, at most `max_per_lane` counted per lane: in its own
/// lane before it, and in the tenant's other lanes those admission ranks before it (strict priority, or priority
/// aging as the dispatchers publish it; `queue_ahead.lua` says how). One script call that counts in Redis and
/// returns only the count, so a deep queue costs Redis time up to the cap but sends nothing back.
pub async fn unclaimed_ahead(
    conn: &mut ConnectionManager,
    keys: &Keys,
    tenant: &str,
    own_lane: &str,
    entry: &str,
    max_per_lane: usize,
) -> Result<Ahead, QueueError> {
    let (count, capped): (usize, u8) = QUEUE_AHEAD
        .script()
        .key(keys.lanes(tenant))
        .key(keys.limits())
        .key(own_lane)
        .arg(keys.prefix())
        .arg(tenant)
        .arg(entry)
        .arg(max_per_lane)
        .arg(DISPATCH_GROUP)
        .invoke_async(conn)
        .await?;
    Ok(Ahead { count, capped: capped == 1 })
}

/// The dispatch group in an `XINFO GROUPS` reply.
fn dispatch_group(groups: &[HashMap<String, Value>]) -> Option<&HashMap<String, Value>> {
    groups.iter().find(|g| matches!(g.get("name"), Some(Value::BulkString(n)) if n == DISPATCH_GROUP.as_bytes()))
}

/// A group's last delivered entry id (entries after it are not claimed yet).
fn last_delivered_id(group: &HashMap<String, Value>) -> Option<String> {
    match group.get("last-delivered-id") {
        Some(Value::BulkString(id)) => String::from_utf8(id.clone()).ok(),
        Some(Value::SimpleString(id)) => Some(id.clone()),
        _ => None,
    }
}
