//! The dedicated Redis connections of the event streams (`GET /api/v1/executions/{id}/events`) and the cap on
//! how many are open. Blocking reads (`XREAD BLOCK`) would stall the shared multiplexed connection, so every
//! event stream gets its own; a replica serves at most [`MAX_EVENT_STREAMS`] at once.

use flow_like_shared::config::RedisConfig;
use flow_like_shared::protocol::QueueError;
use redis::aio::MultiplexedConnection;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long one `XREAD` waits for new entries; also how long a terminal execution's stream stays open without
/// news before it ends.
pub const BLOCK: Duration = Duration::from_secs(5);
/// Event streams one API replica serves at once (each holds one Redis connection).
pub const MAX_EVENT_STREAMS: usize = 1000;

/// Dedicated Redis connections for event streams, and the cap on how many are open.
pub struct EventStreams {
    client: redis::Client,
    slots: Arc<Semaphore>,
}

impl EventStreams {
    pub fn new(config: &RedisConfig) -> Result<Self, flow_like_shared::protocol::connection::RedisSetupError> {
        let client = config.client()?;
        Ok(Self { client, slots: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)) })
    }

    /// A place for one more open stream, held until the permit is dropped; None when all are taken.
    pub fn reserve(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// A new connection for one stream's blocking reads.
    pub async fn connect(&self) -> Result<MultiplexedConnection, QueueError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            // A blocking read answers after BLOCK at the latest.
            .set_response_timeout(Some(BLOCK + Duration::from_secs(5)));
        Ok(self.client.get_multiplexed_async_connection_with_config(&config).await?)
    }
}
