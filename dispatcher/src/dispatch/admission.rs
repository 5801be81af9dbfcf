//! The admission loop: claims what this dispatcher can start (up to its in-flight bound, a batch per call),
//! reads the claimed executions' records in one query and starts one task per attempt; sleeps until woken (work
//! enqueued or a slot freed anywhere) or the idle poll when there is nothing to admit.

use super::*;

impl Inner {
    pub(super) async fn admission_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut redis = self.redis.clone();
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let room = self.settings.max_in_flight.saturating_sub(self.held.lock().expect("held lock").len());
            let mut stop = AdmitStop::Idle;
            if room > 0 {
                let step = Instant::now();
                match protocol::admit(
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

    pub(super) async fn idle(&self, shutdown: &CancellationToken) {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = self.wake.notified() => {}
            () = tokio::time::sleep(IDLE_POLL) => {}
        }
    }

    /// Reads the claimed executions' records (one query) and starts a task per attempt.
    pub(super) async fn start_admitted(self: &Arc<Self>, admitted: Vec<Admitted>, shutdown: &CancellationToken) {
        let now = protocol::now_ms();
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
                    let id = protocol::parsed_field::<Uuid>(&entry.fields, "id");
                    let reason = format!("malformed queue entry: {err}");
                    let dead = NewDeadLetter {
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
        {
            let mut window = self.admissions.lock().expect("admissions lock");
            for claim in &claims {
                let waited = queue_wait(&claim.message, &claim.entry_id, now).as_millis();
                let (tenant, workflow) = (&claim.message.tenant, &claim.message.workflow);
                window.record(now, tenant, workflow, u64::try_from(waited).unwrap_or(u64::MAX));
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
    pub(super) async fn rows_with_retry(&self, ids: &[Uuid], shutdown: &CancellationToken) -> Vec<DispatchRow> {
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
}
