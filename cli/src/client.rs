//! The HTTP client of the API: one base URL and bearer token, JSON in and out, problem+json answers turned into
//! [`CliError::Api`] and transport failures into [`CliError::Unreachable`]. Documents stay `serde_json::Value`
//! so a field the API adds (or leaves out) never breaks the CLI.

use crate::error::{CliError, Problem};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use std::time::Duration;

/// How long to wait for a connection (a request's answer may take longer; streams last as long as they do).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an ordinary (non-streaming) request may take in all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The most items asked for per page of a list (the API's own maximum).
pub const PAGE: usize = 500;

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for the API at `url` (e.g. `http://127.0.0.1:8080`), authenticating with `token` when given.
    pub fn new(url: &str, token: Option<String>) -> Result<Self, CliError> {
        let parsed = reqwest::Url::parse(url).map_err(|err| CliError::Usage(format!("--url {url:?}: {err}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(CliError::Usage(format!("--url {url:?}: use an http:// or https:// URL")));
        }
        // reqwest's rustls needs a process-wide crypto provider (an error means one is installed already).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("flow-like-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| CliError::Usage(format!("cannot set up the HTTP client: {err}")))?;
        Ok(Self { http, base: url.trim_end_matches('/').to_owned(), token: token.filter(|t| !t.is_empty()) })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request; a transport failure is `Unreachable`, an error status the problem it carries.
    async fn send(&self, request: RequestBuilder) -> Result<Response, CliError> {
        let response = request.send().await.map_err(|err| self.unreachable(&err))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        Err(CliError::Api(Problem::from_answer(status, &body)))
    }

    fn unreachable(&self, err: &reqwest::Error) -> CliError {
        // reqwest's own message names the URL; the innermost cause says what happened.
        let mut cause: &dyn std::error::Error = err;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        let cause = if err.is_timeout() { "timed out".to_owned() } else { cause.to_string() };
        CliError::Unreachable { url: self.base.clone(), cause }
    }

    async fn json(&self, what: &str, response: Response) -> Result<Value, CliError> {
        let body = response.bytes().await.map_err(|err| self.unreachable(&err))?;
        if body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body)
            .map_err(|err| CliError::UnexpectedAnswer { what: what.to_owned(), cause: err.to_string() })
    }

    /// `GET path?query` as JSON.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        let request = self.request(Method::GET, path).query(query).timeout(REQUEST_TIMEOUT);
        let response = self.send(request).await?;
        self.json(path, response).await
    }

    /// A request with an optional JSON body (and extra headers), answered with JSON (or nothing: `Null`).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Value, CliError> {
        let mut request = self.request(method, path).timeout(REQUEST_TIMEOUT);
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = self.send(request).await?;
        self.json(path, response).await
    }

    /// The `items` of a paginated list (`GET path?query&limit&cursor`), following `next_cursor`, at most `limit`
    /// of them, asked for in pages of at most [`PAGE`].
    pub async fn list(&self, path: &str, query: &[(&str, String)], limit: u32) -> Result<Vec<Value>, CliError> {
        let limit = limit as usize;
        let mut items: Vec<Value> = Vec::new();
        let mut cursor: Option<String> = None;
        while items.len() < limit {
            let mut page_query = query.to_vec();
            page_query.push(("limit", (limit - items.len()).min(PAGE).to_string()));
            if let Some(cursor) = &cursor {
                page_query.push(("cursor", cursor.clone()));
            }
            let page = self.get(path, &page_query).await?;
            let page_items = page["items"].as_array().cloned().unwrap_or_default();
            let done = page_items.is_empty();
            items.extend(page_items);
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            if done || cursor.is_none() {
                break;
            }
        }
        items.truncate(limit);
        Ok(items)
    }

    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        self.call(Method::POST, path, body, &[]).await
    }

    /// Opens a Server-Sent Events stream (no overall timeout), resuming after `last_event_id` when given.
    pub async fn stream(
        &self,
        path: &str,
        query: &[(&str, String)],
        last_event_id: Option<&str>,
    ) -> Result<Response, CliError> {
        let mut request = self.request(Method::GET, path).query(query).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        self.send(request).await
    }
}

/// One path segment, percent-encoded (ids and names are plain, but a mistyped one must not change the path).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("acme"), "acme");
        assert_eq!(segment("1700000000000-0"), "1700000000000-0");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn the_url_must_be_http() {
        assert!(matches!(Client::new("ftp://x", None), Err(CliError::Usage(_))));
        assert!(matches!(Client::new("not a url", None), Err(CliError::Usage(_))));
        assert_eq!(Client::new("http://127.0.0.1:8080/", None).unwrap().base(), "http://127.0.0.1:8080");
    }
}
