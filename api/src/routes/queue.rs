//! `GET /api/v1/queue`: the caller's tenant's queue depth, running count, limits, admission settings and usage.

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
    pub admission: AdmissionView,
}

/// How admission treats the tenant: its fair-share weight, its submit rate limit, what of it is paused.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdmissionView {
    /// Its share of admissions when tenants compete, relative to the others' weights.
    #[schema(exclusive_minimum = 0)]
    pub weight: f64,
    /// Submissions per second it may sustain (its own rate or the API's default); null: no limit.
    pub submit_rate: Option<f64>,
    /// Submissions it may make at once after a quiet spell; null when there is no limit.
    #[schema(minimum = 1)]
    pub submit_burst: Option<u32>,
    /// Nothing of the tenant is admitted (`POST /tenants/{tenant}/pause`).
    pub paused: bool,
    /// Its paused workflows.
    pub paused_workflows: Vec<String>,
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
    let own = limits::tenant_admission(&mut redis, &state.keys, &caller.tenant).await?;
    let defaults = state.settings.submit_rate;
    let submit_rate = own.submit_rate.or((defaults.rate > 0.0).then_some(defaults.rate));
    // As the rate script sizes the bucket: the tenant's burst, else the default, else the rate rounded up.
    let submit_burst = submit_rate.map(|rate| {
        own.submit_burst.or((defaults.burst > 0).then_some(defaults.burst)).unwrap_or(rate.ceil().max(1.0) as u32)
    });
    let paused = own.paused.iter().any(|m| m == limits::WHOLE_TENANT);
    let paused_workflows = own.paused.into_iter().filter(|m| m != limits::WHOLE_TENANT).collect();
    let admission = AdmissionView {
        weight: own.weight.filter(|w| *w > 0.0).unwrap_or(1.0),
        submit_rate,
        submit_burst,
        paused,
        paused_workflows,
    };
    Ok(Json(QueueView { tenant: caller.tenant, queue, limits, global_running, dispatchers_alive, admission }))
}
