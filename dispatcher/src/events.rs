//! Dispatcher-written status events (`seq` 0): appended to the pipeline stream and to the execution's progress
//! stream, exactly as the executor appends its own.

use flow_like_shared::protocol::Keys;
use flow_like_shared::protocol::streams::Appends;
use flow_like_shared::status::{PROGRESS_STREAM_MAXLEN, STATUS_STREAM_MAXLEN, StatusEntry, StatusEvent};
use redis::aio::ConnectionManager;
use uuid::Uuid;

/// One status event of one attempt.
#[derive(Debug, Clone)]
pub struct Event {
    pub execution: Uuid,
    pub attempt: u32,
    pub event: StatusEvent,
}

pub async fn publish(
    redis: &mut ConnectionManager,
    keys: &Keys,
    execution: Uuid,
    attempt: u32,
    event: StatusEvent,
) -> Result<(), anyhow::Error> {
    publish_many(redis, keys, &[Event { execution, attempt, event }]).await
}

/// Appends several events in one pipeline (one round trip), in order.
pub async fn publish_many(redis: &mut ConnectionManager, keys: &Keys, events: &[Event]) -> Result<(), anyhow::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let at_ms = chrono::Utc::now().timestamp_millis();
    let mut appends = Appends::new();
    for Event { execution, attempt, event } in events {
        let entry = StatusEntry { execution: *execution, attempt: *attempt, seq: 0, at_ms, event: event.clone() };
        let fields = entry.to_fields()?;
        // The progress stream first, as the executor does: once the status pipeline sees an event, the
        // progress stream it archives at the end already holds it.
        appends.append(&keys.progress(&execution.to_string()), PROGRESS_STREAM_MAXLEN, &fields);
        appends.append(&keys.status(), STATUS_STREAM_MAXLEN, &fields);
    }
    appends.send(redis).await?;
    Ok(())
}
