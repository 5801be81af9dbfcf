//! Admin endpoints on the dead-letter stream (`{prefix}:dead`): list the queue messages the dispatchers gave up
//! on, and redrive one (its execution gets one more attempt; `crate::redrive` says how).

use crate::auth::Admin;
use crate::error::ApiError;
use crate::params::{self, ParamsRejection, PathParams, QueryParams};
use crate::rules::{self, is_entry_id};
use crate::state::AppState;
use crate::views::ExecutionView;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use flow_like_shared::protocol;
use flow_like_shared::protocol::dead_letter::DeadLetter;
use serde::{Deserialize, Serialize};

/// Paging of the dead-letter list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterParams {
    /// Page size, 1-500 (default 50).
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One dead-lettered queue message. Fields the entry lacks (or that do not parse) are null.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetterView {
    /// The dead-letter stream entry id; redrive with it.
    pub entry_id: String,
    pub execution_id: String,
    pub tenant: String,
    pub workflow: String,
    pub priority: Option<u8>,
    /// The attempt the message was for.
    pub attempt: Option<u32>,
    pub reason: String,
    pub dead_at: Option<DateTime<Utc>>,
    /// How many times the message had been delivered.
    pub deliveries: Option<u64>,
}

impl From<DeadLetter> for DeadLetterView {
    fn from(d: DeadLetter) -> Self {
        Self {
            dead_at: d.dead_at_ms.and_then(DateTime::<Utc>::from_timestamp_millis),
            entry_id: d.entry_id,
            execution_id: d.execution_id,
            tenant: d.tenant,
            workflow: d.workflow,
            priority: d.priority,
            attempt: d.attempt,
            reason: d.reason,
            deliveries: d.deliveries,
        }
    }
}

/// One page of dead letters, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetterPage {
    pub items: Vec<DeadLetterView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List dead-lettered queue messages, newest first.
#[utoipa::path(
    get, path = "/api/v1/dead-letters", operation_id = "listDeadLetters", tag = "admin",
    params(DeadLetterParams),
    responses(
        (status = 200, body = DeadLetterPage),
        (status = 400, description = "Bad limit or cursor", body = crate::error::Problem),
        (status = 401, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem),
        (status = 503, description = "Redis is down; retry after Retry-After", body = crate::error::Problem),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    query: Result<QueryParams<DeadLetterParams>, ParamsRejection>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let params = params::query(query)?;
    let limit = rules::page_limit(params.limit)?;
    let cursor = params.cursor;
    if cursor.as_deref().is_some_and(|c| !is_entry_id(c)) {
        return Err(ApiError::Malformed("cursor is not one this API issued".into()));
    }
    let mut redis = state.redis.clone();
    let letters = protocol::dead_letter::dead_letters(&mut redis, &state.keys, cursor.as_deref(), limit).await?;
    let next_cursor = (letters.len() == limit).then(|| letters.last().map(|l| l.entry_id.clone())).flatten();
    Ok(Json(DeadLetterPage { items: letters.into_iter().map(DeadLetterView::from).collect(), next_cursor }))
}

/// What a redrive did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Redriven {
    /// The dead-letter entry, now deleted.
    pub entry_id: String,
    /// The execution, `queued` again for attempt `attempts`.
    pub execution: ExecutionView,
}

/// Redrive a dead letter: its `failed` execution is queued again for one more attempt.
#[utoipa::path(
    post, path = "/api/v1/dead-letters/{entry_id}/redrive", operation_id = "redriveDeadLetter", tag = "admin",
    params(("entry_id" = String, Path, description = "Dead-letter entry id")),
    responses(
        (status = 202, description = "Queued again; the dead letter is deleted", body = Redriven),
        (status = 401, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem),
        (status = 404, description = "No such dead letter", body = crate::error::Problem),
        (status = 409, description = "Its execution is not failed (the title names the status); nothing changed", body = crate::error::Problem),
        (status = 503, description = "A backing service is down. If the execution was already queued again the reconciler enqueues it", body = crate::error::Problem),
    ),
    security(("api_key" = []))
)]
pub async fn redrive(
    State(state): State<AppState>,
    _admin: Admin,
    entry_id: Result<PathParams<String>, ParamsRejection>,
) -> Result<(StatusCode, Json<Redriven>), ApiError> {
    let entry_id = params::path(entry_id, "dead letter")?;
    if !is_entry_id(&entry_id) {
        return Err(ApiError::NotFound("dead letter"));
    }
    let mut redis = state.redis.clone();
    let letter = protocol::dead_letter::read_dead_letter(&mut redis, &state.keys, &entry_id)
        .await?
        .ok_or(ApiError::NotFound("dead letter"))?;
    let execution = crate::redrive::redrive_letter(&state, &letter).await?;
    Ok((StatusCode::ACCEPTED, Json(Redriven { entry_id, execution })))
}
