//! Progress events and the sink they go to. Reporting is synchronous and must not block: an implementation
//! that does I/O hands events to a channel ([`ChannelReporter`]) and ships them from another task.

use super::report::NodeStatus;
use flow_like_shared::workflow::LogLevel;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;

/// One progress event. `item` is set for events from a `map`'s inner node (the element index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EngineEvent {
    NodeStarted {
        node: String,
        attempt: u32,
    },
    /// An attempt failed; `retry_in_ms` is set when another attempt follows.
    NodeAttemptFailed {
        node: String,
        attempt: u32,
        error: String,
        retry_in_ms: Option<u64>,
    },
    NodeFinished {
        node: String,
        status: NodeStatus,
        attempts: u32,
        duration_ms: u64,
        error: Option<String>,
    },
    NodeSkipped {
        node: String,
    },
    Log {
        node: String,
        item: Option<usize>,
        level: LogLevel,
        message: String,
    },
}

/// Where the engine sends progress.
pub trait Reporter: Send + Sync {
    fn report(&self, event: EngineEvent);
}

/// Drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullReporter;

impl Reporter for NullReporter {
    fn report(&self, _event: EngineEvent) {}
}

/// Forwards events to an unbounded channel; events sent after the receiver is gone are dropped.
#[derive(Debug, Clone)]
pub struct ChannelReporter(pub UnboundedSender<EngineEvent>);

impl Reporter for ChannelReporter {
    fn report(&self, event: EngineEvent) {
        // A closed receiver means nobody listens any more; progress is best effort.
        let _ = self.0.send(event);
    }
}
