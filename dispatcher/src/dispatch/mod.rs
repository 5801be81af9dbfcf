//! The dispatch loop: admission under the concurrency limits, one task per admitted attempt, heartbeats,
//! takeover of leases whose dispatcher died, retries with backoff, dead letters, and the drain on shutdown.
//!
//! Every replica runs the same loops against the same Redis; there is no leader. Admission is one Lua script
//! (`flow_like_shared::protocol::admit`) that claims a queue entry only when a slot is free for it and takes
//! its lease in the same step, so work this dispatcher cannot start stays available to the others and no limit
//! is ever exceeded. What happens to an attempt is reported as status events on `{prefix}:status`, which the
//! status pipeline (`crate::status_pipeline`) turns into PostgreSQL state.
//!
//! One file per loop, as docs/dispatcher.md lists them: [`admission`], [`attempt`] (one task per claimed
//! attempt, and how it ends), [`heartbeat`] (lease renewal, cancellation, wake-ups) and [`recovery`] (takeover
//! and due retries). This file holds the state they share and the drain.

mod admission;
mod attempt;
mod heartbeat;
mod recovery;

use crate::backoff::{backoff, jittered, sleep_or_cancel};
use crate::health::Metrics;
use crate::metrics::DeadLetterReason;
use crate::outbox::Outbox;
use crate::runner::{Attempt, AttemptEnd, Runner, Started};
use flow_like_shared::protocol::QueueMessage;
use flow_like_shared::protocol::dispatcher_stats::{self, AdmissionWindow, DispatcherStats};
use flow_like_shared::protocol::keys::Keys;
use flow_like_shared::protocol::limits::{self, DefaultLimits};
use flow_like_shared::protocol::{self, AdmitStop, Admitted, NewDeadLetter, Renewal, TakenOver};
use flow_like_shared::record::dispatch::{self, DispatchRow};
use flow_like_shared::spec::AttemptSpec;
use flow_like_shared::status::{AttemptManifest, FinishedOutcome, StatusEvent};
use flow_like_shared::storage::{Storage, layout};
use flow_like_shared::trace::{Span, SpanContext, SpanKind, Tracer};
use futures::StreamExt;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

/// How the loop behaves; built from `DispatcherConfig`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Consumer name and lease owner.
    pub id: String,
    pub limits: DefaultLimits,
    pub lease_ttl: Duration,
    /// Most executions admitted per admission call.
    pub admit_batch: usize,
    /// Most attempts this dispatcher runs at once (its own memory bound; the limits still apply on top).
    pub max_in_flight: usize,
    pub max_attempts: u32,
    pub max_deliveries: u32,
    /// Backoff before attempt n+1 is `retry_backoff * 2^(n-1)`, at most `retry_backoff_max`, with jitter.
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    pub drain_timeout: Duration,
}

/// How often an idle dispatcher tries admission without being woken.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Attempt specs written to the meta bucket at once; the other attempts wait their turn. Unbounded, thousands of
/// admitted attempts each opened a connection and the S3 server timed out under them.
pub const SPEC_WRITE_CONCURRENCY: usize = 32;

pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    keys: Keys,
    redis: ConnectionManager,
    redis_client: redis::Client,
    db: PgPool,
    storage: Storage,
    runner: Arc<dyn Runner>,
    metrics: Metrics,
    /// Where the `queued` and `attempt` spans go (nowhere unless traces are on).
    tracer: Tracer,
    /// Status events and lease releases, coalesced across attempts.
    outbox: Outbox,
    /// Bounds concurrent spec writes ([`SPEC_WRITE_CONCURRENCY`]).
    spec_writes: tokio::sync::Semaphore,
    /// The attempts this dispatcher runs, with the token that stops each.
    held: Mutex<HashMap<Uuid, CancellationToken>>,
    /// What this dispatcher admitted in the last minute, for the queue view (`heartbeat::stats_loop`).
    admissions: Mutex<AdmissionWindow>,
    wake: Notify,
    /// Fires at the end of the drain: attempts still running are handed back to other dispatchers.
    hand_back: CancellationToken,
    tasks: TaskTracker,
}

/// One attempt this dispatcher is about to run: the queue message, where its entry is and how it was obtained.
#[derive(Debug, Clone)]
struct Claim {
    message: QueueMessage,
    lane: String,
    entry_id: String,
    fields: Vec<(String, Vec<u8>)>,
    claimed_at_ms: i64,
    deliveries: u32,
    takeover: bool,
}

impl Claim {
    /// This claim's dead letter, with the message's `fields` and `reason`.
    fn dead_letter<'a>(&'a self, fields: &'a [(String, Vec<u8>)], reason: &'a str) -> NewDeadLetter<'a> {
        NewDeadLetter {
            execution_id: Some(self.message.execution_id),
            lane: &self.lane,
            entry_id: &self.entry_id,
            fields,
            reason,
            deliveries: self.deliveries,
        }
    }
}

impl Dispatcher {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: Settings,
        keys: Keys,
        redis: ConnectionManager,
        redis_client: redis::Client,
        db: PgPool,
        storage: Storage,
        runner: Arc<dyn Runner>,
        metrics: Metrics,
        tracer: Tracer,
    ) -> Self {
        let outbox = Outbox::start(redis.clone(), keys.clone(), settings.id.clone(), metrics.clone());
        Self {
            inner: Arc::new(Inner {
                outbox,
                spec_writes: tokio::sync::Semaphore::new(SPEC_WRITE_CONCURRENCY),
                settings,
                keys,
                redis,
                redis_client,
                db,
                storage,
                runner,
                metrics,
                tracer,
                held: Mutex::new(HashMap::new()),
                admissions: Mutex::new(AdmissionWindow::default()),
                wake: Notify::new(),
                hand_back: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// Runs until `shutdown`, then drains: stops claiming, lets running attempts finish for up to the drain
    /// timeout, and hands the rest back (their leases expire at once, so other dispatchers take them over).
    pub async fn run(self, shutdown: CancellationToken) {
        let inner = self.inner;
        let background = CancellationToken::new();
        let heartbeat = tokio::spawn(inner.clone().heartbeat_loop(background.clone()));
        tokio::spawn(inner.clone().wake_listener(background.clone()));
        tokio::spawn(inner.clone().stats_loop(background.clone()));
        tokio::spawn(inner.clone().recovery_loop(shutdown.clone()));
        tokio::spawn(inner.clone().retry_loop(shutdown.clone()));
        if let Err(err) = limits::publish_defaults(&mut inner.redis.clone(), &inner.keys, inner.settings.limits).await {
            tracing::warn!(cause = %err, "publishing the default limits failed; retrying when admission needs them");
        }
        tracing::info!(dispatcher = %inner.settings.id, runner = inner.runner.name(), "dispatching");
        inner.clone().admission_loop(shutdown.clone()).await;

        let held = inner.held.lock().expect("held lock").len();
        tracing::info!(held, timeout_secs = inner.settings.drain_timeout.as_secs(), "draining");
        inner.tasks.close();
        if tokio::time::timeout(inner.settings.drain_timeout, inner.tasks.wait()).await.is_err() {
            let held = inner.held.lock().expect("held lock").len();
            tracing::warn!(held, "drain timeout: handing the remaining attempts back");
            inner.hand_back.cancel();
            inner.tasks.wait().await;
        }
        background.cancel();
        let _ = heartbeat.await;
        if let Err(err) = protocol::deregister(&mut inner.redis.clone(), &inner.keys, &inner.settings.id).await {
            tracing::debug!(cause = %err, "leaving the dispatcher registry failed; the entry ages out");
        }
        tracing::info!("dispatch loop stopped");
    }
}

impl Inner {
    /// Appends a dispatcher event (`seq` 0) to the status stream and the execution's progress stream, in one
    /// pipeline with the events of other attempts ending now (`crate::outbox`). Retried briefly; a lost event is
    /// recovered by the reconciler (the record stays non-terminal and is re-checked).
    async fn publish(&self, execution: Uuid, attempt: u32, event: StatusEvent) {
        if !self.outbox.publish(execution, attempt, event).await {
            tracing::error!(execution_id = %execution, "a status event could not be published");
        }
    }

    /// Ends the lease, together with the leases of other attempts ending now (one `release.lua` call).
    async fn release(&self, id: Uuid) {
        if !self.outbox.release(id).await {
            // Not released: the lease expires and the takeover finds the attempt finished.
            tracing::error!(execution_id = %id, "a lease could not be released; it will expire");
        }
    }

    async fn manifest(&self, id: Uuid, attempt: u32) -> Option<AttemptManifest> {
        let key = layout::manifest(id, attempt);
        match self.storage.get(&self.storage.content_bucket, &key).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).ok(),
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(execution_id = %id, cause = %err, "reading the attempt manifest failed");
                None
            }
        }
    }
}

/// How long a claimed attempt waited: a first attempt since its submission, a retry since its lane entry was
/// written (when its backoff ended and it became claimable again).
fn queue_wait(message: &QueueMessage, entry_id: &str, claimed_at_ms: i64) -> Duration {
    let since = if message.attempt <= 1 {
        message.queued_at_ms
    } else {
        entry_id.split_once('-').and_then(|(ms, _)| ms.parse().ok()).unwrap_or(message.queued_at_ms)
    };
    Duration::from_millis(u64::try_from(claimed_at_ms.saturating_sub(since)).unwrap_or(0))
}

fn owned_fields(fields: Vec<(&'static str, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    fields.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
}
