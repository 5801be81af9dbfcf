//! The submit protocol of `POST /api/v1/executions`, in one place: the execution's trace, the Idempotency-Key,
//! the workflow (inline or registered), where the input goes, the commit and the enqueue.
//!
//! A submission is committed to PostgreSQL first and answered 202 only after that commit; the queue entry
//! follows. If the enqueue fails the execution is withdrawn and the client gets 503; if even the withdrawal
//! fails, the execution stays committed and the reconciler queues it later, so accepted work is never lost.
//!
//! Before anything is written, the submission is charged to its tenant's submit rate limit ([`charge`]): over
//! it the answer is 429 and nothing is written anywhere. A replay of an Idempotency-Key already accepted is looked
//! up first and is not charged.
//!
//! Without an Idempotency-Key the commit and the enqueue are batched with other submissions ([`batcher`]).
//! With one, the key and the row are inserted in one transaction, then the one message is enqueued: the same
//! key with the same body (by SHA-256) replays the original execution, with a different body it is refused.

pub mod batcher;

pub use batcher::{Committed, Submission, SubmitError, Submitter};

use crate::body::JsonBody;
use crate::error::{ApiError, InvalidPart};
use crate::rules::WORKFLOW_NAME_RULE;
use crate::state::AppState;
use crate::views::Accepted;
use axum::http::HeaderMap;
use bytes::Bytes;
use flow_like_shared::ids::valid_workflow_name;
use flow_like_shared::protocol::submit_rate::{self, Bucket, Charge};
use flow_like_shared::protocol::{self, DEFAULT_PRIORITY};
use flow_like_shared::record::RecordError;
use flow_like_shared::record::executions::{self, IdempotentInsert, NewExecution};
use flow_like_shared::record::workflows;
use flow_like_shared::trace::{Span, SpanContext, SpanKind};
use flow_like_shared::workflow;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use uuid::Uuid;

const MAX_LABELS: usize = 32;
const MAX_LABEL_BYTES: usize = 256;
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;
/// Name of an execution submitted with an inline workflow that has no `name`.
const INLINE_WORKFLOW_NAME: &str = "inline";
/// SQLSTATE `untranslatable_character`: jsonb refusing `\u0000`.
const UNTRANSLATABLE_CHARACTER: &str = "22P05";

/// A registered workflow, by name and optionally version (latest when absent).
#[derive(Debug, Clone)]
pub struct WorkflowRef {
    pub name: String,
    pub version: Option<i32>,
}

/// Body of `POST /api/v1/executions`: exactly one of `workflow` and `workflow_ref`. It is parsed beside its
/// route (`crate::routes::executions`); its schema in the OpenAPI document is in `crate::openapi::schemas`.
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

/// What a submission came to.
#[derive(Debug)]
pub struct Submitted {
    pub accepted: Accepted,
    /// The Idempotency-Key was seen before with the same body: `accepted` is the original execution.
    pub replayed: bool,
    /// The tenant's submit bucket after this submission, when the tenant has a rate limit (and was charged).
    pub rate: Option<Bucket>,
}

/// Submits one execution for `tenant`: traced, counted and logged, whatever the outcome. The headers are read
/// for `Idempotency-Key` and `traceparent`.
pub async fn submit(
    state: &AppState,
    tenant: &str,
    headers: &HeaderMap,
    body: JsonBody<SubmitExecution>,
) -> Result<Submitted, ApiError> {
    let id = flow_like_shared::ids::new_execution_id();
    let span = state.tracer.is_enabled().then(|| submit_span(id, headers));
    let result = commit_and_queue(state, tenant, headers, body, id, span.as_ref().map(|s| s.context)).await;
    if let Some(mut span) = span {
        span.attr("flowlike.tenant", tenant);
        match &result {
            Ok(submitted) => {
                span.attr("flowlike.execution_id", submitted.accepted.id.to_string())
                    .attr("flowlike.workflow", submitted.accepted.workflow.as_str())
                    .flag("flowlike.replayed", submitted.replayed);
            }
            Err(err) => {
                span.fail(err.to_string());
            }
        }
        state.tracer.end(span);
    }
    // Refusals (extractor rejections included) are counted by the metrics layer, by problem type.
    let submitted = result?;
    let Submitted { accepted, replayed, .. } = &submitted;
    state.metrics.submission(if *replayed { "replayed" } else { "accepted" });
    // Ids and names only: never the input, labels or the workflow document, which may hold secrets.
    if *replayed {
        tracing::info!(tenant = %tenant, workflow = %accepted.workflow, execution_id = %accepted.id, "execution replayed for its Idempotency-Key");
    } else {
        tracing::info!(tenant = %tenant, workflow = %accepted.workflow, execution_id = %accepted.id, "execution accepted");
    }
    Ok(submitted)
}

/// The root of the execution's trace: a child of the client's `traceparent` when it sent one, else a new trace
/// whose id is the execution id.
fn submit_span(id: Uuid, headers: &HeaderMap) -> Span {
    let parent = headers.get("traceparent").and_then(|v| v.to_str().ok()).and_then(SpanContext::parse);
    let context = parent.map_or_else(|| SpanContext::root(id), |p| p.child());
    Span::start("submit", SpanKind::Server, context, parent)
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().map_err(|_| ApiError::Malformed("Idempotency-Key must be visible ASCII".into()))?;
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(ApiError::Malformed(format!("Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_BYTES} characters")));
    }
    Ok(Some(key))
}

async fn commit_and_queue(
    state: &AppState,
    tenant: &str,
    headers: &HeaderMap,
    body: JsonBody<SubmitExecution>,
    id: Uuid,
    trace: Option<SpanContext>,
) -> Result<Submitted, ApiError> {
    let idempotency = idempotency_key(headers)?;
    let JsonBody { value: mut request, raw } = body;
    let priority = request.priority.unwrap_or(DEFAULT_PRIORITY);
    check_labels(&request.labels)?;
    let resolved = resolve_workflow(state, tenant, &mut request).await?;
    // Only an idempotent request needs its body's digest; the common submit path skips the re-serialization.
    let request_sha256: Option<[u8; 32]> =
        idempotency.map(|_| Sha256::digest(serde_json::to_vec(&raw).unwrap_or_default()).into());

    let idempotent = idempotency.zip(request_sha256.as_ref());
    if let Some((key, sha256)) = idempotent
        && let Some(seen) = executions::find_idempotent(&state.db, tenant, key, sha256).await?
    {
        return replay(state, tenant, seen, None).await;
    }
    let rate = charge(state, tenant).await?;

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
        tenant: tenant.to_string(),
        workflow_name: resolved.name.clone(),
        workflow_version: resolved.version,
        workflow: resolved.document,
        input,
        input_key: input_key.clone(),
        priority: i16::from(priority),
        labels,
        traceparent,
    };
    let accepted = |queued_at| Accepted::queued(id, resolved.name, resolved.version, priority, queued_at);
    let Some(idempotency) = idempotent else {
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
        return Ok(Submitted { accepted: accepted(queued_at), replayed: false, rate });
    };
    // With an Idempotency-Key: the key and the row in one transaction, then a single enqueue.
    let inserted = executions::insert(&state.db, &new, Some(idempotency)).await;
    let queued_at = match inserted {
        Ok(IdempotentInsert::Created { queued_at }) => queued_at,
        Ok(seen @ (IdempotentInsert::Existing(_) | IdempotentInsert::Conflict)) => {
            // The original committed while this request was on its way (it was charged too).
            discard_input(state, input_key.as_deref()).await;
            return replay(state, tenant, seen, rate).await;
        }
        Err(err) => {
            discard_input(state, input_key.as_deref()).await;
            return Err(insert_refused(err));
        }
    };

    let message = batcher::first_attempt(new, priority, request.labels, queued_at);
    let mut redis = state.redis.clone();
    if let Err(err) = protocol::enqueue(&mut redis, &state.keys, &message).await {
        // Committed but not queued: take it back so the client's retry does not run it twice.
        match executions::withdraw(&state.db, id).await {
            Ok(_) => {
                discard_input(state, input_key.as_deref()).await;
                return Err(err.into());
            }
            Err(withdraw_err) => {
                // It stays committed; the reconciler will queue it. The client's 202 is true.
                tracing::warn!(execution_id = %id, cause = %err, withdraw = %withdraw_err, "enqueue deferred to the reconciler");
                state.metrics.submission("enqueue_deferred");
            }
        }
    }
    Ok(Submitted { accepted: accepted(queued_at), replayed: false, rate })
}

/// The answer to an Idempotency-Key seen before: the original execution, or 422 when the body differs.
async fn replay(
    state: &AppState,
    tenant: &str,
    seen: IdempotentInsert,
    rate: Option<Bucket>,
) -> Result<Submitted, ApiError> {
    match seen {
        IdempotentInsert::Existing(original) => {
            let record =
                executions::get(&state.db, Some(tenant), original).await?.ok_or(ApiError::NotFound("execution"))?;
            Ok(Submitted { accepted: Accepted::from(&record), replayed: true, rate })
        }
        IdempotentInsert::Conflict | IdempotentInsert::Created { .. } => {
            Err(ApiError::invalid("", "this Idempotency-Key was already used with a different request body"))
        }
    }
}

/// Charges one submission to the tenant's rate limit: the bucket after it (None when the tenant has no limit),
/// or 429 with nothing written.
async fn charge(state: &AppState, tenant: &str) -> Result<Option<Bucket>, ApiError> {
    // Without a default limit, only tenants with a rate of their own are charged (no Redis call for the others).
    if state.settings.submit_rate.rate <= 0.0
        && !state.rated_tenants.has_own_rate(&state.redis, &state.keys, tenant).await?
    {
        return Ok(None);
    }
    let mut redis = state.redis.clone();
    match submit_rate::charge(&mut redis, &state.keys, tenant, state.settings.submit_rate).await? {
        Charge::Unlimited => Ok(None),
        Charge::Allowed(bucket) => Ok(Some(bucket)),
        Charge::Refused { bucket, retry_in } => Err(ApiError::RateLimited { bucket, retry_in }),
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

/// What the submit path resolved the request's workflow to.
struct ResolvedWorkflow {
    name: String,
    version: Option<i32>,
    document: serde_json::Value,
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
                .map_err(|errors| invalid_workflow(InvalidPart::of_workflow("/workflow", errors)))?;
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

/// The 422 of an invalid inline workflow, titled with its one problem or the number of them.
fn invalid_workflow(errors: Vec<InvalidPart>) -> ApiError {
    let title = match errors.as_slice() {
        [one] => format!("invalid workflow: {}", one.message),
        many => format!("invalid workflow: {} problems", many.len()),
    };
    ApiError::Invalid { title, errors }
}

/// The API error for a failed insert. PostgreSQL's jsonb cannot hold the NUL character (`\u0000`), which JSON
/// allows: that is the client's input, refused with 422 rather than a 500.
fn insert_refused(err: RecordError) -> ApiError {
    match &err {
        RecordError::Query(sqlx::Error::Database(db)) if db.code().as_deref() == Some(UNTRANSLATABLE_CHARACTER) => {
            ApiError::invalid("", "JSON text stored with an execution cannot contain \\u0000")
        }
        _ => err.into(),
    }
}

impl From<SubmitError> for ApiError {
    fn from(err: SubmitError) -> Self {
        match err {
            SubmitError::Database(err) => insert_refused(err),
            SubmitError::Queue(err) => err.into(),
            stopped @ SubmitError::Stopped => Self::Internal(Box::new(stopped)),
        }
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
