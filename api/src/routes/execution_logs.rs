//! `GET /api/v1/executions/{id}/logs[?attempt=N]`: one attempt's log lines. Once the attempt has ended they come
//! from its log object in the content bucket (`executions/<id>/attempts/<n>/logs.jsonl`, written by the
//! executor); before that, and when the object is missing, from the `log` events of the execution's progress
//! (its Redis stream, and the PostgreSQL archive after the end). With `?follow=true` the lines come as
//! Server-Sent Events while the attempt runs (`crate::progress_stream`, view `Logs`), then an `end` event.

use crate::auth::Scope;
use crate::error::ApiError;
use crate::params::{self, ParamsRejection, PathParams, QueryParams};
use crate::progress_stream::LogLine;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use flow_like_shared::protocol::streams;
use flow_like_shared::record::{executions, progress};
use flow_like_shared::storage::layout;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// The attempt (from 1); the latest when absent.
    pub attempt: Option<u32>,
    /// Stream the lines as Server-Sent Events until the attempt ends (`event: log`, then `event: end`).
    pub follow: Option<bool>,
}

/// The log lines of one attempt.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptLogs {
    pub execution_id: Uuid,
    pub attempt: u32,
    /// `stored`: the attempt's log object (complete); `events`: its progress events so far.
    pub source: String,
    pub lines: Vec<LogLine>,
}

/// One attempt's log lines.
#[utoipa::path(
    get, path = "/api/v1/executions/{id}/logs", operation_id = "getExecutionLogs", tag = "executions",
    params(("id" = Uuid, Path, description = "Execution id"), LogParams),
    responses(
        (status = 200, description = "The lines (JSON); with `follow=true` an event stream: `event: log` with \
            a log line as `data` and the progress entry id as `id`, while the attempt runs; then `event: end` with \
            `{\"status\": ...}` (the attempt's outcome, or `retrying`)",
            content((AttemptLogs = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "A malformed query", body = crate::error::Problem),
        (status = 404, description = "No such execution for this tenant, or no such attempt", body = crate::error::Problem),
        (status = 503, description = "A backing service is down; retry after Retry-After", body = crate::error::Problem),
    ),
    security(("api_key" = []))
)]
pub async fn logs(
    State(state): State<AppState>,
    scope: Scope,
    id: Result<PathParams<Uuid>, ParamsRejection>,
    query: Result<QueryParams<LogParams>, ParamsRejection>,
) -> Result<Response, ApiError> {
    let id = params::path(id, "execution")?;
    let query = params::query(query)?;
    let record = executions::get(&state.db, scope.tenant(), id).await?.ok_or(ApiError::NotFound("execution"))?;
    let latest = u32::try_from(record.attempts).unwrap_or(0).max(1);
    let attempt = match query.attempt {
        None => latest,
        Some(0) => return Err(ApiError::Malformed("query parameter `attempt`: attempts count from 1".into())),
        Some(n) if n > latest => return Err(ApiError::NotFound("attempt")),
        Some(n) => n,
    };
    if query.follow == Some(true) {
        let view = crate::progress_stream::View::Logs { attempt };
        return crate::progress_stream::open(&state, &record, "0-0".to_owned(), view).await;
    }
    if let Some(object) = state.storage.get(&state.storage.content_bucket, &layout::logs(id, attempt)).await? {
        let lines = String::from_utf8_lossy(&object)
            .lines()
            .filter_map(|line| serde_json::from_str::<LogLine>(line).ok())
            .collect();
        return Ok(Json(AttemptLogs { execution_id: id, attempt, source: "stored".into(), lines }).into_response());
    }
    let lines = logged_events(&state, id, attempt).await?;
    Ok(Json(AttemptLogs { execution_id: id, attempt, source: "events".into(), lines }).into_response())
}

/// The `log` events of one attempt, from the whole progress (Redis first, then the archive).
async fn logged_events(state: &AppState, id: Uuid, attempt: u32) -> Result<Vec<LogLine>, ApiError> {
    let mut redis = state.redis.clone();
    let live = streams::read_progress_streams(&mut redis, &state.keys, &[id]).await?;
    let archived = progress::entries_after(&state.db, id, progress::EntryId::default()).await?;
    Ok(progress::merged(id, live.into_iter().flatten().collect(), archived)
        .into_iter()
        .map(|(_, entry)| entry)
        .filter(|entry| entry.attempt == attempt)
        .filter_map(|entry| LogLine::of(&entry))
        .collect())
}
