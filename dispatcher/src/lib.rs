//! flow-like-dispatcher: drains the queue under concurrency limits and starts one runner per attempt.
//!
//! `run` starts, on every replica alike: the dispatch loop (`dispatch`: admission, attempts, heartbeats,
//! takeover, retries, drain), the status pipeline (`status_pipeline`: status events -> PostgreSQL), the
//! reconciler (`reconciler`: PostgreSQL -> Redis) and the health and metrics endpoint.

pub mod backoff;
pub mod config;
pub mod dispatch;
pub mod events;
pub mod health;
pub mod metrics;
pub mod outbox;
pub mod pruner;
pub mod queue_metrics;
pub mod reconciler;
pub mod runner;
pub mod status_pipeline;

use crate::config::{DispatcherConfig, JobManifestArgs, RunnerKind};
use crate::runner::Runner;
use crate::runner::kubernetes::{self, ExecutorEnv, JobSettings, JobSpecInput};
use flow_like_shared::protocol::limits::DefaultLimits;
use flow_like_shared::protocol::{self, Keys};
use flow_like_shared::record;
use flow_like_shared::storage::Storage;
use flow_like_shared::workflow::Resources;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connecting to PostgreSQL failed")]
    Database(#[from] record::RecordError),
    #[error("connecting to Redis failed")]
    Redis(#[from] protocol::QueueError),
    #[error("the Redis settings are invalid")]
    RedisSettings(#[from] flow_like_shared::protocol::connection::RedisSetupError),
    #[error("S3 settings are invalid")]
    Storage(#[from] flow_like_shared::storage::StorageError),
    #[error("binding the health endpoint on {addr} failed")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid Kubernetes runner settings")]
    Settings(#[from] kubernetes::SettingsError),
    #[error("the Job manifest cannot be built")]
    Manifest(#[from] kubernetes::ManifestError),
    #[error("the {0} runner cannot start: {1}")]
    Runner(&'static str, String),
    #[error("the trace settings are invalid")]
    Trace(#[from] flow_like_shared::trace::TraceSetupError),
}

/// This replica's name: the configured one, or the host name plus a random suffix.
pub fn dispatcher_id(configured: Option<&str>) -> String {
    configured.map(str::to_owned).unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "dispatcher".to_owned());
        format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
    })
}

/// The runner the settings choose, and the same runner as a Kubernetes runner when it is one (the Job sweeper
/// reads its watcher).
pub struct Runners {
    pub runner: Arc<dyn Runner>,
    pub kubernetes: Option<Arc<kubernetes::KubeRunner>>,
}

/// Builds the runner the settings choose (the one constructor of runners).
pub async fn build_runner(config: &DispatcherConfig) -> Result<Runners, RunError> {
    Ok(match config.runner {
        RunnerKind::Noop => Runners { runner: Arc::new(runner::noop::NoopRunner), kubernetes: None },
        RunnerKind::Process => {
            let path =
                config.executor_path.clone().unwrap_or_else(runner::process::ProcessRunner::default_executor_path);
            Runners {
                runner: Arc::new(runner::process::ProcessRunner::new(path, process_env(config))),
                kubernetes: None,
            }
        }
        RunnerKind::Kubernetes => {
            let env = executor_env(config);
            let runner = Arc::new(
                kubernetes::KubeRunner::connect(&config.kubernetes, env)
                    .await
                    .map_err(|err| RunError::Runner("kubernetes", err.to_string()))?,
            );
            Runners { runner: runner.clone(), kubernetes: Some(runner) }
        }
    })
}

/// Deletes executor Jobs that belong to no live attempt: no lease for their execution, or a lease of another
/// attempt. The Jobs come from the runner's Job watcher, not from a list request: unfinished Jobs only (finished
/// ones are left to their `ttlSecondsAfterFinished`), and of those only the ones older than `min_age` (the lease
/// of a Job created a moment ago may not be visible yet). Does nothing until the watcher has listed once.
pub async fn sweep_jobs(
    runner: &kubernetes::KubeRunner,
    redis: &mut redis::aio::ConnectionManager,
    keys: &Keys,
    min_age: Duration,
) -> Result<u64, anyhow::Error> {
    let now = chrono::Utc::now().timestamp_millis();
    let Some(unfinished) = runner.unfinished_jobs() else {
        tracing::debug!("the Job watcher has not listed yet; sweeping later");
        return Ok(0);
    };
    let jobs: Vec<_> = unfinished
        .into_iter()
        .filter(|job| job.created_at_ms.is_none_or(|created| now - created >= min_age.as_millis() as i64))
        .collect();
    // The live attempt of every swept Job's execution, in one round trip.
    let ids: Vec<uuid::Uuid> = jobs.iter().map(|job| job.execution_id).collect();
    let live = protocol::reads::leased_attempts(redis, keys, &ids).await?;
    let mut deleted = 0;
    for (job, attempt) in jobs.into_iter().zip(live) {
        if attempt != Some(job.attempt) {
            tracing::warn!(job = %job.job_name, execution_id = %job.execution_id, "deleting an executor Job no live attempt owns");
            if runner.delete_job(&job.job_name).await? {
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

/// Sweeps orphaned executor Jobs every reconcile interval until `stop`.
async fn sweep_loop(
    runner: Arc<kubernetes::KubeRunner>,
    mut redis: redis::aio::ConnectionManager,
    keys: Keys,
    (min_age, every): (Duration, Duration),
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        if let Err(err) = sweep_jobs(&runner, &mut redis, &keys, min_age).await {
            tracing::warn!(cause = %err, "sweeping executor Jobs failed");
        }
        backoff::sleep_or_cancel(every, &stop).await;
    }
}

fn telemetry_from_env() -> flow_like_shared::config::TelemetryConfig {
    flow_like_shared::config::TelemetryConfig {
        log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        log_format: match std::env::var("LOG_FORMAT").as_deref() {
            Ok("json") => flow_like_shared::config::LogFormat::Json,
            _ => flow_like_shared::config::LogFormat::Text,
        },
    }
}

/// What an executor is told about the dispatcher's settings: the non-secret ones, and where traces go.
fn executor_env(config: &DispatcherConfig) -> ExecutorEnv {
    ExecutorEnv::from_configs(&config.redis, &config.s3, &telemetry_from_env()).with_traces(&config.trace)
}

/// The environment of a local executor process: what a Job's env and `envFrom` secret would give it.
fn process_env(config: &DispatcherConfig) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        executor_env(config).pairs().into_iter().map(|(name, value)| (name.to_owned(), value)).collect();
    env.push(("REDIS_URL".into(), config.redis.url.clone()));
    env.push(("S3_ACCESS_KEY_ID".into(), config.s3.access_key_id.clone()));
    env.push(("S3_SECRET_ACCESS_KEY".into(), config.s3.secret_access_key.clone()));
    if config.s3.access_key_id.is_empty() {
        // No static keys: the executor uses the AWS default credential chain, as a pod would with the web identity
        // token or metadata endpoint its platform injects. Hand it the same AWS_* environment this process has.
        env.extend(std::env::vars().filter(|(name, _)| name.starts_with("AWS_")));
    }
    env
}

/// Runs until `shutdown` is cancelled, then drains (see `dispatch::Dispatcher::run`).
pub async fn run(config: DispatcherConfig, shutdown: CancellationToken) -> Result<(), RunError> {
    let runners = build_runner(&config).await?;
    run_with_runners(config, runners, shutdown).await
}

/// `run` with a runner built by the caller (tests and benchmarks use their own).
pub async fn run_with_runner(
    config: DispatcherConfig,
    runner: Arc<dyn Runner>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    run_with_runners(config, Runners { runner, kubernetes: None }, shutdown).await
}

async fn run_with_runners(
    config: DispatcherConfig,
    runners: Runners,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let Runners { runner, kubernetes } = runners;
    config.redis.check().await?;
    let tracer = flow_like_shared::trace::Tracer::from_config(&config.trace, "flow-like-dispatcher")?;
    runner.use_tracer(&tracer);
    let id = dispatcher_id(config.id.as_deref());
    let db = record::connect_lazy(&config.database)?;
    let redis = protocol::connect_lazy(&config.redis)?;
    // The status pipeline blocks on reads: it gets a connection of its own.
    let status_redis = protocol::connect_lazy(&config.redis)?;
    let redis_client = config.redis.client()?;
    let keys = Keys::new(config.redis.prefix.clone());
    let storage = Storage::connect(&config.s3).await?;
    let defaults = DefaultLimits {
        global: config.global_limit,
        tenant: config.tenant_limit,
        workflow: config.workflow_limit,
        priority_aging_ms: config.priority_aging_ms,
    };
    let metrics = health::Metrics::new(runner.as_ref());
    let listener = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .map_err(|source| RunError::Bind { addr: config.metrics_listen, source })?;
    let health_state = health::HealthState {
        db: db.clone(),
        redis: redis.clone(),
        keys: keys.clone(),
        metrics: metrics.clone(),
        metrics_max_tenants: config.metrics_max_tenants,
    };
    // Every task this replica starts is tracked and awaited before `run` returns. The health endpoint and the
    // status pipeline stop after the drain (`background`); the reconciler, pruner and Job sweeper at its start.
    let tasks = TaskTracker::new();
    let background = CancellationToken::new();
    let health_stop = background.clone();
    tasks.spawn(async move {
        let server = axum::serve(listener, health::app(health_state))
            .with_graceful_shutdown(async move { health_stop.cancelled().await });
        if let Err(err) = server.await {
            tracing::error!(cause = %err, "health endpoint failed");
        }
    });

    let pipeline = status_pipeline::StatusPipeline {
        progress_retention: Duration::from_secs(config.retention.progress_stream_secs),
        db: db.clone(),
        redis: status_redis,
        keys: keys.clone(),
        consumer: id.clone(),
        metrics: metrics.clone(),
    };
    tasks.spawn(pipeline.run(background.clone()));

    let mut reconciler = reconciler::Reconciler {
        db: db.clone(),
        redis: redis.clone(),
        keys: keys.clone(),
        grace: Duration::from_secs(config.reconcile_grace_secs),
        storage: storage.clone(),
    };
    let reconcile_every = Duration::from_secs(config.reconcile_interval_secs);
    let reconcile_stop = shutdown.clone();
    let reconcile_metrics = metrics.clone();
    tasks.spawn(async move {
        let mut interval = tokio::time::interval(reconcile_every);
        loop {
            tokio::select! {
                () = reconcile_stop.cancelled() => break,
                _ = interval.tick() => {}
            }
            match reconciler.pass().await {
                Ok(report) => reconcile_metrics.reconciled(report),
                Err(err) => tracing::warn!(cause = %err, "reconciler pass failed; retrying next interval"),
            }
        }
    });

    let pruner = pruner::Pruner {
        db: db.clone(),
        redis: redis.clone(),
        keys: keys.clone(),
        storage: storage.clone(),
        retention: config.retention.clone(),
    };
    let prune_metrics = metrics.clone();
    tasks.spawn(pruner.run(shutdown.clone(), move |report| prune_metrics.pruned(report)));
    if let Some(kubernetes) = kubernetes {
        let min_age = Duration::from_secs(config.lease_ttl_secs * 2);
        tasks.spawn(sweep_loop(kubernetes, redis.clone(), keys.clone(), (min_age, reconcile_every), shutdown.clone()));
    }

    let settings = dispatch::Settings {
        id,
        limits: defaults,
        lease_ttl: Duration::from_secs(config.lease_ttl_secs),
        admit_batch: config.admit_batch,
        max_in_flight: config.max_in_flight,
        max_attempts: config.max_attempts,
        max_deliveries: config.max_deliveries,
        retry_backoff: Duration::from_millis(config.retry_backoff_ms),
        retry_backoff_max: Duration::from_millis(config.retry_backoff_max_ms),
        drain_timeout: Duration::from_secs(config.drain_timeout_secs),
    };
    let dispatcher =
        dispatch::Dispatcher::new(settings, keys, redis, redis_client, db, storage, runner, metrics, tracer.clone());
    dispatcher.run(shutdown).await;
    // The status pipeline applies what the last attempts reported before it stops.
    background.cancel();
    tasks.close();
    tasks.wait().await;
    tracer.flush(Duration::from_secs(2)).await;
    tracing::info!("dispatcher stopped");
    Ok(())
}

/// The YAML of the Job the Kubernetes runner would create for one attempt.
pub fn job_manifest_yaml(args: &JobManifestArgs) -> Result<String, RunError> {
    let env = ExecutorEnv { redis_prefix: args.redis_prefix.clone(), ..ExecutorEnv::default() };
    let settings = JobSettings::from_config(&args.kubernetes, env)?;
    let resources = (args.cpu.is_some() || args.memory.is_some())
        .then(|| Resources { cpu: args.cpu.clone(), memory: args.memory.clone() });
    let spec = JobSpecInput {
        execution_id: args.execution_id,
        attempt: args.attempt,
        tenant: args.tenant.clone(),
        workflow: args.workflow.clone(),
        deadline_ms: args.deadline_ms,
        resources,
        traceparent: None,
    };
    Ok(kubernetes::render_job_manifest_yaml(&spec, &settings)?)
}
