//! Operations on every execution or dead letter matching a filter: `POST /api/v1/executions/cancel` and
//! `POST /api/v1/dead-letters/redrive`, each with `dry_run`.
//!
//! Both are bounded: one call takes at most [`MAX_BULK`] matches (and a redrive examines at most
//! [`MAX_DEAD_LETTERS_SCANNED`] entries), answers `next_cursor` when there may be more, and the client calls again
//! with it. So one call holds no lock for long: a bulk cancel is one `UPDATE` of at most [`MAX_BULK`] rows by
//! primary key, taken in id order.
//!
//! A bulk cancel is the single cancel applied to a page: PostgreSQL first (only executions still queued,
//! dispatched or running change; one that finished meanwhile is left as it is and not counted as acted on),
//! then Redis for the ones cancelled (cancel keys and withdrawals, sent together). If Redis fails after the
//! update the answer is 503: the records say `cancelled`, dispatchers skip cancelled executions when they claim
//! them, and a running attempt whose cancel key was not set is stopped by a single cancel of its id (a repeated
//! cancel of a cancelled execution runs the Redis part again).

use crate::auth::{Admin, Scope};
use crate::body::{Fields, JsonBody, RequestBody};
use crate::error::ApiError;
use crate::redrive::redrive_letter;
use crate::rules::{check_workflow, is_entry_id, parse_cursor, parse_status};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use flow_like_shared::ids::valid_tenant_name;
use flow_like_shared::protocol;
use flow_like_shared::record::executions::{self, ExecutionFilter, ExecutionStatus, Page};
use flow_like_shared::record::operator;
use serde::Serialize;
use std::collections::BTreeMap;

/// Most matches one bulk call acts on (and the default `limit`).
pub const MAX_BULK: usize = 1_000;

/// Most dead-letter entries one redrive call examines, matching or not.
pub const MAX_DEAD_LETTERS_SCANNED: usize = 10_000;

/// What a bulk operation found and did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkOutcome {
    pub dry_run: bool,
    /// How many matched in this call (at most `limit`).
    pub matched: u64,
    /// How many were acted on (cancelled, redriven): 0 on a dry run; fewer than `matched` when some changed
    /// meanwhile (finished before the cancel reached them, redriven by someone else).
    pub acted: u64,
    /// The matches: execution ids (cancel) or dead-letter entry ids (redrive).
    pub ids: Vec<String>,
    /// Pass as `cursor` to continue with the next matches; null when there are no more.
    pub next_cursor: Option<String>,
}

fn limit(fields: &mut Fields) -> Result<usize, ApiError> {
    Ok(fields.integer("limit", 1..=MAX_BULK as i64)?.map_or(MAX_BULK, |n| n as usize))
}

fn time(fields: &mut Fields, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    let pointer = fields.pointer(name);
    fields
        .string(name)?
        .map(|text| {
            DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| ApiError::invalid(pointer, format!("`{name}` must be an RFC 3339 time, not {text:?}")))
        })
        .transpose()
}

fn tenant(fields: &mut Fields) -> Result<Option<String>, ApiError> {
    let pointer = fields.pointer("tenant");
    match fields.string("tenant")? {
        Some(tenant) if !valid_tenant_name(&tenant) => Err(ApiError::invalid(pointer, "not a tenant name")),
        tenant => Ok(tenant),
    }
}

fn workflow(fields: &mut Fields) -> Result<Option<String>, ApiError> {
    let pointer = fields.pointer("workflow");
    fields
        .string("workflow")?
        .map(|w| check_workflow(w).map_err(|err| ApiError::invalid(pointer.clone(), err.to_string())))
        .transpose()
}

/// The body of `POST /executions/cancel`.
#[derive(Debug)]
pub struct CancelMatching {
    statuses: Vec<ExecutionStatus>,
    workflow: Option<String>,
    labels: BTreeMap<String, String>,
    tenant: Option<String>,
    submitted_after: Option<DateTime<Utc>>,
    submitted_before: Option<DateTime<Utc>>,
    dry_run: bool,
    limit: usize,
    cursor: Option<uuid::Uuid>,
}

const CANCELLABLE: [ExecutionStatus; 3] =
    [ExecutionStatus::Queued, ExecutionStatus::Dispatched, ExecutionStatus::Running];

impl RequestBody for CancelMatching {
    fn from_object(object: serde_json::Map<String, serde_json::Value>) -> Result<Self, ApiError> {
        let names = [
            "status",
            "workflow",
            "labels",
            "tenant",
            "submitted_after",
            "submitted_before",
            "dry_run",
            "limit",
            "cursor",
        ];
        let mut fields = Fields::new("", object, &names)?;
        let statuses = match fields.take("status") {
            None => CANCELLABLE.to_vec(),
            Some(serde_json::Value::Array(items)) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let at = format!("/status/{i}");
                    let status = item
                        .as_str()
                        .ok_or_else(|| ApiError::invalid(at.clone(), "a status must be a string"))
                        .and_then(|s| parse_status(s).map_err(|err| ApiError::invalid(at.clone(), err.to_string())))?;
                    if CANCELLABLE.contains(&status) {
                        Ok(status)
                    } else {
                        Err(ApiError::invalid(
                            at,
                            format!(
                                "a {} execution cannot be cancelled: use queued, dispatched or running",
                                status.as_str()
                            ),
                        ))
                    }
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(ApiError::invalid("/status", "`status` must be a non-empty array of statuses")),
        };
        let labels = match fields.object("labels")? {
            None => BTreeMap::new(),
            Some(object) => object
                .into_iter()
                .map(|(name, value)| match value {
                    serde_json::Value::String(value) => Ok((name, value)),
                    _ => Err(ApiError::invalid(crate::body::pointer("/labels", &name), "label values are strings")),
                })
                .collect::<Result<_, _>>()?,
        };
        let cursor = fields
            .string("cursor")?
            .map(|c| parse_cursor(&c).map_err(|err| ApiError::invalid("/cursor", err.to_string())))
            .transpose()?;
        Ok(Self {
            statuses,
            workflow: workflow(&mut fields)?,
            labels,
            tenant: tenant(&mut fields)?,
            submitted_after: time(&mut fields, "submitted_after")?,
            submitted_before: time(&mut fields, "submitted_before")?,
            dry_run: fields.boolean("dry_run")?.unwrap_or(false),
            limit: limit(&mut fields)?,
            cursor,
        })
    }
}

/// Cancel every execution matching a filter (or, with `dry_run`, only count them), oldest first, at most
/// `limit` per call.
#[utoipa::path(
    post, path = "/api/v1/executions/cancel", operation_id = "cancelExecutions", tag = "executions",
    responses(
        (status = 200, description = "What matched and what was cancelled", body = BulkOutcome),
        (status = 403, description = "A tenant key named another tenant", body = crate::error::Problem),
        (status = 422, description = "An invalid filter, with JSON Pointers", body = crate::error::Problem),
        (status = 503, description = "A backing service is down; the matched executions may already be cancelled", body = crate::error::Problem),
    ),
    security(("api_key" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    scope: Scope,
    body: JsonBody<CancelMatching>,
) -> Result<Json<BulkOutcome>, ApiError> {
    let body = body.value;
    let filter = ExecutionFilter {
        tenant: scope.narrow(body.tenant.as_deref())?,
        statuses: body.statuses,
        workflow: body.workflow,
        labels: body.labels,
        submitted_after: body.submitted_after,
        submitted_before: body.submitted_before,
    };
    let page = Page::OldestFirst { after: body.cursor, limit: body.limit as i64 };
    let ids: Vec<uuid::Uuid> = executions::list(&state.db, &filter, page).await?.into_iter().map(|r| r.id).collect();
    let next_cursor = (ids.len() == body.limit).then(|| ids.last().map(ToString::to_string)).flatten();
    let acted = if body.dry_run {
        0
    } else {
        let cancelled = operator::cancel_many(&state.db, &ids).await?;
        let cancelled: Vec<uuid::Uuid> = cancelled.into_iter().map(|(id, _)| id).collect();
        tracing::info!(matched = ids.len(), cancelled = cancelled.len(), "executions cancelled by filter");
        protocol::cancel_many(&state.redis, &state.keys, &cancelled).await.map_err(ApiError::QueueUnavailable)?;
        cancelled.len() as u64
    };
    Ok(Json(BulkOutcome {
        dry_run: body.dry_run,
        matched: ids.len() as u64,
        acted,
        ids: ids.iter().map(ToString::to_string).collect(),
        next_cursor,
    }))
}

/// The body of `POST /dead-letters/redrive`.
#[derive(Debug)]
pub struct RedriveMatching {
    reason: Option<String>,
    tenant: Option<String>,
    workflow: Option<String>,
    dead_after: Option<DateTime<Utc>>,
    dead_before: Option<DateTime<Utc>>,
    dry_run: bool,
    limit: usize,
    cursor: Option<String>,
}

impl RequestBody for RedriveMatching {
    fn from_object(object: serde_json::Map<String, serde_json::Value>) -> Result<Self, ApiError> {
        let names = ["reason", "tenant", "workflow", "dead_after", "dead_before", "dry_run", "limit", "cursor"];
        let mut fields = Fields::new("", object, &names)?;
        let cursor = fields.string("cursor")?;
        if cursor.as_deref().is_some_and(|c| !is_entry_id(c)) {
            return Err(ApiError::invalid("/cursor", "cursor is not one this API issued"));
        }
        Ok(Self {
            reason: fields.string("reason")?,
            tenant: tenant(&mut fields)?,
            workflow: workflow(&mut fields)?,
            dead_after: time(&mut fields, "dead_after")?,
            dead_before: time(&mut fields, "dead_before")?,
            dry_run: fields.boolean("dry_run")?.unwrap_or(false),
            limit: limit(&mut fields)?,
            cursor,
        })
    }
}

impl RedriveMatching {
    fn matches(&self, letter: &protocol::dead_letter::DeadLetter) -> bool {
        let dead_at = letter.dead_at_ms.and_then(DateTime::<Utc>::from_timestamp_millis);
        self.reason.as_deref().is_none_or(|r| letter.reason.contains(r))
            && self.tenant.as_deref().is_none_or(|t| letter.tenant == t)
            && self.workflow.as_deref().is_none_or(|w| letter.workflow == w)
            && self.dead_after.is_none_or(|after| dead_at.is_some_and(|at| at >= after))
            && self.dead_before.is_none_or(|before| dead_at.is_some_and(|at| at < before))
    }
}

/// Redrive every dead letter matching a filter (or, with `dry_run`, only count them), newest first, at most
/// `limit` per call.
#[utoipa::path(
    post, path = "/api/v1/dead-letters/redrive", operation_id = "redriveDeadLetters", tag = "admin",
    responses(
        (status = 200, description = "What matched and what was redriven; a letter whose execution is not \
            failed any more is matched but not acted on, and stays", body = BulkOutcome),
        (status = 401, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem),
        (status = 422, description = "An invalid filter, with JSON Pointers", body = crate::error::Problem),
        (status = 503, description = "A backing service is down; retrying is safe", body = crate::error::Problem),
    ),
    security(("api_key" = []))
)]
pub async fn redrive(
    State(state): State<AppState>,
    _admin: Admin,
    body: JsonBody<RedriveMatching>,
) -> Result<Json<BulkOutcome>, ApiError> {
    const CHUNK: usize = 500;
    let body = body.value;
    let mut redis = state.redis.clone();
    let (mut cursor, mut scanned, mut matched, mut acted, mut exhausted) =
        (body.cursor.clone(), 0, Vec::new(), 0, false);
    while matched.len() < body.limit && scanned < MAX_DEAD_LETTERS_SCANNED {
        let count = CHUNK.min(MAX_DEAD_LETTERS_SCANNED - scanned);
        let letters = protocol::dead_letter::dead_letters(&mut redis, &state.keys, cursor.as_deref(), count).await?;
        exhausted = letters.len() < count;
        for letter in letters {
            scanned += 1;
            cursor = Some(letter.entry_id.clone());
            if body.matches(&letter) {
                if !body.dry_run {
                    match redrive_letter(&state, &letter).await {
                        Ok(_) => acted += 1,
                        Err(ApiError::Conflict(why)) => {
                            tracing::info!(entry = %letter.entry_id, why, "dead letter matched but not redriven");
                        }
                        Err(err) => return Err(err),
                    }
                }
                matched.push(letter.entry_id);
                if matched.len() == body.limit {
                    break;
                }
            }
        }
        if exhausted {
            break;
        }
    }
    // More may follow unless the stream ended inside this call's scan.
    let next_cursor = if exhausted && matched.len() < body.limit { None } else { cursor };
    if !body.dry_run {
        tracing::info!(matched = matched.len(), redriven = acted, "dead letters redriven by filter");
    }
    Ok(Json(BulkOutcome { dry_run: body.dry_run, matched: matched.len() as u64, acted, ids: matched, next_cursor }))
}
