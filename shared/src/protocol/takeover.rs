//! Takeover (`takeover.lua`): a dispatcher's recovery pass takes over leases whose holder stopped heartbeating
//! (expired), keeping their concurrency slots so limits hold while the attempt changes hands; the pending lane
//! entry moves to the new holder (`XCLAIM`) and the lease counts one more delivery.

use super::keys::{DISPATCH_GROUP, Keys};
use super::message::QueueError;
use super::reply::{integer, malformed, millis, now_ms, pairs, text};
use super::scripts::TAKEOVER;
use redis::Value;
use redis::aio::ConnectionManager;
use std::time::Duration;

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
        .script()
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
