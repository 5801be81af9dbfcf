//! Admission (`admit.lua`): claims queued executions for one dispatcher only as far as the concurrency limits
//! allow, and takes their leases in the same atomic step, so work this dispatcher cannot start stays
//! available to the others and no limit is exceeded by any number of dispatchers.
//!
//! Tenants are served by weighted fair share (start-time fair queuing: the smallest tag first, docs/dispatcher.md),
//! priorities within a tenant with aging (one level per `aging` ms of waiting; 0 is strict). With a per-workflow limit, the head entry of a lane whose workflow is at its limit
//! stays unclaimed and holds back that lane of that tenant only. A cancelled entry is dropped without taking a
//! slot; an entry that is not a queue message is dead-lettered.
//!
//! A lease is the hash `Keys::lease(id)` plus the execution's membership in the `active`, `active:tenant:*` and
//! `active:workflow:*` sorted sets, scored by the lease's expiry. It lives until its attempt ends; its holder
//! renews it on every heartbeat (`renew`). An expired lease still counts against the limits until another
//! dispatcher takes it over (`takeover`, keeping the slot), so a dead dispatcher never lets limits be exceeded.

use super::keys::{DISPATCH_GROUP, Keys};
use super::message::{QueueError, QueueMessage};
use super::reply::{field_map, malformed, millis, now_ms, pairs, text};
use super::scripts::ADMIT;
use redis::Value;
use redis::aio::ConnectionManager;
use std::time::Duration;

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
        .script()
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
