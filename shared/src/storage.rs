//! S3 storage: the client built from `S3Config`, and the object layout. The meta bucket holds immutable inputs
//! the executor reads; the content bucket holds results, logs and `object.put` data, under per-execution,
//! per-attempt keys, with the attempt's manifest written last.

use crate::config::S3Config;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region, SharedCredentialsProvider};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("S3 request {operation} on {bucket}/{key} failed: {message}")]
    Request { operation: &'static str, bucket: String, key: String, message: String },
    #[error(
        "{missing} is empty: set S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY together, or leave both empty to use the \
         AWS default credential chain (IRSA, workload identity, instance profiles)"
    )]
    HalfSetKeys { missing: &'static str },
    #[error("object {bucket}/{key} is not valid JSON")]
    Decode {
        bucket: String,
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Object keys. Everything of one execution lives under `executions/<id>/`.
pub mod layout {
    use uuid::Uuid;

    /// Meta bucket: an input too large to keep in the record.
    pub fn input(execution: Uuid) -> String {
        format!("executions/{execution}/input.json")
    }

    /// Meta bucket: what the executor needs to run an execution (workflow snapshot, input, tenant).
    pub fn spec(execution: Uuid) -> String {
        format!("executions/{execution}/spec.json")
    }

    /// Content bucket: one attempt's result document.
    pub fn result(execution: Uuid, attempt: u32) -> String {
        format!("executions/{execution}/attempts/{attempt}/result.json")
    }

    /// Content bucket: one attempt's logs (JSON lines).
    pub fn logs(execution: Uuid, attempt: u32) -> String {
        format!("executions/{execution}/attempts/{attempt}/logs.jsonl")
    }

    /// Content bucket: written last; its presence marks the attempt complete.
    pub fn manifest(execution: Uuid, attempt: u32) -> String {
        format!("executions/{execution}/attempts/{attempt}/manifest.json")
    }

    /// Both buckets: everything of one execution (the pruner deletes it when the execution's retention ends).
    pub fn execution_prefix(execution: Uuid) -> String {
        format!("executions/{execution}/")
    }

    /// Content bucket: a tenant's `object.put` / `object.get` data.
    pub fn tenant_object(tenant: &str, key: &str) -> String {
        format!("tenants/{tenant}/objects/{key}")
    }
}

/// S3 access for one installation: the client and the two bucket names.
#[derive(Debug, Clone)]
pub struct Storage {
    client: Client,
    pub meta_bucket: String,
    pub content_bucket: String,
}

impl Storage {
    /// The client for `config`. With both static keys empty, credentials come from the AWS SDK's default chain
    /// (AWS_* environment, web identity token file as with IRSA, EKS Pod Identity, container and instance
    /// metadata), resolved at the first request and refreshed before they expire.
    pub async fn connect(config: &S3Config) -> Result<Self, StorageError> {
        let region = Region::new(config.region.clone());
        let credentials = match (config.access_key_id.is_empty(), config.secret_access_key.is_empty()) {
            (false, false) => SharedCredentialsProvider::new(Credentials::new(
                config.access_key_id.clone(),
                config.secret_access_key.clone(),
                None,
                None,
                "flow-like-config",
            )),
            (true, true) => SharedCredentialsProvider::new(
                aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                    .region(region.clone())
                    .build()
                    .await,
            ),
            (true, false) => return Err(StorageError::HalfSetKeys { missing: "S3_ACCESS_KEY_ID" }),
            (false, true) => return Err(StorageError::HalfSetKeys { missing: "S3_SECRET_ACCESS_KEY" }),
        };
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(30))
            .build();
        let mut builder = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(region)
            .credentials_provider(credentials)
            .force_path_style(config.force_path_style)
            .timeout_config(timeouts)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(2));
        if !config.endpoint.is_empty() {
            builder = builder.endpoint_url(config.endpoint.clone());
        }
        Ok(Self {
            client: Client::from_conf(builder.build()),
            meta_bucket: config.meta_bucket.clone(),
            content_bucket: config.content_bucket.clone(),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn put(&self, bucket: &str, key: &str, body: Bytes, content_type: &str) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| request_error("PutObject", bucket, key, e))?;
        Ok(())
    }

    pub async fn put_json(&self, bucket: &str, key: &str, value: &serde_json::Value) -> Result<(), StorageError> {
        let body = serde_json::to_vec(value).map_err(|source| StorageError::Decode {
            bucket: bucket.into(),
            key: key.into(),
            source,
        })?;
        self.put(bucket, key, Bytes::from(body), "application/json").await
    }

    /// The object's bytes, or `None` when it does not exist.
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Option<Bytes>, StorageError> {
        match self.client.get_object().bucket(bucket).key(key).send().await {
            Ok(output) => {
                let data = output.body.collect().await.map_err(|e| StorageError::Request {
                    operation: "GetObject",
                    bucket: bucket.into(),
                    key: key.into(),
                    message: e.to_string(),
                })?;
                Ok(Some(data.into_bytes()))
            }
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(err) => Err(request_error("GetObject", bucket, key, err)),
        }
    }

    pub async fn get_json(&self, bucket: &str, key: &str) -> Result<Option<serde_json::Value>, StorageError> {
        match self.get(bucket, key).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| StorageError::Decode {
                bucket: bucket.into(),
                key: key.into(),
                source,
            }),
        }
    }

    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| request_error("DeleteObject", bucket, key, e))?;
        Ok(())
    }

    /// Deletes every object under `prefix` in `bucket` (listing and deleting up to 1,000 keys per request);
    /// returns how many were deleted. Nothing under the prefix is not an error.
    pub async fn delete_prefix(&self, bucket: &str, prefix: &str) -> Result<usize, StorageError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let mut deleted = 0;
        loop {
            // Listed again from the start each round: what was deleted is gone, so no continuation token is needed.
            let listed = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .send()
                .await
                .map_err(|e| request_error("ListObjectsV2", bucket, prefix, e))?;
            let keys: Vec<ObjectIdentifier> = listed
                .contents()
                .iter()
                .filter_map(|object| object.key())
                .filter_map(|key| ObjectIdentifier::builder().key(key).build().ok())
                .collect();
            if keys.is_empty() {
                return Ok(deleted);
            }
            let count = keys.len();
            let delete = Delete::builder()
                .set_objects(Some(keys))
                .quiet(true)
                .build()
                .map_err(|e| request_error("DeleteObjects", bucket, prefix, e))?;
            let answer = self
                .client
                .delete_objects()
                .bucket(bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| request_error("DeleteObjects", bucket, prefix, e))?;
            if let Some(failed) = answer.errors().first() {
                return Err(StorageError::Request {
                    operation: "DeleteObjects",
                    bucket: bucket.into(),
                    key: failed.key().unwrap_or(prefix).into(),
                    message: failed.message().unwrap_or("refused").into(),
                });
            }
            deleted += count;
        }
    }

    /// Checks that both buckets answer (readiness).
    pub async fn ping(&self) -> Result<(), StorageError> {
        for bucket in [&self.meta_bucket, &self.content_bucket] {
            self.client
                .head_bucket()
                .bucket(bucket.as_str())
                .send()
                .await
                .map_err(|e| request_error("HeadBucket", bucket, "", e))?;
        }
        Ok(())
    }

    /// Stores a large execution input in the meta bucket and returns its key.
    pub async fn put_input(&self, execution: Uuid, input: Bytes) -> Result<String, StorageError> {
        let key = layout::input(execution);
        self.put(&self.meta_bucket, &key, input, "application/json").await?;
        Ok(key)
    }
}

fn request_error<E: std::error::Error>(operation: &'static str, bucket: &str, key: &str, err: E) -> StorageError {
    StorageError::Request {
        operation,
        bucket: bucket.into(),
        key: key.into(),
        message: aws_sdk_s3::error::DisplayErrorContext(err).to_string(),
    }
}
