//! Admin endpoints: issue and revoke tenants' API keys, set a tenant's concurrency limits. Authorized by the
//! bootstrap `FLOWLIKE_ADMIN_TOKEN` or an admin key.

use crate::auth::Admin;
use crate::body::{JsonBody, OptionalJsonBody};
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use flow_like_shared::ids::valid_tenant_name;
use flow_like_shared::limits;
use flow_like_shared::record::{self, TenantLimits, api_keys};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// An admin key may also call the admin endpoints.
    #[serde(default)]
    pub admin: bool,
}

/// A new key. `key` is shown only in this response; only its hash is stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssuedKey {
    pub id: Uuid,
    pub tenant: String,
    pub key: String,
    pub admin: bool,
}

fn check_tenant(tenant: &str) -> Result<(), ApiError> {
    if valid_tenant_name(tenant) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "",
            "a tenant name is 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit",
        ))
    }
}

/// Issue an API key for a tenant (the tenant is created on first use).
#[utoipa::path(
    post, path = "/api/v1/tenants/{tenant}/api-keys", tag = "admin",
    params(("tenant" = String, Path)),
    request_body(content = Option<NewApiKey>),
    responses((status = 201, body = IssuedKey), (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem)),
    security(("api_key" = []))
)]
pub async fn create_key(
    State(state): State<AppState>,
    _admin: Admin,
    tenant: Result<Path<String>, PathRejection>,
    OptionalJsonBody(body): OptionalJsonBody<NewApiKey>,
) -> Result<(StatusCode, Json<IssuedKey>), ApiError> {
    let tenant = super::path(tenant, "tenant")?;
    check_tenant(&tenant)?;
    let issued = api_keys::issue(&state.db, &tenant, body.admin).await?;
    Ok((StatusCode::CREATED, Json(IssuedKey { id: issued.id, tenant, key: issued.key, admin: body.admin })))
}

/// Revoke an API key. Every API replica stops accepting it within `API_KEY_CACHE_SECS`.
#[utoipa::path(
    delete, path = "/api/v1/api-keys/{id}", tag = "admin",
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem)),
    security(("api_key" = []))
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    _admin: Admin,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = super::path(id, "API key")?;
    if !api_keys::revoke(&state.db, id).await? {
        return Err(ApiError::NotFound("API key"));
    }
    state.key_cache.forget(id);
    Ok(StatusCode::NO_CONTENT)
}

/// A tenant's concurrency overrides; `null` falls back to the dispatcher's default.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsBody {
    /// Most executions of this tenant running at once.
    pub concurrency_limit: Option<u32>,
    /// Most executions of any one workflow of this tenant running at once.
    pub workflow_limit: Option<u32>,
}

/// Set a tenant's concurrency limits. Stored in PostgreSQL and applied by the dispatchers at once.
#[utoipa::path(
    put, path = "/api/v1/tenants/{tenant}/limits", tag = "admin",
    params(("tenant" = String, Path)),
    request_body = LimitsBody,
    responses((status = 200, body = LimitsBody), (status = 422, body = crate::error::Problem)),
    security(("api_key" = []))
)]
pub async fn put_limits(
    State(state): State<AppState>,
    _admin: Admin,
    tenant: Result<Path<String>, PathRejection>,
    body: JsonBody<LimitsBody>,
) -> Result<Json<LimitsBody>, ApiError> {
    let tenant = super::path(tenant, "tenant")?;
    check_tenant(&tenant)?;
    let body = body.value;
    let to_i32 = |v: Option<u32>, pointer: &str| {
        v.map(|n| i32::try_from(n).map_err(|_| ApiError::invalid(pointer, "too large"))).transpose()
    };
    let tenant_limits = TenantLimits {
        concurrency_limit: to_i32(body.concurrency_limit, "/concurrency_limit")?,
        workflow_limit: to_i32(body.workflow_limit, "/workflow_limit")?,
    };
    record::set_tenant_limits(&state.db, &tenant, tenant_limits).await?;
    let mut redis = state.redis.clone();
    limits::publish_tenant(&mut redis, &state.keys, &tenant, tenant_limits).await?;
    Ok(Json(body))
}
