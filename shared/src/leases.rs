//! Admission and concurrency leases: the dispatcher side of the queue protocol. Each operation is one Lua
//! script (in `shared/lua/`), so limits are checked and slots taken, renewed, taken over and released
//! atomically across any number of dispatchers.
//!
//! A lease is the hash `Keys::lease(id)` plus the execution's membership in the `active`, `active:tenant:*` and
//! `active:workflow:*` sorted sets, scored by the lease's expiry. A lease lives from admission until its attempt
//! ends; its holder renews it on every heartbeat. An expired lease still counts against the limits until
//! another dispatcher takes it over (keeping the slot), so a dead dispatcher never lets limits be exceeded.

use crate::keys::{DISPATCH_GROUP, Keys};
use crate::queue::{QueueError, QueueMessage};
use redis::Value;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;
use uuid::Uuid;

static ADMIT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("../lua/admit.lua")));
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("../lua/release.lua")));
static RENEW: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("../lua/renew.lua")));
static TAKEOVER: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("../lua/takeover.lua")));
static DELAY: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("../lua/delay.lua")));
static DEAD: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("../lua/dead.lua")));
static ENQUEUE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("../lua/enqueue.lua")));

/// Why an admission call stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitStop {
    /// No dispatcher has published the limits yet.
    NoLimits,
    /// The global limit is reached.
    Global,
    /// The requested number was admitted; there may be more.
    Batch,
    /// Nothing admissible: the queues are empty or every tenant with work is at a limit.
    Idle,
}

/// One claimed queue entry, with its lease taken.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub lane: String,
    pub entry_id: String,
    /// The entry's fields as stored.
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Admitted {
    pub fn message(&self) -> Result<QueueMessage, QueueError> {
        QueueMessage::from_fields(&field_map(&self.fields))
    }
}

/// Admits up to `max` executions for `dispatcher`, with leases expiring after `ttl`.
pub async fn admit(
    conn: &mut ConnectionManager,
    keys: &Keys,
    dispatcher: &str,
    ttl: Duration,
    max: usize,
) -> Result<(AdmitStop, Vec<Admitted>), QueueError> {
    let now = now_ms();
    let reply: Vec<Value> = ADMIT
        .key(keys.tenants())
        .key(keys.limits())
        .key(keys.active())
        .key(keys.queued())
        .key(keys.turn())
        .arg(keys.prefix())
        .arg(DISPATCH_GROUP)
        .arg(dispatcher)
        .arg(now)
        .arg(now + millis(ttl))
        .arg(max)
        .invoke_async(conn)
        .await?;
    let mut items = reply.into_iter();
    let stop = match items.next().as_ref().and_then(text).as_deref() {
        Some("no-limits") => AdmitStop::NoLimits,
        Some("global") => AdmitStop::Global,
        Some("batch") => AdmitStop::Batch,
        _ => AdmitStop::Idle,
    };
    let mut admitted = Vec::new();
    for item in items {
        let Value::Array(parts) = item else { return Err(malformed("admission entry")) };
        let [lane, entry_id, Value::Array(fields)] = &parts[..] else { return Err(malformed("admission entry")) };
        admitted.push(Admitted {
            lane: text(lane).ok_or_else(|| malformed("lane"))?,
            entry_id: text(entry_id).ok_or_else(|| malformed("entry id"))?,
            fields: pairs(fields)?,
        });
    }
    Ok((stop, admitted))
}

/// Releases this dispatcher's leases of `ids` (acknowledging their lane entries); returns how many it held.
pub async fn release(
    conn: &mut ConnectionManager,
    keys: &Keys,
    dispatcher: &str,
    ids: &[Uuid],
) -> Result<u64, QueueError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let mut invocation = RELEASE.arg(keys.prefix());
    invocation.arg(DISPATCH_GROUP).arg(dispatcher);
    for id in ids {
        invocation.arg(id.to_string());
    }
    Ok(invocation.invoke_async(conn).await?)
}

/// What a heartbeat found for one held lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Renewed,
    /// Renewed, and a cancellation of the execution was requested.
    CancelRequested,
    /// The lease is gone or held by another dispatcher.
    Lost,
}

/// The heartbeat: records `dispatcher` as alive and extends its leases of `ids` to `ttl` from now.
pub async fn renew(
    conn: &mut ConnectionManager,
    keys: &Keys,
    dispatcher: &str,
    ids: &[Uuid],
    ttl: Duration,
) -> Result<Vec<Renewal>, QueueError> {
    let now = now_ms();
    let mut invocation = RENEW.arg(keys.prefix());
    invocation.arg(dispatcher).arg(now + millis(ttl)).arg(now);
    for id in ids {
        invocation.arg(id.to_string());
    }
    let codes: Vec<i64> = invocation.invoke_async(conn).await?;
    Ok(codes
        .into_iter()
        .map(|code| match code {
            1 => Renewal::Renewed,
            2 => Renewal::CancelRequested,
            _ => Renewal::Lost,
        })
        .collect())
}

/// A lease taken over from a dispatcher that stopped heartbeating.
#[derive(Debug, Clone)]
pub struct TakenOver {
    pub execution_id: String,
    pub tenant: String,
    pub workflow: String,
    pub attempt: u32,
    pub lane: String,
    pub entry_id: String,
    /// How many dispatchers have now held this attempt.
    pub deliveries: u32,
    pub previous_holder: String,
    /// The lane entry's fields (empty when the entry is gone).
    pub fields: Vec<(String, Vec<u8>)>,
}

/// Takes over up to `max` expired leases for `dispatcher`, keeping their slots.
pub async fn take_over(
    conn: &mut ConnectionManager,
    keys: &Keys,
    dispatcher: &str,
    ttl: Duration,
    max: usize,
) -> Result<Vec<TakenOver>, QueueError> {
    let now = now_ms();
    let reply: Vec<Vec<Value>> = TAKEOVER
        .key(keys.active())
        .arg(keys.prefix())
        .arg(DISPATCH_GROUP)
        .arg(dispatcher)
        .arg(now)
        .arg(now + millis(ttl))
        .arg(max)
        .invoke_async(conn)
        .await?;
    reply
        .into_iter()
        .map(|parts| {
            let [id, tenant, workflow, attempt, lane, entry, deliveries, previous, fields] = &parts[..] else {
                return Err(malformed("takeover entry"));
            };
            let fields = match fields {
                Value::Array(values) => pairs(values)?,
                _ => Vec::new(),
            };
            Ok(TakenOver {
                execution_id: text(id).ok_or_else(|| malformed("id"))?,
                tenant: text(tenant).unwrap_or_default(),
                workflow: text(workflow).unwrap_or_default(),
                attempt: text(attempt).and_then(|a| a.parse().ok()).unwrap_or(1),
                lane: text(lane).unwrap_or_default(),
                entry_id: text(entry).unwrap_or_default(),
                deliveries: integer(deliveries).and_then(|d| u32::try_from(d).ok()).unwrap_or(1),
                previous_holder: text(previous).unwrap_or_default(),
                fields,
            })
        })
        .collect()
}

/// Ends this dispatcher's lease of `next.execution_id` and schedules `next` (the next attempt) at `due_ms`.
/// Returns false when the lease was not this dispatcher's (nothing changed).
pub async fn schedule_retry(
    conn: &mut ConnectionManager,
    keys: &Keys,
    dispatcher: &str,
    next: &QueueMessage,
    due_ms: i64,
) -> Result<bool, QueueError> {
    let mut invocation = DELAY.arg(keys.prefix());
    invocation.arg(DISPATCH_GROUP).arg(dispatcher).arg(next.execution_id.to_string()).arg(due_ms);
    for (name, value) in next.to_fields()? {
        invocation.arg(name).arg(value);
    }
    let done: i64 = invocation.invoke_async(conn).await?;
    Ok(done == 1)
}

/// Moves retries that are due back into their lanes; returns how many.
pub async fn promote_due(conn: &mut ConnectionManager, keys: &Keys, max: usize) -> Result<u64, QueueError> {
    let due: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(keys.retrying())
        .arg("-inf")
        .arg(now_ms())
        .arg("LIMIT")
        .arg(0)
        .arg(max)
        .query_async(conn)
        .await?;
    let mut promoted = 0;
    for id in due {
        let fields: HashMap<String, Value> = redis::cmd("HGETALL").arg(keys.retry(&id)).query_async(conn).await?;
        if fields.is_empty() {
            // Promoted by another dispatcher meanwhile, or the hash was lost: drop the stale schedule entry.
            let _: () = redis::cmd("ZREM").arg(keys.retrying()).arg(&id).query_async(conn).await?;
            continue;
        }
        let message = QueueMessage::from_fields(&fields)?;
        let mut invocation = ENQUEUE.prepare_invoke();
        invocation
            .key(keys.lane(&message.tenant, message.priority.min(crate::queue::MAX_PRIORITY)))
            .key(keys.tenants())
            .key(keys.lanes(&message.tenant))
            .key(keys.queued())
            .key(keys.wake())
            .key(keys.retrying())
            .key(keys.retry(&id))
            .arg(&id)
            .arg(&message.tenant)
            .arg(message.priority.min(crate::queue::MAX_PRIORITY))
            .arg(DISPATCH_GROUP);
        for (name, value) in message.to_fields()? {
            invocation.arg(name).arg(value);
        }
        let (added, _entry): (i64, String) = invocation.invoke_async(conn).await?;
        promoted += u64::from(added == 1);
    }
    Ok(promoted)
}

/// A message for the dead-letter stream.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    pub execution_id: Option<Uuid>,
    /// The lane entry to acknowledge and delete (empty strings when there is none).
    pub lane: &'a str,
    pub entry_id: &'a str,
    /// The original entry's fields.
    pub fields: &'a [(String, Vec<u8>)],
    pub reason: &'a str,
    pub deliveries: u32,
}

/// Dead-letters a message (ending this dispatcher's lease of it, if held); returns the dead-letter entry id.
pub async fn dead_letter(
    conn: &mut ConnectionManager,
    keys: &Keys,
    dispatcher: &str,
    dead: &DeadLetter<'_>,
) -> Result<String, QueueError> {
    let mut invocation = DEAD.arg(keys.prefix());
    invocation
        .arg(DISPATCH_GROUP)
        .arg(dispatcher)
        .arg(dead.execution_id.map(|id| id.to_string()).unwrap_or_default())
        .arg(dead.lane)
        .arg(dead.entry_id);
    for (name, value) in
        dead.fields.iter().filter(|(name, _)| !matches!(name.as_str(), "reason" | "dead_at" | "deliveries"))
    {
        invocation.arg(name).arg(value.as_slice());
    }
    invocation.arg("reason").arg(dead.reason).arg("dead_at").arg(now_ms()).arg("deliveries").arg(dead.deliveries);
    Ok(invocation.invoke_async(conn).await?)
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn malformed(what: &str) -> QueueError {
    QueueError::Malformed(format!("unexpected script reply: {what}"))
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => text(other).and_then(|t| t.parse().ok()),
    }
}

fn pairs(values: &[Value]) -> Result<Vec<(String, Vec<u8>)>, QueueError> {
    values
        .chunks(2)
        .map(|pair| match pair {
            [name, Value::BulkString(value)] => Ok((text(name).ok_or_else(|| malformed("field name"))?, value.clone())),
            [name, other] => {
                Ok((text(name).ok_or_else(|| malformed("field name"))?, text(other).unwrap_or_default().into_bytes()))
            }
            _ => Err(malformed("odd field list")),
        })
        .collect()
}

/// Fields as the map `QueueMessage::from_fields` reads.
pub fn field_map(fields: &[(String, Vec<u8>)]) -> HashMap<String, Value> {
    fields.iter().map(|(name, value)| (name.clone(), Value::BulkString(value.clone()))).collect()
}
