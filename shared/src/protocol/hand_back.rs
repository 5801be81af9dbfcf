//! Hand back (`hand_back.lua`): at the end of a drain, a dispatcher marks the leases of attempts still
//! running as expired, in one atomic step per lease, so another dispatcher takes them over at once (keeping
//! their slots) instead of after the lease TTL. A lease another dispatcher holds is left alone.

use super::keys::Keys;
use super::message::QueueError;
use super::scripts::HAND_BACK;
use redis::aio::ConnectionManager;
use uuid::Uuid;

/// Expires this dispatcher's lease of `id` now; false when the lease is not this dispatcher's.
pub async fn hand_back(
    conn: &mut ConnectionManager,
    keys: &Keys,
    dispatcher: &str,
    id: Uuid,
) -> Result<bool, QueueError> {
    let done: i64 =
        HAND_BACK.script().arg(keys.prefix()).arg(dispatcher).arg(id.to_string()).invoke_async(conn).await?;
    Ok(done == 1)
}
