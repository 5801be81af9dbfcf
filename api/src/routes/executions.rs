//! `/api/v1/executions`: submit, read, list. Submitting parses the body here and follows the protocol of
//! `crate::submit` (commit first, then queue; idempotency keys); this module renders its answer.

use crate::auth::{Caller, Scope};
use crate::body::{Fields, JsonBody, RequestBody};
use crate::error::ApiError;
use crate::params::{self, ParamsRejection, PathParams, QueryParams};
use crate::rules::{self, WORKFLOW_NAME_RULE};
use crate::state::AppState;
use crate::submit::{self, SubmitExecution, Submitted, WorkflowRef};
use crate::views::{self, Accepted, ExecutionView};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use flow_like_shared::ids::valid_workflow_name;
use flow_like_shared::protocol::MAX_PRIORITY;
use flow_like_shared::record::executions::{self, ExecutionFilter, Page};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

impl RequestBody for SubmitExecution {
    fn from_object(object: serde_json::Map<String, serde_json::Value>) -> Result<Self, ApiError> {
        let mut fields = Fields::new("", object, &["workflow", "workflow_ref", "input", "priority", "labels"])?;
        let workflow = fields.object("workflow")?.map(|object| {
            let mut document = serde_json::Value::Object(object);
            crate::body::normalize_integers(&mut document);
            document
        });
        let workflow_ref = fields
            .object("workflow_ref")?
            .map(|object| {
                let mut r = Fields::new("/workflow_ref", object, &["name", "version"])?;
                let name =
                    r.string("name")?.ok_or_else(|| ApiError::invalid("/workflow_ref/name", "missing field `name`"))?;
                if !valid_workflow_name(&name) {
                    return Err(ApiError::invalid("/workflow_ref/name", WORKFLOW_NAME_RULE));
                }
                let version = r.integer("version", 1..=i64::from(i32::MAX))?.map(|v| v as i32);
                Ok::<_, ApiError>(WorkflowRef { name, version })
            })
            .transpose()?;
        let priority = fields.integer("priority", 0..=i64::from(MAX_PRIORITY))?.map(|p| p as u8);
        let labels = match fields.object("labels")? {
            None => BTreeMap::new(),
            Some(object) => object
                .into_iter()
                .map(|(key, value)| match value {
                    serde_json::Value::String(value) => Ok((key, value)),
                    other => Err(ApiError::invalid(
                        crate::body::pointer("/labels", &key),
                        format!("label values must be strings, not {}", crate::body::json_type(&other)),
                    )),
                })
                .collect::<Result<_, _>>()?,
        };
        let input = fields.any("input");
        Ok(Self { workflow, workflow_ref, input, priority, labels })
    }
}

/// Submit an execution.
#[utoipa::path(
    post, path = "/api/v1/executions", operation_id = "submitExecution", tag = "executions",
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body returns the original execution")),
    responses(
        (status = 202, description = "Committed and queued", body = Accepted),
        (status = 400, description = "Malformed JSON", body = crate::error::Problem),
        (status = 401, description = "Missing or invalid API key", body = crate::error::Problem),
        (status = 413, description = "Body too large", body = crate::error::Problem),
        (status = 415, description = "Not application/json", body = crate::error::Problem),
        (status = 422, description = "Invalid workflow or request, with JSON Pointers", body = crate::error::Problem),
        (status = 429, description = "Over the tenant's submit rate limit; nothing was written. Retry after \
            Retry-After (seconds); RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset describe the bucket \
            (also sent with a 202 when the tenant has a limit)", body = crate::error::Problem),
        (status = 503, description = "A backing service is down; retry after Retry-After", body = crate::error::Problem),
    ),
    security(("api_key" = []))
)]
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody<SubmitExecution>,
) -> Result<Response, ApiError> {
    let Submitted { accepted, replayed, rate } = submit::submit(&state, &caller.tenant, &headers, body).await?;
    let location = accepted.links.self_.clone();
    let mut response = views::with_location((StatusCode::ACCEPTED, Json(accepted)).into_response(), &location);
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if let Some(bucket) = rate {
        crate::error::rate_limit_headers(response.headers_mut(), &bucket);
    }
    Ok(response)
}

/// Read one execution.
#[utoipa::path(
    get, path = "/api/v1/executions/{id}", operation_id = "getExecution", tag = "executions",
    params(("id" = Uuid, Path, description = "Execution id")),
    responses(
        (status = 200, body = crate::waiting::ExecutionDetail),
        (status = 404, description = "No such execution for this tenant (an admin reads every tenant's)", body = crate::error::Problem),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    scope: Scope,
    id: Result<PathParams<Uuid>, ParamsRejection>,
) -> Result<Json<crate::waiting::ExecutionDetail>, ApiError> {
    let id = params::path(id, "execution")?;
    let record = executions::get(&state.db, scope.tenant(), id).await?.ok_or(ApiError::NotFound("execution"))?;
    Ok(Json(crate::waiting::detail(&state.redis, &state.keys, record).await))
}

/// Filters of the list endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// queued, dispatched, running, succeeded, failed, timed_out or cancelled.
    pub status: Option<String>,
    /// Workflow name.
    pub workflow: Option<String>,
    /// One label the executions carry, as `name=value`.
    pub label: Option<String>,
    /// Submitted at or after this time (RFC 3339).
    pub submitted_after: Option<DateTime<Utc>>,
    /// Submitted before this time (RFC 3339).
    pub submitted_before: Option<DateTime<Utc>>,
    /// Admins: only this tenant's (all tenants' when absent). A tenant key may name only its own tenant.
    pub tenant: Option<String>,
    /// Page size, 1-500 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of executions, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExecutionPage {
    pub items: Vec<ExecutionView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List executions, newest first: the caller's tenant's, or (admins) every tenant's.
#[utoipa::path(
    get, path = "/api/v1/executions", operation_id = "listExecutions", tag = "executions",
    params(ListParams),
    responses(
        (status = 200, body = ExecutionPage),
        (status = 400, description = "A malformed filter or cursor", body = crate::error::Problem),
        (status = 403, description = "A tenant key named another tenant", body = crate::error::Problem),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    scope: Scope,
    query: Result<QueryParams<ListParams>, ParamsRejection>,
) -> Result<Json<ExecutionPage>, ApiError> {
    let params = params::query(query)?;
    let statuses = params.status.as_deref().map(rules::parse_status).transpose()?.into_iter().collect();
    let limit = rules::page_limit(params.limit)?;
    let before = params.cursor.as_deref().map(rules::parse_cursor).transpose()?;
    let labels = params.label.as_deref().map(parse_label).transpose()?.into_iter().collect();
    rules::check_tenant_query(params.tenant.as_deref())?;
    let filter = ExecutionFilter {
        tenant: scope.narrow(params.tenant.as_deref())?,
        statuses,
        workflow: params.workflow.map(rules::check_workflow).transpose()?,
        labels,
        submitted_after: params.submitted_after,
        submitted_before: params.submitted_before,
    };
    let records = executions::list(&state.db, &filter, Page::NewestFirst { before, limit }).await?;
    let next_cursor = (records.len() as i64 == limit).then(|| records.last().map(|r| r.id.to_string())).flatten();
    Ok(Json(ExecutionPage { items: records.into_iter().map(ExecutionView::from).collect(), next_cursor }))
}

/// `name=value`.
fn parse_label(label: &str) -> Result<(String, String), ApiError> {
    match label.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(ApiError::Malformed(format!("label must be name=value, not {label:?}"))),
    }
}
