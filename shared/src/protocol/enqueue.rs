//! Enqueue (`enqueue.lua`): puts an execution attempt on its tenant's lane, once, and wakes idle dispatchers.
//! The lane entry, the `queued` index and the tenant's place in the fair share are written together or not
//! at all, and a second enqueue of the same execution while it waits is a no-op. Promoting a due retry
//! (`retry::promote_due`) runs the same script with the retry's keys added, so the retry goes in the same step.

use super::keys::{DISPATCH_GROUP, Keys};
use super::message::{MAX_PRIORITY, QueueError, QueueMessage};
use super::scripts::ENQUEUE;
use redis::aio::ConnectionManager;

/// Whether an enqueue added an entry or found the execution already queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    Added { entry_id: String },
    AlreadyQueued { entry: String },
}

/// The enqueue script's call for one message (keys and arguments), shared by [`enqueue`] and [`enqueue_many`].
pub(crate) fn enqueue_invocation(
    keys: &Keys,
    message: &QueueMessage,
) -> Result<redis::ScriptInvocation<'static>, QueueError> {
    let priority = message.priority.min(MAX_PRIORITY);
    let mut invocation = ENQUEUE.script().prepare_invoke();
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
            ENQUEUE.script().load_async(conn).await?;
            loaded = true;
        }
        invocations = unknown_script;
    }
    Ok(results.into_iter().map(|r| r.unwrap_or_else(|| Err(QueueError::Malformed("no reply".into())))).collect())
}
