//! flow-like-dispatcher: drains the queue under concurrency limits and starts one runner per attempt.
//!
//! Built so far: the reconciler (committed executions Redis lost go back into the queue, limit overrides are
//! restored), the publication of the default limits, the health and metrics endpoint, and the Kubernetes Job
//! manifest. The dispatch loop itself (admission, runners, status pipeline) is not built yet: `run` says so
//! at start-up.

pub mod config;
pub mod health;
pub mod kubernetes;
pub mod reconciler;

use crate::config::{DispatcherConfig, JobManifestArgs};
use crate::kubernetes::{ExecutorEnv, JobSettings, JobSpecInput, ResourceOverrides};
use flow_like_shared::keys::Keys;
use flow_like_shared::limits::{self, DefaultLimits};
use flow_like_shared::{queue, record};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connecting to PostgreSQL failed")]
    Database(#[from] record::RecordError),
    #[error("connecting to Redis failed")]
    Redis(#[from] queue::QueueError),
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
}

/// Runs until `shutdown` is cancelled.
pub async fn run(config: DispatcherConfig, shutdown: CancellationToken) -> Result<(), RunError> {
    let db = record::connect_lazy(&config.database)?;
    let mut redis = queue::connect_lazy(&config.redis)?;
    let keys = Keys::new(config.redis.prefix.clone());
    let defaults =
        DefaultLimits { global: config.global_limit, tenant: config.tenant_limit, workflow: config.workflow_limit };
    let metrics = health::Metrics::default();
    let listener = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .map_err(|source| RunError::Bind { addr: config.metrics_listen, source })?;
    let health_state = health::HealthState { db: db.clone(), redis: redis.clone(), metrics: metrics.clone() };
    let health_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let server = axum::serve(listener, health::app(health_state))
            .with_graceful_shutdown(async move { health_shutdown.cancelled().await });
        if let Err(err) = server.await {
            tracing::error!(cause = %err, "health endpoint failed");
        }
    });
    tracing::warn!(
        runner = ?config.runner,
        "the dispatch loop is not built yet: this dispatcher reconciles the queue with PostgreSQL but starts no runner"
    );

    let mut reconciler =
        reconciler::Reconciler { db, redis: redis.clone(), keys: keys.clone(), grace: Duration::from_secs(30) };
    let mut interval = tokio::time::interval(Duration::from_secs(config.reconcile_interval_secs.max(1)));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        if let Err(err) = limits::publish_defaults(&mut redis, &keys, defaults).await {
            tracing::warn!(cause = %err, "publishing the default limits failed");
        }
        match reconciler.pass().await {
            Ok(report) => metrics.reconciled(report),
            Err(err) => tracing::warn!(cause = %err, "reconciler pass failed; retrying next interval"),
        }
    }
    tracing::info!("dispatcher stopped");
    Ok(())
}

/// The YAML of the Job the Kubernetes runner would create for one attempt.
pub fn job_manifest_yaml(args: &JobManifestArgs) -> Result<String, RunError> {
    let env = ExecutorEnv { redis_prefix: args.redis_prefix.clone(), ..ExecutorEnv::default() };
    let settings = JobSettings::from_config(&args.kubernetes, env)?;
    let resources = (args.cpu.is_some() || args.memory.is_some())
        .then(|| ResourceOverrides { cpu: args.cpu.clone(), memory: args.memory.clone() });
    let spec = JobSpecInput {
        execution_id: args.execution_id,
        attempt: args.attempt,
        tenant: args.tenant.clone(),
        workflow: args.workflow.clone(),
        deadline_ms: args.deadline_ms,
        resources,
    };
    Ok(kubernetes::render_job_manifest_yaml(&spec, &settings)?)
}
