//! The submission run: issue a tenant key with the admin token, warm up, then submit executions from
//! `concurrency` tasks sharing one keep-alive connection pool and time every request.

use super::LoadgenError;
use super::stats::LatencySummary;
use reqwest::StatusCode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The inline workflow every submission carries: one transform node, so validation is cheap but real.
pub const BENCH_WORKFLOW: &str =
    r#"{"name":"bench","nodes":{"t":{"type":"transform","params":{"expr":".input.n + 1"}}},"output":"t"}"#;

/// What one run does.
#[derive(Debug, Clone)]
pub struct SubmitOptions {
    /// Base URL of the API, e.g. `http://127.0.0.1:8080`.
    pub api_url: String,
    pub admin_token: String,
    pub tenant: String,
    pub requests: u64,
    pub concurrency: usize,
    pub warmup: u64,
    pub request_timeout: Duration,
}

/// Figures of the measured phase.
#[derive(Debug, Clone)]
pub struct SubmitOutcome {
    pub requests: u64,
    pub concurrency: usize,
    pub elapsed: Duration,
    pub accepted: u64,
    /// Everything but 202, by kind: `HTTP 503`, `timeout`, `connect`, `transport`.
    pub errors: BTreeMap<String, u64>,
    /// The first non-202 answer or transport error, for the report.
    pub first_error: Option<String>,
    /// Latency of every request, accepted or not.
    pub latency: Option<LatencySummary>,
}

impl SubmitOutcome {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Accepted submissions per second of wall-clock time.
    pub fn submissions_per_sec(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// One request body; the input differs per request so no layer can serve it from a cache.
pub fn submission_body(n: u64) -> String {
    format!(r#"{{"workflow":{BENCH_WORKFLOW},"input":{{"n":{n}}}}}"#)
}

/// An HTTP/1.1 client whose pool keeps one idle connection per task, so the measured phase opens none.
pub fn http_client(options: &SubmitOptions) -> Result<reqwest::Client, LoadgenError> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(options.concurrency)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(options.request_timeout)
        .build()
        .map_err(LoadgenError::HttpClient)
}

/// Issues an API key for `options.tenant` (the tenant is created on first use).
pub async fn create_key(client: &reqwest::Client, options: &SubmitOptions) -> Result<String, LoadgenError> {
    #[derive(serde::Deserialize)]
    struct Issued {
        key: String,
    }
    let url = format!("{}/api/v1/tenants/{}/api-keys", options.api_url.trim_end_matches('/'), options.tenant);
    let failed = |source| LoadgenError::CreateKey { tenant: options.tenant.clone(), source };
    let response = client.post(url).bearer_auth(&options.admin_token).send().await.map_err(failed)?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(LoadgenError::CreateKeyRefused { status: status.as_u16(), body });
    }
    Ok(response.json::<Issued>().await.map_err(failed)?.key)
}

/// What the tasks of one phase recorded.
#[derive(Debug, Default)]
struct PhaseRecord {
    latencies: Vec<Duration>,
    accepted: u64,
    errors: BTreeMap<String, u64>,
    first_error: Option<String>,
}

impl PhaseRecord {
    fn merge(&mut self, other: PhaseRecord) {
        self.latencies.extend(other.latencies);
        self.accepted += other.accepted;
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn failure(&mut self, kind: String, detail: String) {
        *self.errors.entry(kind).or_default() += 1;
        self.first_error.get_or_insert(detail);
    }
}

fn transport_kind(err: &reqwest::Error) -> &'static str {
    if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connect"
    } else {
        "transport"
    }
}

/// One task: takes request numbers from `next` until `end`, submitting each and waiting for the answer.
async fn submit_loop(
    client: reqwest::Client,
    url: Arc<str>,
    key: Arc<str>,
    next: Arc<AtomicU64>,
    end: u64,
) -> PhaseRecord {
    let mut record = PhaseRecord::default();
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= end {
            return record;
        }
        let request = client
            .post(&*url)
            .bearer_auth(&*key)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(submission_body(n));
        let started = Instant::now();
        let sent = request.send().await;
        // The body is read in full before the clock stops: that is when the client has its answer, and an
        // unread body would keep the connection out of the pool.
        let outcome = match sent {
            Ok(response) => {
                let status = response.status();
                response.bytes().await.map(|body| (status, body))
            }
            Err(err) => Err(err),
        };
        record.latencies.push(started.elapsed());
        match outcome {
            Ok((StatusCode::ACCEPTED, _)) => record.accepted += 1,
            Ok((status, body)) => record.failure(
                format!("HTTP {}", status.as_u16()),
                format!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
            ),
            Err(err) => record.failure(transport_kind(&err).to_string(), err.to_string()),
        }
    }
}

/// Submits request numbers `start..end` from `concurrency` tasks.
async fn run_phase(client: &reqwest::Client, options: &SubmitOptions, key: &str, start: u64, end: u64) -> PhaseRecord {
    let url: Arc<str> = format!("{}/api/v1/executions", options.api_url.trim_end_matches('/')).into();
    let key: Arc<str> = key.into();
    let next = Arc::new(AtomicU64::new(start));
    let tasks: Vec<_> = (0..options.concurrency.max(1))
        .map(|_| tokio::spawn(submit_loop(client.clone(), url.clone(), key.clone(), next.clone(), end)))
        .collect();
    let mut record = PhaseRecord::default();
    for task in tasks {
        match task.await {
            Ok(part) => record.merge(part),
            // A panicking task lost its samples; count it so the run cannot look clean.
            Err(err) => record.failure("task panicked".into(), err.to_string()),
        }
    }
    record
}

/// Warms up (connections, API key cache, PostgreSQL plans) and then runs the measured phase.
pub async fn run(options: &SubmitOptions) -> Result<SubmitOutcome, LoadgenError> {
    let client = http_client(options)?;
    let key = create_key(&client, options).await?;

    let warmup = run_phase(&client, options, &key, 0, options.warmup).await;
    let failed: u64 = warmup.errors.values().sum();
    if failed > 0 {
        return Err(LoadgenError::WarmupFailed {
            failed,
            total: options.warmup,
            first: warmup.first_error.unwrap_or_default(),
        });
    }

    let start = options.warmup;
    let started = Instant::now();
    let mut measured = run_phase(&client, options, &key, start, start + options.requests).await;
    let elapsed = started.elapsed();
    Ok(SubmitOutcome {
        requests: options.requests,
        concurrency: options.concurrency,
        elapsed,
        accepted: measured.accepted,
        errors: std::mem::take(&mut measured.errors),
        first_error: measured.first_error.take(),
        latency: LatencySummary::from_samples(&mut measured.latencies),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_valid_json_with_the_sample_workflow_and_distinct_inputs() {
        let a: serde_json::Value = serde_json::from_str(&submission_body(1)).unwrap();
        let b: serde_json::Value = serde_json::from_str(&submission_body(2)).unwrap();
        assert_eq!(a["workflow"]["name"], "bench");
        assert_eq!(a["workflow"]["nodes"]["t"]["type"], "transform");
        assert_eq!(a["input"]["n"], 1);
        assert_ne!(a["input"], b["input"]);
    }

    #[test]
    fn rate_counts_only_accepted_submissions() {
        let outcome = SubmitOutcome {
            requests: 100,
            concurrency: 4,
            elapsed: Duration::from_secs(2),
            accepted: 90,
            errors: BTreeMap::from([("HTTP 503".to_string(), 10)]),
            first_error: None,
            latency: None,
        };
        assert_eq!(outcome.submissions_per_sec(), 45.0);
        assert_eq!(outcome.error_count(), 10);
    }

    /// Against a real API (shared PostgreSQL, Redis and S3 test services): every request is accepted,
    /// committed and counted, warm-up included.
    #[tokio::test]
    async fn a_small_run_against_a_real_api_commits_every_submission() {
        let api = flow_like_test_harness::TestApi::start().await.unwrap();
        let options = SubmitOptions {
            api_url: api.base.clone(),
            admin_token: flow_like_test_harness::ADMIN_TOKEN.into(),
            tenant: "loadgen".into(),
            requests: 60,
            concurrency: 4,
            warmup: 5,
            request_timeout: Duration::from_secs(10),
        };
        let outcome = run(&options).await.unwrap();
        assert_eq!(outcome.accepted, 60);
        assert_eq!(outcome.error_count(), 0, "{:?}", outcome.first_error);
        assert_eq!(outcome.latency.unwrap().count, 60);
        assert!(outcome.submissions_per_sec() > 0.0);
        assert_eq!(api.execution_rows().await.unwrap(), 65);
    }

    #[tokio::test]
    async fn a_wrong_admin_token_fails_before_any_submission() {
        let api = flow_like_test_harness::TestApi::start().await.unwrap();
        let options = SubmitOptions {
            api_url: api.base.clone(),
            admin_token: "not-the-token".into(),
            tenant: "loadgen".into(),
            requests: 10,
            concurrency: 2,
            warmup: 0,
            request_timeout: Duration::from_secs(10),
        };
        let err = run(&options).await.unwrap_err();
        assert!(matches!(err, LoadgenError::CreateKeyRefused { status: 401 | 403, .. }), "{err}");
        assert_eq!(api.execution_rows().await.unwrap(), 0);
    }
}
