//! Shipping the engine's progress: turns engine events into status events, sends them to the progress stream
//! in batches from one task (so they keep their order), and keeps the log lines for the attempt's log object.

use crate::engine::{EngineEvent, NodeStatus};
use crate::status::StatusPublisher;
use chrono::{DateTime, Utc};
use flow_like_shared::status::{NodePhase, StatusEvent};
use flow_like_shared::workflow::LogLevel;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

/// Most events sent in one round trip.
const MAX_BATCH: usize = 256;

/// One line of the attempt's log object (`layout::logs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub at: DateTime<Utc>,
    /// The `log` node, or none for the executor's own messages.
    pub node: Option<String>,
    /// The element index for a `map`'s inner node.
    pub item: Option<u64>,
    pub level: LogLevel,
    pub message: String,
}

impl LogLine {
    /// The status event that carries this line.
    pub fn to_event(&self) -> StatusEvent {
        StatusEvent::Log { node: self.node.clone(), item: self.item, level: self.level, message: self.message.clone() }
    }
}

/// The attempt's log lines, shared between the forwarder and the code that writes the log object (which may
/// stop waiting for a forwarder stuck on Redis and still have every line received so far).
#[derive(Debug, Clone, Default)]
pub struct LogBook(Arc<Mutex<Vec<LogLine>>>);

impl LogBook {
    pub fn push(&self, line: LogLine) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(line);
    }

    pub fn lines(&self) -> Vec<LogLine> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Starts the task that drains `events` until every sender is gone, recording log lines in `logs`.
pub fn spawn_forwarder(
    publisher: Arc<StatusPublisher>,
    mut events: UnboundedReceiver<EngineEvent>,
    logs: LogBook,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while let Some(first) = events.recv().await {
            batch.clear();
            let mut next = Some(first);
            while let Some(event) = next.take() {
                if let EngineEvent::Log { node, item, level, message } = &event {
                    logs.push(LogLine {
                        at: Utc::now(),
                        node: Some(node.clone()),
                        item: item.map(|i| i as u64),
                        level: *level,
                        message: message.clone(),
                    });
                }
                batch.push(status_event(event));
                if batch.len() < MAX_BATCH {
                    next = events.try_recv().ok();
                }
            }
            // Progress is for live viewers; the result and the finished event carry what matters, so a
            // failed batch is logged and skipped rather than failing the attempt.
            if let Err(err) = publisher.publish_all(&batch).await {
                tracing::warn!(cause = %err, events = batch.len(), "dropping progress events");
            }
        }
    })
}

/// The status event for an engine event.
pub fn status_event(event: EngineEvent) -> StatusEvent {
    match event {
        EngineEvent::NodeStarted { node, attempt } => node_event(node, NodePhase::Started, attempt, None, None, None),
        EngineEvent::NodeAttemptFailed { node, attempt, error, retry_in_ms } => {
            node_event(node, NodePhase::AttemptFailed, attempt, None, Some(error), retry_in_ms)
        }
        EngineEvent::NodeFinished { node, status, attempts, duration_ms, error } => {
            node_event(node, phase(status), attempts, Some(duration_ms), error, None)
        }
        EngineEvent::NodeSkipped { node } => node_event(node, NodePhase::Skipped, 0, None, None, None),
        EngineEvent::Log { node, item, level, message } => {
            StatusEvent::Log { node: Some(node), item: item.map(|i| i as u64), level, message }
        }
    }
}

fn node_event(
    node: String,
    phase: NodePhase,
    attempt: u32,
    duration_ms: Option<u64>,
    error: Option<String>,
    retry_in_ms: Option<u64>,
) -> StatusEvent {
    StatusEvent::Node { node, phase, attempt, duration_ms, error, retry_in_ms }
}

fn phase(status: NodeStatus) -> NodePhase {
    match status {
        NodeStatus::Succeeded => NodePhase::Succeeded,
        NodeStatus::Failed => NodePhase::Failed,
        NodeStatus::Skipped => NodePhase::Skipped,
        // The engine only finishes nodes as succeeded, failed or cancelled; anything else ended with the run.
        NodeStatus::Cancelled | NodeStatus::NotStarted | NodeStatus::Running => NodePhase::Cancelled,
    }
}

/// The log object's body: one JSON document per line.
pub fn to_json_lines(lines: &[LogLine]) -> Result<Vec<u8>, serde_json::Error> {
    let mut body = Vec::new();
    for line in lines {
        serde_json::to_writer(&mut body, line)?;
        body.push(b'\n');
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_events_become_node_and_log_events() {
        let finished = status_event(EngineEvent::NodeFinished {
            node: "a".into(),
            status: NodeStatus::Failed,
            attempts: 3,
            duration_ms: 40,
            error: Some("boom".into()),
        });
        assert_eq!(finished, node_event("a".into(), NodePhase::Failed, 3, Some(40), Some("boom".into()), None));
        let log = status_event(EngineEvent::Log {
            node: "say".into(),
            item: Some(2),
            level: LogLevel::Warn,
            message: "hi".into(),
        });
        assert_eq!(
            log,
            StatusEvent::Log { node: Some("say".into()), item: Some(2), level: LogLevel::Warn, message: "hi".into() }
        );
    }

    #[test]
    fn log_lines_are_json_lines() {
        let line = LogLine {
            at: Utc::now(),
            node: Some("say".into()),
            item: None,
            level: LogLevel::Info,
            message: "hello\nworld".into(),
        };
        let body = to_json_lines(&[line.clone(), line.clone()]).unwrap();
        let text = String::from_utf8(body).unwrap();
        let parsed: Vec<LogLine> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(parsed, vec![line.clone(), line]);
    }
}
