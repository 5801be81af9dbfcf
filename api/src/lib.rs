//! flow-like-api: the HTTP API. `app` builds the router (tests drive it without a socket); `run` serves it with
//! a two-phase shutdown.

pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod event_streams;
pub mod key_cache;
pub mod metrics;
pub mod openapi;
pub mod params;
pub mod progress_stream;
pub mod rated_tenants;
pub mod redrive;
pub mod routes;
pub mod rules;
pub mod state;
pub mod submit;
pub mod views;
pub mod waiting;

use crate::config::ApiConfig;
use crate::state::{AppState, Inner, Settings};
use axum::Router;
use axum::routing::{delete, get, post, put};
use flow_like_shared::protocol::keys::Keys;
use flow_like_shared::storage::Storage;
use flow_like_shared::workflow::Limits;
use flow_like_shared::{protocol, record};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connecting to PostgreSQL failed")]
    Database(#[from] record::RecordError),
    #[error("connecting to Redis failed")]
    Redis(#[from] protocol::QueueError),
    #[error("the Redis settings are invalid")]
    RedisSettings(#[from] flow_like_shared::protocol::connection::RedisSetupError),
    #[error("S3 settings are invalid")]
    Storage(#[from] flow_like_shared::storage::StorageError),
    #[error("binding {addr} failed")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving HTTP failed")]
    Serve(#[source] std::io::Error),
    #[error("the trace settings are invalid")]
    Trace(#[from] flow_like_shared::trace::TraceSetupError),
}

/// Builds the shared state from settings; connections are lazy, so this works while services are down.
pub async fn state(config: &ApiConfig) -> Result<AppState, RunError> {
    let db = record::connect_lazy(&config.database)?;
    let redis = protocol::connect_lazy(&config.redis)?;
    let keys = Keys::new(config.redis.prefix.clone());
    let submitter = submit::Submitter::new(db.clone(), redis.clone(), keys.clone());
    Ok(AppState(Arc::new(Inner {
        db,
        redis,
        keys,
        storage: Storage::connect(&config.s3).await?,
        settings: Settings {
            admin_token: config.admin_token.clone().filter(|t| !t.is_empty()),
            max_body_bytes: config.max_body_bytes,
            inline_input_max_bytes: config.inline_input_max_bytes,
            workflow_limits: Limits::default(),
            submit_rate: protocol::submit_rate::RateDefaults { rate: config.submit_rate, burst: config.submit_burst },
        },
        key_cache: key_cache::KeyCache::new(Duration::from_secs(config.api_key_cache_secs)),
        metrics: Arc::new(metrics::Metrics::default()),
        event_streams: event_streams::EventStreams::new(&config.redis)?,
        submitter,
        tracer: flow_like_shared::trace::Tracer::from_config(&config.trace, "flow-like-api")?,
        rated_tenants: rated_tenants::RatedTenants::default(),
    })))
}

/// The router with every route.
pub fn app(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/executions", post(routes::executions::submit).get(routes::executions::list))
        .route("/executions/cancel", post(routes::bulk::cancel))
        .route("/executions/{id}", get(routes::executions::get))
        .route("/executions/{id}/events", get(routes::execution_events::events))
        .route("/executions/{id}/result", get(routes::execution_ops::result))
        .route("/executions/{id}/logs", get(routes::execution_logs::logs))
        .route("/executions/{id}/cancel", post(routes::execution_ops::cancel))
        .route("/dead-letters", get(routes::dead_letters::list))
        .route("/dead-letters/redrive", post(routes::bulk::redrive))
        .route("/dead-letters/{entry_id}/redrive", post(routes::dead_letters::redrive))
        .route("/workflows/{name}", put(routes::workflows::put).get(routes::workflows::get_latest))
        .route("/workflows/{name}/versions/{version}", get(routes::workflows::get_version))
        .route("/queue", get(routes::queue::get))
        .route("/tenants/{tenant}/api-keys", post(routes::admin::create_key))
        .route("/tenants/{tenant}/limits", put(routes::admin::put_limits))
        .route("/tenants/{tenant}/pause", post(routes::admin::pause_tenant))
        .route("/tenants/{tenant}/resume", post(routes::admin::resume_tenant))
        .route("/tenants/{tenant}/workflows/{name}/pause", post(routes::admin::pause_workflow))
        .route("/tenants/{tenant}/workflows/{name}/resume", post(routes::admin::resume_workflow))
        .route("/api-keys/{id}", delete(routes::admin::revoke_key));
    Router::new()
        .nest("/api/v1", v1)
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/openapi.json", get(|| async { axum::Json(openapi::document()) }))
        .layer(axum::middleware::from_fn_with_state(state.metrics.clone(), metrics::track))
        .with_state(state)
}

/// The metrics listener's router: `/metrics` only (Prometheus text), apart from the public routes.
pub fn metrics_app(state: AppState) -> Router {
    Router::new().route("/metrics", get(routes::health::metrics)).with_state(state)
}

/// Serves until `shutdown` is cancelled, then stops accepting connections and lets in-flight requests finish
/// for at most `API_SHUTDOWN_GRACE_SECS`.
pub async fn run(config: ApiConfig, shutdown: CancellationToken) -> Result<(), RunError> {
    // Settings no connection can succeed with end the start-up here, with the setting named.
    config.redis.check().await?;
    let state = state(&config).await?;
    if config.migrate_on_start {
        record::migrate(&state.db).await?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| RunError::Bind { addr: config.listen, source })?;
    let metrics_listener = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .map_err(|source| RunError::Bind { addr: config.metrics_listen, source })?;
    tracing::info!(listen = %config.listen, metrics_listen = %config.metrics_listen, "API listening");
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let metrics = serve(metrics_listener, metrics_app(state.clone()), shutdown.clone(), grace);
    // The first listener to fail ends both.
    tokio::try_join!(serve(listener, app(state), shutdown, grace), metrics).map(|_| ())
}

/// Serves on a bound listener (tests bind port 0 themselves).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> Result<(), RunError> {
    let draining = shutdown.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move { draining.cancelled().await });
    tokio::select! {
        result = server => result.map_err(RunError::Serve),
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("in-flight requests did not finish within the shutdown grace period");
            Ok(())
        }
    }
}
