//! What every handler shares: the connections, settings and the key cache.

use crate::key_cache::KeyCache;
use crate::metrics::Metrics;
use crate::submit::batcher::Submitter;
use flow_like_shared::protocol::keys::Keys;
use flow_like_shared::storage::Storage;
use flow_like_shared::workflow::Limits;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub keys: Keys,
    pub storage: Storage,
    pub settings: Settings,
    pub key_cache: KeyCache,
    pub metrics: Arc<Metrics>,
    /// Dedicated Redis connections for Server-Sent Events (blocking reads).
    pub event_streams: crate::event_streams::EventStreams,
    /// The batcher of submissions without an Idempotency-Key.
    pub submitter: Submitter,
    /// Where the submit spans go (nowhere unless OTEL_EXPORTER_OTLP_ENDPOINT is set).
    pub tracer: flow_like_shared::trace::Tracer,
    /// The tenants with a submit rate of their own (charged even when the API's default is no limit).
    pub rated_tenants: crate::rated_tenants::RatedTenants,
}

/// The request-handling settings, separate from connection settings so tests can build them directly.
#[derive(Debug, Clone)]
pub struct Settings {
    pub admin_token: Option<String>,
    pub max_body_bytes: usize,
    pub inline_input_max_bytes: usize,
    pub workflow_limits: Limits,
    /// The submit rate limit of tenants without one of their own.
    pub submit_rate: flow_like_shared::protocol::submit_rate::RateDefaults,
}

impl axum::extract::FromRef<AppState> for crate::body::BodyLimit {
    fn from_ref(state: &AppState) -> Self {
        Self(state.settings.max_body_bytes)
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
