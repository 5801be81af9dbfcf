//! `/api/v1/workflows/{name}`: register immutable versions and read them back.

use crate::auth::Caller;
use crate::body::{JsonBody, RequestBody};
use crate::error::{ApiError, InvalidPart};
use crate::params::{self, ParamsRejection, PathParams};
use crate::rules::WORKFLOW_NAME_RULE;
use crate::state::AppState;
use crate::views;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use flow_like_shared::ids::valid_workflow_name;
use flow_like_shared::record::workflows::{self, WorkflowVersion};
use flow_like_shared::workflow;
use serde::Serialize;

/// One registered version.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkflowVersionView {
    pub name: String,
    pub version: i32,
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
    pub created_at: DateTime<Utc>,
    /// Every version number of this workflow, newest first (only on `GET /workflows/{name}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions: Option<Vec<i32>>,
}

impl From<WorkflowVersion> for WorkflowVersionView {
    fn from(v: WorkflowVersion) -> Self {
        Self { name: v.name, version: v.version, document: v.document, created_at: v.created_at, versions: None }
    }
}

/// A workflow document as a request body (a JSON object; `validate` checks the rest).
pub struct WorkflowDocument(pub serde_json::Value);

impl RequestBody for WorkflowDocument {
    fn from_object(object: serde_json::Map<String, serde_json::Value>) -> Result<Self, ApiError> {
        let mut document = serde_json::Value::Object(object);
        crate::body::normalize_integers(&mut document);
        Ok(Self(document))
    }
}

/// A name in the path of a write must be one a workflow can have (400 otherwise: nothing is changed).
pub(crate) fn check_name(name: &str) -> Result<(), ApiError> {
    if valid_workflow_name(name) {
        Ok(())
    } else {
        Err(ApiError::Malformed(format!("path parameter `name`: {WORKFLOW_NAME_RULE}")))
    }
}

/// A name in the path of a read that no workflow can have names nothing (404).
fn readable_name(name: String) -> Result<String, ApiError> {
    if valid_workflow_name(&name) { Ok(name) } else { Err(ApiError::NotFound("workflow")) }
}

/// Register a new version of a workflow (the body is the workflow document).
#[utoipa::path(
    put, path = "/api/v1/workflows/{name}", operation_id = "registerWorkflow", tag = "workflows",
    params(("name" = String, Path)),
    responses(
        (status = 201, body = WorkflowVersionView),
        (status = 422, body = crate::error::Problem),
    ),
    security(("api_key" = []))
)]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    name: Result<PathParams<String>, ParamsRejection>,
    body: JsonBody<WorkflowDocument>,
) -> Result<Response, ApiError> {
    let name = params::path(name, "workflow")?;
    check_name(&name)?;
    let mut document = body.value.0;
    let validated = workflow::validate(&document, &state.settings.workflow_limits).map_err(|errors| {
        let errors = InvalidPart::of_workflow("", errors);
        ApiError::Invalid { title: format!("invalid workflow: {} problem(s)", errors.len()), errors }
    })?;
    if validated.workflow().name.as_deref().is_some_and(|n| n != name) {
        return Err(ApiError::invalid("/name", "the document's name differs from the name in the path"));
    }
    if let Some(object) = document.as_object_mut() {
        object.insert("name".into(), serde_json::Value::String(name.clone()));
    }
    let registered = workflows::register(&state.db, &caller.tenant, &name, &document).await?;
    let location = format!("/api/v1/workflows/{name}/versions/{}", registered.version);
    let response = (StatusCode::CREATED, Json(WorkflowVersionView::from(registered))).into_response();
    Ok(views::with_location(response, &location))
}

/// The latest version of a workflow, with the list of its versions.
#[utoipa::path(
    get, path = "/api/v1/workflows/{name}", operation_id = "getWorkflow", tag = "workflows",
    params(("name" = String, Path)),
    responses((status = 200, body = WorkflowVersionView), (status = 404, body = crate::error::Problem)),
    security(("api_key" = []))
)]
pub async fn get_latest(
    State(state): State<AppState>,
    caller: Caller,
    name: Result<PathParams<String>, ParamsRejection>,
) -> Result<Json<WorkflowVersionView>, ApiError> {
    let name = readable_name(params::path(name, "workflow")?)?;
    let latest = workflows::get(&state.db, &caller.tenant, &name, None).await?.ok_or(ApiError::NotFound("workflow"))?;
    let versions = workflows::versions(&state.db, &caller.tenant, &name).await?;
    let mut view = WorkflowVersionView::from(latest);
    view.versions = Some(versions);
    Ok(Json(view))
}

/// One version of a workflow.
#[utoipa::path(
    get, path = "/api/v1/workflows/{name}/versions/{version}", operation_id = "getWorkflowVersion", tag = "workflows",
    params(("name" = String, Path), ("version" = i32, Path)),
    responses((status = 200, body = WorkflowVersionView), (status = 404, body = crate::error::Problem)),
    security(("api_key" = []))
)]
pub async fn get_version(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<PathParams<(String, i32)>, ParamsRejection>,
) -> Result<Json<WorkflowVersionView>, ApiError> {
    let (name, version) = params::path(path, "workflow version")?;
    let name = readable_name(name)?;
    let found = workflows::get(&state.db, &caller.tenant, &name, Some(version))
        .await?
        .ok_or(ApiError::NotFound("workflow version"))?;
    Ok(Json(found.into()))
}
