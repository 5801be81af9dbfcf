//! `/api/v1/executions`: submit, read, list. The submit path commits to PostgreSQL first and answers 202 only
//! after that commit; the queue entry follows. If the enqueue fails the execution is withdrawn and the client
//! gets 503; if even the withdrawal fails, the execution stays committed and the reconciler queues it later,
//! so accepted work is never lost.

use crate::auth::Caller;
use crate::body::{Fields, JsonBody, RequestBody};
use crate::error::{ApiError, InvalidPart};
use crate::state::AppState;
use crate::submit::{Committed, Submission};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use flow_like_shared::ids::valid_workflow_name;
use flow_like_shared::queue::{self, DEFAULT_PRIORITY, MAX_PRIORITY, QueueBody, QueueMessage};
use flow_like_shared::record::executions::{self, ExecutionFilter, ExecutionRecord, IdempotentInsert, NewExecution};
use flow_like_shared::record::workflows;
use flow_like_shared::trace::{Span, SpanContext, SpanKind};
use flow_like_shared::workflow;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use uuid::Uuid;

const MAX_LABELS: usize = 32;
const MAX_LABEL_BYTES: usize = 256;
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;
/// Every execution status, as the API spells them.
pub const STATUSES: &[&str] = &["queued", "dispatched", "running", "succeeded", "failed", "timed_out", "cancelled"];

/// What a workflow name is, for refusals.
pub const WORKFLOW_NAME_RULE: &str =
    "a workflow name is 1-128 characters of a-z, 0-9, '-', '.', '_', starting with a letter or digit";
/// Name of an execution submitted with an inline workflow that has no `name`.
const INLINE_WORKFLOW_NAME: &str = "inline";

/// A registered workflow, by name and optionally version (latest when absent).
#[derive(Debug, Clone)]
pub struct WorkflowRef {
    pub name: String,
    pub version: Option<i32>,
}

/// Body of `POST /api/v1/executions`: exactly one of `workflow` and `workflow_ref`. Its schema in the OpenAPI
/// document is written beside the parser, in `crate::openapi::schemas`.
#[derive(Debug)]
pub struct SubmitExecution {
    /// An inline workflow document.
    pub workflow: Option<serde_json::Value>,
    pub workflow_ref: Option<WorkflowRef>,
    /// The execution's input: any JSON (absent is `null`).
    pub input: serde_json::Value,
    /// 0 (lowest) to 9 (highest); default 5. Orders work within a tenant.
    pub priority: Option<u8>,
    pub labels: BTreeMap<String, String>,
}

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

/// Links to an execution's resources.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExecutionLinks {
    #[serde(rename = "self")]
    pub self_: String,
    pub events: String,
    pub result: String,
}

impl ExecutionLinks {
    fn new(id: Uuid) -> Self {
        let base = format!("/api/v1/executions/{id}");
        Self { events: format!("{base}/events"), result: format!("{base}/result"), self_: base }
    }
}

/// The answer to a submission.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub id: Uuid,
    pub status: String,
    pub workflow: String,
    pub workflow_version: Option<i32>,
    pub priority: u8,
    pub queued_at: DateTime<Utc>,
    pub links: ExecutionLinks,
}

/// Moments in an execution's life.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Timeline {
    pub queued_at: DateTime<Utc>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// An execution as `GET /api/v1/executions/{id}` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExecutionView {
    pub id: Uuid,
    /// queued, dispatched, running, succeeded, failed, timed_out or cancelled.
    pub status: String,
    pub workflow: String,
    pub workflow_version: Option<i32>,
    pub priority: i16,
    #[schema(value_type = Object)]
    pub labels: serde_json::Value,
    pub attempts: i32,
    pub error: Option<String>,
    pub timeline: Timeline,
    /// Link to the result document, once there is one.
    pub result: Option<String>,
    pub links: ExecutionLinks,
}

impl From<ExecutionRecord> for ExecutionView {
    fn from(r: ExecutionRecord) -> Self {
        Self {
            id: r.id,
            status: r.status.as_str().to_string(),
            workflow: r.workflow_name,
            workflow_version: r.workflow_version,
            priority: r.priority,
            labels: r.labels,
            attempts: r.attempts,
            error: r.error,
            timeline: Timeline {
                queued_at: r.queued_at,
                claimed_at: r.claimed_at,
                dispatched_at: r.dispatched_at,
                started_at: r.started_at,
                finished_at: r.finished_at,
            },
            result: r.result_key.map(|_| format!("/api/v1/executions/{}/result", r.id)),
            links: ExecutionLinks::new(r.id),
        }
    }
}

/// What the submit path resolved the request's workflow to.
struct ResolvedWorkflow {
    name: String,
    version: Option<i32>,
    document: serde_json::Value,
}

fn prefix_pointers(prefix: &str, errors: workflow::ValidationErrors) -> ApiError {
    let errors: Vec<InvalidPart> = errors
        .0
        .into_iter()
        .map(|e| InvalidPart { pointer: format!("{prefix}{}", e.pointer), message: e.message })
        .collect();
    let title = match errors.as_slice() {
        [one] => format!("invalid workflow: {}", one.message),
        many => format!("invalid workflow: {} problems", many.len()),
    };
    ApiError::Invalid { title, errors }
}

/// Takes the inline workflow out of the request (no copy of the document) or loads the referenced one.
async fn resolve_workflow(
    state: &AppState,
    tenant: &str,
    request: &mut SubmitExecution,
) -> Result<ResolvedWorkflow, ApiError> {
    match (request.workflow.take(), &request.workflow_ref) {
        (Some(document), None) => {
            let validated = workflow::validate(&document, &state.settings.workflow_limits)
                .map_err(|errors| prefix_pointers("/workflow", errors))?;
            let name = validated.workflow().name.clone().unwrap_or_else(|| INLINE_WORKFLOW_NAME.into());
            if !valid_workflow_name(&name) {
                return Err(ApiError::invalid("/workflow/name", WORKFLOW_NAME_RULE));
            }
            Ok(ResolvedWorkflow { name, version: None, document })
        }
        (None, Some(reference)) => {
            let found = workflows::get(&state.db, tenant, &reference.name, reference.version).await?;
            let found = found.ok_or_else(|| {
                ApiError::invalid(
                    "/workflow_ref",
                    format!("no registered workflow {:?} with that version", reference.name),
                )
            })?;
            Ok(ResolvedWorkflow { name: found.name, version: Some(found.version), document: found.document })
        }
        (Some(_), Some(_)) => Err(ApiError::invalid("/workflow_ref", "give either workflow or workflow_ref, not both")),
        (None, None) => Err(ApiError::invalid("", "a workflow or a workflow_ref is required")),
    }
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if labels.len() > MAX_LABELS {
        return Err(ApiError::invalid("/labels", format!("at most {MAX_LABELS} labels")));
    }
    for (key, value) in labels {
        if key.is_empty() || key.len() > MAX_LABEL_BYTES || value.len() > MAX_LABEL_BYTES {
            return Err(ApiError::invalid(
                crate::body::pointer("/labels", key),
                format!("label keys must be 1-{MAX_LABEL_BYTES} bytes and values at most {MAX_LABEL_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().map_err(|_| ApiError::Malformed("Idempotency-Key must be visible ASCII".into()))?;
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(ApiError::Malformed(format!("Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_BYTES} characters")));
    }
    Ok(Some(key))
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
    let id = Uuid::now_v7();
    let span = state.tracer.is_enabled().then(|| submit_span(id, &headers));
    let result = submit_inner(&state, &caller, &headers, body, id, span.as_ref().map(|s| s.context)).await;
    if let Some(mut span) = span {
        span.attr("flowlike.tenant", caller.tenant.as_str());
        match &result {
            Ok((accepted, replayed)) => {
                span.attr("flowlike.execution_id", accepted.id.to_string())
                    .attr("flowlike.workflow", accepted.workflow.as_str())
                    .flag("flowlike.replayed", *replayed);
            }
            Err(err) => {
                span.fail(err.to_string());
            }
        }
        state.tracer.end(span);
    }
    // Refusals (extractor rejections included) are counted by the metrics layer, by problem type.
    if let Ok((_, replayed)) = &result {
        state.metrics.submission(if *replayed { "replayed" } else { "accepted" });
    }
    let (accepted, replayed) = result?;
    // Ids and names only: never the input, labels or the workflow document, which may hold secrets.
    if replayed {
        tracing::info!(tenant = %caller.tenant, workflow = %accepted.workflow, execution_id = %accepted.id, "execution replayed for its Idempotency-Key");
    } else {
        tracing::info!(tenant = %caller.tenant, workflow = %accepted.workflow, execution_id = %accepted.id, "execution accepted");
    }
    let location = accepted.links.self_.clone();
    let mut response = (StatusCode::ACCEPTED, Json(accepted)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The root of the execution's trace: a child of the client's `traceparent` when it sent one, else a new trace
/// whose id is the execution id.
fn submit_span(id: Uuid, headers: &HeaderMap) -> Span {
    let parent = headers.get("traceparent").and_then(|v| v.to_str().ok()).and_then(SpanContext::parse);
    let context = parent.map_or_else(|| SpanContext::root(id), |p| p.child());
    Span::start("submit", SpanKind::Server, context, parent)
}

async fn submit_inner(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: JsonBody<SubmitExecution>,
    id: Uuid,
    trace: Option<SpanContext>,
) -> Result<(Accepted, bool), ApiError> {
    let idempotency = idempotency_key(headers)?;
    let JsonBody { value: mut request, raw } = body;
    let priority = request.priority.unwrap_or(DEFAULT_PRIORITY);
    check_labels(&request.labels)?;
    let resolved = resolve_workflow(state, &caller.tenant, &mut request).await?;
    // Only an idempotent request needs its body's digest; the common submit path skips the re-serialization.
    let request_sha256: Option<[u8; 32]> =
        idempotency.map(|_| Sha256::digest(serde_json::to_vec(&raw).unwrap_or_default()).into());

    let traceparent = trace.map(|context| context.traceparent());
    let input_bytes = serde_json::to_vec(&request.input).unwrap_or_default();
    let (input, input_key) = if input_bytes.len() > state.settings.inline_input_max_bytes {
        (None, Some(state.storage.put_input(id, Bytes::from(input_bytes)).await?))
    } else {
        (Some(request.input), None)
    };
    let labels = serde_json::to_value(&request.labels).unwrap_or_default();
    let new = NewExecution {
        id,
        tenant: caller.tenant.clone(),
        workflow_name: resolved.name.clone(),
        workflow_version: resolved.version,
        workflow: resolved.document,
        input,
        input_key: input_key.clone(),
        priority: i16::from(priority),
        labels,
        traceparent: traceparent.clone(),
    };
    let Some(idempotency) = idempotency.zip(request_sha256.as_ref()) else {
        // The common path: committed and queued as part of a batch with other submissions.
        let submission = Submission { row: new, priority, labels: request.labels };
        let queued_at = match state.submitter.submit(submission).await {
            Ok(Committed { queued_at, deferred }) => {
                if deferred {
                    state.metrics.submission("enqueue_deferred");
                }
                queued_at
            }
            Err(err) => {
                discard_input(state, input_key.as_deref()).await;
                return Err(err.into());
            }
        };
        let accepted = Accepted {
            id,
            status: "queued".into(),
            workflow: resolved.name,
            workflow_version: resolved.version,
            priority,
            queued_at,
            links: ExecutionLinks::new(id),
        };
        return Ok((accepted, false));
    };
    // With an Idempotency-Key: the key and the row in one transaction, then a single enqueue.
    let inserted = executions::insert(&state.db, &new, Some(idempotency)).await;
    let queued_at = match inserted {
        Ok(IdempotentInsert::Created { queued_at }) => queued_at,
        Ok(IdempotentInsert::Existing(original)) => {
            discard_input(state, input_key.as_deref()).await;
            let record =
                executions::get(&state.db, &caller.tenant, original).await?.ok_or(ApiError::NotFound("execution"))?;
            return Ok((accepted_view(&record), true));
        }
        Ok(IdempotentInsert::Conflict) => {
            discard_input(state, input_key.as_deref()).await;
            return Err(ApiError::invalid("", "this Idempotency-Key was already used with a different request body"));
        }
        Err(err) => {
            discard_input(state, input_key.as_deref()).await;
            return Err(crate::submit::insert_refused(err));
        }
    };

    let message = QueueMessage {
        execution_id: id,
        tenant: caller.tenant.clone(),
        workflow: resolved.name.clone(),
        priority,
        attempt: 1,
        queued_at_ms: queued_at.timestamp_millis(),
        body: QueueBody { workflow_version: resolved.version, labels: request.labels, traceparent },
    };
    let mut redis = state.redis.clone();
    if let Err(err) = queue::enqueue(&mut redis, &state.keys, &message).await {
        // Committed but not queued: take it back so the client's retry does not run it twice.
        match executions::withdraw(&state.db, id).await {
            Ok(_) => {
                discard_input(state, input_key.as_deref()).await;
                return Err(match err {
                    queue::QueueError::Unavailable(_) => ApiError::QueueUnavailable(err),
                    other => ApiError::Internal(Box::new(other)),
                });
            }
            Err(withdraw_err) => {
                // It stays committed; the reconciler will queue it. The client's 202 is true.
                tracing::warn!(execution_id = %id, cause = %err, withdraw = %withdraw_err, "enqueue deferred to the reconciler");
                state.metrics.submission("enqueue_deferred");
            }
        }
    }
    Ok((
        Accepted {
            id,
            status: "queued".into(),
            workflow: resolved.name,
            workflow_version: resolved.version,
            priority,
            queued_at,
            links: ExecutionLinks::new(id),
        },
        false,
    ))
}

fn accepted_view(record: &ExecutionRecord) -> Accepted {
    Accepted {
        id: record.id,
        status: record.status.as_str().to_string(),
        workflow: record.workflow_name.clone(),
        workflow_version: record.workflow_version,
        priority: u8::try_from(record.priority).unwrap_or(DEFAULT_PRIORITY),
        queued_at: record.queued_at,
        links: ExecutionLinks::new(record.id),
    }
}

/// Best effort: an input object of a submission that was not accepted.
async fn discard_input(state: &AppState, key: Option<&str>) {
    if let Some(key) = key
        && let Err(err) = state.storage.delete(&state.storage.meta_bucket, key).await
    {
        tracing::warn!(cause = %err, key, "could not delete the input of a refused submission");
    }
}

/// Read one execution.
#[utoipa::path(
    get, path = "/api/v1/executions/{id}", operation_id = "getExecution", tag = "executions",
    params(("id" = Uuid, Path, description = "Execution id")),
    responses(
        (status = 200, body = crate::waiting::ExecutionDetail),
        (status = 404, description = "No such execution for this tenant", body = crate::error::Problem),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<super::PathParams<Uuid>, super::ParamsRejection>,
) -> Result<Json<crate::waiting::ExecutionDetail>, ApiError> {
    let id = super::path(id, "execution")?;
    let record = executions::get(&state.db, &caller.tenant, id).await?.ok_or(ApiError::NotFound("execution"))?;
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

/// List the tenant's executions.
#[utoipa::path(
    get, path = "/api/v1/executions", operation_id = "listExecutions", tag = "executions",
    params(ListParams),
    responses((status = 200, body = ExecutionPage), (status = 400, body = crate::error::Problem)),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<super::QueryParams<ListParams>, super::ParamsRejection>,
) -> Result<Json<ExecutionPage>, ApiError> {
    let params = super::query(params)?;
    let status = params
        .status
        .as_deref()
        .map(|s| {
            executions::ExecutionStatus::parse(s).ok_or_else(|| ApiError::Malformed(format!("unknown status {s:?}")))
        })
        .transpose()?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::Malformed(format!("limit must be between 1 and {MAX_PAGE}")));
    }
    let before = params
        .cursor
        .as_deref()
        .map(|c| Uuid::parse_str(c).map_err(|_| ApiError::Malformed("cursor is not one this API issued".into())))
        .transpose()?;
    if let Some(workflow) = params.workflow.as_deref()
        && !valid_workflow_name(workflow)
    {
        return Err(ApiError::Malformed(format!("workflow: {WORKFLOW_NAME_RULE}")));
    }
    let filter = ExecutionFilter { status, workflow: params.workflow, before, limit };
    let records = executions::list(&state.db, &caller.tenant, &filter).await?;
    let next_cursor = (records.len() as i64 == limit).then(|| records.last().map(|r| r.id.to_string())).flatten();
    Ok(Json(ExecutionPage { items: records.into_iter().map(ExecutionView::from).collect(), next_cursor }))
}
