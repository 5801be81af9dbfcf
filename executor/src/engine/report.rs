//! The run's result: its outcome, the output node's value and per-node status, timings and attempts. This is
//! the body of the result document the executor writes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// How the whole run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    /// A node failed after its last attempt; the nodes still running were cancelled.
    Failed {
        node: String,
        error: String,
    },
    /// The workflow's `deadline_ms` (or the caller's deadline) passed.
    TimedOut,
    /// The caller's cancellation token fired.
    Cancelled,
}

/// Where a node ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Never started: the run ended first.
    NotStarted,
    Running,
    Succeeded,
    Failed,
    /// Its `when` was false, or one of its inputs was skipped.
    Skipped,
    /// It was running when the run ended (another node failed, the deadline passed, or the caller cancelled).
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    pub status: NodeStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Attempts started (0 if the node never ran).
    pub attempts: u32,
    pub error: Option<String>,
}

impl NodeReport {
    pub(crate) fn not_started() -> Self {
        Self { status: NodeStatus::NotStarted, started_at: None, finished_at: None, attempts: 0, error: None }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub outcome: Outcome,
    /// The `output` node's value; without `output`, an object of every sink node's (a node no other node takes
    /// as input) value. `None` when the run did not succeed or the output node was skipped.
    pub output: Option<Value>,
    pub nodes: BTreeMap<String, NodeReport>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}
