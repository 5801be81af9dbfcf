//! The queue message: how a queued execution attempt looks on a lane stream, and the protocol's error type.
//!
//! A lane is one stream per (tenant, priority). Its entries carry small fields an operator can read with
//! `XRANGE` (`id`, `tenant`, `workflow`, `priority`, `attempt`, `queued_at`) and one MessagePack `body` with
//! the rest. The same fields make up a pending retry (`{prefix}:retry:<id>`) and, with the reason, a dead
//! letter.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// Priorities run from 0 (lowest) to 9 (highest); 5 is the default.
pub const MAX_PRIORITY: u8 = 9;
pub const DEFAULT_PRIORITY: u8 = 5;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("Redis is unavailable")]
    Unavailable(#[source] redis::RedisError),
    #[error("Redis command failed")]
    Command(#[source] redis::RedisError),
    #[error("queue entry is malformed: {0}")]
    Malformed(String),
}

impl From<redis::RedisError> for QueueError {
    fn from(err: redis::RedisError) -> Self {
        if err.is_io_error() || err.is_timeout() || err.is_connection_dropped() || err.is_connection_refusal() {
            Self::Unavailable(err)
        } else {
            Self::Command(err)
        }
    }
}

/// The bulky part of a queue entry, MessagePack-encoded in the `body` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueBody {
    pub workflow_version: Option<i32>,
    pub labels: BTreeMap<String, String>,
    /// The W3C trace context of the execution's submit span, when traces are on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// One queued execution attempt as it sits on a lane.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueMessage {
    pub execution_id: Uuid,
    pub tenant: String,
    pub workflow: String,
    pub priority: u8,
    pub attempt: u32,
    /// Milliseconds since the epoch when the execution was first queued.
    pub queued_at_ms: i64,
    pub body: QueueBody,
}

impl QueueMessage {
    /// The same execution's next attempt (after an infrastructure failure).
    pub fn next_attempt(&self) -> Self {
        self.with_attempt(self.attempt + 1)
    }

    /// The same execution at `attempt` (a takeover resumes the attempt its lease names).
    pub fn with_attempt(&self, attempt: u32) -> Self {
        Self { attempt, ..self.clone() }
    }

    /// The entry's fields in stream order.
    pub fn to_fields(&self) -> Result<Vec<(&'static str, Vec<u8>)>, QueueError> {
        let body = rmp_serde::to_vec_named(&self.body).map_err(|e| QueueError::Malformed(e.to_string()))?;
        Ok(vec![
            ("id", self.execution_id.to_string().into_bytes()),
            ("tenant", self.tenant.clone().into_bytes()),
            ("workflow", self.workflow.clone().into_bytes()),
            ("priority", self.priority.to_string().into_bytes()),
            ("attempt", self.attempt.to_string().into_bytes()),
            ("queued_at", self.queued_at_ms.to_string().into_bytes()),
            ("body", body),
        ])
    }

    /// Parses an entry read from a lane.
    pub fn from_fields(fields: &HashMap<String, redis::Value>) -> Result<Self, QueueError> {
        fn text(fields: &HashMap<String, redis::Value>, name: &str) -> Result<String, QueueError> {
            match fields.get(name) {
                Some(redis::Value::BulkString(bytes)) => {
                    String::from_utf8(bytes.clone()).map_err(|_| QueueError::Malformed(format!("{name} is not UTF-8")))
                }
                _ => Err(QueueError::Malformed(format!("missing field {name}"))),
            }
        }
        fn number<T: std::str::FromStr>(fields: &HashMap<String, redis::Value>, name: &str) -> Result<T, QueueError> {
            text(fields, name)?.parse().map_err(|_| QueueError::Malformed(format!("{name} is not a number")))
        }
        let body = match fields.get("body") {
            Some(redis::Value::BulkString(bytes)) => {
                rmp_serde::from_slice(bytes).map_err(|e| QueueError::Malformed(format!("body: {e}")))?
            }
            _ => return Err(QueueError::Malformed("missing field body".into())),
        };
        Ok(Self {
            execution_id: text(fields, "id")?.parse().map_err(|_| QueueError::Malformed("id is not a UUID".into()))?,
            tenant: text(fields, "tenant")?,
            workflow: text(fields, "workflow")?,
            priority: number(fields, "priority")?,
            attempt: number(fields, "attempt")?,
            queued_at_ms: number(fields, "queued_at")?,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let message = QueueMessage {
            execution_id: Uuid::now_v7(),
            tenant: "acme".into(),
            workflow: "report".into(),
            priority: 7,
            attempt: 2,
            queued_at_ms: 1_700_000_000_000,
            body: QueueBody {
                workflow_version: Some(3),
                labels: BTreeMap::from([("team".into(), "x".into())]),
                traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            },
        };
        let fields: HashMap<String, redis::Value> = message
            .to_fields()
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.to_string(), redis::Value::BulkString(v)))
            .collect();
        assert_eq!(QueueMessage::from_fields(&fields).unwrap(), message);
    }

    #[test]
    fn a_missing_field_is_named() {
        let fields = HashMap::from([("id".to_string(), redis::Value::BulkString(b"x".to_vec()))]);
        let err = QueueMessage::from_fields(&fields).unwrap_err();
        assert!(matches!(err, QueueError::Malformed(ref m) if m.contains("body")), "{err}");
    }
}
