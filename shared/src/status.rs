//! The status event protocol: what an executor reports about one attempt and how it sits on a Redis stream.
//!
//! The executor appends (plain `XADD`, nothing else) to two streams: the pipeline stream `Keys::status()` gets
//! `started` and `finished`, the per-execution stream `Keys::progress(id)` gets every event, for live
//! Server-Sent Events. Each entry has small readable fields (`execution`, `attempt`, `seq`, `kind`, `at`) and a
//! MessagePack `body` holding the [`StatusEvent`]. `seq` counts the attempt's events from 1, so a reader can
//! drop duplicates and order what it reads; it is assigned by the executor in memory.

use crate::workflow::LogLevel;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The executor's exit codes. The dispatcher's Job pod failure policy and its local runner act on them.
pub mod exit_code {
    /// The workflow succeeded.
    pub const SUCCEEDED: i32 = 0;
    /// Infrastructure failed (spec unreadable, S3 or Redis unreachable): another attempt may succeed.
    pub const INFRA_FAILURE: i32 = 1;
    /// The workflow failed or passed its deadline: another attempt would fail the same way.
    pub const WORKFLOW_FAILED: i32 = 3;
    /// The attempt was cancelled (SIGTERM): final, never retried.
    pub const CANCELLED: i32 = 4;
}

/// Approximate cap (`XADD MAXLEN ~`) of one execution's progress stream.
pub const PROGRESS_STREAM_MAXLEN: usize = 10_000;
/// Approximate cap (`XADD MAXLEN ~`) of the pipeline status stream shared by all executions.
pub const STATUS_STREAM_MAXLEN: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot encode status event body")]
    Encode(#[source] rmp_serde::encode::Error),
    #[error("status entry is malformed: {0}")]
    Malformed(String),
}

/// The readable `kind` field of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Written by the dispatcher: the runner started the attempt.
    Dispatched,
    Started,
    Node,
    Log,
    /// Written by the dispatcher: the attempt failed on infrastructure and another one is scheduled.
    Retrying,
    Finished,
}

impl EventKind {
    /// Every kind, in the order an attempt's events come.
    pub const ALL: [Self; 6] = [Self::Dispatched, Self::Started, Self::Node, Self::Log, Self::Retrying, Self::Finished];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dispatched => "dispatched",
            Self::Started => "started",
            Self::Node => "node",
            Self::Log => "log",
            Self::Retrying => "retrying",
            Self::Finished => "finished",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = StatusError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "dispatched" => Self::Dispatched,
            "retrying" => Self::Retrying,
            "started" => Self::Started,
            "node" => Self::Node,
            "log" => Self::Log,
            "finished" => Self::Finished,
            other => return Err(StatusError::Malformed(format!("unknown kind `{other}`"))),
        })
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishedOutcome {
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
}

impl FinishedOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
        }
    }

    /// The executor's exit code for this outcome.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Succeeded => exit_code::SUCCEEDED,
            Self::Failed | Self::TimedOut => exit_code::WORKFLOW_FAILED,
            Self::Cancelled => exit_code::CANCELLED,
        }
    }
}

impl fmt::Display for FinishedOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodePhase {
    /// An attempt started.
    Started,
    /// An attempt failed; `retry_in_ms` says when the next one starts, if any.
    AttemptFailed,
    Succeeded,
    Failed,
    /// Its `when` was false or an input was skipped.
    Skipped,
    /// It was running when the run ended.
    Cancelled,
}

/// The details of one event, MessagePack-encoded in the entry's `body`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusEvent {
    /// The dispatcher's runner started the attempt (`seq` 0). `runner_ref` names what it started (a Job name,
    /// a process id); `claimed_at_ms` is when admission took the concurrency slot.
    Dispatched { dispatcher: String, runner: String, runner_ref: Option<String>, claimed_at_ms: i64 },
    /// The attempt failed on infrastructure (`error`); attempt `next_attempt` starts at `retry_at_ms`.
    Retrying { error: String, next_attempt: u32, retry_at_ms: i64 },
    /// The executor is up and connected to Redis. `startup_ms` is the time from process start to this event.
    Started { startup_ms: u64 },
    Node {
        node: String,
        phase: NodePhase,
        /// The attempt this is about (for finished phases: the number of attempts made).
        attempt: u32,
        duration_ms: Option<u64>,
        error: Option<String>,
        retry_in_ms: Option<u64>,
    },
    /// A `log` node's message (`node` set, `item` for a `map` element), or the executor's own (`node` unset).
    Log { node: Option<String>, item: Option<u64>, level: LogLevel, message: String },
    Finished {
        outcome: FinishedOutcome,
        error: Option<String>,
        /// Content-bucket key of the result document, when it was written.
        result_key: Option<String>,
        /// The run's wall time.
        duration_ms: u64,
        /// How each node of the workflow ended in this run (the executor's; empty in the dispatcher's own
        /// `finished` events and from older executors). The dispatcher counts them in its node metrics.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        nodes: Vec<NodeRun>,
    },
}

/// One node's end in a run, as the `finished` event summarises it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRun {
    /// The node's `type` (`transform`, `http.request`, ...).
    #[serde(rename = "type")]
    pub node_type: String,
    /// `succeeded`, `failed`, `skipped` or `cancelled` (a node still running when the run ended).
    pub phase: NodePhase,
    /// Attempts made, retries included (0 when it never started).
    pub attempts: u32,
    /// From its first attempt's start to its end; absent when it never started.
    pub duration_ms: Option<u64>,
}

impl StatusEvent {
    pub fn kind(&self) -> EventKind {
        match self {
            Self::Dispatched { .. } => EventKind::Dispatched,
            Self::Retrying { .. } => EventKind::Retrying,
            Self::Started { .. } => EventKind::Started,
            Self::Node { .. } => EventKind::Node,
            Self::Log { .. } => EventKind::Log,
            Self::Finished { .. } => EventKind::Finished,
        }
    }

    /// Whether the event also goes to the pipeline stream (`Keys::status()`), not only the progress stream.
    pub fn is_pipeline(&self) -> bool {
        matches!(self.kind(), EventKind::Dispatched | EventKind::Started | EventKind::Retrying | EventKind::Finished)
    }

    /// The stream entry's fields, in order, for `XADD`.
    pub fn to_fields(
        &self,
        execution: Uuid,
        attempt: u32,
        seq: u64,
        at_ms: i64,
    ) -> Result<Vec<(&'static str, Vec<u8>)>, StatusError> {
        let body = rmp_serde::to_vec_named(self).map_err(StatusError::Encode)?;
        Ok(vec![
            ("execution", execution.to_string().into_bytes()),
            ("attempt", attempt.to_string().into_bytes()),
            ("seq", seq.to_string().into_bytes()),
            ("kind", self.kind().as_str().as_bytes().to_vec()),
            ("at", at_ms.to_string().into_bytes()),
            ("body", body),
        ])
    }
}

/// The attempt's manifest in the content bucket (`storage::layout::manifest`), written after the result and
/// the logs: its presence marks the attempt complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptManifest {
    pub execution_id: Uuid,
    pub attempt: u32,
    pub outcome: FinishedOutcome,
    /// Content-bucket key of the result document (none when the run never started, e.g. an invalid spec).
    pub result_key: Option<String>,
    pub logs_key: String,
    pub finished_at: chrono::DateTime<chrono::Utc>,
}

/// One entry of a status or progress stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusEntry {
    pub execution: Uuid,
    pub attempt: u32,
    /// Position of the event within its attempt, from 1.
    pub seq: u64,
    /// Milliseconds since the epoch when the executor produced the event.
    pub at_ms: i64,
    pub event: StatusEvent,
}

impl StatusEntry {
    pub fn to_fields(&self) -> Result<Vec<(&'static str, Vec<u8>)>, StatusError> {
        self.event.to_fields(self.execution, self.attempt, self.seq, self.at_ms)
    }

    /// Parses an entry read with `XREAD`/`XREADGROUP`/`XRANGE`.
    pub fn from_fields(fields: &HashMap<String, redis::Value>) -> Result<Self, StatusError> {
        let kind: EventKind = text(fields, "kind")?.parse()?;
        let event: StatusEvent =
            rmp_serde::from_slice(bytes(fields, "body")?).map_err(|e| StatusError::Malformed(format!("body: {e}")))?;
        if event.kind() != kind {
            return Err(StatusError::Malformed(format!("kind `{kind}` does not match a `{}` body", event.kind())));
        }
        Ok(Self {
            execution: text(fields, "execution")?
                .parse()
                .map_err(|_| StatusError::Malformed("execution is not a UUID".into()))?,
            attempt: number(fields, "attempt")?,
            seq: number(fields, "seq")?,
            at_ms: number(fields, "at")?,
            event,
        })
    }
}

fn bytes<'a>(fields: &'a HashMap<String, redis::Value>, name: &str) -> Result<&'a [u8], StatusError> {
    match fields.get(name) {
        Some(redis::Value::BulkString(bytes)) => Ok(bytes),
        Some(redis::Value::SimpleString(text)) => Ok(text.as_bytes()),
        _ => Err(StatusError::Malformed(format!("missing field {name}"))),
    }
}

fn text<'a>(fields: &'a HashMap<String, redis::Value>, name: &str) -> Result<&'a str, StatusError> {
    std::str::from_utf8(bytes(fields, name)?).map_err(|_| StatusError::Malformed(format!("{name} is not UTF-8")))
}

fn number<T: FromStr>(fields: &HashMap<String, redis::Value>, name: &str) -> Result<T, StatusError> {
    text(fields, name)?.parse().map_err(|_| StatusError::Malformed(format!("{name} is not a number")))
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
