//! Publishing status events to Redis. The executor's Redis user may only `XADD` to `<prefix>:status*`, so this
//! is the only command it sends (besides the connection handshake). Sequence numbers are assigned here, in
//! memory, under the same lock that sends the batch, so the order on the streams matches `seq`.

use flow_like_shared::config::RedisConfig;
use flow_like_shared::protocol::Keys;
use flow_like_shared::protocol::streams::Appends;
use flow_like_shared::status::{PROGRESS_STREAM_MAXLEN, STATUS_STREAM_MAXLEN, StatusError, StatusEvent};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;
use tokio::sync::Mutex;
use uuid::Uuid;

/// How often a batch (or the first connection) is tried before Redis counts as unreachable.
const ATTEMPTS: u32 = 4;
/// Pause before the second try; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Setup(#[from] flow_like_shared::protocol::connection::RedisSetupError),
    #[error("Redis is unreachable after {ATTEMPTS} attempts")]
    Unreachable(#[source] redis::RedisError),
    #[error("Redis refused the status events after {ATTEMPTS} attempts")]
    Refused(#[source] redis::RedisError),
    #[error(transparent)]
    Encode(#[from] StatusError),
}

/// Connects to Redis, retrying with backoff. `CLIENT SETINFO` is left out of the handshake: the executor's
/// ACL user is not allowed to run it.
pub async fn connect(config: &RedisConfig) -> Result<ConnectionManager, PublishError> {
    let client = config.client_with(|settings| settings.set_skip_set_lib_name())?;
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(3)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match ConnectionManager::new_with_config(client.clone(), manager_config.clone()).await {
            Ok(connection) => return Ok(connection),
            Err(err) if attempt >= ATTEMPTS => return Err(PublishError::Unreachable(err)),
            Err(err) => {
                tracing::warn!(cause = %err, attempt, "connecting to Redis failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
        }
    }
}

/// Appends one attempt's events to the pipeline and progress streams.
pub struct StatusPublisher {
    connection: ConnectionManager,
    pipeline_stream: String,
    progress_stream: String,
    execution: Uuid,
    attempt: u32,
    /// The last sequence number handed out.
    last_seq: Mutex<u64>,
}

impl std::fmt::Debug for StatusPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusPublisher")
            .field("progress_stream", &self.progress_stream)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl StatusPublisher {
    pub fn new(connection: ConnectionManager, keys: &Keys, execution: Uuid, attempt: u32) -> Self {
        Self {
            connection,
            pipeline_stream: keys.status(),
            progress_stream: keys.progress(&execution.to_string()),
            execution,
            attempt,
            last_seq: Mutex::new(0),
        }
    }

    pub async fn publish(&self, event: StatusEvent) -> Result<(), PublishError> {
        self.publish_all(std::slice::from_ref(&event)).await
    }

    /// Sends `events` in one round trip, in order, retrying the whole batch on failure. A retry after a
    /// partly applied batch may repeat entries with the same `seq`; readers drop those.
    pub async fn publish_all(&self, events: &[StatusEvent]) -> Result<(), PublishError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut last_seq = self.last_seq.lock().await;
        let at_ms = chrono::Utc::now().timestamp_millis();
        let mut appends = Appends::new();
        for event in events {
            *last_seq += 1;
            let fields = event.to_fields(self.execution, self.attempt, *last_seq, at_ms)?;
            appends.append(&self.progress_stream, PROGRESS_STREAM_MAXLEN, &fields);
            if event.is_pipeline() {
                appends.append(&self.pipeline_stream, STATUS_STREAM_MAXLEN, &fields);
            }
        }
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let mut connection = self.connection.clone();
            match appends.send(&mut connection).await {
                Ok(()) => return Ok(()),
                Err(err) if attempt >= ATTEMPTS => {
                    return Err(if is_unreachable(&err) {
                        PublishError::Unreachable(err)
                    } else {
                        PublishError::Refused(err)
                    });
                }
                Err(err) => {
                    tracing::warn!(cause = %err, attempt, "publishing status events failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
            }
        }
    }
}

fn is_unreachable(err: &redis::RedisError) -> bool {
    err.is_io_error() || err.is_timeout() || err.is_connection_dropped() || err.is_connection_refusal()
}
