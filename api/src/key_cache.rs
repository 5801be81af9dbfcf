//! The cache of verified API keys: the submit path does not query PostgreSQL for every request; revocation takes
//! effect within the cache lifetime (and at once on the replica that revoked the key, `forget`).

use flow_like_shared::record::ApiKeyRecord;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Upper bound on cached keys; the cache is cleared when it fills (keys are few in practice).
const MAX_CACHED_KEYS: usize = 10_000;

/// Verified API keys by prefix, for a few seconds (`API_KEY_CACHE_SECS`; 0 turns the cache off).
pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (ApiKeyRecord, Instant)>>,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }

    pub(crate) fn get(&self, prefix: &str) -> Option<ApiKeyRecord> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(prefix).filter(|(_, at)| at.elapsed() < self.ttl).map(|(record, _)| record.clone())
    }

    pub(crate) fn put(&self, prefix: &str, record: ApiKeyRecord) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_CACHED_KEYS {
            entries.clear();
        }
        entries.insert(prefix.to_string(), (record, Instant::now()));
    }

    pub fn forget(&self, id: uuid::Uuid) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (record, _)| record.id != id);
    }
}
