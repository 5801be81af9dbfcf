//! Withdraw and cancel: taking a still-waiting execution out of the queue (`withdraw.lua`: its lane entry, its
//! `queued` field and a pending retry, together), and asking the dispatcher holding a claimed one to stop it
//! (the cancel key, seen on that dispatcher's next heartbeat; the admission script drops a cancelled entry).

use super::keys::Keys;
use super::message::QueueError;
use super::scripts::WITHDRAW;
use redis::aio::ConnectionManager;
use uuid::Uuid;

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
    let (lane, retry): (i64, i64) = WITHDRAW
        .script()
        .key(keys.queued())
        .key(keys.retrying())
        .key(keys.retry(&id))
        .arg(&id)
        .invoke_async(conn)
        .await?;
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

/// [`request_cancel`] and [`withdraw`] for many executions, sent together (the connection is multiplexed, so
/// the commands share round trips).
pub async fn cancel_many(conn: &ConnectionManager, keys: &Keys, executions: &[Uuid]) -> Result<(), QueueError> {
    let each = executions.iter().map(|&id| {
        let mut conn = conn.clone();
        async move {
            request_cancel(&mut conn, keys, id).await?;
            withdraw(&mut conn, keys, id).await.map(|_| ())
        }
    });
    futures::future::try_join_all(each).await.map(|_| ())
}
