//! Recovery: takes over leases whose dispatcher stopped heartbeating (resuming, finishing from the manifest or
//! dead-lettering their attempts), and moves retries whose backoff is over back into their lanes.

use super::*;

impl Inner {
    /// Takes over leases whose dispatcher stopped heartbeating and resumes (or dead-letters) their attempts.
    pub(super) async fn recovery_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let period = (self.settings.lease_ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let mut redis = self.redis.clone();
        while !shutdown.is_cancelled() {
            let room = self.settings.max_in_flight.saturating_sub(self.held.lock().expect("held lock").len());
            if room > 0 {
                match protocol::take_over(
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

    pub(super) async fn resume(self: &Arc<Self>, taken: Vec<TakenOver>, shutdown: &CancellationToken) {
        self.metrics.taken_over(taken.len() as u64);
        let ids: Vec<Uuid> = taken.iter().filter_map(|t| t.execution_id.parse().ok()).collect();
        let mut rows: HashMap<Uuid, DispatchRow> =
            self.rows_with_retry(&ids, shutdown).await.into_iter().map(|row| (row.id, row)).collect();
        for lease in taken {
            let Ok(id) = lease.execution_id.parse::<Uuid>() else { continue };
            let row = rows.remove(&id);
            tracing::warn!(execution_id = %id, attempt = lease.attempt, from = %lease.previous_holder, deliveries = lease.deliveries, "took over an attempt whose dispatcher stopped heartbeating");
            let message = match (&row, protocol::field_map(&lease.fields)) {
                (_, fields) if !fields.is_empty() => QueueMessage::from_fields(&fields).ok(),
                (Some(row), _) => Some(row.queue_message(lease.attempt)),
                (None, _) => None,
            };
            let Some(message) = message else {
                // Neither the entry nor the record is left: free the slot.
                let mut redis = self.redis.clone();
                let _ = protocol::release(&mut redis, &self.keys, &self.settings.id, &[id]).await;
                continue;
            };
            let claim = Claim {
                message: message.with_attempt(lease.attempt),
                lane: lease.lane.clone(),
                entry_id: lease.entry_id.clone(),
                fields: lease.fields.clone(),
                claimed_at_ms: protocol::now_ms(),
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
    pub(super) async fn retry_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut redis = self.redis.clone();
        while !shutdown.is_cancelled() {
            if let Err(err) = protocol::promote_due(&mut redis, &self.keys, 100).await {
                tracing::warn!(cause = %err, "promoting due retries failed");
            }
            sleep_or_cancel(Duration::from_millis(250), &shutdown).await;
        }
    }
}
