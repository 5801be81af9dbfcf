//! `GET /api/v1/executions/{id}/result` and `POST /api/v1/executions/{id}/cancel`.
//!
//! Cancel is PostgreSQL first, then Redis. The record moves to `cancelled` in one statement (only from queued,
//! dispatched or running); then the cancel key is set, which the dispatcher holding the lease sees on its next
//! heartbeat and stops the attempt, and the `withdraw` script takes a still-waiting execution out of its lane
//! and out of `retrying`. If Redis fails after the update the answer is 503: the record already says
//! `cancelled`, dispatchers skip cancelled executions when they claim them, and a repeated cancel of a cancelled
//! execution answers 202 again and runs the Redis part again, so retrying the request is safe.

use crate::auth::Scope;
use crate::error::{ApiError, problem};
use crate::params::{self, ParamsRejection, PathParams};
use crate::state::AppState;
use crate::views::ExecutionView;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flow_like_shared::protocol;
use flow_like_shared::record::{ExecutionStatus, executions, operator};
use uuid::Uuid;

/// The result document of a finished execution.
#[utoipa::path(
    get, path = "/api/v1/executions/{id}/result", operation_id = "getExecutionResult", tag = "executions",
    params(("id" = Uuid, Path, description = "Execution id")),
    responses(
        (status = 200, description = "The result document: `output` and per-node status, timings and attempts", content_type = "application/json", body = Object),
        (status = 404, description = "No such execution for this tenant, or its result document is gone from storage", body = crate::error::Problem),
        (status = 409, description = "Not finished yet, or finished without a result (e.g. cancelled while queued); the title names the status", body = crate::error::Problem),
        (status = 503, description = "A backing service is down; retry after Retry-After", body = crate::error::Problem),
    ),
    security(("api_key" = []))
)]
pub async fn result(
    State(state): State<AppState>,
    scope: Scope,
    id: Result<PathParams<Uuid>, ParamsRejection>,
) -> Result<Response, ApiError> {
    let id = params::path(id, "execution")?;
    let record = executions::get(&state.db, scope.tenant(), id).await?.ok_or(ApiError::NotFound("execution"))?;
    let status = record.status.as_str();
    if !record.status.is_terminal() {
        return Err(ApiError::Conflict(format!("execution is {status}: it has no result yet")));
    }
    // The execution exists; its state has no result (e.g. cancelled while queued): a conflict, like "not yet".
    let Some(key) = record.result_key else {
        return Err(ApiError::Conflict(format!("execution finished ({status}) without a result document")));
    };
    let Some(body) = state.storage.get(&state.storage.content_bucket, &key).await? else {
        tracing::warn!(execution_id = %id, key, "the record names a result document that storage does not have");
        return Ok(problem(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("execution finished ({status}) but its result document is missing from storage"),
            Vec::new(),
        ));
    };
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// Cancel an execution: a queued one never runs, a running one is stopped by its dispatcher.
#[utoipa::path(
    post, path = "/api/v1/executions/{id}/cancel", operation_id = "cancelExecution", tag = "executions",
    params(("id" = Uuid, Path, description = "Execution id")),
    responses(
        (status = 202, description = "Cancelled (also when it already was): a running attempt stops within a dispatcher heartbeat", body = ExecutionView),
        (status = 404, description = "No such execution for this tenant", body = crate::error::Problem),
        (status = 409, description = "Already finished; the title names the status", body = crate::error::Problem),
        (status = 503, description = "A backing service is down; the execution may already be cancelled, retrying is safe", body = crate::error::Problem),
    ),
    security(("api_key" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    scope: Scope,
    id: Result<PathParams<Uuid>, ParamsRejection>,
) -> Result<Response, ApiError> {
    let id = params::path(id, "execution")?;
    let record = match operator::cancel(&state.db, scope.tenant(), id).await? {
        operator::Cancel::NotFound => return Err(ApiError::NotFound("execution")),
        operator::Cancel::Cancelled { previous, record } => {
            tracing::info!(execution_id = %id, previous = previous.as_str(), "execution cancelled by request");
            record
        }
        operator::Cancel::AlreadyFinished(record) if record.status == ExecutionStatus::Cancelled => record,
        operator::Cancel::AlreadyFinished(record) => {
            return Err(ApiError::Conflict(format!(
                "execution already {}: there is nothing to cancel",
                record.status.as_str()
            )));
        }
    };
    let mut redis = state.redis.clone();
    let redis_part = async {
        protocol::request_cancel(&mut redis, &state.keys, id).await?;
        protocol::withdraw(&mut redis, &state.keys, id).await
    };
    // Whatever the Redis error, the record is cancelled and a retry is safe: say "retry", not "broken".
    redis_part.await.map_err(ApiError::QueueUnavailable)?;
    Ok((StatusCode::ACCEPTED, Json(ExecutionView::from(*record))).into_response())
}
