//! The engine's object store over S3: `object.get` / `object.put` keys live in the content bucket under the
//! tenant's prefix (`storage::layout::tenant_object`), so one tenant can never reach another's data.

use crate::engine::{ObjectStore, StoreError};
use async_trait::async_trait;
use flow_like_shared::storage::{Storage, layout};
use serde_json::Value;

/// One tenant's objects in the content bucket.
#[derive(Debug, Clone)]
pub struct TenantObjectStore {
    storage: Storage,
    tenant: String,
}

impl TenantObjectStore {
    pub fn new(storage: Storage, tenant: impl Into<String>) -> Self {
        Self { storage, tenant: tenant.into() }
    }

    fn object_key(&self, key: &str) -> String {
        layout::tenant_object(&self.tenant, key)
    }
}

#[async_trait]
impl ObjectStore for TenantObjectStore {
    async fn get(&self, key: &str) -> Result<Option<Value>, StoreError> {
        self.storage.get_json(&self.storage.content_bucket, &self.object_key(key)).await.map_err(|err| StoreError {
            operation: "get",
            key: key.to_owned(),
            source: Box::new(err),
        })
    }

    async fn put(&self, key: &str, value: &Value) -> Result<(), StoreError> {
        self.storage
            .put_json(&self.storage.content_bucket, &self.object_key(key), value)
            .await
            .map_err(|err| StoreError { operation: "put", key: key.to_owned(), source: Box::new(err) })
    }
}
