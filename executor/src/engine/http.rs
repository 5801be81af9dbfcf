//! The `http.request` node: one request with a timeout and a response-size cap enforced while the body
//! streams in, so an oversized response never sits in memory whole.

use super::error::NodeError;
use flow_like_shared::workflow::HttpRequestParams;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};
use std::time::Duration;

/// Request timeout when the node gives none.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest error-body excerpt kept in a failed node's error.
const ERROR_BODY_EXCERPT: usize = 512;

/// Shared HTTP client for every `http.request` node of a run.
#[derive(Debug, Clone)]
pub struct HttpRunner {
    client: reqwest::Client,
    max_response_bytes: u64,
}

impl HttpRunner {
    /// `max_response_bytes` is the executor-wide cap; a node may only lower it.
    pub fn new(max_response_bytes: u64) -> Result<Self, reqwest::Error> {
        // reqwest is built without a bundled crypto provider; use the same aws-lc-rs provider as the AWS SDK.
        // Installing fails harmlessly when a provider is already installed.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let client =
            reqwest::Client::builder().user_agent(concat!("flow-like-executor/", env!("CARGO_PKG_VERSION"))).build()?;
        Ok(Self { client, max_response_bytes })
    }

    /// Sends the request and returns `{status, headers, body}`. A status of 400 or more fails the node (and so
    /// is retried); the body is JSON when it parses as JSON, else a string.
    pub async fn send(&self, params: &HttpRequestParams, body: Option<Value>) -> Result<Value, NodeError> {
        let limit = params.max_response_bytes.map_or(self.max_response_bytes, |own| own.min(self.max_response_bytes));
        let timeout = params.timeout_ms.map_or(DEFAULT_HTTP_TIMEOUT, Duration::from_millis);
        let method = reqwest::Method::from_bytes(params.method.as_str().as_bytes())
            .map_err(|e| NodeError::HttpRequest(e.to_string()))?;
        let mut request = self.client.request(method, &params.url).timeout(timeout).headers(header_map(params)?);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let mut response = request.send().await.map_err(NodeError::HttpTransport)?;
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(NodeError::HttpTooLarge { limit });
        }
        let status = response.status().as_u16();
        let headers = response_headers(response.headers());
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(NodeError::HttpTransport)? {
            if (bytes.len() + chunk.len()) as u64 > limit {
                return Err(NodeError::HttpTooLarge { limit });
            }
            bytes.extend_from_slice(&chunk);
        }
        let body = decode_body(bytes);
        if status >= 400 {
            return Err(NodeError::HttpStatus { status, body: excerpt(&body) });
        }
        Ok(serde_json::json!({"status": status, "headers": headers, "body": body}))
    }
}

fn header_map(params: &HttpRequestParams) -> Result<HeaderMap, NodeError> {
    let mut map = HeaderMap::new();
    for (name, value) in &params.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| NodeError::HttpRequest(format!("invalid header name `{name}`")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| NodeError::HttpRequest(format!("invalid value for header `{name}`")))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Lower-case header names; repeated headers are joined with ", " (RFC 9110 list syntax).
fn response_headers(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match out.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                out.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    Value::Object(out)
}

fn decode_body(bytes: Vec<u8>) -> Value {
    if bytes.is_empty() {
        return Value::String(String::new());
    }
    match serde_json::from_slice(&bytes) {
        Ok(value) => value,
        Err(_) => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
    }
}

fn excerpt(body: &Value) -> String {
    let text = match body {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match text.char_indices().nth(ERROR_BODY_EXCERPT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}
