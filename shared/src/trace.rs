//! Traces: one per execution, across the API, the dispatchers and the executors, exported over OTLP/HTTP with
//! JSON bodies when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Nothing is
//! recorded or sent otherwise, and a span costs one small allocation and a channel send when it is.
//!
//! The spans of an execution (docs/tracing.md):
//!
//! ```text
//! submit (API)                                  trace id: the client's `traceparent`, else the execution id
//! ├── queued (dispatcher: queued → claimed)     one per attempt
//! └── attempt N (dispatcher: claimed → ended)
//!     ├── kubernetes.create_job (Kubernetes runner)
//!     └── run (executor)
//!         └── node <name>                       one per node that ran
//! ```
//!
//! The context travels as a W3C `traceparent`: stored with the execution (PostgreSQL and the queue message),
//! and handed to the executor in its environment (`TRACEPARENT`, the OpenTelemetry convention for
//! environment-variable carriers). Spans are batched and sent from a background task; a collector that is down
//! or slow costs dropped spans (counted in a warning), never a slower request.

use crate::config::TraceConfig;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Spans buffered for export before new ones are dropped.
const QUEUE: usize = 4096;
/// Most spans in one export request.
const BATCH: usize = 512;
/// Longest a finished span waits before it is sent.
const DELAY: Duration = Duration::from_millis(500);
/// One export request's timeout.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a span sits in a trace: the W3C trace context of one span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

impl SpanContext {
    /// Parses a `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`). All-zero ids and version `ff` are invalid; a
    /// later version is read by its first four fields, as the W3C recommendation says.
    pub fn parse(traceparent: &str) -> Option<Self> {
        let mut parts = traceparent.trim().split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || flags.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        u8::from_str_radix(version, 16).ok()?;
        u8::from_str_radix(flags, 16).ok()?;
        let trace_id: [u8; 16] = hex_bytes(trace)?;
        let span_id: [u8; 8] = hex_bytes(span)?;
        (trace_id != [0; 16] && span_id != [0; 8]).then_some(Self { trace_id, span_id })
    }

    /// The `traceparent` naming this span as the parent (sampled).
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", hex(&self.trace_id), hex(&self.span_id))
    }

    /// A new span in the trace of an execution with no incoming context: the execution id is the trace id, so
    /// an operator finds the trace from the id alone.
    pub fn root(execution: Uuid) -> Self {
        Self { trace_id: *execution.as_bytes(), span_id: new_span_id() }
    }

    /// A new span under this one.
    pub fn child(&self) -> Self {
        Self { trace_id: self.trace_id, span_id: new_span_id() }
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

fn new_span_id() -> [u8; 8] {
    loop {
        let id: [u8; 8] = rand::random();
        if id != [0; 8] {
            return id;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_bytes<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// OTLP span kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

/// A span being recorded; [`Tracer::end`] sends it.
#[derive(Debug, Clone)]
pub struct Span {
    pub context: SpanContext,
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start: SystemTime,
    pub end: Option<SystemTime>,
    attributes: Vec<(&'static str, Value)>,
    error: Option<String>,
}

impl Span {
    /// A span that starts now.
    pub fn start(name: impl Into<String>, kind: SpanKind, context: SpanContext, parent: Option<SpanContext>) -> Self {
        Self::starting_at(name, kind, context, parent, SystemTime::now())
    }

    pub fn starting_at(
        name: impl Into<String>,
        kind: SpanKind,
        context: SpanContext,
        parent: Option<SpanContext>,
        start: SystemTime,
    ) -> Self {
        Self {
            context,
            parent: parent.map(|p| p.span_id),
            name: name.into(),
            kind,
            start,
            end: None,
            attributes: Vec::new(),
            error: None,
        }
    }

    /// Adds a string attribute.
    pub fn attr(&mut self, key: &'static str, value: impl Into<String>) -> &mut Self {
        self.attributes.push((key, json!({"stringValue": value.into()})));
        self
    }

    /// Adds an integer attribute.
    pub fn int(&mut self, key: &'static str, value: i64) -> &mut Self {
        // OTLP JSON writes 64-bit integers as strings.
        self.attributes.push((key, json!({"intValue": value.to_string()})));
        self
    }

    /// Adds a boolean attribute.
    pub fn flag(&mut self, key: &'static str, value: bool) -> &mut Self {
        self.attributes.push((key, json!({"boolValue": value})));
        self
    }

    /// Marks the span failed with `message` (status code ERROR).
    pub fn fail(&mut self, message: impl Into<String>) -> &mut Self {
        self.error = Some(message.into());
        self
    }

    fn to_otlp(&self) -> Value {
        let nanos = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos().to_string();
        let attributes: Vec<Value> =
            self.attributes.iter().map(|(key, value)| json!({"key": key, "value": value})).collect();
        let mut span = json!({
            "traceId": hex(&self.context.trace_id),
            "spanId": hex(&self.context.span_id),
            "name": self.name,
            "kind": self.kind as i32,
            "startTimeUnixNano": nanos(self.start),
            "endTimeUnixNano": nanos(self.end.unwrap_or(self.start).max(self.start)),
            "attributes": attributes,
            "status": match &self.error {
                Some(message) => json!({"code": 2, "message": message}),
                None => json!({"code": 0}),
            },
        });
        if let Some(parent) = self.parent {
            span["parentSpanId"] = json!(hex(&parent));
        }
        span
    }
}

enum Message {
    Span(Box<Span>),
    Flush(oneshot::Sender<()>),
}

/// Where spans go: nowhere (disabled), or a background exporter. Clones share the exporter.
#[derive(Clone, Default)]
pub struct Tracer {
    exporter: Option<Arc<Exporter>>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer").field("enabled", &self.is_enabled()).finish()
    }
}

struct Exporter {
    queue: mpsc::Sender<Message>,
    dropped: AtomicU64,
}

/// Why the trace settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TraceSetupError {
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL is {0:?}: only http/json is supported")]
    Protocol(String),
    #[error("OTEL_EXPORTER_OTLP_HEADERS: {0:?} is not key=value")]
    Header(String),
    #[error("the OTLP endpoint {0:?} is not an http:// or https:// URL")]
    Endpoint(String),
    #[error("building the OTLP HTTP client")]
    Client(#[source] reqwest::Error),
}

impl Tracer {
    /// A tracer that records nothing.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// The exporter `config` asks for (disabled when no endpoint is set), named `default_service` unless
    /// `OTEL_SERVICE_NAME` says otherwise. Must be called inside a Tokio runtime when an endpoint is set.
    pub fn from_config(config: &TraceConfig, default_service: &str) -> Result<Self, TraceSetupError> {
        let url = match (&config.otlp_traces_endpoint, &config.otlp_endpoint) {
            (Some(traces), _) if !traces.trim().is_empty() => traces.trim().to_owned(),
            (_, Some(base)) if !base.trim().is_empty() => format!("{}/v1/traces", base.trim().trim_end_matches('/')),
            _ => return Ok(Self::disabled()),
        };
        if !matches!(config.otlp_protocol.trim(), "" | "http/json") {
            return Err(TraceSetupError::Protocol(config.otlp_protocol.clone()));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(TraceSetupError::Endpoint(url));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for pair in config.otlp_headers.as_deref().unwrap_or_default().split(',').filter(|p| !p.trim().is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| TraceSetupError::Header(pair.to_owned()))?;
            let name = reqwest::header::HeaderName::from_bytes(key.trim().as_bytes())
                .map_err(|_| TraceSetupError::Header(key.to_owned()))?;
            let value = reqwest::header::HeaderValue::from_str(&percent_decode(value.trim()))
                .map_err(|_| TraceSetupError::Header(key.to_owned()))?;
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .default_headers(headers)
            .build()
            .map_err(TraceSetupError::Client)?;
        let service = config.service_name.clone().filter(|s| !s.trim().is_empty()).unwrap_or(default_service.into());
        let (queue, rx) = mpsc::channel(QUEUE);
        let exporter = Arc::new(Exporter { queue, dropped: AtomicU64::new(0) });
        tokio::spawn(export_loop(rx, client, url.clone(), service.clone(), exporter.clone()));
        tracing::info!(endpoint = %url, service = %service, "exporting traces over OTLP/HTTP (JSON)");
        Ok(Self { exporter: Some(exporter) })
    }

    pub fn is_enabled(&self) -> bool {
        self.exporter.is_some()
    }

    /// Ends `span` now and queues it for export.
    pub fn end(&self, mut span: Span) {
        if span.end.is_none() {
            span.end = Some(SystemTime::now());
        }
        self.record(span);
    }

    /// Queues a finished span (its `end` set, else it ends when it started).
    pub fn record(&self, span: Span) {
        let Some(exporter) = &self.exporter else { return };
        if exporter.queue.try_send(Message::Span(Box::new(span))).is_err() {
            exporter.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends everything queued so far, waiting at most `timeout` (a process about to exit calls it).
    pub async fn flush(&self, timeout: Duration) {
        let Some(exporter) = &self.exporter else { return };
        let (done, wait) = oneshot::channel();
        let flushed = async {
            if exporter.queue.send(Message::Flush(done)).await.is_ok() {
                let _ = wait.await;
            }
        };
        if tokio::time::timeout(timeout, flushed).await.is_err() {
            tracing::warn!("traces not flushed within {timeout:?}");
        }
    }
}

async fn export_loop(
    mut rx: mpsc::Receiver<Message>,
    client: reqwest::Client,
    url: String,
    service: String,
    exporter: Arc<Exporter>,
) {
    let mut batch: Vec<Value> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        // The first span of a batch waits at most DELAY for company.
        let step = if batch.is_empty() {
            rx.recv().await.map(Some)
        } else {
            tokio::time::timeout(DELAY, rx.recv()).await.map_or(Some(None), |message| message.map(Some))
        };
        let (due, closed) = match step {
            Some(Some(Message::Span(span))) => {
                batch.push(span.to_otlp());
                (batch.len() >= BATCH, false)
            }
            Some(Some(Message::Flush(done))) => {
                waiting.push(done);
                (true, false)
            }
            Some(None) => (true, false),
            None => (true, true),
        };
        if due {
            if !batch.is_empty() {
                let body = json!({"resourceSpans": [{
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                    "scopeSpans": [{"scope": {"name": "flow-like"}, "spans": std::mem::take(&mut batch)}],
                }]});
                send(&client, &url, &body).await;
            }
            let dropped = exporter.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                tracing::warn!(dropped, "trace export queue full; spans dropped");
            }
            for done in waiting.drain(..) {
                let _ = done.send(());
            }
        }
        if closed {
            return;
        }
    }
}

async fn send(client: &reqwest::Client, url: &str, body: &Value) {
    match client.post(url).json(body).send().await {
        Ok(response) if response.status().is_success() => {}
        Ok(response) => tracing::warn!(status = response.status().as_u16(), "the OTLP endpoint refused spans"),
        Err(err) => tracing::warn!(cause = %err, "sending spans to the OTLP endpoint failed"),
    }
}

/// `%XX` escapes of an OTEL_EXPORTER_OTLP_HEADERS value.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[path = "trace_tests.rs"]
mod tests;
