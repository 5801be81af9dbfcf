//! Which tenants have a submit rate of their own, as this replica knows it. When the API's default
//! (`API_SUBMIT_RATE`) is 0, only those tenants are charged, so an installation without rate limits pays no Redis
//! call for them on the submit path. The set is read from Redis (the `rate:<tenant>` fields of the limits hash)
//! at most once per [`REFRESH`]; a `PUT /tenants/{tenant}/limits` applies at once on the replica that took it and
//! within [`REFRESH`] on the others.

use flow_like_shared::protocol::QueueError;
use flow_like_shared::protocol::keys::Keys;
use flow_like_shared::protocol::limits;
use redis::aio::ConnectionManager;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How old the set may be before the next submission reads it again.
pub const REFRESH: Duration = Duration::from_secs(1);

type Snapshot = (Instant, Arc<HashSet<String>>);

#[derive(Default)]
pub struct RatedTenants {
    known: Mutex<Option<Snapshot>>,
    /// One reader at a time; the others wait for its answer instead of reading too.
    refreshing: tokio::sync::Mutex<()>,
}

impl RatedTenants {
    fn fresh(&self) -> Option<Arc<HashSet<String>>> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.as_ref().filter(|(at, _)| at.elapsed() < REFRESH).map(|(_, set)| set.clone())
    }

    /// Whether `tenant` has a submit rate of its own.
    pub async fn has_own_rate(&self, redis: &ConnectionManager, keys: &Keys, tenant: &str) -> Result<bool, QueueError> {
        if let Some(set) = self.fresh() {
            return Ok(set.contains(tenant));
        }
        let _reading = self.refreshing.lock().await;
        if let Some(set) = self.fresh() {
            return Ok(set.contains(tenant));
        }
        let mut conn = redis.clone();
        let set = Arc::new(limits::tenants_with_own_rate(&mut conn, keys).await?);
        let found = set.contains(tenant);
        *self.known.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), set));
        Ok(found)
    }

    /// This replica set (or cleared) `tenant`'s own rate: it applies from the next submission on.
    pub fn set(&self, tenant: &str, has_own_rate: bool) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, set)) = known.as_ref() {
            let mut updated = HashSet::clone(set);
            if has_own_rate {
                updated.insert(tenant.to_owned());
            } else {
                updated.remove(tenant);
            }
            *known = Some((*at, Arc::new(updated)));
        }
    }
}
