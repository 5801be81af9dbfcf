//! The Job-creation benchmark behind `flow-like-loadgen kube-jobs`: the Kubernetes runner (`KubeRunner`, the
//! dispatcher's own code: rate limit, retries, watches) creates one Job per attempt in the Kubernetes API
//! simulator, from many attempts at once, and the run reports Jobs created per second and the latency from
//! `Runner::run` to the Job's creation (the runner's `Started`). The simulator runs no pods, so the figures are
//! the runner's and the API server's, not a node's; the runner's client rate limit (`--qps`, `--burst`) is the
//! ceiling a real cluster's API fairness would add to. Every attempt is then cancelled, which deletes its Job.

use super::pipeline::percentiles;
use anyhow::Context;
use flow_like_dispatcher::config::KubernetesConfig;
use flow_like_dispatcher::runner::kubernetes::{ExecutorEnv, KubeRunner, RunnerTuning};
use flow_like_dispatcher::runner::{Attempt, Runner};
use flow_like_kube_sim::{Fault, KubeSim, KubeSimOptions};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What one Job-creation run does.
#[derive(Debug, Clone)]
pub struct KubeJobsOptions {
    /// Attempts (Jobs) to create.
    pub jobs: usize,
    /// Attempts whose Job create is in flight at once.
    pub concurrency: usize,
    /// The runner's client rate limit: requests per second and burst.
    pub qps: f64,
    pub burst: u32,
    /// Latency the simulator adds to every request (a remote API server's round trip).
    pub api_latency: Duration,
    /// Whether the simulator validates every Job against the official schema (as the real API server does).
    pub validate: bool,
    /// Give up after this long.
    pub timeout: Duration,
}

impl Default for KubeJobsOptions {
    fn default() -> Self {
        Self {
            jobs: 1_000,
            concurrency: 64,
            qps: 50.0,
            burst: 100,
            api_latency: Duration::ZERO,
            validate: true,
            timeout: Duration::from_secs(600),
        }
    }
}

/// The runner's Kubernetes settings: the dispatcher's defaults with this run's rate limit.
fn kube_config(options: &KubeJobsOptions) -> anyhow::Result<KubernetesConfig> {
    Ok(KubernetesConfig {
        qps: options.qps,
        burst: options.burst,
        namespace: Some("default".to_owned()),
        image: "ghcr.io/flow-like/flow-like-executor:bench".to_owned(),
        ..KubernetesConfig::from_env()?
    })
}

/// Creates `options.jobs` Jobs through the runner and returns the figures as one JSON object.
pub async fn run(options: &KubeJobsOptions) -> anyhow::Result<Value> {
    anyhow::ensure!(options.jobs > 0 && options.concurrency > 0, "jobs and concurrency must be positive");
    let schema_version = options.validate.then(|| KubeSimOptions::default().schema_version).flatten();
    let sim = KubeSim::start(KubeSimOptions { kubelet: None, schema_version, ..KubeSimOptions::default() }).await?;
    let client = sim.client_with(|c| c.default_retry = false);
    let runner = Arc::new(KubeRunner::with_tuning(
        &kube_config(options)?,
        ExecutorEnv::default(),
        client,
        RunnerTuning { cancel_grace: Duration::from_secs(1), ..RunnerTuning::default() },
    )?);
    tokio::time::timeout(Duration::from_secs(30), runner.ready())
        .await
        .context("the runner's watchers never listed the simulator")?;
    if !options.api_latency.is_zero() {
        sim.inject(Fault::Latency(options.api_latency));
    }

    let permits = Arc::new(Semaphore::new(options.concurrency));
    let cancel = CancellationToken::new();
    let (created_tx, mut created_rx) = tokio::sync::mpsc::unbounded_channel::<Option<Duration>>();
    let mut attempts = tokio::task::JoinSet::new();
    let start = Instant::now();
    for _ in 0..options.jobs {
        let permit = permits.clone().acquire_owned().await?;
        let (runner, cancel, created_tx) = (runner.clone(), cancel.clone(), created_tx.clone());
        attempts.spawn(async move {
            let attempt = Attempt {
                execution_id: Uuid::now_v7(),
                attempt: 1,
                tenant: "bench".into(),
                workflow: "bench".into(),
                deadline_ms: None,
                resources: None,
                takeover: false,
                trace: None,
            };
            let (started_tx, started_rx) = oneshot::channel();
            let called = Instant::now();
            let run = runner.run(&attempt, started_tx, cancel);
            tokio::pin!(run);
            // The Job exists once the runner reports the attempt started; an attempt that ends first failed.
            let created = tokio::select! {
                started = started_rx => started.ok().map(|_| called.elapsed()),
                end = &mut run => {
                    drop(permit);
                    let _ = created_tx.send(None);
                    return end;
                }
            };
            drop(permit);
            let _ = created_tx.send(created);
            run.await
        });
    }
    drop(created_tx);

    let mut latencies = Vec::with_capacity(options.jobs);
    let mut failed = 0usize;
    let deadline = tokio::time::Instant::now() + options.timeout;
    while latencies.len() + failed < options.jobs {
        match tokio::time::timeout_at(deadline, created_rx.recv()).await {
            Ok(Some(Some(latency))) => latencies.push(latency.as_secs_f64() * 1000.0),
            Ok(Some(None)) => failed += 1,
            Ok(None) => break,
            Err(_) => anyhow::bail!(
                "only {} of {} Jobs were created within {:?}",
                latencies.len(),
                options.jobs,
                options.timeout
            ),
        }
    }
    let elapsed = start.elapsed();
    let (creates, stored, throttled) = (sim.job_creates_seen(), sim.jobs().len(), sim.responses_with_status(429));
    let requests = sim.request_times().len();

    // Clean up: cancelling deletes every Job.
    sim.inject(Fault::Latency(Duration::ZERO));
    cancel.cancel();
    let cleanup = Instant::now();
    while attempts.join_next().await.is_some() {}
    let remaining = sim.jobs().len();

    let created = latencies.len();
    let rate = created as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
    Ok(json!({
        "mode": "kube-jobs",
        "jobs": options.jobs,
        "concurrency": options.concurrency,
        "qps": options.qps,
        "burst": options.burst,
        "api_latency_ms": options.api_latency.as_millis() as u64,
        "schema_validation": options.validate,
        "created": created,
        "failed": failed,
        "elapsed_s": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        "jobs_per_sec": (rate * 10.0).round() / 10.0,
        "create_latency": percentiles(&mut latencies),
        "job_create_requests": creates,
        "jobs_stored": stored,
        "requests": requests,
        "throttled_429": throttled,
        "cleanup_s": (cleanup.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        "jobs_left_after_cleanup": remaining,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small run creates every Job exactly once, and the rate limit bounds the rate.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_run_creates_every_job_once_within_the_rate_limit() {
        flow_like_shared::telemetry::install_crypto_provider();
        let options = KubeJobsOptions { jobs: 60, concurrency: 16, qps: 40.0, burst: 10, ..KubeJobsOptions::default() };
        let figures = run(&options).await.unwrap();
        assert_eq!(figures["created"], 60, "{figures}");
        assert_eq!(figures["failed"], 0, "{figures}");
        assert_eq!(figures["job_create_requests"], 60, "{figures}");
        assert_eq!(figures["jobs_stored"], 60, "{figures}");
        assert_eq!(figures["jobs_left_after_cleanup"], 0, "{figures}");
        // Past the burst of 10, 50 creates at 40/s take at least 1.25 s (the watchers' requests share the budget).
        let elapsed = figures["elapsed_s"].as_f64().unwrap();
        assert!(elapsed >= 1.2, "the rate limit was not applied: {figures}");
        assert_eq!(figures["create_latency"]["count"], 60);
    }
}
