//! `GET /api/v1/executions/{id}/events`: the execution's progress stream (`{prefix}:status:{id}`) as
//! Server-Sent Events; once the execution has finished, from the progress archive in PostgreSQL
//! (`record::progress`), with the same event ids, so a client resumes across the end.
//!
//! Each SSE event carries the Redis stream entry id as `id`, the event kind (`dispatched`, `started`, `node`,
//! `log`, `retrying`, `finished`) as `event`, and one JSON object as `data`: `execution`, `attempt`, `seq`,
//! `at` (ms since the epoch), `kind` and the event's own fields (a node event's own `attempt` as `node_attempt`). A client resumes with `Last-Event-ID` (or
//! `?last_event_id=`) and gets only the entries after that one; without it the stream starts at the beginning.
//!
//! Blocking reads (`XREAD BLOCK`) would stall the shared multiplexed connection, so every event stream has a
//! dedicated Redis connection (`crate::event_streams`), and a replica serves at most `MAX_EVENT_STREAMS` at
//! once (503 beyond). The stream is read only as fast as the client takes events (at most `READ_COUNT` entries
//! are held), and ends after a `finished` event, or when PostgreSQL said the execution is terminal and then
//! nothing new arrived for a whole block interval (which covers a progress stream Redis lost). An execution
//! that an operator redrove after a `finished` event goes on with its next attempt's events.

use crate::auth::Caller;
use crate::error::{ApiError, problem};
use crate::event_streams::BLOCK;
use crate::params::{self, ParamsRejection, PathParams, QueryParams};
use crate::rules::is_entry_id;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use flow_like_shared::protocol::{Keys, streams};
use flow_like_shared::record::executions;
use flow_like_shared::record::progress::{self, EntryId};
use flow_like_shared::status::{StatusEntry, StatusEvent};
use redis::aio::MultiplexedConnection;
use serde::Deserialize;
use sqlx::PgPool;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

/// Entries read (and held) at most per `XREAD`.
pub const READ_COUNT: usize = 100;
/// Keep-alive comment interval, so proxies do not close an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Where to resume.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Resume strictly after this event id (the `Last-Event-ID` header wins when both are given).
    pub last_event_id: Option<String>,
}

/// Follow an execution's progress as Server-Sent Events.
#[utoipa::path(
    get, path = "/api/v1/executions/{id}/events", operation_id = "streamExecutionEvents", tag = "executions",
    params(
        ("id" = Uuid, Path, description = "Execution id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume strictly after this event id"),
        EventParams,
    ),
    responses(
        (status = 200, description = "An event stream: `id` is the stream entry id, `event` the kind (dispatched, started, node, log, retrying, finished), `data` a JSON object with execution, attempt, seq, at, kind and the event's fields. Ends after `finished`.", content_type = "text/event-stream", body = String),
        (status = 400, description = "Last-Event-ID is not an event id", body = crate::error::Problem),
        (status = 404, description = "No such execution for this tenant", body = crate::error::Problem),
        (status = 503, description = "Redis is down or too many event streams are open; retry after Retry-After", body = crate::error::Problem),
    ),
    security(("api_key" = []))
)]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<PathParams<Uuid>, ParamsRejection>,
    query: Result<QueryParams<EventParams>, ParamsRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = params::path(id, "execution")?;
    let params = params::query(query)?;
    // Both are checked, whichever wins: a malformed value is refused even when the other one is fine.
    let entry_id = |value: Option<String>, what: &str| match value {
        Some(value) if !is_entry_id(&value) => {
            Err(ApiError::Malformed(format!("{what} must be an event id such as 1700000000000-0")))
        }
        value => Ok(value),
    };
    let header = headers
        .get("last-event-id")
        .map(|v| v.to_str().map(str::to_string).map_err(|_| ApiError::Malformed("Last-Event-ID is not text".into())))
        .transpose()?;
    // An empty header is a client that has no id yet: the same as none (the document says so).
    let header = entry_id(header.filter(|h| !h.is_empty()), "Last-Event-ID")?;
    let query = entry_id(params.last_event_id, "last_event_id")?;
    let after = header.or(query).unwrap_or_else(|| "0-0".to_string());
    let record = executions::get(&state.db, &caller.tenant, id).await?.ok_or(ApiError::NotFound("execution"))?;
    let Some(permit) = state.event_streams.reserve() else {
        return Ok(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "too many event streams are open",
            Vec::new(),
        ));
    };
    let conn = state.event_streams.connect().await.map_err(ApiError::QueueUnavailable)?;
    let follow = Follow {
        conn,
        db: state.db.clone(),
        tenant: caller.tenant,
        execution: id,
        keys: state.keys.clone(),
        after,
        buffer: VecDeque::new(),
        terminal: record.status.is_terminal(),
        archive_pending: record.status.is_terminal(),
        ended: false,
        _permit: permit,
        _open: state.metrics.stream_opened(),
    };
    let stream = futures::stream::unfold(follow, |mut follow| async move {
        let event = follow.next().await?;
        Some((Ok::<_, Infallible>(event), follow))
    });
    let mut response = Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response();
    // Tell buffering proxies (nginx) to pass events through at once.
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// One client's position in one progress stream.
struct Follow {
    /// Counts this stream in `flowlike_api_sse_streams_open` while it lives.
    _open: crate::metrics::OpenStream,
    conn: MultiplexedConnection,
    db: PgPool,
    tenant: String,
    execution: Uuid,
    keys: Keys,
    /// The last entry id read (or the resume point).
    after: String,
    /// Events read and not yet sent (at most READ_COUNT).
    buffer: VecDeque<Event>,
    /// PostgreSQL said the execution is terminal before the last read.
    terminal: bool,
    /// The execution became terminal and its archived progress was not read since.
    archive_pending: bool,
    /// Nothing more will be sent once the buffer is empty.
    ended: bool,
    _permit: OwnedSemaphorePermit,
}

impl Follow {
    /// The next event to send; None ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Some(event);
            }
            if self.ended {
                return None;
            }
            if self.terminal && self.archive_pending {
                self.archive_pending = false;
                self.read_archive().await;
                continue;
            }
            let read =
                streams::read_progress(&mut self.conn, &self.keys, self.execution, &self.after, READ_COUNT, BLOCK)
                    .await;
            let entries = match read {
                Ok(entries) => entries,
                Err(err) => {
                    // The client reconnects with Last-Event-ID and resumes where it was.
                    tracing::warn!(execution_id = %self.execution, cause = %err, "event stream read failed");
                    return None;
                }
            };
            if entries.is_empty() {
                if self.terminal {
                    return None;
                }
                self.refresh_terminal().await;
                continue;
            }
            for (entry_id, fields) in entries {
                self.after.clone_from(&entry_id);
                let parsed = match StatusEntry::from_fields(&fields) {
                    Ok(parsed) => parsed,
                    Err(err) => {
                        tracing::warn!(execution_id = %self.execution, entry = %entry_id, cause = %err, "skipping a malformed progress entry");
                        continue;
                    }
                };
                if self.push(&entry_id, &parsed).await {
                    break;
                }
            }
        }
    }

    /// Buffers one event; true when it ended the stream.
    async fn push(&mut self, entry_id: &str, entry: &StatusEntry) -> bool {
        self.buffer.push_back(sse_event(entry_id, entry));
        if matches!(entry.event, StatusEvent::Finished { .. }) {
            // Final for the execution, unless an operator redrove it for a later attempt since.
            self.ended = !self.redriven_after(entry.attempt).await;
        }
        self.ended
    }

    /// Buffers what the progress archive holds after the resume point: the events of a finished execution,
    /// whose stream the status pipeline deleted from Redis once it had archived them. The live stream is read
    /// after them (a redrive's events).
    async fn read_archive(&mut self) {
        // An id beyond what PostgreSQL stores is after everything archived.
        let Some(after) = EntryId::parse(&self.after) else { return };
        let archived = match progress::entries_after(&self.db, self.execution, after).await {
            Ok(archived) => archived,
            Err(err) => {
                // Not fatal: the live stream is read as before, and the client can reconnect.
                tracing::warn!(execution_id = %self.execution, cause = %err, "cannot read the progress archive");
                return;
            }
        };
        for (id, archived) in archived {
            self.after = id.to_string();
            if self.push(&archived.id, &archived.entry(self.execution)).await {
                return;
            }
        }
    }

    /// Asks PostgreSQL whether the execution is terminal now (the stream ends after a silent block interval).
    async fn refresh_terminal(&mut self) {
        match executions::get(&self.db, &self.tenant, self.execution).await {
            Ok(Some(record)) => {
                let terminal = record.status.is_terminal();
                self.archive_pending |= terminal && !self.terminal;
                self.terminal = terminal;
            }
            // Deleted: nothing more will come.
            Ok(None) => self.terminal = true,
            Err(err) => {
                tracing::warn!(execution_id = %self.execution, cause = %err, "cannot read the execution's status");
            }
        }
    }

    /// Whether the execution is waiting for or running an attempt after `attempt` (a redrive).
    async fn redriven_after(&mut self, attempt: u32) -> bool {
        match executions::get(&self.db, &self.tenant, self.execution).await {
            Ok(Some(record)) => {
                !record.status.is_terminal() && u32::try_from(record.attempts).is_ok_and(|a| a > attempt)
            }
            _ => false,
        }
    }
}

/// The `data` object of a progress entry: the header fields and the event's own fields.
fn event_data(entry: &StatusEntry) -> serde_json::Value {
    let mut data = serde_json::Map::new();
    data.insert("execution".into(), entry.execution.to_string().into());
    data.insert("attempt".into(), entry.attempt.into());
    data.insert("seq".into(), entry.seq.into());
    data.insert("at".into(), entry.at_ms.into());
    data.insert("kind".into(), entry.event.kind().as_str().into());
    // StatusEvent serializes as {"<kind>": {fields}}; the fields go next to the header. A field named like a
    // header field (a node event's own `attempt`) is prefixed with the kind (`node_attempt`).
    if let Ok(serde_json::Value::Object(tagged)) = serde_json::to_value(&entry.event) {
        for (kind, fields) in tagged {
            if let serde_json::Value::Object(fields) = fields {
                for (name, value) in fields {
                    let name = if data.contains_key(&name) { format!("{kind}_{name}") } else { name };
                    data.insert(name, value);
                }
            }
        }
    }
    serde_json::Value::Object(data)
}

/// One SSE event of a progress entry.
fn sse_event(entry_id: &str, entry: &StatusEntry) -> Event {
    Event::default().id(entry_id).event(entry.event.kind().as_str()).data(event_data(entry).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_like_shared::status::{FinishedOutcome, NodePhase};

    fn entry(event: StatusEvent) -> StatusEntry {
        StatusEntry { execution: Uuid::nil(), attempt: 2, seq: 7, at_ms: 1_700_000_000_000, event }
    }

    #[test]
    fn the_data_has_the_header_and_the_event_fields() {
        let data = event_data(&entry(StatusEvent::Finished {
            outcome: FinishedOutcome::TimedOut,
            error: Some("deadline".into()),
            result_key: Some("executions/x/attempts/2/result.json".into()),
            duration_ms: 12,
            nodes: Vec::new(),
        }));
        assert_eq!(
            data,
            serde_json::json!({
                "execution": Uuid::nil().to_string(), "attempt": 2, "seq": 7, "at": 1_700_000_000_000_i64,
                "kind": "finished", "outcome": "timed_out", "error": "deadline",
                "result_key": "executions/x/attempts/2/result.json", "duration_ms": 12
            })
        );
    }

    #[test]
    fn an_event_field_named_like_a_header_field_is_prefixed() {
        // A node event has its own `attempt` (the node's); the entry's attempt stays in `attempt`.
        let data = event_data(&entry(StatusEvent::Node {
            node: "fetch".into(),
            phase: NodePhase::Started,
            attempt: 5,
            duration_ms: None,
            error: None,
            retry_in_ms: None,
        }));
        assert_eq!(data["attempt"], 2);
        assert_eq!(data["node_attempt"], 5);
        assert_eq!(data["node"], "fetch");
        assert_eq!(data["phase"], "started");
    }
}
