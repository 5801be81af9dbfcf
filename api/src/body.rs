//! `JsonBody`: the only way handlers read a request body. It refuses a wrong content type (415) before reading,
//! stops reading as soon as the body passes the limit (413), and tells malformed JSON (400) apart from JSON of
//! the wrong shape (422, with a pointer). serde_json's recursion limit turns deeply nested input into a 400
//! instead of a stack overflow.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;

/// A parsed JSON body plus the raw JSON value (for idempotency hashing).
pub struct JsonBody<T> {
    pub value: T,
    pub raw: serde_json::Value,
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.settings.max_body_bytes;
        let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !is_json(content_type) {
            return Err(ApiError::UnsupportedMediaType(if content_type.is_empty() {
                "none (expected application/json)".into()
            } else {
                format!("{content_type} (expected application/json)")
            }));
        }
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|len| len > limit) {
            return Err(ApiError::TooLarge { limit });
        }
        let bytes = Limited::new(request.into_body(), limit)
            .collect()
            .await
            .map_err(|err| {
                if err.is::<http_body_util::LengthLimitError>() {
                    ApiError::TooLarge { limit }
                } else {
                    ApiError::Malformed(format!("could not read the body: {err}"))
                }
            })?
            .to_bytes();
        let raw: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|err| ApiError::Malformed(format!("invalid JSON: {err}")))?;
        let value = T::deserialize(&raw).map_err(|err| ApiError::invalid("", err.to_string()))?;
        Ok(Self { value, raw })
    }
}

/// Like [`JsonBody`], for endpoints whose body is optional: an empty body yields `T::default()`.
pub struct OptionalJsonBody<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let has_body = request.headers().contains_key(header::CONTENT_TYPE)
            || request
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|len| len != "0");
        if !has_body {
            return Ok(Self(T::default()));
        }
        JsonBody::<T>::from_request(request, state).await.map(|body| Self(body.value))
    }
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("Application/JSON"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}
