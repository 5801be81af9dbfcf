//! `ApiError`: every failure a handler can return, rendered as RFC 9457 `application/problem+json`. Client
//! errors carry their reason and are not logged as errors; server errors are generic to the client and logged
//! with their cause.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flow_like_shared::protocol::QueueError;
use flow_like_shared::protocol::submit_rate::Bucket;
use flow_like_shared::record::RecordError;
use flow_like_shared::storage::StorageError;
use flow_like_shared::workflow;
use serde::Serialize;
use std::time::Duration;

/// Seconds a client should wait before retrying when a backing service is down.
pub const RETRY_AFTER_SECS: &str = "5";

/// One bad part of a request, located by an RFC 6901 JSON Pointer into the request body.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InvalidPart {
    pub pointer: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("missing or invalid API key")]
    Unauthenticated,
    #[error("this needs an admin key")]
    Forbidden,
    #[error("a tenant's key sees only its own tenant: leave out `tenant` or name your own")]
    OtherTenant,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("unsupported content type: {0}")]
    UnsupportedMediaType(String),
    #[error("{title}")]
    Invalid { title: String, errors: Vec<InvalidPart> },
    #[error("{0}")]
    Conflict(String),
    #[error("over the tenant's submit rate limit")]
    RateLimited { bucket: Bucket, retry_in: Duration },
    #[error("the database is unavailable")]
    DatabaseUnavailable(#[source] RecordError),
    #[error("the queue is unavailable")]
    QueueUnavailable(#[source] QueueError),
    #[error("object storage is unavailable")]
    StorageUnavailable(#[source] StorageError),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl InvalidPart {
    /// A workflow document's validation errors, each pointer prefixed with where the document is in the request
    /// body (`""` when the body is the document).
    pub fn of_workflow(prefix: &str, errors: workflow::ValidationErrors) -> Vec<Self> {
        errors.0.into_iter().map(|e| Self { pointer: format!("{prefix}{}", e.pointer), message: e.message }).collect()
    }
}

impl ApiError {
    pub fn invalid(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::Invalid { title: message.clone(), errors: vec![InvalidPart { pointer: pointer.into(), message }] }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::OtherTenant => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::DatabaseUnavailable(_) | Self::QueueUnavailable(_) | Self::StorageUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed-request",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden | Self::OtherTenant => "forbidden",
            Self::NotFound(_) => "not-found",
            Self::TooLarge { .. } => "too-large",
            Self::UnsupportedMediaType(_) => "unsupported-media-type",
            Self::Invalid { .. } => "invalid",
            Self::Conflict(_) => "conflict",
            Self::RateLimited { .. } => "rate-limited",
            Self::DatabaseUnavailable(_) | Self::QueueUnavailable(_) | Self::StorageUnavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<RecordError> for ApiError {
    fn from(err: RecordError) -> Self {
        match err {
            RecordError::Unavailable(_) => Self::DatabaseUnavailable(err),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(err: QueueError) -> Self {
        match err {
            QueueError::Unavailable(_) => Self::QueueUnavailable(err),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        Self::StorageUnavailable(err)
    }
}

/// The problem document (RFC 9457).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For 422: each invalid part of the request with a JSON Pointer to it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<InvalidPart>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            let cause = std::error::Error::source(&self).map(ToString::to_string).unwrap_or_default();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                tracing::warn!(error = %self, cause = %cause, "backing service unavailable");
            } else {
                tracing::error!(error = %self, cause = %cause, "request failed");
            }
        }
        let slug = self.slug();
        match self {
            Self::Invalid { title, errors } => problem(status, slug, title, errors),
            Self::RateLimited { bucket, retry_in } => {
                let title = format!(
                    "over the tenant's submit rate limit (a burst of {}); retry after {} ms",
                    bucket.burst,
                    retry_in.as_millis().max(1)
                );
                let mut response = problem(status, slug, title, Vec::new());
                let headers = response.headers_mut();
                headers.insert(header::RETRY_AFTER, HeaderValue::from(whole_seconds(retry_in)));
                rate_limit_headers(headers, &bucket);
                response
            }
            other => problem(status, slug, other.to_string(), Vec::new()),
        }
    }
}

/// The one builder of a problem+json answer: the document, its content type, `Retry-After` on a 503,
/// `WWW-Authenticate` on a 401, and the problem type for the metrics layer. [`ApiError`] answers through it;
/// a handler calls it directly only for an answer with its own title that no `ApiError` variant has.
pub fn problem(status: StatusCode, slug: &'static str, title: impl Into<String>, errors: Vec<InvalidPart>) -> Response {
    let problem = Problem {
        problem_type: format!("https://flow-like.dev/problems/{slug}"),
        title: title.into(),
        status: status.as_u16(),
        detail: None,
        errors,
    };
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.extensions_mut().insert(crate::metrics::ProblemSlug(slug));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
    }
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// Seconds for a header: rounded up, at least 1 (a client told 0 would retry at once).
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_micros().div_ceil(1_000_000).max(1) as u64
}

/// The `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` headers (IETF httpapi draft) of a tenant's
/// submit bucket: its size, the tokens left, and the seconds until it is full again.
pub fn rate_limit_headers(headers: &mut axum::http::HeaderMap, bucket: &Bucket) {
    headers.insert("ratelimit-limit", HeaderValue::from(bucket.burst));
    headers.insert("ratelimit-remaining", HeaderValue::from(bucket.remaining));
    let reset = if bucket.full_in.is_zero() { 0 } else { whole_seconds(bucket.full_in) };
    headers.insert("ratelimit-reset", HeaderValue::from(reset));
}
