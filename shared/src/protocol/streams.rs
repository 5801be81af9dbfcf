//! The status and progress streams: how events are appended (executors and dispatchers), how the status
//! pipeline consumes `{prefix}:status` in the group `status` (read, acknowledge, claim what a dead consumer
//! left), and how the API's event stream reads one execution's `{prefix}:status:<id>`.
//!
//! Entries are `StatusEntry::to_fields` (crate::status). Both streams are capped (`MAXLEN ~`); the status
//! pipeline deletes what it has applied, archives a finished execution's progress stream in PostgreSQL
//! (`record::progress`) and then deletes the stream.

use super::keys::{Keys, STATUS_GROUP};
use super::message::QueueError;
use super::scripts::ACK_STATUS;
use redis::Value;
use redis::aio::ConnectionLike;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// One stream entry: its id and fields.
pub type Entry = (String, HashMap<String, Value>);

/// Appends to several streams in one round trip, in order.
pub struct Appends {
    pipe: redis::Pipeline,
    empty: bool,
}

impl Default for Appends {
    fn default() -> Self {
        Self::new()
    }
}

impl Appends {
    pub fn new() -> Self {
        Self { pipe: redis::pipe(), empty: true }
    }

    /// Adds `XADD stream MAXLEN ~ maxlen * fields...`.
    pub fn append(&mut self, stream: &str, maxlen: usize, fields: &[(&'static str, Vec<u8>)]) -> &mut Self {
        let cmd = self.pipe.cmd("XADD").arg(stream).arg("MAXLEN").arg("~").arg(maxlen).arg("*");
        for (name, value) in fields {
            cmd.arg(*name).arg(value.as_slice());
        }
        cmd.ignore();
        self.empty = false;
        self
    }

    /// Sends the appends; may be called again to send the same appends once more (a retry).
    pub async fn send(&self, conn: &mut impl ConnectionLike) -> Result<(), redis::RedisError> {
        if self.empty {
            return Ok(());
        }
        self.pipe.query_async::<()>(conn).await
    }
}

/// Where a status-group read starts: this consumer's own pending entries, or new ones (blocking up to `block`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    OwnPending,
    New { block: Duration },
}

/// Reads up to `count` entries of the status stream for `consumer`. A missing group (first start, or Redis lost
/// its data) is created from the start of the stream, and the read returns nothing that time.
pub async fn read_status(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    consumer: &str,
    from: ReadFrom,
    count: usize,
) -> Result<Vec<Entry>, QueueError> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP").arg(STATUS_GROUP).arg(consumer).arg("COUNT").arg(count);
    let start = match from {
        ReadFrom::OwnPending => "0",
        ReadFrom::New { block } => {
            cmd.arg("BLOCK").arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX));
            ">"
        }
    };
    cmd.arg("STREAMS").arg(keys.status()).arg(start);
    match cmd.query_async::<Value>(conn).await {
        Ok(reply) => Ok(parse_read(reply)),
        Err(err) if err.code() == Some("NOGROUP") => {
            ensure_status_group(conn, keys).await?;
            Ok(Vec::new())
        }
        Err(err) => Err(err.into()),
    }
}

async fn ensure_status_group(conn: &mut impl ConnectionLike, keys: &Keys) -> Result<(), QueueError> {
    let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(keys.status())
        .arg(STATUS_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Err(err) if err.code() != Some("BUSYGROUP") => Err(err.into()),
        _ => Ok(()),
    }
}

/// How `ack_status` leaves a finished execution's progress stream: the id of the last entry its commit archived
/// in PostgreSQL, or none when the stream had nothing to archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settle {
    pub execution: Uuid,
    pub archived_through: Option<String>,
}

/// Acknowledges and deletes applied status entries, and settles the progress streams of executions that
/// finished in them (`ack_status.lua`): deleted when the archive holds their newest entry, otherwise trimmed of
/// what was archived and given `progress_ttl`. One script call.
pub async fn ack_status(
    conn: &mut ConnectionManager,
    keys: &Keys,
    ids: &[&str],
    settle: &[Settle],
    progress_ttl: Duration,
) -> Result<(), QueueError> {
    let mut invocation = ACK_STATUS.script().arg(keys.prefix());
    invocation.arg(STATUS_GROUP).arg(progress_ttl.as_secs().max(1)).arg(ids.len()).arg(ids);
    for Settle { execution, archived_through } in settle {
        invocation.arg(execution.to_string()).arg(archived_through.as_deref().unwrap_or(""));
    }
    let _: i64 = invocation.invoke_async(conn).await?;
    Ok(())
}

/// The whole progress streams of `executions` (each capped at `PROGRESS_STREAM_MAXLEN` entries), in one round
/// trip; a missing stream reads as empty.
pub async fn read_progress_streams(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    executions: &[Uuid],
) -> Result<Vec<Vec<Entry>>, QueueError> {
    if executions.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for execution in executions {
        pipe.cmd("XRANGE").arg(keys.progress(&execution.to_string())).arg("-").arg("+");
    }
    let replies: Vec<Value> = pipe.query_async(conn).await?;
    Ok(replies.iter().map(parse_entries).collect())
}

/// One page of `XAUTOCLAIM` on the status stream: entries idle in other consumers for at least `min_idle`
/// move to `consumer`. Returns them and the cursor of the next page (`None` after the last).
pub async fn claim_stale_status(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    consumer: &str,
    min_idle: Duration,
    cursor: &str,
    count: usize,
) -> Result<(Vec<Entry>, Option<String>), QueueError> {
    let reply: Value = redis::cmd("XAUTOCLAIM")
        .arg(keys.status())
        .arg(STATUS_GROUP)
        .arg(consumer)
        .arg(min_idle.as_millis() as u64)
        .arg(cursor)
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    let Value::Array(parts) = reply else { return Ok((Vec::new(), None)) };
    let next = match parts.first() {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        _ => return Ok((Vec::new(), None)),
    };
    let entries = parts.get(1).map(parse_entries).unwrap_or_default();
    Ok((entries, (next != "0-0").then_some(next)))
}

/// Up to `count` entries of one execution's progress stream after entry `after`, blocking up to `block` when
/// there are none yet (use a connection of its own: the block holds it).
pub async fn read_progress(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    execution: Uuid,
    after: &str,
    count: usize,
    block: Duration,
) -> Result<Vec<Entry>, redis::RedisError> {
    let reply: Value = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(count)
        .arg("BLOCK")
        .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX))
        .arg("STREAMS")
        .arg(keys.progress(&execution.to_string()))
        .arg(after)
        .query_async(conn)
        .await?;
    Ok(parse_read(reply))
}

/// Entries of an `XREAD`/`XREADGROUP` reply (one stream, RESP2 or RESP3).
fn parse_read(reply: Value) -> Vec<Entry> {
    match reply {
        Value::Array(streams) => streams
            .into_iter()
            .flat_map(|stream| match stream {
                Value::Array(mut parts) if parts.len() == 2 => parse_entries(&parts.remove(1)),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().flat_map(|(_, entries)| parse_entries(&entries)).collect(),
        _ => Vec::new(),
    }
}

/// `[[id, [field, value, ...]], ...]`; entries deleted meanwhile come with nil fields and are skipped.
pub fn parse_entries(value: &Value) -> Vec<Entry> {
    let Value::Array(items) = value else { return Vec::new() };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else { return None };
            let [id, Value::Array(fields)] = &pair[..] else { return None };
            let id = match id {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                Value::SimpleString(s) => s.clone(),
                _ => return None,
            };
            let map = fields
                .chunks(2)
                .filter_map(|kv| match kv {
                    [Value::BulkString(k), v] => Some((String::from_utf8_lossy(k).into_owned(), v.clone())),
                    _ => None,
                })
                .collect();
            Some((id, map))
        })
        .collect()
}
