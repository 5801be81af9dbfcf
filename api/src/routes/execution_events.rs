//! `GET /api/v1/executions/{id}/events`: the execution's progress stream (`{prefix}:status:{id}`) as
//! Server-Sent Events; once the execution has finished, from the progress archive in PostgreSQL
//! (`record::progress`), with the same event ids, so a client resumes across the end.
//!
//! Each SSE event carries the Redis stream entry id as `id`, the event kind (`dispatched`, `started`, `node`,
//! `log`, `retrying`, `finished`) as `event`, and one JSON object as `data`: `execution`, `attempt`, `seq`,
//! `at` (ms since the epoch), `kind` and the event's own fields (a node event's own `attempt` as
//! `node_attempt`). A client resumes with `Last-Event-ID` (or `?last_event_id=`) and gets only the entries after
//! that one; without it the stream starts at the beginning.
//!
//! How the stream is read, and when it ends: `crate::progress_stream`.

use crate::auth::Scope;
use crate::error::ApiError;
use crate::params::{self, ParamsRejection, PathParams, QueryParams};
use crate::rules::is_entry_id;
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use flow_like_shared::record::executions;
use serde::Deserialize;
use uuid::Uuid;

/// Where to resume.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Resume strictly after this event id (the `Last-Event-ID` header wins when both are given).
    pub last_event_id: Option<String>,
}

/// Follow an execution's progress as Server-Sent Events.
#[utoipa::path(
    get, path = "/api/v1/executions/{id}/events", operation_id = "streamExecutionEvents", tag = "executions",
    params(
        ("id" = Uuid, Path, description = "Execution id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume strictly after this event id"),
        EventParams,
    ),
    responses(
        (status = 200, description = "An event stream: `id` is the stream entry id, `event` the kind (dispatched, started, node, log, retrying, finished), `data` a JSON object with execution, attempt, seq, at, kind and the event's fields. Ends after `finished`.", content_type = "text/event-stream", body = String),
        (status = 400, description = "Last-Event-ID is not an event id", body = crate::error::Problem),
        (status = 404, description = "No such execution for this tenant", body = crate::error::Problem),
        (status = 503, description = "Redis is down or too many event streams are open; retry after Retry-After", body = crate::error::Problem),
    ),
    security(("api_key" = []))
)]
pub async fn events(
    State(state): State<AppState>,
    scope: Scope,
    id: Result<PathParams<Uuid>, ParamsRejection>,
    query: Result<QueryParams<EventParams>, ParamsRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = params::path(id, "execution")?;
    let params = params::query(query)?;
    // Both are checked, whichever wins: a malformed value is refused even when the other one is fine.
    let entry_id = |value: Option<String>, what: &str| match value {
        Some(value) if !is_entry_id(&value) => {
            Err(ApiError::Malformed(format!("{what} must be an event id such as 1700000000000-0")))
        }
        value => Ok(value),
    };
    let header = headers
        .get("last-event-id")
        .map(|v| v.to_str().map(str::to_string).map_err(|_| ApiError::Malformed("Last-Event-ID is not text".into())))
        .transpose()?;
    // An empty header is a client that has no id yet: the same as none (the document says so).
    let header = entry_id(header.filter(|h| !h.is_empty()), "Last-Event-ID")?;
    let query = entry_id(params.last_event_id, "last_event_id")?;
    let after = header.or(query).unwrap_or_else(|| "0-0".to_string());
    let record = executions::get(&state.db, scope.tenant(), id).await?.ok_or(ApiError::NotFound("execution"))?;
    crate::progress_stream::open(&state, &record, after, crate::progress_stream::View::Events).await
}
