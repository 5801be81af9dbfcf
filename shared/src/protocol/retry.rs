//! Delay and promote: an attempt that failed on infrastructure ends its lease and waits in `{prefix}:retrying`
//! (`retry.lua`, atomic), holding no slot during its backoff; [`promote_due`] moves due retries back into their
//! lanes through the enqueue script, which removes the retry in the same step (so two dispatchers promoting at
//! once enqueue it once).

use super::enqueue::enqueue_invocation;
use super::keys::{DISPATCH_GROUP, Keys};
use super::message::{QueueError, QueueMessage};
use super::reply::now_ms;
use super::scripts::RETRY;
use redis::Value;
use redis::aio::ConnectionManager;
use std::collections::HashMap;

/// Ends this dispatcher's lease of `next.execution_id` and schedules `next` (the next attempt) at `due_ms`.
/// Returns false when the lease was not this dispatcher's (nothing changed).
pub async fn schedule_retry(
    conn: &mut ConnectionManager,
    keys: &Keys,
    dispatcher: &str,
    next: &QueueMessage,
    due_ms: i64,
) -> Result<bool, QueueError> {
    let mut invocation = RETRY.script().arg(keys.prefix());
    invocation.arg(DISPATCH_GROUP).arg(dispatcher).arg(next.execution_id.to_string()).arg(due_ms);
    for (name, value) in next.to_fields()? {
        invocation.arg(name).arg(value);
    }
    let done: i64 = invocation.invoke_async(conn).await?;
    Ok(done == 1)
}

/// Moves up to `max` retries that are due back into their lanes; returns how many.
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
        let mut invocation = enqueue_invocation(keys, &message)?;
        invocation.key(keys.retrying()).key(keys.retry(&id));
        let (added, _entry): (i64, String) = invocation.invoke_async(conn).await?;
        promoted += u64::from(added == 1);
    }
    Ok(promoted)
}
