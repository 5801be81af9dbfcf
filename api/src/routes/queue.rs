//! `GET /api/v1/queue`: the caller's tenant's queue depth, running count, limits and usage.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::rules::DISPATCHER_ALIVE_WITHIN;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use flow_like_shared::protocol::limits::{self, EffectiveLimits};
use flow_like_shared::protocol::{self, reads::TenantQueue};
use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueView {
    pub tenant: String,
    #[schema(value_type = Object)]
    pub queue: TenantQueue,
    #[schema(value_type = Object)]
    pub limits: EffectiveLimits,
    /// Executions running across all tenants.
    pub global_running: u64,
    /// Dispatchers with a recent heartbeat.
    pub dispatchers_alive: u64,
}

/// Queue depth, in-flight work and limits for the caller's tenant.
#[utoipa::path(
    get, path = "/api/v1/queue", operation_id = "getQueue", tag = "queue",
    responses((status = 200, body = QueueView), (status = 503, body = crate::error::Problem)),
    security(("api_key" = []))
)]
pub async fn get(State(state): State<AppState>, caller: Caller) -> Result<Json<QueueView>, ApiError> {
    let mut redis = state.redis.clone();
    let queue = protocol::reads::tenant_queue(&mut redis, &state.keys, &caller.tenant).await?;
    let limits = limits::effective(&mut redis, &state.keys, &caller.tenant).await?;
    let (global_running, dispatchers_alive) =
        protocol::reads::global_running(&mut redis, &state.keys, DISPATCHER_ALIVE_WITHIN).await?;
    Ok(Json(QueueView { tenant: caller.tenant, queue, limits, global_running, dispatchers_alive }))
}
