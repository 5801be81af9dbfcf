//! The client-side rate limit of the Kubernetes runner: one token bucket (`KUBE_QPS` tokens per second, at most
//! `KUBE_BURST` saved up) that every API request waits on, watches and retries included, so a burst of attempts
//! cannot flood the API server (whose own flow control would answer 429).

use std::sync::Mutex;
use tokio::time::{Duration, Instant};

#[derive(Debug)]
pub struct TokenBucket {
    /// Tokens added per second; `None` when the limit is disabled.
    rate: Option<f64>,
    capacity: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    /// Saved tokens; negative while callers wait for tokens already promised to them.
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// `qps` tokens per second with room for `burst` (at least 1); a `qps` of 0 (or not a positive number)
    /// disables the limit.
    pub fn new(qps: f64, burst: u32) -> Self {
        let rate = (qps.is_finite() && qps > 0.0).then_some(qps);
        let capacity = f64::from(burst.max(1));
        Self { rate, capacity, state: Mutex::new(BucketState { tokens: capacity, updated: Instant::now() }) }
    }

    /// Waits for one token. Callers are served in the order they asked: each one is promised the next token
    /// and sleeps until it is due, so waiting never spins. Returns how long it waited.
    pub async fn acquire(&self) -> Duration {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }

    /// Takes the next token, possibly on credit, and says how long until it is due.
    fn reserve(&self) -> Duration {
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(state.updated).as_secs_f64();
        state.tokens = (state.tokens + elapsed * rate).min(self.capacity);
        state.updated = now;
        state.tokens -= 1.0;
        if state.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-state.tokens / rate) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn take(bucket: &TokenBucket, n: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            bucket.acquire().await;
        }
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn burst_is_free_then_the_rate_applies() {
        let bucket = TokenBucket::new(10.0, 5);
        assert_eq!(take(&bucket, 5).await, Duration::ZERO);
        // 10 more at 10/s: one second.
        let took = take(&bucket, 10).await;
        assert!(took >= Duration::from_millis(999) && took <= Duration::from_millis(1010), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_refills_up_to_the_burst_only() {
        let bucket = TokenBucket::new(2.0, 3);
        take(&bucket, 3).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(take(&bucket, 3).await, Duration::ZERO);
        let took = take(&bucket, 1).await;
        assert!(took >= Duration::from_millis(499), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_the_rate() {
        let bucket = std::sync::Arc::new(TokenBucket::new(20.0, 1));
        let start = Instant::now();
        let tasks: Vec<_> = (0..21)
            .map(|_| {
                let bucket = bucket.clone();
                tokio::spawn(async move { bucket.acquire().await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // One from the burst, 20 at 20/s.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(999) && took <= Duration::from_millis(1010), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_qps_disables_the_limit() {
        let bucket = TokenBucket::new(0.0, 1);
        assert_eq!(take(&bucket, 1000).await, Duration::ZERO);
    }
}
