//! A small OTLP/HTTP trace receiver for tests: `POST /v1/traces` with a JSON `ExportTraceServiceRequest`, as
//! the OpenTelemetry Collector's OTLP/HTTP receiver takes it. It checks each span the way the protocol's JSON
//! mapping defines it (hex trace and span ids of the right length, nanosecond times as decimal strings, an end not
//! before the start) and answers 400 to a request that breaks it, so a malformed export fails the test that
//! sent it; the spans it accepts are kept with their `service.name`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::{CancellationToken, DropGuard};

/// One span as received.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent: Option<String>,
    pub name: String,
    pub kind: i64,
    pub start_ns: u128,
    pub end_ns: u128,
    /// Attribute values as text (string, int and bool values).
    pub attributes: BTreeMap<String, String>,
    /// 0 unset, 1 ok, 2 error.
    pub status: i64,
}

#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    refused: Arc<Mutex<Vec<String>>>,
}

/// The receiver; it stops when dropped.
pub struct OtlpReceiver {
    /// `http://127.0.0.1:<port>`: the value of OTEL_EXPORTER_OTLP_ENDPOINT.
    pub endpoint: String,
    received: Received,
    _stop: DropGuard,
}

impl OtlpReceiver {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let received = Received::default();
        let app = Router::new().route("/v1/traces", post(export)).with_state(received.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(async move { stopped.cancelled().await }).await;
        });
        Ok(Self { endpoint, received, _stop: stop.drop_guard() })
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.spans.lock().unwrap().clone()
    }

    /// Why requests were refused (empty when every export was well-formed).
    pub fn refusals(&self) -> Vec<String> {
        self.received.refused.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the spans received so far, and returns them.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> anyhow::Result<Vec<ReceivedSpan>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return Ok(spans);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "{what}: not there after {timeout:?}; received {spans:#?}, refused {:?}",
                    self.refusals()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn export(State(received): State<Received>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    match parse(&body) {
        Ok(spans) => {
            received.spans.lock().unwrap().extend(spans);
            (StatusCode::OK, Json(serde_json::json!({})))
        }
        Err(why) => {
            received.refused.lock().unwrap().push(why.clone());
            (StatusCode::BAD_REQUEST, Json(serde_json::json!({"message": why})))
        }
    }
}

fn parse(body: &Value) -> Result<Vec<ReceivedSpan>, String> {
    let mut out = Vec::new();
    for resource in body["resourceSpans"].as_array().ok_or("resourceSpans is not an array")? {
        let service = resource["resource"]["attributes"]
            .as_array()
            .and_then(|attributes| attributes.iter().find(|a| a["key"] == "service.name"))
            .and_then(|a| a["value"]["stringValue"].as_str())
            .ok_or("no service.name resource attribute")?
            .to_owned();
        for scope in resource["scopeSpans"].as_array().ok_or("scopeSpans is not an array")? {
            for span in scope["spans"].as_array().ok_or("spans is not an array")? {
                out.push(parse_span(&service, span)?);
            }
        }
    }
    Ok(out)
}

fn parse_span(service: &str, span: &Value) -> Result<ReceivedSpan, String> {
    let hex = |field: &str, len: usize| -> Result<String, String> {
        let value = span[field].as_str().ok_or(format!("{field} is not a string: {span}"))?;
        let ok = value.len() == len && value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok || value.bytes().all(|b| b == b'0') {
            return Err(format!("{field} {value:?} is not {len} lower-case hex digits (and not all zero)"));
        }
        Ok(value.to_owned())
    };
    let nanos = |field: &str| -> Result<u128, String> {
        span[field].as_str().and_then(|v| v.parse().ok()).ok_or(format!("{field} is not a decimal string: {span}"))
    };
    let (start_ns, end_ns) = (nanos("startTimeUnixNano")?, nanos("endTimeUnixNano")?);
    if end_ns < start_ns {
        return Err(format!("span ends before it starts: {span}"));
    }
    let mut attributes = BTreeMap::new();
    for attribute in span["attributes"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let key = attribute["key"].as_str().ok_or("an attribute without a key")?;
        let value = &attribute["value"];
        let text = if let Some(s) = value["stringValue"].as_str() {
            s.to_owned()
        } else if let Some(i) = value["intValue"].as_str() {
            i.parse::<i64>().map_err(|_| format!("intValue {i:?} is not an integer"))?.to_string()
        } else if let Some(b) = value["boolValue"].as_bool() {
            b.to_string()
        } else {
            return Err(format!("attribute {key} has no string, int or bool value: {value}"));
        };
        attributes.insert(key.to_owned(), text);
    }
    Ok(ReceivedSpan {
        service: service.to_owned(),
        trace_id: hex("traceId", 32)?,
        span_id: hex("spanId", 16)?,
        parent: if span.get("parentSpanId").is_some() { Some(hex("parentSpanId", 16)?) } else { None },
        name: span["name"].as_str().ok_or("a span without a name")?.to_owned(),
        kind: span["kind"].as_i64().filter(|k| (0..=5).contains(k)).ok_or(format!("bad kind: {span}"))?,
        start_ns,
        end_ns,
        attributes,
        status: span["status"]["code"].as_i64().unwrap_or(0),
    })
}
