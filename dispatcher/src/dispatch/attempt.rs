//! One claimed attempt, from its task's start to how it ended: the spec written for the executor, the runner's
//! run, the `dispatched` event, and the conclusion (release, retry after a backoff, or dead letter). At the end
//! of a drain an attempt still running is handed back to the other dispatchers.

use super::*;

impl Inner {
    pub(super) fn spawn_attempt(self: &Arc<Self>, claim: Claim, row: Option<DispatchRow>) {
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
    pub(super) async fn run_attempt(
        self: &Arc<Self>,
        claim: Claim,
        row: Option<DispatchRow>,
        cancel: CancellationToken,
    ) {
        let span = self.tracer.is_enabled().then(|| self.attempt_span(&claim));
        let end = self.run_traced(claim, row, cancel, span.as_ref().map(|s| s.context)).await;
        if let Some(mut span) = span {
            span.attr("flowlike.end", end);
            self.tracer.end(span);
        }
    }

    /// Records the attempt's `queued` span (its wait for admission) and starts its `attempt` span, both under the
    /// execution's submit span (or in a trace of its own when the execution was submitted without traces).
    pub(super) fn attempt_span(&self, claim: &Claim) -> Span {
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
    pub(super) async fn run_traced(
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
            resources: row.resources(),
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
    pub(super) async fn conclude(&self, claim: &Claim, end: AttemptEnd) -> &'static str {
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
    pub(super) async fn infra_failure(&self, claim: &Claim, reason: String) {
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
        let due_ms = protocol::now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        let next = message.next_attempt();
        tracing::warn!(execution_id = %id, attempt = message.attempt, %reason, retry_in_ms = delay.as_millis() as u64, "attempt failed on infrastructure; retrying");
        self.publish(
            id,
            message.attempt,
            StatusEvent::Retrying { error: reason, next_attempt: next.attempt, retry_at_ms: due_ms },
        )
        .await;
        self.metrics.retried();
        let mut redis = self.redis.clone();
        if let Err(err) = protocol::schedule_retry(&mut redis, &self.keys, &self.settings.id, &next, due_ms).await {
            // The lease stays and expires; the takeover runs the attempt again.
            tracing::error!(execution_id = %id, cause = %err, "scheduling the retry failed");
        }
    }

    pub(super) async fn dead_letter_raw(&self, dead: NewDeadLetter<'_>, why: DeadLetterReason) {
        let NewDeadLetter { execution_id: id, fields, reason, .. } = dead;
        let mut redis = self.redis.clone();
        match protocol::dead_letter(&mut redis, &self.keys, &self.settings.id, &dead).await {
            Ok(entry) => {
                self.metrics.dead_lettered(why);
                tracing::warn!(execution_id = ?id, dead_letter = %entry, %reason, "message dead-lettered");
            }
            Err(err) => tracing::error!(execution_id = ?id, cause = %err, "dead-lettering failed"),
        }
        if let Some(id) = id {
            let attempt = protocol::parsed_field(fields, "attempt").unwrap_or(1);
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

    pub(super) async fn finish_from_manifest(&self, message: &QueueMessage, manifest: AttemptManifest) {
        let error = (manifest.outcome != FinishedOutcome::Succeeded)
            .then(|| format!("attempt {} ended {}", manifest.attempt, manifest.outcome));
        self.publish_finished(message, manifest.outcome, error, manifest.result_key).await;
        self.metrics.finished();
        self.release(message.execution_id).await;
    }

    pub(super) async fn publish_finished(
        &self,
        message: &QueueMessage,
        outcome: FinishedOutcome,
        error: Option<String>,
        result_key: Option<String>,
    ) {
        let event = StatusEvent::Finished { outcome, error, result_key, duration_ms: 0, nodes: Vec::new() };
        self.publish(message.execution_id, message.attempt, event).await;
    }

    /// Marks the lease expired so that another dispatcher takes the attempt over at once.
    pub(super) async fn hand_back_lease(&self, id: Uuid) {
        match protocol::hand_back(&mut self.redis.clone(), &self.keys, &self.settings.id, id).await {
            Ok(true) => tracing::info!(execution_id = %id, "attempt handed back to the other dispatchers"),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(execution_id = %id, cause = %err, "handing back a lease failed; it expires on its own")
            }
        }
    }

    pub(super) async fn write_spec(&self, row: &DispatchRow) -> Result<(), String> {
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
}
