//! Dead letters: messages that cannot succeed, in the stream `{prefix}:dead`. A dead-letter entry is a queue
//! message (`QueueMessage::to_fields`) plus `reason`, `dead_at` (ms since the epoch) and `deliveries`.
//!
//! Writing one (`dead_letter.lua`) ends the holder's lease and the lane entry in the same step; the dispatcher
//! then marks the execution `failed`. The admission script dead-letters an entry that is not a queue message
//! itself. Operators list, read and redrive (delete after re-submitting) them through the API; the pruner trims
//! the stream by age.

use super::keys::{DISPATCH_GROUP, Keys};
use super::message::QueueError;
use super::reply::now_ms;
use super::scripts::DEAD_LETTER;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use uuid::Uuid;

/// A message for the dead-letter stream.
#[derive(Debug, Clone)]
pub struct NewDeadLetter<'a> {
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
    dead: &NewDeadLetter<'_>,
) -> Result<String, QueueError> {
    let mut invocation = DEAD_LETTER.script().arg(keys.prefix());
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
pub async fn read_dead_letter(
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

/// How many dead letters there are.
pub async fn count(conn: &mut ConnectionManager, keys: &Keys) -> Result<u64, QueueError> {
    Ok(redis::cmd("XLEN").arg(keys.dead_letters()).query_async(conn).await?)
}

/// Deletes the dead letters older than entry id `min_id` (`XTRIM MINID`); returns how many.
pub async fn trim_before(conn: &mut ConnectionManager, keys: &Keys, min_id: &str) -> Result<u64, QueueError> {
    Ok(redis::cmd("XTRIM").arg(keys.dead_letters()).arg("MINID").arg(min_id).query_async(conn).await?)
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
