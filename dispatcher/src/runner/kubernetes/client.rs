//! The Kubernetes runner's API client: a `kube::Client` whose every request first waits for the rate limiter
//! (and, unless it is a watch, for one of a bounded number of request slots),
//! and whose "try again" answers (429, 5xx, connection failures) are retried with exponential backoff, never
//! sooner than the server's `Retry-After`, within a bound. What is still failing after the bound reaches the
//! caller as the last answer (a `kube::Error`), and the runner decides what the attempt does about it.
//!
//! Retrying a create is safe because Job names are deterministic: if the first request was applied after all,
//! the retry gets `409 AlreadyExists` and the runner adopts the Job.

use super::metrics::KubeMetrics;
use super::ratelimit::TokenBucket;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use rand::Rng as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Semaphore;
use tokio::time::{Duration, Instant};

/// How answers that say "try again" are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub max_retries: u32,
    /// Backoff before the first retry when the server gives no `Retry-After`; doubles per retry, with jitter.
    pub base_delay: Duration,
    /// Longest backoff between two tries.
    pub max_delay: Duration,
    /// No retry starts later than this after the first try; a `Retry-After` that would pass it ends the retries.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 8,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The pause before retry number `retry` (1-based) without a server hint: exponential with "equal jitter".
    fn backoff(&self, retry: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }
}

/// Counters of what the client sent, for metrics and tests.
#[derive(Debug, Default)]
pub struct ApiStats {
    requests: AtomicU64,
    retries: AtomicU64,
}

impl ApiStats {
    /// Requests sent to the API server, retries included.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests that were retries of an earlier one (after 429, 5xx or a connection failure).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

/// Wraps `inner` (built with `default_retry = false`, or its own retries bypass both the bound and the rate
/// limit) into a client that rate-limits and retries as described above. At most `max_concurrent` requests
/// other than watches are in flight at once (a watch holds its connection for minutes, so it takes no slot).
pub fn gated_client(
    inner: kube::Client,
    limiter: Arc<TokenBucket>,
    max_concurrent: usize,
    policy: RetryPolicy,
    stats: Arc<ApiStats>,
    metrics: KubeMetrics,
) -> kube::Client {
    let namespace = inner.default_namespace().to_owned();
    let slots = Arc::new(Semaphore::new(max_concurrent.max(1)));
    let service = tower::service_fn(move |request: Request<Body>| {
        let gate = Gate {
            inner: inner.clone(),
            limiter: limiter.clone(),
            slots: slots.clone(),
            policy: policy.clone(),
            stats: stats.clone(),
            metrics: metrics.clone(),
        };
        async move { gate.send(request).await }
    });
    kube::Client::new(service, namespace)
}

struct Gate {
    inner: kube::Client,
    limiter: Arc<TokenBucket>,
    slots: Arc<Semaphore>,
    policy: RetryPolicy,
    stats: Arc<ApiStats>,
    metrics: KubeMetrics,
}

impl Gate {
    async fn send(&self, request: Request<Body>) -> Result<Response<Body>, kube::Error> {
        let started = Instant::now();
        let mut request = request;
        let mut retry = 0u32;
        loop {
            // Streaming bodies cannot be replayed; kube's own requests all have complete bodies.
            let replay = copy_request(&request);
            // Held while this try is in flight, not while backing off.
            let _slot = if is_watch(&request) { None } else { self.slots.acquire().await.ok() };
            self.metrics.rate_limited(self.limiter.acquire().await);
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            if retry > 0 {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
            }
            let (method, uri) = (request.method().clone(), request.uri().clone());
            let sent = Instant::now();
            let result = self.inner.send(request).await;
            let code = match &result {
                Ok(response) => Some(response.status().as_u16()),
                Err(kube::Error::Api(status)) => Some(status.code),
                Err(_) => None,
            };
            self.metrics.request(&method, uri.path(), uri.query(), code, sent.elapsed());
            let server_hint = match &result {
                Ok(response) if is_retryable(response.status()) => retry_after(response),
                Ok(_) => return result,
                Err(err) if is_connection_failure(err) => None,
                Err(_) => return result,
            };
            retry += 1;
            let Some(next) = replay.filter(|_| retry <= self.policy.max_retries) else {
                return result;
            };
            let pause = server_hint.unwrap_or_else(|| self.policy.backoff(retry));
            if started.elapsed() + pause > self.policy.max_elapsed {
                return result;
            }
            match &result {
                Ok(response) => tracing::debug!(
                    status = response.status().as_u16(),
                    retry,
                    pause_ms = pause.as_millis() as u64,
                    "Kubernetes API asked to try again"
                ),
                Err(err) => tracing::debug!(cause = %err, retry, "Kubernetes API unreachable; trying again"),
            }
            drop(result);
            tokio::time::sleep(pause).await;
            request = next;
        }
    }
}

/// A watch request (`?watch=true`): long-lived, so it takes no request slot.
fn is_watch<B>(request: &Request<B>) -> bool {
    request.uri().query().is_some_and(|q| q.split('&').any(|pair| pair == "watch=true" || pair == "watch=1"))
}

/// 429 Too Many Requests and the 5xx answers a proxy or an overloaded API server gives.
fn is_retryable(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::INTERNAL_SERVER_ERROR
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

/// Failures to reach the API server at all (connection refused or reset, timeouts), as opposed to answers.
fn is_connection_failure(err: &kube::Error) -> bool {
    matches!(err, kube::Error::HyperError(_) | kube::Error::Service(_))
}

/// The server's `Retry-After` in seconds (the API server sends whole seconds, never an HTTP date).
fn retry_after<B>(response: &Response<B>) -> Option<Duration> {
    let value = response.headers().get(http::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn copy_request(request: &Request<Body>) -> Option<Request<Body>> {
    let body = request.body().try_clone()?;
    let mut copy =
        Request::builder().method(request.method().clone()).uri(request.uri().clone()).version(request.version());
    if let Some(headers) = copy.headers_mut() {
        headers.extend(request.headers().iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    copy.body(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400), "{third:?}");
            let late = policy.backoff(30);
            assert!(late >= Duration::from_millis(250) && late <= Duration::from_millis(500), "{late:?}");
        }
    }

    #[test]
    fn only_watch_requests_skip_the_request_slots() {
        let request = |uri: &str| Request::builder().uri(uri).body(()).unwrap();
        assert!(is_watch(&request("/apis/batch/v1/namespaces/d/jobs?labelSelector=a%3Db&watch=true")));
        assert!(is_watch(&request("/api/v1/namespaces/d/pods?watch=1&resourceVersion=5")));
        assert!(!is_watch(&request("/apis/batch/v1/namespaces/d/jobs?labelSelector=watch%3Dtrue")));
        assert!(!is_watch(&request("/apis/batch/v1/namespaces/d/jobs")));
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let response = Response::builder().status(429).header("Retry-After", "3").body(()).unwrap();
        assert_eq!(retry_after(&response), Some(Duration::from_secs(3)));
        let date = Response::builder().status(503).header("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(retry_after(&date.body(()).unwrap()), None);
        assert_eq!(retry_after(&Response::builder().status(500).body(()).unwrap()), None);
    }

    #[test]
    fn only_overload_answers_are_retried() {
        for code in [429, 500, 502, 503, 504] {
            assert!(is_retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [200, 201, 400, 403, 404, 409, 410, 422, 501] {
            assert!(!is_retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }
}
