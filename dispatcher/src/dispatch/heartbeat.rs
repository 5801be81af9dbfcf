//! The heartbeat (renews this dispatcher's leases, records it alive, passes cancellations on to running
//! attempts), the admission stats it writes for the queue view, and the wake-up subscription that ends the
//! admission loop's idle wait.

use super::*;

impl Inner {
    /// Renews the leases of the attempts this dispatcher runs, records it as alive, and passes cancellation
    /// requests on to the running attempts.
    pub(super) async fn heartbeat_loop(self: Arc<Self>, stop: CancellationToken) {
        let period = (self.settings.lease_ttl / 3).max(Duration::from_millis(100));
        let mut redis = self.redis.clone();
        loop {
            let held: Vec<(Uuid, CancellationToken)> =
                self.held.lock().expect("held lock").iter().map(|(id, token)| (*id, token.clone())).collect();
            let ids: Vec<Uuid> = held.iter().map(|(id, _)| *id).collect();
            match protocol::renew(&mut redis, &self.keys, &self.settings.id, &ids, self.settings.lease_ttl).await {
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

    /// Writes what this dispatcher admitted in the last minute and how many attempts it runs
    /// (`dispatcher_stats`), every `PUBLISH_EVERY`, for the queue view. Losing a write costs only freshness.
    pub(super) async fn stats_loop(self: Arc<Self>, stop: CancellationToken) {
        let mut redis = self.redis.clone();
        loop {
            let now = protocol::now_ms();
            let stats = DispatcherStats {
                at_ms: now,
                in_flight: self.held.lock().expect("held lock").len() as u64,
                admitted: self.admissions.lock().expect("admissions lock").snapshot(now),
            };
            if let Err(err) = dispatcher_stats::publish(&mut redis, &self.keys, &self.settings.id, &stats).await {
                tracing::debug!(cause = %err, "writing the admission stats failed");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(dispatcher_stats::PUBLISH_EVERY) => {}
            }
        }
    }

    /// Wakes the admission loop when work is enqueued or a slot is released anywhere.
    pub(super) async fn wake_listener(self: Arc<Self>, stop: CancellationToken) {
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
}
