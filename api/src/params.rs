//! Extractors for path and query parameters, and how their failures are answered.
//!
//! Path and query values are checked for the NUL character before anything else: a URL may carry `%00`, and
//! PostgreSQL cannot store or compare it (a 500 otherwise), so it is a 400 naming the parameter.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// Why a path or query could not be read.
#[derive(Debug)]
pub enum ParamsRejection {
    /// A value holds NUL (always the client's mistake: 400).
    Nul { parameter: String },
    /// The values do not parse as the route's types.
    Unparsable(String),
}

impl axum::response::IntoResponse for ParamsRejection {
    fn into_response(self) -> axum::response::Response {
        match self {
            Self::Nul { parameter } => nul_problem(&parameter, "a"),
            Self::Unparsable(text) => ApiError::Malformed(text),
        }
        .into_response()
    }
}

fn nul_in<'a>(mut pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Option<ParamsRejection> {
    pairs
        .find(|(name, value)| name.contains('\0') || value.contains('\0'))
        .map(|(name, _)| ParamsRejection::Nul { parameter: name.replace('\0', "\\u0000") })
}

/// The query string, deserialized after the NUL check.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for QueryParams<T> {
    type Rejection = ParamsRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|err| ParamsRejection::Unparsable(err.body_text()))?;
        if let Some(nul) = nul_in(pairs.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
            return Err(nul);
        }
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Self(q.0))
            .map_err(|err| ParamsRejection::Unparsable(err.body_text()))
    }
}

/// The path parameters, deserialized after the NUL check.
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for PathParams<T> {
    type Rejection = ParamsRejection;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|err| ParamsRejection::Unparsable(err.body_text()))?;
        if let Some(nul) = nul_in(raw.iter()) {
            return Err(nul);
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|err| ParamsRejection::Unparsable(err.body_text()))
    }
}

fn nul_problem(parameter: &str, place: &str) -> ApiError {
    ApiError::Malformed(format!("{place} parameter `{parameter}` contains the NUL character (%00)"))
}

/// Query strings that do not parse are the client's mistake (400), in problem form.
pub fn query<T>(query: Result<QueryParams<T>, ParamsRejection>) -> Result<T, ApiError> {
    match query {
        Ok(QueryParams(value)) => Ok(value),
        Err(ParamsRejection::Nul { parameter }) => Err(nul_problem(&parameter, "query")),
        Err(ParamsRejection::Unparsable(text)) => Err(ApiError::Malformed(text)),
    }
}

/// A path parameter that does not parse names nothing that exists (404); one holding NUL is a 400.
pub fn path<T>(path: Result<PathParams<T>, ParamsRejection>, what: &'static str) -> Result<T, ApiError> {
    match path {
        Ok(PathParams(value)) => Ok(value),
        Err(ParamsRejection::Nul { parameter }) => Err(nul_problem(&parameter, "path")),
        Err(ParamsRejection::Unparsable(_)) => Err(ApiError::NotFound(what)),
    }
}
