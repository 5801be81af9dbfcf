//! Reading script replies and stream entries, shared by the operations.

use super::message::QueueError;
use redis::Value;
use std::collections::HashMap;
use std::time::Duration;

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn malformed(what: &str) -> QueueError {
    QueueError::Malformed(format!("unexpected script reply: {what}"))
}

pub(crate) fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(crate) fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => text(other).and_then(|t| t.parse().ok()),
    }
}

/// A flat `[name, value, ...]` reply as field pairs.
pub(crate) fn pairs(values: &[Value]) -> Result<Vec<(String, Vec<u8>)>, QueueError> {
    values
        .chunks(2)
        .map(|pair| match pair {
            [name, Value::BulkString(value)] => Ok((text(name).ok_or_else(|| malformed("field name"))?, value.clone())),
            [name, other] => {
                Ok((text(name).ok_or_else(|| malformed("field name"))?, text(other).unwrap_or_default().into_bytes()))
            }
            _ => Err(malformed("odd field list")),
        })
        .collect()
}

/// Fields as the map `QueueMessage::from_fields` reads.
pub fn field_map(fields: &[(String, Vec<u8>)]) -> HashMap<String, Value> {
    fields.iter().map(|(name, value)| (name.clone(), Value::BulkString(value.clone()))).collect()
}

/// One field of an entry's pairs, parsed (`None` when missing or not parseable).
pub fn parsed_field<T: std::str::FromStr>(fields: &[(String, Vec<u8>)], name: &str) -> Option<T> {
    let (_, value) = fields.iter().find(|(n, _)| n == name)?;
    std::str::from_utf8(value).ok()?.parse().ok()
}
