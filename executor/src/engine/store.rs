//! The object store `object.get`/`object.put` use. The engine passes keys as written in the workflow (after
//! refusing unsafe ones); the implementation scopes them to the tenant.

use async_trait::async_trait;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Why the store could not serve a request.
#[derive(Debug, thiserror::Error)]
#[error("object store {operation} `{key}` failed: {source}")]
pub struct StoreError {
    pub operation: &'static str,
    pub key: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// The JSON stored under `key`, or `None` when there is none.
    async fn get(&self, key: &str) -> Result<Option<Value>, StoreError>;
    async fn put(&self, key: &str, value: &Value) -> Result<(), StoreError>;
}

/// An object store in memory, for tests and local runs.
#[derive(Debug, Default)]
pub struct MemoryObjectStore {
    objects: Mutex<BTreeMap<String, Value>>,
}

impl MemoryObjectStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of everything stored.
    pub fn snapshot(&self) -> BTreeMap<String, Value> {
        self.objects.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

#[async_trait]
impl ObjectStore for MemoryObjectStore {
    async fn get(&self, key: &str) -> Result<Option<Value>, StoreError> {
        let objects = self.objects.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(objects.get(key).cloned())
    }

    async fn put(&self, key: &str, value: &Value) -> Result<(), StoreError> {
        self.objects.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key.to_owned(), value.clone());
        Ok(())
    }
}
