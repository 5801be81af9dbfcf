//! The heartbeat (`renew.lua`): records a dispatcher as alive in `{prefix}:dispatchers` and extends the leases
//! it holds; reports per lease whether it is still held and whether a cancellation was requested. Leaving the
//! registry on shutdown is [`deregister`].

use super::keys::Keys;
use super::message::QueueError;
use super::reply::{millis, now_ms};
use super::scripts::RENEW;
use redis::aio::ConnectionManager;
use std::time::Duration;
use uuid::Uuid;

/// What a heartbeat found for one held lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Renewed,
    /// Renewed, and a cancellation of the execution was requested.
    CancelRequested,
    /// The lease is gone or held by another dispatcher.
    Lost,
}

/// Records `dispatcher` as alive and extends its leases of `ids` to `ttl` from now.
pub async fn renew(
    conn: &mut ConnectionManager,
    keys: &Keys,
    dispatcher: &str,
    ids: &[Uuid],
    ttl: Duration,
) -> Result<Vec<Renewal>, QueueError> {
    let now = now_ms();
    let mut invocation = RENEW.script().arg(keys.prefix());
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

/// Removes a stopping dispatcher from the registry of live dispatchers.
pub async fn deregister(conn: &mut ConnectionManager, keys: &Keys, dispatcher: &str) -> Result<(), QueueError> {
    let _: () = redis::cmd("ZREM").arg(keys.dispatchers()).arg(dispatcher).query_async(conn).await?;
    Ok(())
}
