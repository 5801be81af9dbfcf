//! The Redis queue protocol: how a queued execution looks on a lane stream and how it gets there.
//!
//! A lane is one stream per (tenant, priority). Its entries carry small fields an operator can read with
//! `XRANGE` (`id`, `tenant`, `workflow`, `priority`, `attempt`, `queued_at`) and one MessagePack `body` with
//! the rest. Enqueueing is one Lua script, so the lane entry, the queued index and the tenant's place in the
//! round-robin are written together or not at all, and a second enqueue of the same execution is a no-op.

use crate::config::RedisConfig;
use crate::keys::{DISPATCH_GROUP, Keys};
use crate::redis_client::RedisSetupError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use std::time::Duration;
use uuid::Uuid;

/// Priorities run from 0 (lowest) to 9 (highest); 5 is the default.
pub const MAX_PRIORITY: u8 = 9;
pub const DEFAULT_PRIORITY: u8 = 5;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("Redis is unavailable")]
    Unavailable(#[source] redis::RedisError),
    #[error("Redis command failed")]
    Command(#[source] redis::RedisError),
    #[error("queue entry is malformed: {0}")]
    Malformed(String),
}

impl From<redis::RedisError> for QueueError {
    fn from(err: redis::RedisError) -> Self {
        if err.is_io_error() || err.is_timeout() || err.is_connection_dropped() || err.is_connection_refusal() {
            Self::Unavailable(err)
        } else {
            Self::Command(err)
        }
    }
}

/// A multiplexed, self-reconnecting connection. Created lazily: a service starts while Redis is down and reports
/// not-ready until it comes back. Short timeouts turn an unreachable Redis into a quick 503 rather than a hang.
pub fn connect_lazy(config: &RedisConfig) -> Result<ConnectionManager, RedisSetupError> {
    let client = config.client()?;
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(3)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, manager_config).map_err(RedisSetupError::InvalidUrl)
}

/// The bulky part of a queue entry, MessagePack-encoded in the `body` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueBody {
    pub workflow_version: Option<i32>,
    pub labels: BTreeMap<String, String>,
    /// The W3C trace context of the execution's submit span, when traces are on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// One queued execution attempt as it sits on a lane.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueMessage {
    pub execution_id: Uuid,
    pub tenant: String,
    pub workflow: String,
    pub priority: u8,
    pub attempt: u32,
    /// Milliseconds since the epoch when the execution was first queued.
    pub queued_at_ms: i64,
    pub body: QueueBody,
}

impl QueueMessage {
    /// The entry's fields in stream order.
    pub fn to_fields(&self) -> Result<Vec<(&'static str, Vec<u8>)>, QueueError> {
        let body = rmp_serde::to_vec_named(&self.body).map_err(|e| QueueError::Malformed(e.to_string()))?;
        Ok(vec![
            ("id", self.execution_id.to_string().into_bytes()),
            ("tenant", self.tenant.clone().into_bytes()),
            ("workflow", self.workflow.clone().into_bytes()),
            ("priority", self.priority.to_string().into_bytes()),
            ("attempt", self.attempt.to_string().into_bytes()),
            ("queued_at", self.queued_at_ms.to_string().into_bytes()),
            ("body", body),
        ])
    }

    /// Parses an entry read from a lane.
    pub fn from_fields(fields: &HashMap<String, redis::Value>) -> Result<Self, QueueError> {
        fn text(fields: &HashMap<String, redis::Value>, name: &str) -> Result<String, QueueError> {
            match fields.get(name) {
                Some(redis::Value::BulkString(bytes)) => {
                    String::from_utf8(bytes.clone()).map_err(|_| QueueError::Malformed(format!("{name} is not UTF-8")))
                }
                _ => Err(QueueError::Malformed(format!("missing field {name}"))),
            }
        }
        fn number<T: std::str::FromStr>(fields: &HashMap<String, redis::Value>, name: &str) -> Result<T, QueueError> {
            text(fields, name)?.parse().map_err(|_| QueueError::Malformed(format!("{name} is not a number")))
        }
        let body = match fields.get("body") {
            Some(redis::Value::BulkString(bytes)) => {
                rmp_serde::from_slice(bytes).map_err(|e| QueueError::Malformed(format!("body: {e}")))?
            }
            _ => return Err(QueueError::Malformed("missing field body".into())),
        };
        Ok(Self {
            execution_id: text(fields, "id")?.parse().map_err(|_| QueueError::Malformed("id is not a UUID".into()))?,
            tenant: text(fields, "tenant")?,
            workflow: text(fields, "workflow")?,
            priority: number(fields, "priority")?,
            attempt: number(fields, "attempt")?,
            queued_at_ms: number(fields, "queued_at")?,
            body,
        })
    }
}

/// Whether an enqueue added an entry or found the execution already queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    Added { entry_id: String },
    AlreadyQueued { entry: String },
}

static ENQUEUE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("../lua/enqueue.lua")));

/// The enqueue script's call for one message (keys and arguments), shared by [`enqueue`] and [`enqueue_many`].
fn enqueue_invocation(keys: &Keys, message: &QueueMessage) -> Result<redis::ScriptInvocation<'static>, QueueError> {
    let priority = message.priority.min(MAX_PRIORITY);
    let mut invocation = ENQUEUE.prepare_invoke();
    invocation
        .key(keys.lane(&message.tenant, priority))
        .key(keys.tenants())
        .key(keys.lanes(&message.tenant))
        .key(keys.queued())
        .key(keys.wake())
        .arg(message.execution_id.to_string())
        .arg(&message.tenant)
        .arg(priority)
        .arg(DISPATCH_GROUP);
    for (name, value) in message.to_fields()? {
        invocation.arg(name).arg(value);
    }
    Ok(invocation)
}

/// Puts a message on its lane (idempotent per execution id while it waits there).
pub async fn enqueue(
    conn: &mut ConnectionManager,
    keys: &Keys,
    message: &QueueMessage,
) -> Result<Enqueued, QueueError> {
    let invocation = enqueue_invocation(keys, message)?;
    let (added, entry): (i64, String) = invocation.invoke_async(conn).await?;
    Ok(if added == 1 { Enqueued::Added { entry_id: entry } } else { Enqueued::AlreadyQueued { entry } })
}

/// Puts many messages on their lanes in one pipelined round trip: the enqueue script once per message (as
/// [`enqueue`] runs it), each with its own outcome, in the order of `messages`. The outer error means the pipeline
/// as a whole failed (Redis unreachable, connection lost); an inner error belongs to that message alone. A script
/// Redis does not know yet (after a restart or `SCRIPT FLUSH`) is loaded and the messages it refused are sent
/// again.
pub async fn enqueue_many(
    conn: &mut ConnectionManager,
    keys: &Keys,
    messages: &[QueueMessage],
) -> Result<Vec<Result<Enqueued, QueueError>>, QueueError> {
    let mut results: Vec<Option<Result<Enqueued, QueueError>>> = Vec::with_capacity(messages.len());
    let mut invocations = Vec::with_capacity(messages.len());
    for message in messages {
        match enqueue_invocation(keys, message) {
            Ok(invocation) => {
                invocations.push((results.len(), invocation));
                results.push(None);
            }
            Err(err) => results.push(Some(Err(err))),
        }
    }
    let mut loaded = false;
    while !invocations.is_empty() {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (_, invocation) in &invocations {
            pipe.invoke_script(invocation);
        }
        let replies: Vec<redis::RedisResult<(i64, String)>> = pipe.query_async(conn).await?;
        let mut unknown_script = Vec::new();
        for ((index, invocation), reply) in invocations.into_iter().zip(replies) {
            results[index] = Some(match reply {
                Ok((1, entry_id)) => Ok(Enqueued::Added { entry_id }),
                Ok((_, entry)) => Ok(Enqueued::AlreadyQueued { entry }),
                Err(err) if !loaded && err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                    unknown_script.push((index, invocation));
                    continue;
                }
                Err(err) => Err(QueueError::from(err)),
            });
        }
        if !unknown_script.is_empty() {
            ENQUEUE.load_async(conn).await?;
            loaded = true;
        }
        invocations = unknown_script;
    }
    Ok(results.into_iter().map(|r| r.unwrap_or_else(|| Err(QueueError::Malformed("no reply".into())))).collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let message = QueueMessage {
            execution_id: Uuid::now_v7(),
            tenant: "acme".into(),
            workflow: "report".into(),
            priority: 7,
            attempt: 2,
            queued_at_ms: 1_700_000_000_000,
            body: QueueBody {
                workflow_version: Some(3),
                labels: BTreeMap::from([("team".into(), "x".into())]),
                traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            },
        };
        let fields: HashMap<String, redis::Value> = message
            .to_fields()
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.to_string(), redis::Value::BulkString(v)))
            .collect();
        assert_eq!(QueueMessage::from_fields(&fields).unwrap(), message);
    }

    #[test]
    fn a_missing_field_is_named() {
        let fields = HashMap::from([("id".to_string(), redis::Value::BulkString(b"x".to_vec()))]);
        let err = QueueMessage::from_fields(&fields).unwrap_err();
        assert!(matches!(err, QueueError::Malformed(ref m) if m.contains("body")), "{err}");
    }
}

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
        let group = groups
            .iter()
            .find(|g| matches!(g.get("name"), Some(redis::Value::BulkString(n)) if n == DISPATCH_GROUP.as_bytes()));
        // Redis reports no lag once an entry between the group's last delivery and the stream's end was deleted
        // (a cancelled queued execution). Every entry that is acknowledged is also deleted, so the lane holds
        // exactly the delivered-but-unacknowledged entries plus the waiting ones.
        let lag = match group {
            Some(g) => int(g.get("lag")).unwrap_or_else(|| length.saturating_sub(int(g.get("pending")).unwrap_or(0))),
            None => length,
        };
        let last_delivered = group.and_then(|g| match g.get("last-delivered-id") {
            Some(redis::Value::BulkString(id)) => String::from_utf8(id.clone()).ok(),
            _ => None,
        });
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
