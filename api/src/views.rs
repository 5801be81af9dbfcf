//! What the API shows of an execution, shared by the routes that answer with one (submit, read, list, cancel,
//! redrive) and by `waiting` (the detail view), and the helper that renders a created resource's `Location`.
//! Views only used by one route stay beside it.

use axum::http::{HeaderValue, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use flow_like_shared::lifecycle::ExecutionStatus;
use flow_like_shared::protocol::DEFAULT_PRIORITY;
use flow_like_shared::record::executions::ExecutionRecord;
use serde::Serialize;
use uuid::Uuid;

/// Links to an execution's resources.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExecutionLinks {
    #[serde(rename = "self")]
    pub self_: String,
    pub events: String,
    pub result: String,
}

impl ExecutionLinks {
    pub fn new(id: Uuid) -> Self {
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

impl Accepted {
    /// A submission just committed: `queued`.
    pub fn queued(
        id: Uuid,
        workflow: String,
        workflow_version: Option<i32>,
        priority: u8,
        queued_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            status: ExecutionStatus::Queued.as_str().into(),
            workflow,
            workflow_version,
            priority,
            queued_at,
            links: ExecutionLinks::new(id),
        }
    }
}

/// The original execution of a replayed submission, as it is now.
impl From<&ExecutionRecord> for Accepted {
    fn from(record: &ExecutionRecord) -> Self {
        Self {
            id: record.id,
            status: record.status.as_str().to_string(),
            workflow: record.workflow_name.clone(),
            workflow_version: record.workflow_version,
            priority: u8::try_from(record.priority).unwrap_or(DEFAULT_PRIORITY),
            queued_at: record.queued_at,
            links: ExecutionLinks::new(record.id),
        }
    }
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

/// The response with a `Location` header naming `location` (left out if it is not a valid header value, which
/// the API's own paths always are).
pub fn with_location(mut response: Response, location: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
