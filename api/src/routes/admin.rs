//! Admin endpoints: issue and revoke tenants' API keys, set a tenant's limits, pause and resume a tenant or one
//! of its workflows. Authorized by the bootstrap `FLOWLIKE_ADMIN_TOKEN` or an admin key.

use crate::auth::Admin;
use crate::body::{Fields, JsonBody, OptionalJsonBody, RequestBody};
use crate::error::ApiError;
use crate::params::{self, ParamsRejection, PathParams};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use flow_like_shared::ids::valid_tenant_name;
use flow_like_shared::protocol::limits;
use flow_like_shared::record::{self, TenantLimits, api_keys};
use serde::Serialize;
use uuid::Uuid;

/// Body of `POST /tenants/{tenant}/api-keys` (optional).
#[derive(Debug, Default)]
pub struct NewApiKey {
    /// An admin key may also call the admin endpoints.
    pub admin: bool,
}

impl RequestBody for NewApiKey {
    fn from_object(object: serde_json::Map<String, serde_json::Value>) -> Result<Self, ApiError> {
        let mut fields = Fields::new("", object, &["admin"])?;
        Ok(Self { admin: fields.boolean("admin")?.unwrap_or(false) })
    }
}

/// A new key. `key` is shown only in this response; only its hash is stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssuedKey {
    pub id: Uuid,
    pub tenant: String,
    pub key: String,
    pub admin: bool,
}

/// A tenant name in the path (400 otherwise: the request changes nothing).
fn check_tenant(tenant: &str) -> Result<(), ApiError> {
    if valid_tenant_name(tenant) {
        Ok(())
    } else {
        Err(ApiError::Malformed(
            "path parameter `tenant`: a tenant name is 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit"
                .into(),
        ))
    }
}

/// Issue an API key for a tenant (the tenant is created on first use).
#[utoipa::path(
    post, path = "/api/v1/tenants/{tenant}/api-keys", operation_id = "createApiKey", tag = "admin",
    params(("tenant" = String, Path)),
    responses((status = 201, body = IssuedKey), (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem)),
    security(("api_key" = []))
)]
pub async fn create_key(
    State(state): State<AppState>,
    _admin: Admin,
    tenant: Result<PathParams<String>, ParamsRejection>,
    OptionalJsonBody(body): OptionalJsonBody<NewApiKey>,
) -> Result<(StatusCode, Json<IssuedKey>), ApiError> {
    let tenant = params::path(tenant, "tenant")?;
    check_tenant(&tenant)?;
    let issued = api_keys::issue(&state.db, &tenant, body.admin).await?;
    Ok((StatusCode::CREATED, Json(IssuedKey { id: issued.id, tenant, key: issued.key, admin: body.admin })))
}

/// Revoke an API key. Every API replica stops accepting it within `API_KEY_CACHE_SECS`.
#[utoipa::path(
    delete, path = "/api/v1/api-keys/{id}", operation_id = "revokeApiKey", tag = "admin",
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem)),
    security(("api_key" = []))
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    _admin: Admin,
    id: Result<PathParams<Uuid>, ParamsRejection>,
) -> Result<StatusCode, ApiError> {
    let id = params::path(id, "API key")?;
    if !api_keys::revoke(&state.db, id).await? {
        return Err(ApiError::NotFound("API key"));
    }
    state.key_cache.forget(id);
    Ok(StatusCode::NO_CONTENT)
}

/// Highest submit rate a tenant can be given, in submissions per second.
pub const MAX_SUBMIT_RATE: f64 = 1_000_000.0;
/// Highest fair-share weight (the lowest is just above 0).
pub const MAX_WEIGHT: f64 = 10_000.0;

/// A tenant's overrides; `null` (or absent) falls back to the default: the dispatchers' for concurrency, the
/// API's (`API_SUBMIT_RATE`, `API_SUBMIT_BURST`) for the submit rate, 1 for the weight. A PUT replaces them all.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LimitsBody {
    /// Most executions of this tenant running at once.
    #[schema(minimum = 0, maximum = 2147483647)]
    pub concurrency_limit: Option<i32>,
    /// Most executions of any one workflow of this tenant running at once.
    #[schema(minimum = 0, maximum = 2147483647)]
    pub workflow_limit: Option<i32>,
    /// This tenant's share of admissions when tenants compete for slots, relative to the others' (default 1).
    pub weight: Option<f64>,
    /// Submissions per second this tenant may sustain.
    pub submit_rate: Option<f64>,
    /// Submissions accepted at once after a quiet spell (the bucket's size).
    #[schema(minimum = 1, maximum = 2147483647)]
    pub submit_burst: Option<i32>,
}

impl RequestBody for LimitsBody {
    fn from_object(object: serde_json::Map<String, serde_json::Value>) -> Result<Self, ApiError> {
        let names = ["concurrency_limit", "workflow_limit", "weight", "submit_rate", "submit_burst"];
        let mut fields = Fields::new("", object, &names)?;
        let mut count = |name, min| fields.integer(name, min..=i64::from(i32::MAX)).map(|n| n.map(|n| n as i32));
        let (concurrency_limit, workflow_limit) = (count("concurrency_limit", 0)?, count("workflow_limit", 0)?);
        let submit_burst = count("submit_burst", 1)?;
        let submit_rate = fields.positive_number("submit_rate", MAX_SUBMIT_RATE)?;
        let weight = fields.positive_number("weight", MAX_WEIGHT)?;
        Ok(Self { concurrency_limit, workflow_limit, weight, submit_rate, submit_burst })
    }
}

impl From<&LimitsBody> for TenantLimits {
    fn from(body: &LimitsBody) -> Self {
        let LimitsBody { concurrency_limit, workflow_limit, weight, submit_rate, submit_burst } = *body;
        Self { concurrency_limit, workflow_limit, weight, submit_rate, submit_burst }
    }
}

/// Set a tenant's limits. Stored in PostgreSQL and applied at once: concurrency by the dispatchers' next
/// admission, the submit rate by every API replica's next submission.
#[utoipa::path(
    put, path = "/api/v1/tenants/{tenant}/limits", operation_id = "setTenantLimits", tag = "admin",
    params(("tenant" = String, Path)),
    responses((status = 200, body = LimitsBody), (status = 422, body = crate::error::Problem)),
    security(("api_key" = []))
)]
pub async fn put_limits(
    State(state): State<AppState>,
    _admin: Admin,
    tenant: Result<PathParams<String>, ParamsRejection>,
    body: JsonBody<LimitsBody>,
) -> Result<Json<LimitsBody>, ApiError> {
    let tenant = params::path(tenant, "tenant")?;
    check_tenant(&tenant)?;
    let body = body.value;
    let tenant_limits = TenantLimits::from(&body);
    record::set_tenant_limits(&state.db, &tenant, tenant_limits).await?;
    let mut redis = state.redis.clone();
    limits::publish_tenant(&mut redis, &state.keys, &tenant, tenant_limits).await?;
    state.rated_tenants.set(&tenant, body.submit_rate.is_some());
    Ok(Json(body))
}

/// Whether a tenant, or one workflow of it, is paused.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PauseState {
    pub tenant: String,
    /// The paused workflow; null when the pause is the whole tenant's.
    pub workflow: Option<String>,
    pub paused: bool,
}

/// Records the pause (or its end) in PostgreSQL, then tells the dispatchers through Redis.
async fn set_paused(
    state: &AppState,
    tenant: String,
    workflow: Option<String>,
    paused: bool,
) -> Result<Json<PauseState>, ApiError> {
    check_tenant(&tenant)?;
    if let Some(name) = &workflow {
        super::workflows::check_name(name)?;
    }
    let member = workflow.as_deref().unwrap_or(limits::WHOLE_TENANT);
    record::set_paused(&state.db, &tenant, member, paused).await?;
    let mut redis = state.redis.clone();
    limits::set_paused(&mut redis, &state.keys, &tenant, member, paused).await?;
    tracing::info!(tenant = %tenant, member, paused, "admission pause changed");
    Ok(Json(PauseState { tenant, workflow, paused }))
}

/// Pause a tenant: nothing of it is admitted (it stays queued, and submissions are still accepted); what runs
/// finishes. Idempotent.
#[utoipa::path(
    post, path = "/api/v1/tenants/{tenant}/pause", operation_id = "pauseTenant", tag = "admin",
    params(("tenant" = String, Path)),
    responses((status = 200, body = PauseState), (status = 400, body = crate::error::Problem), (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("api_key" = []))
)]
pub async fn pause_tenant(
    State(state): State<AppState>,
    _admin: Admin,
    tenant: Result<PathParams<String>, ParamsRejection>,
) -> Result<Json<PauseState>, ApiError> {
    set_paused(&state, params::path(tenant, "tenant")?, None, true).await
}

/// Resume a paused tenant: its queued work is admitted again at once. Idempotent.
#[utoipa::path(
    post, path = "/api/v1/tenants/{tenant}/resume", operation_id = "resumeTenant", tag = "admin",
    params(("tenant" = String, Path)),
    responses((status = 200, body = PauseState), (status = 400, body = crate::error::Problem), (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("api_key" = []))
)]
pub async fn resume_tenant(
    State(state): State<AppState>,
    _admin: Admin,
    tenant: Result<PathParams<String>, ParamsRejection>,
) -> Result<Json<PauseState>, ApiError> {
    set_paused(&state, params::path(tenant, "tenant")?, None, false).await
}

/// Pause one workflow of a tenant: none of its executions is admitted; the tenant's other workflows run (an
/// entry of the paused workflow at the head of a priority lane holds back that lane, as the per-workflow limit
/// does). Idempotent.
#[utoipa::path(
    post, path = "/api/v1/tenants/{tenant}/workflows/{name}/pause", operation_id = "pauseWorkflow", tag = "admin",
    params(("tenant" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = PauseState), (status = 400, body = crate::error::Problem), (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("api_key" = []))
)]
pub async fn pause_workflow(
    State(state): State<AppState>,
    _admin: Admin,
    path: Result<PathParams<(String, String)>, ParamsRejection>,
) -> Result<Json<PauseState>, ApiError> {
    let (tenant, name) = params::path(path, "workflow")?;
    set_paused(&state, tenant, Some(name), true).await
}

/// Resume one paused workflow of a tenant. Idempotent.
#[utoipa::path(
    post, path = "/api/v1/tenants/{tenant}/workflows/{name}/resume", operation_id = "resumeWorkflow", tag = "admin",
    params(("tenant" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = PauseState), (status = 400, body = crate::error::Problem), (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("api_key" = []))
)]
pub async fn resume_workflow(
    State(state): State<AppState>,
    _admin: Admin,
    path: Result<PathParams<(String, String)>, ParamsRejection>,
) -> Result<Json<PauseState>, ApiError> {
    let (tenant, name) = params::path(path, "workflow")?;
    set_paused(&state, tenant, Some(name), false).await
}
