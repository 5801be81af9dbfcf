//! Waiting between tries: exponential backoff with a cap, jitter, and a sleep that ends early on shutdown.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `base * 2^(n-1)`, at most `max`.
pub fn backoff(base: Duration, max: Duration, n: u32) -> Duration {
    base.saturating_mul(1u32 << n.saturating_sub(1).min(20)).min(max)
}

/// ±20 % jitter, so retries of executions that failed together do not return together.
pub fn jittered(delay: Duration) -> Duration {
    let factor = 0.8 + rand::random::<f64>() * 0.4;
    delay.mul_f64(factor)
}

/// Sleeps for `delay`, or until `cancel` fires.
pub async fn sleep_or_cancel(delay: Duration, cancel: &CancellationToken) {
    tokio::select! {
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(delay) => {}
    }
}
