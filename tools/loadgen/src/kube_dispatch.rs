//! The dispatcher-on-Kubernetes benchmark behind `flow-like-loadgen kube-dispatch`: whole dispatchers (admission in
//! Redis, PostgreSQL reads, the spec written to S3, the Kubernetes runner) create one Job per queued execution in
//! the Kubernetes API simulator, whose kubelet is off (Jobs are stored, no pod runs) and which adds a fixed
//! latency to every request, as a remote API server would. Each dispatcher has at most
//! `KUBE_MAX_CONCURRENT_REQUESTS` requests in flight; beside each phase, in the same run, a plain kube-rs loop
//! creates the same number of Jobs (built by the same `job_manifest`) from as many tasks as the dispatchers had
//! request slots together: the ceiling at the same concurrency. A last phase offers executions at a steady rate to
//! one dispatcher and measures queue-to-Job-created.
//!
//! Rates are taken between the first and the last Job the simulator stored, so start-up (connections, the
//! watchers' first list) is left out of both sides alike. The dispatchers are release `flow-like-dispatcher run`
//! processes, as deployed; the simulator runs on its own runtime threads in this process, as an API server is its
//! own machine, so that no client's tasks delay its answers; the plain loop runs on this process's main runtime.
//! All of it shares the machine's cores with PostgreSQL, Redis and the S3 server.

use super::cpu::CpuProbe;
use super::pipeline::{
    bench_dispatcher_args, create_tenants, fill, free_port, fresh, offer, percentiles, round1, sibling_binary,
};
use anyhow::Context;
use flow_like_dispatcher::config::KubernetesConfig;
use flow_like_dispatcher::runner::kubernetes::job_name;
use flow_like_dispatcher::runner::kubernetes::manifest::{JobSpecInput, job_manifest};
use flow_like_dispatcher::runner::kubernetes::settings::{ExecutorEnv, JobSettings};
use flow_like_kube_sim::{Fault, KubeSim, KubeSimOptions};
use flow_like_shared::protocol;
use flow_like_shared::protocol::keys::Keys;
use flow_like_test_harness::{DispatcherArgs, DispatcherProcess};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

const IMAGE: &str = "ghcr.io/flow-like/flow-like-executor:bench";
const NAMESPACE: &str = "default";
/// The simulator's runtime threads, by which its CPU time is told apart from the load generator's.
const SIM_THREADS: &str = "kube-sim";
/// The services a dispatcher uses, whose CPU time the report shows apart.
pub(crate) const SERVICES: [&str; 3] = ["postgres", "redis-server", "s3s-fs"];
/// A dispatcher drains for 1 s, then hands its leases back.
const STOP_WITHIN: Duration = Duration::from_secs(60);

/// What one run does.
#[derive(Debug, Clone)]
pub struct KubeDispatchOptions {
    /// Executions queued (Jobs created) per throughput phase.
    pub jobs: u64,
    /// The dispatcher counts to measure, one phase each.
    pub dispatchers: Vec<usize>,
    /// `KUBE_MAX_CONCURRENT_REQUESTS` of each dispatcher; one set of phases per value.
    pub max_concurrent_requests: Vec<u32>,
    /// Tenants the executions are spread over.
    pub tenants: u32,
    /// Latency the simulator adds to every request.
    pub api_latency: Duration,
    /// The latency phase: executions offered per second to one dispatcher, for this long.
    pub rate: u64,
    pub seconds: u64,
    /// Give up on a phase after this long.
    pub timeout: Duration,
}

impl Default for KubeDispatchOptions {
    fn default() -> Self {
        Self {
            jobs: 5_000,
            dispatchers: vec![1, 3],
            max_concurrent_requests: vec![16],
            tenants: 10,
            api_latency: Duration::from_millis(5),
            rate: 200,
            seconds: 10,
            timeout: Duration::from_secs(600),
        }
    }
}

/// A simulator that stores Jobs without running them, with `latency` on every request, served from its own
/// runtime (two threads).
struct Simulator {
    sim: KubeSim,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Simulator {
    async fn start(latency: Duration) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(SIM_THREADS)
            .enable_all()
            .build()?;
        let sim = runtime
            .spawn(async move {
                let sim = KubeSim::start(KubeSimOptions { kubelet: None, ..KubeSimOptions::default() }).await?;
                if !latency.is_zero() {
                    sim.inject(Fault::Latency(latency));
                }
                anyhow::Ok(sim)
            })
            .await??;
        Ok(Self { sim, runtime: Some(runtime) })
    }
}

impl std::ops::Deref for Simulator {
    type Target = KubeSim;
    fn deref(&self) -> &KubeSim {
        &self.sim
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A release `flow-like-dispatcher run` child process (found beside the load generator).
fn spawn_dispatcher(args: &DispatcherArgs) -> anyhow::Result<DispatcherProcess> {
    DispatcherProcess::start_binary(&sibling_binary("flow-like-dispatcher")?, args)
}

/// Benchmark dispatcher flags on the Kubernetes runner: no client rate limit (the simulator's latency and the
/// machine are what is measured), `slots` requests in flight at most, room for every Job at once (no pod runs, so
/// no attempt ends).
fn dispatcher_args(base: DispatcherArgs, kubeconfig: &Path, jobs: u64, slots: u32) -> DispatcherArgs {
    base.set("--runner", "kubernetes")
        .set("--kube-max-concurrent-requests", slots)
        .set("--kubeconfig", kubeconfig.display())
        .set("--kube-namespace", NAMESPACE)
        .set("--kube-qps", 1_000_000)
        .set("--kube-burst", 1_000_000)
        .set("--max-in-flight", jobs.max(1))
        .set("--executor-image", IMAGE)
        .set("--drain-timeout-secs", 1)
}

/// Waits until the simulator has stored `n` Jobs; returns their creation times in order.
async fn wait_created(sim: &KubeSim, n: usize, timeout: Duration) -> anyhow::Result<Vec<(SystemTime, String)>> {
    let deadline = Instant::now() + timeout;
    loop {
        let created = sim.jobs_created();
        if created.len() >= n {
            return Ok(created);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {n} Jobs were created within {timeout:?}",
            created.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Seconds between the first and the last stored Job (0 with fewer than two).
fn span_secs(created: &[(SystemTime, String)]) -> f64 {
    match (created.first(), created.last()) {
        (Some(first), Some(last)) => last.0.duration_since(first.0).unwrap_or_default().as_secs_f64(),
        _ => 0.0,
    }
}

/// Create requests in flight on average between the first and the last stored Job (while the simulator
/// answered them, injected latency included): how full the clients kept their request slots.
fn mean_concurrency(sim: &KubeSim, created: &[(SystemTime, String)]) -> f64 {
    let span = span_secs(created);
    if span <= 0.0 { 0.0 } else { round1(sim.job_create_busy_time().as_secs_f64() / span) }
}

/// Jobs/s between the first and the last stored Job.
fn rate(created: &[(SystemTime, String)]) -> f64 {
    let span = span_secs(created);
    if span <= 0.0 { 0.0 } else { (created.len() - 1) as f64 / span }
}

/// One throughput phase: `jobs` executions queued up front, then `dispatchers` dispatchers.
async fn dispatch_phase(options: &KubeDispatchOptions, dispatchers: usize, slots: u32) -> anyhow::Result<Value> {
    let (configs, db) = fresh().await?;
    let keys = Keys::new(configs.redis.prefix.clone());
    let mut redis = protocol::connect_lazy(&configs.redis)?;
    create_tenants(&db, options.tenants).await?;
    fill(&db, &mut redis, &keys, 0, options.jobs, options.tenants).await?;
    let sim = Simulator::start(options.api_latency).await?;
    let kubeconfig = sim.kubeconfig_path()?;

    let started = Instant::now();
    let mut running = Vec::new();
    for i in 0..dispatchers.max(1) {
        let base = bench_dispatcher_args(&configs, &format!("bench-k{i}"), free_port()?);
        running.push(spawn_dispatcher(&dispatcher_args(base, &kubeconfig, options.jobs, slots))?);
    }
    let probe = CpuProbe {
        thread_prefixes: vec![SIM_THREADS.into()],
        processes: running.iter().filter_map(|d| Some(("dispatchers".to_owned(), d.child.id()?))).collect(),
        commands: SERVICES.iter().map(|&s| s.to_owned()).collect(),
    };
    let cpu_before = probe.snapshot();
    let created = wait_created(&sim, options.jobs as usize, options.timeout).await?;
    let (cpu_after, wall) = (probe.snapshot(), started.elapsed().as_secs_f64());
    let (creates, conflicts, peak) =
        (sim.job_creates_seen(), sim.responses_with_status(409), sim.peak_concurrent_job_creates());
    // All at once: stopped one by one, the others would take over the attempts each hands back.
    for result in futures::future::join_all(running.iter_mut().map(|d| d.terminate(STOP_WITHIN))).await {
        result?;
    }
    Ok(json!({
        "dispatchers": dispatchers,
        "max_concurrent_requests": slots,
        "jobs": options.jobs,
        "jobs_per_sec": round1(rate(&created)),
        "jobs_per_sec_from_start": round1(options.jobs as f64 / wall.max(f64::EPSILON)),
        "job_create_requests": creates,
        "conflicts_409": conflicts,
        "peak_concurrent_creates": peak,
        "mean_concurrent_creates": mean_concurrency(&sim, &created),
        "busy_cores": cpu_before.busy_cores_since(&cpu_after, wall),
        "cpu_ms_per_job": cpu_before.per_unit_since(&cpu_after, options.jobs),
    }))
}

/// The ceiling: `jobs` Jobs built by `job_manifest` and created by `concurrency` tasks with a plain kube-rs
/// client, nothing else.
async fn plain_loop(options: &KubeDispatchOptions, concurrency: usize) -> anyhow::Result<Value> {
    let sim = Simulator::start(options.api_latency).await?;
    let client = sim.client_with(|c| c.default_retry = false);
    let jobs: Api<Job> = Api::namespaced(client, NAMESPACE);
    let settings = Arc::new(job_settings()?);
    let next = Arc::new(AtomicUsize::new(0));
    let total = options.jobs as usize;
    let probe = CpuProbe { thread_prefixes: vec![SIM_THREADS.into()], ..CpuProbe::default() };
    let cpu_before = probe.snapshot();
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (jobs, settings, next) = (jobs.clone(), settings.clone(), next.clone());
            tokio::spawn(async move {
                let params = PostParams::default();
                let mut failed = 0u64;
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let input = JobSpecInput {
                        execution_id: Uuid::now_v7(),
                        attempt: 1,
                        tenant: "bench".into(),
                        workflow: "bench".into(),
                        deadline_ms: None,
                        resources: None,
                        traceparent: None,
                    };
                    let job = job_manifest(&input, &settings)?;
                    if jobs.create(&params, &job).await.is_err() {
                        failed += 1;
                    }
                }
                anyhow::Ok(failed)
            })
        })
        .collect();
    let mut failed = 0;
    for task in tasks {
        failed += task.await??;
    }
    let (cpu_after, wall) = (probe.snapshot(), started.elapsed().as_secs_f64());
    let created = sim.jobs_created();
    Ok(json!({
        "concurrency": concurrency,
        "jobs": options.jobs,
        "failed": failed,
        "jobs_per_sec": round1(rate(&created)),
        "jobs_per_sec_from_start": round1(created.len() as f64 / wall.max(f64::EPSILON)),
        "peak_concurrent_creates": sim.peak_concurrent_job_creates(),
        "mean_concurrent_creates": mean_concurrency(&sim, &created),
        "busy_cores": cpu_before.busy_cores_since(&cpu_after, wall),
        "cpu_ms_per_job": cpu_before.per_unit_since(&cpu_after, options.jobs),
    }))
}

/// The Job settings a dispatcher with the benchmark's flags uses.
fn job_settings() -> anyhow::Result<JobSettings> {
    let config = KubernetesConfig {
        namespace: Some(NAMESPACE.to_owned()),
        image: IMAGE.to_owned(),
        ..KubernetesConfig::from_env()?
    };
    Ok(JobSettings::from_config(&config, ExecutorEnv::default())?)
}

/// The latency phase: one dispatcher, executions committed and queued at `rate`/s in batches every 10 ms;
/// queue-to-Job-created from each row's `queued_at` and the time the simulator stored its Job.
async fn latency_phase(options: &KubeDispatchOptions) -> anyhow::Result<Value> {
    let (configs, db) = fresh().await?;
    let keys = Keys::new(configs.redis.prefix.clone());
    let mut redis = protocol::connect_lazy(&configs.redis)?;
    create_tenants(&db, options.tenants).await?;
    let sim = Simulator::start(options.api_latency).await?;
    let kubeconfig = sim.kubeconfig_path()?;
    let total = options.rate * options.seconds;
    let base = bench_dispatcher_args(&configs, "bench-klatency", free_port()?);
    let slots = options.max_concurrent_requests.first().copied().unwrap_or(16);
    let mut dispatcher = spawn_dispatcher(&dispatcher_args(base, &kubeconfig, total, slots))?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let offered_secs = offer(&db, &mut redis, &keys, options.rate, total, options.tenants).await?;
    let created = wait_created(&sim, total as usize, options.timeout).await?;
    dispatcher.terminate(STOP_WITHIN).await?;

    let created_ms: HashMap<String, f64> = created
        .into_iter()
        .map(|(at, name)| (name, at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1000.0))
        .collect();
    let rows: Vec<(Uuid, f64)> =
        sqlx::query_as("SELECT id, (EXTRACT(EPOCH FROM queued_at) * 1000)::float8 FROM executions")
            .fetch_all(&db)
            .await?;
    let mut latencies = Vec::with_capacity(rows.len());
    for (id, queued_ms) in rows {
        let created = created_ms.get(&job_name(id, 1)).with_context(|| format!("no Job for execution {id}"))?;
        latencies.push(created - queued_ms);
    }
    Ok(json!({
        "offered_per_sec": options.rate,
        "achieved_offer_per_sec": round1(total as f64 / offered_secs),
        "executions": total,
        "queue_to_job_created": percentiles(&mut latencies),
    }))
}

/// Runs every phase and returns the figures as one JSON object.
pub async fn run(options: &KubeDispatchOptions) -> anyhow::Result<Value> {
    anyhow::ensure!(options.jobs > 1 && !options.dispatchers.is_empty(), "needs at least 2 jobs and one phase");
    let mut phases = Vec::new();
    for &slots in &options.max_concurrent_requests {
        for &dispatchers in &options.dispatchers {
            let mut phase = dispatch_phase(options, dispatchers, slots).await?;
            // The ceiling: the same Jobs from as many tasks as the dispatchers had request slots together.
            let plain = plain_loop(options, dispatchers * slots as usize).await?;
            let (rate, ceiling) = (phase["jobs_per_sec"].as_f64(), plain["jobs_per_sec"].as_f64());
            phase["of_plain_loop"] = match (rate, ceiling) {
                (Some(rate), Some(ceiling)) if ceiling > 0.0 => json!((rate / ceiling * 1000.0).round() / 1000.0),
                _ => Value::Null,
            };
            phase["plain_kube_rs_loop"] = plain;
            phases.push(phase);
        }
    }
    let latency = latency_phase(options).await?;
    Ok(json!({
        "mode": "kube-dispatch",
        "api_latency_ms": options.api_latency.as_millis() as u64,
        "schema_validation": true,
        "kubelet": false,
        "dispatch": phases,
        "latency": latency,
        "target_of_plain_loop": 0.9,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small run creates one Job per execution through the dispatchers (no duplicates) and reports each phase.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_run_creates_one_job_per_execution() {
        let options = KubeDispatchOptions {
            jobs: 40,
            dispatchers: vec![2],
            max_concurrent_requests: vec![4],
            tenants: 3,
            rate: 20,
            seconds: 1,
            timeout: Duration::from_secs(60),
            ..KubeDispatchOptions::default()
        };
        let report = run(&options).await.unwrap();
        let phase = &report["dispatch"][0];
        assert_eq!(phase["job_create_requests"], 40, "{report}");
        assert_eq!(phase["conflicts_409"], 0, "{report}");
        assert!(phase["jobs_per_sec"].as_f64().unwrap() > 0.0, "{report}");
        // Two dispatchers with 4 request slots each: never more than 8 creates at the API server at once.
        assert!(phase["peak_concurrent_creates"].as_u64().unwrap() <= 8, "{report}");
        assert_eq!(phase["plain_kube_rs_loop"]["concurrency"], 8, "{report}");
        assert_eq!(phase["plain_kube_rs_loop"]["failed"], 0, "{report}");
        assert_eq!(report["latency"]["queue_to_job_created"]["count"], 20, "{report}");
    }
}
