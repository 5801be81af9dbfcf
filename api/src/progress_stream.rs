//! One client following an execution's progress as Server-Sent Events: the progress stream
//! (`{prefix}:status:{id}`) and, once the execution has finished, the progress archive in PostgreSQL
//! (`record::progress`), with the same event ids, so a client resumes across the end. Two views of it:
//! `GET /executions/{id}/events` (every event) and `GET /executions/{id}/logs?follow=true` (one attempt's log
//! lines, then an `end` event).
//!
//! Blocking reads (`XREAD BLOCK`) would stall the shared multiplexed connection, so every stream has a
//! dedicated Redis connection (`crate::event_streams`), and a replica serves at most `MAX_EVENT_STREAMS` at
//! once (503 beyond). The stream is read only as fast as the client takes events (at most `READ_COUNT` entries
//! are held), and ends after a `finished` event, or when PostgreSQL said the execution is terminal and then
//! nothing new arrived for a whole block interval (which covers a progress stream Redis lost). An execution
//! that an operator redrove after a `finished` event goes on with its next attempt's events.

use crate::error::{ApiError, problem};
use crate::event_streams::BLOCK;
use crate::state::AppState;
use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use flow_like_shared::protocol::{Keys, streams};
use flow_like_shared::record::executions::{self, ExecutionRecord};
use flow_like_shared::record::progress::{self, EntryId};
use flow_like_shared::status::{StatusEntry, StatusEvent};
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
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

/// What of the progress a stream sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Every event, as `event: <kind>`.
    Events,
    /// One attempt's log lines (`event: log`, data a [`LogLine`]), then `event: end` (data `{"status": ...}`:
    /// the attempt's outcome, `retrying`, or the execution's status when the stream ends without either).
    Logs { attempt: u32 },
}

/// One log line: from a `log` node (`node`, and `item` inside a `map`) or from the executor itself.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    pub at: DateTime<Utc>,
    pub node: Option<String>,
    pub item: Option<u64>,
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    pub message: String,
}

impl LogLine {
    /// The line a `log` event carries; None for other events.
    pub fn of(entry: &StatusEntry) -> Option<Self> {
        match &entry.event {
            StatusEvent::Log { node, item, level, message } => Some(Self {
                at: DateTime::<Utc>::from_timestamp_millis(entry.at_ms).unwrap_or_default(),
                node: node.clone(),
                item: *item,
                level: level.as_str().to_owned(),
                message: message.clone(),
            }),
            _ => None,
        }
    }
}

/// Answers with the stream of `record`'s progress after entry `after` (`0-0`: from the start), in `view`.
pub async fn open(state: &AppState, record: &ExecutionRecord, after: String, view: View) -> Result<Response, ApiError> {
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
        tenant: record.tenant.clone(),
        execution: record.id,
        keys: state.keys.clone(),
        view,
        after,
        buffer: VecDeque::new(),
        terminal: record.status.is_terminal(),
        archive_pending: record.status.is_terminal(),
        ended: false,
        end_sent: false,
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
    /// The execution's tenant (re-reads of its record are scoped to it).
    tenant: String,
    execution: Uuid,
    keys: Keys,
    view: View,
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
    /// The logs view sent its `end` event.
    end_sent: bool,
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
                return self.end().await;
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
                    self.ended = true;
                    continue;
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
        match self.view {
            View::Events => {
                self.buffer.push_back(sse_event(entry_id, entry));
                if matches!(entry.event, StatusEvent::Finished { .. }) {
                    // Final for the execution, unless an operator redrove it for a later attempt since.
                    self.ended = !self.redriven_after(entry.attempt).await;
                }
            }
            View::Logs { attempt } if entry.attempt == attempt => {
                if let Some(line) = LogLine::of(entry) {
                    let data = serde_json::to_string(&line).unwrap_or_default();
                    self.buffer.push_back(Event::default().id(entry_id).event("log").data(data));
                }
                let status = match &entry.event {
                    StatusEvent::Finished { outcome, .. } => Some(outcome.as_str()),
                    StatusEvent::Retrying { .. } => Some("retrying"),
                    _ => None,
                };
                if let Some(status) = status {
                    self.push_end(status);
                }
            }
            // A later attempt's event: the followed attempt is over.
            View::Logs { attempt } if entry.attempt > attempt => self.push_end("retrying"),
            View::Logs { .. } => {}
        }
        self.ended
    }

    /// The logs view's last event.
    fn push_end(&mut self, status: &str) {
        let data = serde_json::json!({ "status": status }).to_string();
        self.buffer.push_back(Event::default().event("end").data(data));
        self.end_sent = true;
        self.ended = true;
    }

    /// What is sent once the stream has ended: for the logs view an `end` event if none was sent (the status
    /// the record has then), else nothing (None closes the stream).
    async fn end(&mut self) -> Option<Event> {
        if self.view == View::Events || self.end_sent {
            return None;
        }
        self.end_sent = true;
        let status = match executions::get(&self.db, Some(&self.tenant), self.execution).await {
            Ok(Some(record)) => record.status.as_str(),
            _ => "unknown",
        };
        Some(Event::default().event("end").data(serde_json::json!({ "status": status }).to_string()))
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
        match executions::get(&self.db, Some(&self.tenant), self.execution).await {
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
        match executions::get(&self.db, Some(&self.tenant), self.execution).await {
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
