//! Release (`release.lua`): ends leases whose attempts are over, acknowledging and deleting their lane
//! entries, and wakes idle dispatchers when a slot was freed. Only the holder's own leases are released.

use super::keys::{DISPATCH_GROUP, Keys};
use super::message::QueueError;
use super::scripts::RELEASE;
use redis::aio::ConnectionManager;
use uuid::Uuid;

/// Releases this dispatcher's leases of `ids`; returns how many it held.
pub async fn release(
    conn: &mut ConnectionManager,
    keys: &Keys,
    dispatcher: &str,
    ids: &[Uuid],
) -> Result<u64, QueueError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let mut invocation = RELEASE.script().arg(keys.prefix());
    invocation.arg(DISPATCH_GROUP).arg(dispatcher);
    for id in ids {
        invocation.arg(id.to_string());
    }
    Ok(invocation.invoke_async(conn).await?)
}
