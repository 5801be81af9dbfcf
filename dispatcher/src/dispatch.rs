//! The dispatch loop: admission under the concurrency limits, one task per admitted attempt, heartbeats,
//! takeover of leases whose dispatcher died, retries with backoff, dead letters, and the drain on shutdown.
//!
//! Every replica runs the same loop against the same Redis; there is no leader. Admission is one Lua script
//! (`shared/lua/admit.lua`) that claims a queue entry only when a slot is free for it and takes its lease in
//! the same step, so work this dispatcher cannot start stays available to the others and no limit is ever
//! exceeded. What happens to an attempt is reported as status events on `{prefix}:status`, which the status
//! pipeline (`crate::status_pipeline`) turns into PostgreSQL state.

use crate::health::Metrics;
use crate::kubernetes::manifest::ResourceOverrides;
use crate::metrics::DeadLetterReason;
use crate::outbox::Outbox;
use crate::runner::{Attempt, AttemptEnd, Runner, Started};
use flow_like_shared::keys::Keys;
use flow_like_shared::leases::{self, AdmitStop, Admitted, DeadLetter, Renewal, TakenOver};
use flow_like_shared::limits::{self, DefaultLimits};
use flow_like_shared::queue::QueueMessage;
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
    fn dead_letter<'a>(&'a self, fields: &'a [(String, Vec<u8>)], reason: &'a str) -> DeadLetter<'a> {
        DeadLetter {
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
        let _: Result<(), _> = redis::cmd("ZREM")
            .arg(inner.keys.dispatchers())
            .arg(&inner.settings.id)
            .query_async(&mut inner.redis.clone())
            .await;
        tracing::info!("dispatch loop stopped");
    }
}

impl Inner {
    async fn admission_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut redis = self.redis.clone();
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let room = self.settings.max_in_flight.saturating_sub(self.held.lock().expect("held lock").len());
            let mut stop = AdmitStop::Idle;
            if room > 0 {
                let step = Instant::now();
                match leases::admit(
                    &mut redis,
                    &self.keys,
                    &self.settings.id,
                    self.settings.lease_ttl,
                    room.min(self.settings.admit_batch),
                )
                .await
                {
                    Ok((why, admitted)) => {
                        failures = 0;
                        stop = why;
                        self.metrics.admission(admitted.len() as u64, step.elapsed());
                        if !admitted.is_empty() {
                            self.start_admitted(admitted, &shutdown).await;
                        }
                    }
                    Err(err) => {
                        failures += 1;
                        tracing::warn!(cause = %err, "admission failed");
                        stop = AdmitStop::Idle;
                        sleep_or_cancel(
                            backoff(Duration::from_millis(100), Duration::from_secs(5), failures),
                            &shutdown,
                        )
                        .await;
                    }
                }
            }
            match stop {
                AdmitStop::Batch => continue,
                AdmitStop::NoLimits => {
                    // Redis lost the limits (a restart without persistence, a FLUSHALL): publish them again.
                    if let Err(err) = limits::publish_defaults(&mut redis, &self.keys, self.settings.limits).await {
                        tracing::warn!(cause = %err, "publishing the default limits failed");
                    }
                    self.idle(&shutdown).await;
                }
                AdmitStop::Global | AdmitStop::Idle => self.idle(&shutdown).await,
            }
        }
    }

    async fn idle(&self, shutdown: &CancellationToken) {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = self.wake.notified() => {}
            () = tokio::time::sleep(IDLE_POLL) => {}
        }
    }

    /// Reads the claimed executions' records (one query) and starts a task per attempt.
    async fn start_admitted(self: &Arc<Self>, admitted: Vec<Admitted>, shutdown: &CancellationToken) {
        let now = leases::now_ms();
        let mut claims = Vec::with_capacity(admitted.len());
        for entry in admitted {
            match entry.message() {
                Ok(message) => {
                    self.metrics.queue_waited(queue_wait(&message, &entry.entry_id, now));
                    claims.push(Claim {
                        message,
                        lane: entry.lane,
                        entry_id: entry.entry_id,
                        fields: entry.fields,
                        claimed_at_ms: now,
                        deliveries: 1,
                        takeover: false,
                    });
                }
                Err(err) => {
                    let id = leases::field_map(&entry.fields).get("id").and_then(|v| match v {
                        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse::<Uuid>().ok(),
                        _ => None,
                    });
                    let reason = format!("malformed queue entry: {err}");
                    let dead = DeadLetter {
                        execution_id: id,
                        lane: &entry.lane,
                        entry_id: &entry.entry_id,
                        fields: &entry.fields,
                        reason: &reason,
                        deliveries: 1,
                    };
                    self.dead_letter_raw(dead, DeadLetterReason::Malformed).await;
                }
            }
        }
        let ids: Vec<Uuid> = claims.iter().map(|c| c.message.execution_id).collect();
        let mut rows: HashMap<Uuid, DispatchRow> =
            self.rows_with_retry(&ids, shutdown).await.into_iter().map(|row| (row.id, row)).collect();
        for claim in claims {
            let row = rows.remove(&claim.message.execution_id);
            self.spawn_attempt(claim, row);
        }
    }

    /// PostgreSQL rows for `ids`, retried while PostgreSQL is unavailable (the leases stay renewed meanwhile).
    async fn rows_with_retry(&self, ids: &[Uuid], shutdown: &CancellationToken) -> Vec<DispatchRow> {
        let mut failures = 0;
        loop {
            match dispatch::rows(&self.db, ids).await {
                Ok(rows) => return rows,
                Err(err) => {
                    failures += 1;
                    tracing::warn!(cause = %err, "reading claimed executions failed; retrying");
                    if shutdown.is_cancelled() && failures > 3 {
                        return Vec::new();
                    }
                    tokio::time::sleep(backoff(Duration::from_millis(200), Duration::from_secs(5), failures)).await;
                }
            }
        }
    }

    fn spawn_attempt(self: &Arc<Self>, claim: Claim, row: Option<DispatchRow>) {
        let cancel = CancellationToken::new();
        self.held.lock().expect("held lock").insert(claim.message.execution_id, cancel.clone());
        let inner = self.clone();
        self.tasks.spawn(async move {
            let id = claim.message.execution_id;
            inner.run_attempt(claim, row, cancel).await;
            inner.held.lock().expect("held lock").remove(&id);
        });
    }

    /// Runs one claimed attempt, inside its `attempt` span when traces are on.
    async fn run_attempt(self: &Arc<Self>, claim: Claim, row: Option<DispatchRow>, cancel: CancellationToken) {
        let span = self.tracer.is_enabled().then(|| self.attempt_span(&claim));
        let end = self.run_traced(claim, row, cancel, span.as_ref().map(|s| s.context)).await;
        if let Some(mut span) = span {
            span.attr("flowlike.end", end);
            self.tracer.end(span);
        }
    }

    /// Records the attempt's `queued` span (its wait for admission) and starts its `attempt` span, both under the
    /// execution's submit span (or in a trace of its own when the execution was submitted without traces).
    fn attempt_span(&self, claim: &Claim) -> Span {
        let message = &claim.message;
        let parent = message.body.traceparent.as_deref().and_then(SpanContext::parse);
        let context = parent.map_or_else(|| SpanContext::root(message.execution_id), |p| p.child());
        let at = |ms: i64| UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        let claimed = at(claim.claimed_at_ms);
        if !claim.takeover {
            let waited = queue_wait(message, &claim.entry_id, claim.claimed_at_ms);
            let mut queued = Span::starting_at("queued", SpanKind::Internal, context.child(), parent, claimed - waited);
            queued.int("flowlike.attempt", i64::from(message.attempt)).attr("flowlike.tenant", message.tenant.as_str());
            queued.end = Some(claimed);
            self.tracer.record(queued);
        }
        let mut span =
            Span::starting_at(format!("attempt {}", message.attempt), SpanKind::Consumer, context, parent, claimed);
        span.attr("flowlike.execution_id", message.execution_id.to_string())
            .int("flowlike.attempt", i64::from(message.attempt))
            .attr("flowlike.tenant", message.tenant.as_str())
            .attr("flowlike.workflow", message.workflow.as_str())
            .attr("flowlike.runner", self.runner.name())
            .attr("flowlike.dispatcher", self.settings.id.as_str())
            .flag("flowlike.takeover", claim.takeover);
        span
    }

    /// How the attempt went, for its span: `released` (nothing to run), `finished` (from the manifest),
    /// `failed_to_start`, `handed_back`, or what `conclude` decided.
    async fn run_traced(
        self: &Arc<Self>,
        claim: Claim,
        row: Option<DispatchRow>,
        cancel: CancellationToken,
        trace: Option<SpanContext>,
    ) -> &'static str {
        let message = &claim.message;
        let id = message.execution_id;
        let Some(row) = row else {
            // Withdrawn by the API after a failed enqueue, or the record was deleted: nothing to run.
            tracing::warn!(execution_id = %id, "claimed an execution PostgreSQL does not have; dropping it");
            self.release(id).await;
            return "released";
        };
        if row.status().is_terminal() {
            tracing::info!(execution_id = %id, status = row.status().as_str(), "claimed an execution that already ended");
            self.release(id).await;
            return "released";
        }
        if claim.takeover
            && let Some(manifest) = Box::pin(self.manifest(id, message.attempt)).await
        {
            tracing::info!(execution_id = %id, attempt = message.attempt, "taken-over attempt had finished");
            Box::pin(self.finish_from_manifest(message, manifest)).await;
            return "finished";
        }
        if self.runner.needs_spec()
            && let Err(reason) = Box::pin(self.write_spec(&row)).await
        {
            self.infra_failure(&claim, reason).await;
            return "failed_to_start";
        }
        let attempt = Attempt {
            execution_id: id,
            attempt: message.attempt,
            tenant: message.tenant.clone(),
            workflow: message.workflow.clone(),
            deadline_ms: row.deadline_ms(),
            resources: row.resources().map(|(cpu, memory)| ResourceOverrides { cpu, memory }),
            takeover: claim.takeover,
            trace,
        };
        // The workflow document and input are in the spec now; the attempt may run for hours without them.
        drop(row);
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<Started>();
        let announce = async {
            if let Ok(started) = started_rx.await {
                let event = StatusEvent::Dispatched {
                    dispatcher: self.settings.id.clone(),
                    runner: self.runner.name().to_owned(),
                    runner_ref: started.runner_ref,
                    claimed_at_ms: claim.claimed_at_ms,
                };
                self.publish(id, message.attempt, event).await;
            }
        };
        let run = self.runner.run(&attempt, started_tx, cancel);
        let end = tokio::select! {
            (end, ()) = async { tokio::join!(run, announce) } => end,
            () = self.hand_back.cancelled() => {
                self.hand_back_lease(id).await;
                return "handed_back";
            }
        };
        Box::pin(self.conclude(&claim, end)).await
    }

    /// Acts on how an attempt ended, and says which way it went.
    async fn conclude(&self, claim: &Claim, end: AttemptEnd) -> &'static str {
        let message = &claim.message;
        let id = message.execution_id;
        match end {
            AttemptEnd::Reported { exit_code } => {
                tracing::debug!(execution_id = %id, exit_code, "attempt ended; the executor reported it");
                self.metrics.finished();
                self.release(id).await;
                "reported"
            }
            AttemptEnd::Concluded { outcome, error } => {
                self.publish_finished(message, outcome, error, None).await;
                self.metrics.finished();
                self.release(id).await;
                "concluded"
            }
            AttemptEnd::Fail { reason } => {
                tracing::warn!(execution_id = %id, %reason, "attempt cannot run");
                self.publish_finished(message, FinishedOutcome::Failed, Some(reason), None).await;
                self.metrics.finished();
                self.release(id).await;
                "failed"
            }
            AttemptEnd::Retry { reason } => {
                // The executor may have finished and only its report been lost: the manifest decides.
                if let Some(manifest) = Box::pin(self.manifest(id, message.attempt)).await {
                    Box::pin(self.finish_from_manifest(message, manifest)).await;
                    return "finished";
                }
                self.infra_failure(claim, reason).await;
                "retried"
            }
        }
    }

    /// The attempt failed on infrastructure: schedule the next one after a backoff (its slot is free
    /// meanwhile), or dead-letter the message when this was the last attempt allowed.
    async fn infra_failure(&self, claim: &Claim, reason: String) {
        let message = &claim.message;
        let id = message.execution_id;
        if message.attempt >= self.settings.max_attempts {
            let reason = format!("attempt {} of {} failed: {reason}", message.attempt, self.settings.max_attempts);
            tracing::warn!(execution_id = %id, %reason, "dead-lettering");
            let fields = message.to_fields().map(owned_fields).unwrap_or_else(|_| claim.fields.clone());
            self.dead_letter_raw(claim.dead_letter(&fields, &reason), DeadLetterReason::AttemptsExhausted).await;
            return;
        }
        let delay = jittered(backoff(self.settings.retry_backoff, self.settings.retry_backoff_max, message.attempt));
        let due_ms = leases::now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        let next = QueueMessage { attempt: message.attempt + 1, ..message.clone() };
        tracing::warn!(execution_id = %id, attempt = message.attempt, %reason, retry_in_ms = delay.as_millis() as u64, "attempt failed on infrastructure; retrying");
        self.publish(
            id,
            message.attempt,
            StatusEvent::Retrying { error: reason, next_attempt: next.attempt, retry_at_ms: due_ms },
        )
        .await;
        self.metrics.retried();
        let mut redis = self.redis.clone();
        if let Err(err) = leases::schedule_retry(&mut redis, &self.keys, &self.settings.id, &next, due_ms).await {
            // The lease stays and expires; the takeover runs the attempt again.
            tracing::error!(execution_id = %id, cause = %err, "scheduling the retry failed");
        }
    }

    async fn dead_letter_raw(&self, dead: DeadLetter<'_>, why: DeadLetterReason) {
        let DeadLetter { execution_id: id, fields, reason, .. } = dead;
        let mut redis = self.redis.clone();
        match leases::dead_letter(&mut redis, &self.keys, &self.settings.id, &dead).await {
            Ok(entry) => {
                self.metrics.dead_lettered(why);
                tracing::warn!(execution_id = ?id, dead_letter = %entry, %reason, "message dead-lettered");
            }
            Err(err) => tracing::error!(execution_id = ?id, cause = %err, "dead-lettering failed"),
        }
        if let Some(id) = id {
            let attempt = leases::field_map(fields)
                .get("attempt")
                .and_then(|v| match v {
                    redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
                    _ => None,
                })
                .unwrap_or(1);
            let event = StatusEvent::Finished {
                outcome: FinishedOutcome::Failed,
                error: Some(format!("dead-lettered: {reason}")),
                result_key: None,
                duration_ms: 0,
                nodes: Vec::new(),
            };
            self.publish(id, attempt, event).await;
        }
    }

    async fn finish_from_manifest(&self, message: &QueueMessage, manifest: AttemptManifest) {
        let error = (manifest.outcome != FinishedOutcome::Succeeded)
            .then(|| format!("attempt {} ended {}", manifest.attempt, manifest.outcome));
        self.publish_finished(message, manifest.outcome, error, manifest.result_key).await;
        self.metrics.finished();
        self.release(message.execution_id).await;
    }

    async fn publish_finished(
        &self,
        message: &QueueMessage,
        outcome: FinishedOutcome,
        error: Option<String>,
        result_key: Option<String>,
    ) {
        let event = StatusEvent::Finished { outcome, error, result_key, duration_ms: 0, nodes: Vec::new() };
        self.publish(message.execution_id, message.attempt, event).await;
    }

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

    /// Marks the lease expired so that another dispatcher takes the attempt over at once.
    async fn hand_back_lease(&self, id: Uuid) {
        let mut redis = self.redis.clone();
        let id = id.to_string();
        let lease: HashMap<String, String> =
            match redis::cmd("HGETALL").arg(self.keys.lease(&id)).query_async(&mut redis).await {
                Ok(lease) => lease,
                Err(err) => {
                    tracing::warn!(execution_id = %id, cause = %err, "reading the lease to hand it back failed");
                    return;
                }
            };
        if lease.get("dispatcher") != Some(&self.settings.id) {
            return;
        }
        let (tenant, workflow) =
            (lease.get("tenant").cloned().unwrap_or_default(), lease.get("workflow").cloned().unwrap_or_default());
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD").arg(self.keys.active()).arg("XX").arg(0).arg(&id).ignore();
        pipe.cmd("ZADD").arg(self.keys.active_tenant(&tenant)).arg("XX").arg(0).arg(&id).ignore();
        pipe.cmd("ZADD").arg(self.keys.active_workflow(&tenant, &workflow)).arg("XX").arg(0).arg(&id).ignore();
        if let Err(err) = pipe.query_async::<()>(&mut redis).await {
            tracing::warn!(execution_id = %id, cause = %err, "handing back a lease failed; it expires on its own");
        } else {
            tracing::info!(execution_id = %id, "attempt handed back to the other dispatchers");
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

    async fn write_spec(&self, row: &DispatchRow) -> Result<(), String> {
        let spec = AttemptSpec {
            execution_id: row.id,
            tenant: row.tenant.clone(),
            workflow_name: row.workflow_name.clone(),
            workflow: row.workflow.clone(),
            input: if row.input_key.is_some() {
                None
            } else {
                Some(row.input.clone().unwrap_or(serde_json::Value::Null))
            },
            input_key: row.input_key.clone(),
        };
        let body = serde_json::to_vec(&spec).map_err(|e| format!("encoding the spec failed: {e}"))?;
        // A full admission batch must not open a connection per attempt to the S3 server at once.
        let _slot = self.spec_writes.acquire().await.map_err(|_| "the dispatcher is stopping".to_owned())?;
        self.storage
            .put(&self.storage.meta_bucket, &layout::spec(row.id), body.into(), "application/json")
            .await
            .map_err(|e| format!("writing the spec failed: {e}"))
    }

    /// Renews the leases of the attempts this dispatcher runs, records it as alive, and passes cancellation
    /// requests on to the running attempts.
    async fn heartbeat_loop(self: Arc<Self>, stop: CancellationToken) {
        let period = (self.settings.lease_ttl / 3).max(Duration::from_millis(100));
        let mut redis = self.redis.clone();
        loop {
            let held: Vec<(Uuid, CancellationToken)> =
                self.held.lock().expect("held lock").iter().map(|(id, token)| (*id, token.clone())).collect();
            let ids: Vec<Uuid> = held.iter().map(|(id, _)| *id).collect();
            match leases::renew(&mut redis, &self.keys, &self.settings.id, &ids, self.settings.lease_ttl).await {
                Ok(states) => {
                    for ((id, token), state) in held.iter().zip(states) {
                        match state {
                            Renewal::Renewed => {}
                            Renewal::CancelRequested => {
                                if !token.is_cancelled() {
                                    tracing::info!(execution_id = %id, "cancellation requested; stopping the attempt");
                                    token.cancel();
                                }
                            }
                            Renewal::Lost => {
                                tracing::warn!(execution_id = %id, "lease lost (taken over or gone); the attempt continues but is no longer ours")
                            }
                        }
                    }
                }
                Err(err) => tracing::warn!(cause = %err, "heartbeat failed"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
        }
    }

    /// Wakes the admission loop when work is enqueued or a slot is released anywhere.
    async fn wake_listener(self: Arc<Self>, stop: CancellationToken) {
        let channel = self.keys.wake();
        let mut failures = 0;
        loop {
            let session = async {
                let mut pubsub = self.redis_client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                let mut messages = pubsub.on_message();
                while messages.next().await.is_some() {
                    self.wake.notify_one();
                }
                Ok::<(), redis::RedisError>(())
            };
            tokio::select! {
                () = stop.cancelled() => return,
                result = session => {
                    failures += 1;
                    if let Err(err) = result {
                        tracing::debug!(cause = %err, "wake subscription ended; reconnecting");
                    }
                }
            }
            sleep_or_cancel(backoff(Duration::from_millis(100), Duration::from_secs(5), failures), &stop).await;
        }
    }

    /// Takes over leases whose dispatcher stopped heartbeating and resumes (or dead-letters) their attempts.
    async fn recovery_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let period = (self.settings.lease_ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let mut redis = self.redis.clone();
        while !shutdown.is_cancelled() {
            let room = self.settings.max_in_flight.saturating_sub(self.held.lock().expect("held lock").len());
            if room > 0 {
                match leases::take_over(
                    &mut redis,
                    &self.keys,
                    &self.settings.id,
                    self.settings.lease_ttl,
                    room.min(64),
                )
                .await
                {
                    Ok(taken) if !taken.is_empty() => self.resume(taken, &shutdown).await,
                    Ok(_) => {}
                    Err(err) => tracing::warn!(cause = %err, "lease takeover failed"),
                }
            }
            sleep_or_cancel(period, &shutdown).await;
        }
    }

    async fn resume(self: &Arc<Self>, taken: Vec<TakenOver>, shutdown: &CancellationToken) {
        self.metrics.taken_over(taken.len() as u64);
        let ids: Vec<Uuid> = taken.iter().filter_map(|t| t.execution_id.parse().ok()).collect();
        let mut rows: HashMap<Uuid, DispatchRow> =
            self.rows_with_retry(&ids, shutdown).await.into_iter().map(|row| (row.id, row)).collect();
        for lease in taken {
            let Ok(id) = lease.execution_id.parse::<Uuid>() else { continue };
            let row = rows.remove(&id);
            tracing::warn!(execution_id = %id, attempt = lease.attempt, from = %lease.previous_holder, deliveries = lease.deliveries, "took over an attempt whose dispatcher stopped heartbeating");
            let message = match (&row, leases::field_map(&lease.fields)) {
                (_, fields) if !fields.is_empty() => QueueMessage::from_fields(&fields).ok(),
                (Some(row), _) => Some(row.queue_message(lease.attempt)),
                (None, _) => None,
            };
            let Some(message) = message else {
                // Neither the entry nor the record is left: free the slot.
                let mut redis = self.redis.clone();
                let _ = leases::release(&mut redis, &self.keys, &self.settings.id, &[id]).await;
                continue;
            };
            let claim = Claim {
                message: QueueMessage { attempt: lease.attempt, ..message },
                lane: lease.lane.clone(),
                entry_id: lease.entry_id.clone(),
                fields: lease.fields.clone(),
                claimed_at_ms: leases::now_ms(),
                deliveries: lease.deliveries,
                takeover: true,
            };
            if lease.deliveries > self.settings.max_deliveries {
                let reason = format!(
                    "delivered {} times without finishing (last holder {} stopped heartbeating)",
                    lease.deliveries, lease.previous_holder
                );
                let fields = claim.message.to_fields().map(owned_fields).unwrap_or_default();
                self.dead_letter_raw(claim.dead_letter(&fields, &reason), DeadLetterReason::DeliveriesExhausted).await;
                continue;
            }
            self.spawn_attempt(claim, row);
        }
    }

    /// Moves retries whose backoff is over back into their lanes.
    async fn retry_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut redis = self.redis.clone();
        while !shutdown.is_cancelled() {
            if let Err(err) = leases::promote_due(&mut redis, &self.keys, 100).await {
                tracing::warn!(cause = %err, "promoting due retries failed");
            }
            sleep_or_cancel(Duration::from_millis(250), &shutdown).await;
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

/// `base * 2^(n-1)`, at most `max`.
pub fn backoff(base: Duration, max: Duration, n: u32) -> Duration {
    base.saturating_mul(1u32 << n.saturating_sub(1).min(20)).min(max)
}

/// ±20 % jitter, so retries of executions that failed together do not return together.
fn jittered(delay: Duration) -> Duration {
    let factor = 0.8 + rand::random::<f64>() * 0.4;
    delay.mul_f64(factor)
}

async fn sleep_or_cancel(delay: Duration, cancel: &CancellationToken) {
    tokio::select! {
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(delay) => {}
    }
}
