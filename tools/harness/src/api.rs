//! `TestApi`: a real API server on a free port, against the shared pool's PostgreSQL, Redis and S3 with a fresh
//! database, key prefix and buckets, plus the handles a test needs to check what it left behind.

use flow_like_api::config::ApiConfig;
use flow_like_shared::protocol::keys::Keys;
use flow_like_shared::record;
use flow_like_test_services::{ServiceConfigs, TestServices};
use redis::aio::ConnectionManager;
use serde_json::Value;
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const ADMIN_TOKEN: &str = "test-admin-token";

pub struct TestApi {
    pub base: String,
    /// The metrics listener's base URL (`/metrics` is not on the public port).
    pub metrics_base: String,
    pub http: reqwest::Client,
    pub configs: ServiceConfigs,
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub keys: Keys,
    pub storage: flow_like_shared::storage::Storage,
    shutdown: CancellationToken,
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn api_config(configs: &ServiceConfigs) -> ApiConfig {
    ApiConfig {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        metrics_listen: "127.0.0.1:0".parse().expect("literal address"),
        admin_token: Some(ADMIN_TOKEN.into()),
        migrate_on_start: true,
        max_body_bytes: 1024 * 1024,
        inline_input_max_bytes: 16 * 1024,
        submit_rate: 0.0,
        submit_burst: 0,
        api_key_cache_secs: 0,
        shutdown_grace_secs: 1,
        database: configs.database.clone(),
        redis: configs.redis.clone(),
        s3: configs.s3.clone(),
        trace: Default::default(),
    }
}

impl TestApi {
    /// A reconciler on this API's services, as a dispatcher runs it.
    pub fn reconciler(&self, grace: Duration) -> flow_like_dispatcher::reconciler::Reconciler {
        flow_like_dispatcher::reconciler::Reconciler {
            db: self.db.clone(),
            redis: self.redis.clone(),
            keys: self.keys.clone(),
            grace,
            storage: self.storage.clone(),
        }
    }

    /// An API with fresh state in the shared services.
    pub async fn start() -> anyhow::Result<Self> {
        let configs = TestServices::get().await?.fresh_configs().await?;
        Self::start_with(configs, |_| {}).await
    }

    /// An API on the given services, with settings adjusted by `tweak`.
    pub async fn start_with(configs: ServiceConfigs, tweak: impl FnOnce(&mut ApiConfig)) -> anyhow::Result<Self> {
        flow_like_shared::telemetry::install_crypto_provider();
        let mut config = api_config(&configs);
        tweak(&mut config);
        let state = flow_like_api::state(&config).await?;
        if config.migrate_on_start {
            record::migrate(&state.db).await?;
        }
        let db = state.db.clone();
        let redis = state.redis.clone();
        let keys = state.keys.clone();
        let storage = state.storage.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let metrics_base = format!("http://{}", metrics_listener.local_addr()?);
        let shutdown = CancellationToken::new();
        tokio::spawn(flow_like_api::serve(
            metrics_listener,
            flow_like_api::metrics_app(state.clone()),
            shutdown.clone(),
            Duration::from_secs(1),
        ));
        tokio::spawn(flow_like_api::serve(
            listener,
            flow_like_api::app(state),
            shutdown.clone(),
            Duration::from_secs(1),
        ));
        Ok(Self { base, metrics_base, http: reqwest::Client::new(), configs, db, redis, keys, storage, shutdown })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Issues an API key for `tenant` through the admin endpoint.
    pub async fn tenant_key(&self, tenant: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .post(self.url(&format!("/api/v1/tenants/{tenant}/api-keys")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?;
        anyhow::ensure!(response.status() == 201, "issuing a key failed: {}", response.status());
        let body: Value = response.json().await?;
        Ok(body["key"].as_str().unwrap_or_default().to_string())
    }

    /// POSTs a JSON body with a key.
    pub async fn post_json(&self, path: &str, key: &str, body: &Value) -> anyhow::Result<reqwest::Response> {
        Ok(self.http.post(self.url(path)).bearer_auth(key).json(body).send().await?)
    }

    pub async fn get(&self, path: &str, key: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self.http.get(self.url(path)).bearer_auth(key).send().await?)
    }

    /// Rows in `executions`.
    pub async fn execution_rows(&self) -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM executions").fetch_one(&self.db).await?;
        Ok(n)
    }

    /// Every Redis key under this API's prefix.
    pub async fn redis_keys(&self) -> anyhow::Result<Vec<String>> {
        let mut conn = self.redis.clone();
        let mut keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}:*", self.keys.prefix())).query_async(&mut conn).await?;
        keys.sort();
        Ok(keys)
    }

    /// Objects in the meta bucket.
    pub async fn meta_objects(&self) -> anyhow::Result<usize> {
        let listed =
            self.configs.s3_settings.client().list_objects_v2().bucket(&self.configs.s3.meta_bucket).send().await?;
        Ok(listed.contents().len())
    }
}
