//! Operator actions on the queue: withdrawing a waiting execution (cancel) and reading the dead-letter stream.
//!
//! Withdrawing is one Lua script (`lua/withdraw.lua`), so an execution's lane entry, its `queued` field and a
//! pending retry go together. A dead-letter entry is a queue message (`QueueMessage::to_fields`) plus `reason`,
//! `dead_at` (ms since the epoch) and `deliveries`; the dispatcher writes it and marks the execution `failed`.

use crate::keys::Keys;
use crate::queue::QueueError;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::LazyLock;
use uuid::Uuid;

static WITHDRAW: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("../lua/withdraw.lua")));

/// What a withdrawal found and removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Withdrawn {
    /// The execution was waiting in a lane; its entry and `queued` field are gone.
    pub from_lane: bool,
    /// The execution was backing off before a retry; its `retrying` member and `retry` hash are gone.
    pub from_retrying: bool,
}

/// Removes a still-waiting execution from the queue (lane entry, `queued` field, pending retry), atomically.
/// An execution already claimed by a dispatcher is not touched; the cancel key stops it.
pub async fn withdraw(conn: &mut ConnectionManager, keys: &Keys, execution: Uuid) -> Result<Withdrawn, QueueError> {
    let id = execution.to_string();
    let (lane, retry): (i64, i64) =
        WITHDRAW.key(keys.queued()).key(keys.retrying()).key(keys.retry(&id)).arg(&id).invoke_async(conn).await?;
    Ok(Withdrawn { from_lane: lane > 0, from_retrying: retry > 0 })
}

/// Seconds a cancel key lives: long enough for any dispatcher holding the lease to see it on a heartbeat.
pub const CANCEL_KEY_TTL_SECS: u64 = 86_400;

/// Asks the dispatcher holding the execution's lease (if any) to stop it: sets the cancel key.
pub async fn request_cancel(conn: &mut ConnectionManager, keys: &Keys, execution: Uuid) -> Result<(), QueueError> {
    let _: () = redis::cmd("SET")
        .arg(keys.cancel(&execution.to_string()))
        .arg(chrono::Utc::now().timestamp_millis())
        .arg("EX")
        .arg(CANCEL_KEY_TTL_SECS)
        .query_async(conn)
        .await?;
    Ok(())
}

/// One entry of the dead-letter stream, read leniently: a field that is missing or does not parse is `None`
/// (or empty) rather than hiding the entry from the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The stream entry id (`<ms>-<seq>`).
    pub entry_id: String,
    /// The execution id as written (normally a UUID).
    pub execution_id: String,
    pub tenant: String,
    pub workflow: String,
    pub priority: Option<u8>,
    pub attempt: Option<u32>,
    pub reason: String,
    /// Milliseconds since the epoch when the message was dead-lettered.
    pub dead_at_ms: Option<i64>,
    /// How many times the message had been delivered.
    pub deliveries: Option<u64>,
}

impl DeadLetter {
    pub fn from_entry(entry_id: String, fields: &HashMap<String, redis::Value>) -> Self {
        let text = |name: &str| match fields.get(name) {
            Some(redis::Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            Some(redis::Value::SimpleString(text)) => text.clone(),
            _ => String::new(),
        };
        Self {
            execution_id: text("id"),
            tenant: text("tenant"),
            workflow: text("workflow"),
            priority: text("priority").parse().ok(),
            attempt: text("attempt").parse().ok(),
            reason: text("reason"),
            dead_at_ms: text("dead_at").parse().ok(),
            deliveries: text("deliveries").parse().ok(),
            entry_id,
        }
    }

    /// The execution id, when it is a UUID.
    pub fn execution(&self) -> Option<Uuid> {
        self.execution_id.parse().ok()
    }
}

/// Whether `id` looks like a stream entry id (`<ms>-<seq>` or `<ms>`), so it can be used in a range.
pub fn is_entry_id(id: &str) -> bool {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    !ms.is_empty()
        && !seq.is_empty()
        && ms.len() <= 20
        && seq.len() <= 20
        && ms.bytes().all(|b| b.is_ascii_digit())
        && seq.bytes().all(|b| b.is_ascii_digit())
        && ms.parse::<u64>().is_ok()
        && seq.parse::<u64>().is_ok()
}

fn entries(reply: redis::streams::StreamRangeReply) -> Vec<DeadLetter> {
    reply.ids.into_iter().map(|entry| DeadLetter::from_entry(entry.id, &entry.map)).collect()
}

/// Up to `count` dead letters, newest first, strictly older than `before` (an entry id) when given.
pub async fn dead_letters(
    conn: &mut ConnectionManager,
    keys: &Keys,
    before: Option<&str>,
    count: usize,
) -> Result<Vec<DeadLetter>, QueueError> {
    // Nothing comes before the smallest id (and Redis refuses the exclusive range `(0-0`).
    if before.is_some_and(|id| id.split('-').all(|part| part.bytes().all(|b| b == b'0'))) {
        return Ok(Vec::new());
    }
    let end = before.map_or_else(|| "+".to_string(), |id| format!("({id}"));
    let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(keys.dead_letters())
        .arg(end)
        .arg("-")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    Ok(entries(reply))
}

/// One dead letter by entry id.
pub async fn dead_letter(
    conn: &mut ConnectionManager,
    keys: &Keys,
    entry_id: &str,
) -> Result<Option<DeadLetter>, QueueError> {
    let reply: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(keys.dead_letters()).arg(entry_id).arg(entry_id).query_async(conn).await?;
    Ok(entries(reply).into_iter().next())
}

/// Deletes a dead letter; true when it was there.
pub async fn delete_dead_letter(conn: &mut ConnectionManager, keys: &Keys, entry_id: &str) -> Result<bool, QueueError> {
    let deleted: i64 = redis::cmd("XDEL").arg(keys.dead_letters()).arg(entry_id).query_async(conn).await?;
    Ok(deleted > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_are_checked() {
        for good in ["0-0", "1700000000000-3", "5"] {
            assert!(is_entry_id(good), "{good}");
        }
        for bad in ["", "-", "1-", "-1", "a-1", "1-2-3", "+", "(1-0", "99999999999999999999999-0"] {
            assert!(!is_entry_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_dead_letter_is_read_leniently() {
        let fields = HashMap::from([
            ("id".to_string(), redis::Value::BulkString(b"not-a-uuid".to_vec())),
            ("attempt".to_string(), redis::Value::BulkString(b"2".to_vec())),
            ("reason".to_string(), redis::Value::BulkString(b"delivered 5 times".to_vec())),
        ]);
        let letter = DeadLetter::from_entry("1-0".into(), &fields);
        assert_eq!(letter.attempt, Some(2));
        assert_eq!(letter.reason, "delivered 5 times");
        assert_eq!(letter.deliveries, None);
        assert_eq!(letter.execution(), None);
        assert_eq!(letter.tenant, "");
    }
}
