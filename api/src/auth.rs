//! Authentication: `Authorization: Bearer <key>` resolves to a tenant. Verified keys are cached for a few
//! seconds so the submit path does not query PostgreSQL for every request; revocation takes effect within the
//! cache lifetime (`API_KEY_CACHE_SECS`).

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use flow_like_shared::record::{api_keys, parse_api_key};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The authenticated caller: a tenant's key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: String,
    pub is_admin: bool,
}

/// An admin: the bootstrap `FLOWLIKE_ADMIN_TOKEN` or an admin API key.
#[derive(Debug, Clone)]
pub struct Admin;

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn authenticate(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let (prefix, secret) = parse_api_key(token).ok_or(ApiError::Unauthenticated)?;
    let record = match state.key_cache.get(prefix) {
        Some(record) => record,
        None => {
            let record = api_keys::find_live(&state.db, prefix).await?.ok_or(ApiError::Unauthenticated)?;
            state.key_cache.put(prefix, record.clone());
            record
        }
    };
    if !record.matches(secret) {
        return Err(ApiError::Unauthenticated);
    }
    Ok(Caller { tenant: record.tenant, is_admin: record.is_admin })
}

fn is_admin_token(state: &AppState, token: &str) -> bool {
    state.settings.admin_token.as_deref().is_some_and(|admin| {
        // Compare digests so the comparison takes the same time whatever the lengths.
        let a: [u8; 32] = Sha256::digest(admin.as_bytes()).into();
        let b: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        a.ct_eq(&b).into()
    })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or(ApiError::Unauthenticated)?;
        authenticate(state, token).await
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or(ApiError::Unauthenticated)?;
        if is_admin_token(state, token) {
            return Ok(Admin);
        }
        let caller = authenticate(state, token).await?;
        if caller.is_admin { Ok(Admin) } else { Err(ApiError::Forbidden) }
    }
}

/// Whose executions a read or an operator action may touch: the caller's own tenant (a tenant key), or every
/// tenant (the admin token or an admin key), which an admin may narrow to one with a `tenant` filter.
#[derive(Debug, Clone)]
pub enum Scope {
    Tenant(String),
    Admin,
}

impl Scope {
    /// The tenant the records are read for: `None` is every tenant.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Self::Tenant(tenant) => Some(tenant),
            Self::Admin => None,
        }
    }

    /// The tenant a request asking for `requested` covers: an admin's choice (none: every tenant); a tenant key
    /// covers its own tenant whatever it asks, and asking for another one is refused (403), not ignored.
    pub fn narrow(&self, requested: Option<&str>) -> Result<Option<String>, ApiError> {
        match (self, requested) {
            (Self::Admin, requested) => Ok(requested.map(str::to_owned)),
            (Self::Tenant(own), Some(other)) if other != own => Err(ApiError::OtherTenant),
            (Self::Tenant(own), _) => Ok(Some(own.clone())),
        }
    }
}

impl FromRequestParts<AppState> for Scope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or(ApiError::Unauthenticated)?;
        if is_admin_token(state, token) {
            return Ok(Self::Admin);
        }
        let caller = authenticate(state, token).await?;
        Ok(if caller.is_admin { Self::Admin } else { Self::Tenant(caller.tenant) })
    }
}
