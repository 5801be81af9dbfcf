//! Coalesces the Redis writes of attempts that end at about the same time: their status events go out in one
//! pipeline and their leases are released by one `release.lua` call, instead of one round trip (and one script
//! run, one wake-up message to every dispatcher) per attempt.
//!
//! Callers still wait for their own write, so the order of one attempt's writes is unchanged (its `finished`
//! event is on the stream before its lease is released). A worker takes whatever is waiting, up to
//! [`MAX_BATCH`], writes it, and answers every caller; under light load a batch is one item and nothing waits
//! longer than before. Failed writes are retried briefly; the caller learns whether its write went through.

use crate::events::Event;
use flow_like_shared::protocol;
use flow_like_shared::protocol::keys::Keys;
use flow_like_shared::status::StatusEvent;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Most writes one round trip carries.
pub const MAX_BATCH: usize = 256;

/// Attempts at writing one batch before its callers are told it failed.
const WRITE_ATTEMPTS: u32 = 5;

struct Pending<T> {
    item: T,
    done: oneshot::Sender<bool>,
}

/// The handle the dispatch loop writes through; its workers stop when it is dropped.
pub struct Outbox {
    events: mpsc::UnboundedSender<Pending<Event>>,
    releases: mpsc::UnboundedSender<Pending<Uuid>>,
}

impl Outbox {
    /// Starts the two workers (events, releases) on the current runtime. `owner` is this dispatcher's id: only
    /// its own leases are released.
    pub fn start(redis: ConnectionManager, keys: Keys, owner: String, metrics: crate::health::Metrics) -> Self {
        let (events, events_rx) = mpsc::unbounded_channel::<Pending<Event>>();
        let (releases, releases_rx) = mpsc::unbounded_channel::<Pending<Uuid>>();
        let (conn, k) = (redis.clone(), keys.clone());
        tokio::spawn(worker(events_rx, "publishing status events", move |batch: Arc<[Event]>| {
            metrics.outbox_batch(batch.len());
            let (mut conn, keys) = (conn.clone(), k.clone());
            async move { crate::events::publish_many(&mut conn, &keys, &batch).await }
        }));
        tokio::spawn(worker(releases_rx, "releasing leases", move |ids: Arc<[Uuid]>| {
            let (mut conn, keys, owner) = (redis.clone(), keys.clone(), owner.clone());
            async move {
                protocol::release(&mut conn, &keys, &owner, &ids).await?;
                Ok(())
            }
        }));
        Self { events, releases }
    }

    /// Appends a status event; true once it is on the streams.
    pub async fn publish(&self, execution: Uuid, attempt: u32, event: StatusEvent) -> bool {
        submit(&self.events, Event { execution, attempt, event }).await
    }

    /// Ends this dispatcher's lease of an execution; true once released (or found not held).
    pub async fn release(&self, execution: Uuid) -> bool {
        submit(&self.releases, execution).await
    }
}

async fn submit<T>(queue: &mpsc::UnboundedSender<Pending<T>>, item: T) -> bool {
    let (done, answer) = oneshot::channel();
    if queue.send(Pending { item, done }).is_err() {
        return false;
    }
    answer.await.unwrap_or(false)
}

/// Drains `queue` in batches of up to [`MAX_BATCH`], writing each with `write` (retried with backoff).
async fn worker<T, F, Fut>(mut queue: mpsc::UnboundedReceiver<Pending<T>>, what: &'static str, write: F)
where
    F: Fn(Arc<[T]>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (items, answers): (Vec<T>, Vec<_>) = batch.drain(..).map(|p| (p.item, p.done)).unzip();
        let items: Arc<[T]> = items.into();
        let mut written = false;
        for failures in 1..=WRITE_ATTEMPTS {
            match write(items.clone()).await {
                Ok(()) => {
                    written = true;
                    break;
                }
                Err(err) => {
                    tracing::warn!(items = items.len(), cause = %err, "{what} failed");
                    if failures < WRITE_ATTEMPTS {
                        tokio::time::sleep(crate::backoff::backoff(
                            Duration::from_millis(100),
                            Duration::from_secs(2),
                            failures,
                        ))
                        .await;
                    }
                }
            }
        }
        for done in answers {
            let _ = done.send(written);
        }
    }
}
