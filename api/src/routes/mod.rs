//! The HTTP routes, one module per resource.

pub mod admin;
pub mod dead_letters;
pub mod execution_events;
pub mod execution_ops;
pub mod executions;
pub mod health;
pub mod queue;
pub mod workflows;

use crate::error::ApiError;
use axum::extract::rejection::{PathRejection, QueryRejection};

/// Query strings that do not parse are the client's mistake (400), in problem form.
pub fn query<T>(query: Result<axum::extract::Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|q| q.0).map_err(|err| ApiError::Malformed(err.body_text()))
}

/// A path parameter that does not parse names nothing that exists.
pub fn path<T>(path: Result<axum::extract::Path<T>, PathRejection>, what: &'static str) -> Result<T, ApiError> {
    path.map(|p| p.0).map_err(|_| ApiError::NotFound(what))
}
