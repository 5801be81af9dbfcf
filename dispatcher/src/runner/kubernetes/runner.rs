//! The Kubernetes runner: one Job per attempt, created from the pure manifest, adopted when it already exists,
//! followed through the runner's shared watchers until it ends, and deleted (with `Background` propagation)
//! when the attempt is cancelled, evicted or cannot start. Plus the listing and deletion the dispatcher's sweep
//! uses to remove Jobs that belong to no live attempt.
//!
//! Every API call goes through one gated client (`client.rs`): the `KUBE_QPS` / `KUBE_BURST` rate limit, and
//! bounded retries of 429 / 5xx honouring `Retry-After`. How endings are classified is in `classify.rs`.

use super::JobSpecInput;
use super::classify;
use super::client::{ApiStats, RetryPolicy, gated_client};
use super::manifest::{LABEL_ATTEMPT, LABEL_EXECUTION, LABEL_INSTANCE, job_manifest, job_name};
use super::metrics::KubeMetrics;
use super::ratelimit::TokenBucket;
use super::settings::{ExecutorEnv, JobSettings, SettingsError};
use super::slim::{SlimJob, SlimPod};
use super::watch::{SweptJob, Tracker, WatchStats, spawn_watchers};
use crate::config::KubernetesConfig;
use crate::runner::{Attempt, AttemptEnd, Runner, Started};
use flow_like_shared::trace::{Span, SpanKind, Tracer};
use futures::future::BoxFuture;
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::time::Duration;
use tokio_util::sync::{CancellationToken, DropGuard};

#[path = "follow.rs"]
mod follow;
use follow::{cancelled, vanished};

/// The field manager named on creates (who owns a Job's fields, for server-side apply and audit logs).
const FIELD_MANAGER: &str = "flow-like-dispatcher";

/// Timings of the runner that operators rarely change (tests shorten them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerTuning {
    /// Retries of 429 / 5xx / unreachable API answers.
    pub retry: RetryPolicy,
    /// Server-side timeout of each watch request; the watcher then resumes from its last resourceVersion.
    pub watch_timeout_secs: u32,
    /// After deleting a cancelled attempt's Job, how long to wait for its pod to stop, so an executor that
    /// reports its own cancellation (exit code 4) is seen as `Reported`. Above the pods' default
    /// `terminationGracePeriodSeconds` of 30.
    pub cancel_grace: Duration,
    /// How long a created Job may go unreported by the watcher before the runner reads it directly (a Job
    /// created and deleted while the watch was down would otherwise be waited on forever).
    pub unseen_check: Duration,
}

impl Default for RunnerTuning {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            watch_timeout_secs: 290,
            cancel_grace: Duration::from_secs(40),
            unseen_check: Duration::from_secs(30),
        }
    }
}

/// Why the runner could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KubeRunnerError {
    #[error("invalid Kubernetes runner settings")]
    Settings(#[from] SettingsError),
    #[error("reading the kubeconfig {path}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes API found: no kubeconfig given or at ~/.kube/config, and not running in a cluster")]
    Infer(#[source] kube::config::InferConfigError),
    #[error("building the Kubernetes client")]
    Client(#[source] kube::Error),
}

/// Runs attempts as Kubernetes Jobs. Its watchers stop when it is dropped.
pub struct KubeRunner {
    client: kube::Client,
    jobs: Api<SlimJob>,
    pods: Api<SlimPod>,
    namespace: String,
    settings: JobSettings,
    tracker: Arc<Tracker>,
    tuning: RunnerTuning,
    start_timeout: Duration,
    stats: Arc<ApiStats>,
    metrics: KubeMetrics,
    /// Set once by the dispatcher that runs this runner (`Runner::use_tracer`).
    tracer: std::sync::OnceLock<Tracer>,
    _watchers: DropGuard,
}

impl std::fmt::Debug for KubeRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeRunner").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

impl KubeRunner {
    /// A runner using `client`, which must be built with `default_retry = false`: the runner retries itself,
    /// within a bound and under its rate limit. Jobs go to `KUBE_NAMESPACE`, else the client's default
    /// namespace (the kubeconfig context's, or the service account's in a cluster). Starts the watchers, so it
    /// must be called inside a Tokio runtime.
    pub fn new(config: &KubernetesConfig, env: ExecutorEnv, client: kube::Client) -> Result<Self, KubeRunnerError> {
        Self::with_tuning(config, env, client, RunnerTuning::default())
    }

    /// [`KubeRunner::new`] with other timings.
    pub fn with_tuning(
        config: &KubernetesConfig,
        env: ExecutorEnv,
        client: kube::Client,
        tuning: RunnerTuning,
    ) -> Result<Self, KubeRunnerError> {
        let settings = JobSettings::from_config(config, env)?;
        let namespace = config
            .namespace
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(client.default_namespace())
            .to_owned();
        let stats = Arc::new(ApiStats::default());
        let limiter = Arc::new(TokenBucket::new(config.qps, config.burst));
        let max_concurrent = usize::try_from(config.max_concurrent_requests).unwrap_or(usize::MAX);
        let metrics = KubeMetrics::default();
        let client =
            gated_client(client, limiter, max_concurrent, tuning.retry.clone(), stats.clone(), metrics.clone());
        let tracker = Arc::new(Tracker::with_metrics(metrics.clone()));
        let shutdown = CancellationToken::new();
        spawn_watchers(&client, &namespace, &tracker, tuning.watch_timeout_secs, &shutdown);
        Ok(Self {
            client: client.clone(),
            jobs: Api::namespaced(client.clone(), &namespace),
            pods: Api::namespaced(client, &namespace),
            namespace,
            settings,
            tracker,
            tuning,
            start_timeout: Duration::from_secs(config.start_timeout_secs),
            stats,
            metrics,
            tracer: std::sync::OnceLock::new(),
            _watchers: shutdown.drop_guard(),
        })
    }

    /// A runner whose client comes from `KUBECONFIG` / `--kubeconfig` when set, else from `~/.kube/config` or
    /// the in-cluster service account.
    pub async fn connect(config: &KubernetesConfig, env: ExecutorEnv) -> Result<Self, KubeRunnerError> {
        let mut kube_config = match &config.kubeconfig {
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path)
                    .map_err(|source| KubeRunnerError::Kubeconfig { path: path.clone(), source })?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                    .await
                    .map_err(|source| KubeRunnerError::Kubeconfig { path: path.clone(), source })?
            }
            None => kube::Config::infer().await.map_err(KubeRunnerError::Infer)?,
        };
        // The runner's own retries are bounded and rate-limited; kube's would be neither.
        kube_config.default_retry = false;
        let client = kube::Client::try_from(kube_config).map_err(KubeRunnerError::Client)?;
        Self::new(config, env, client)
    }

    /// The namespace executor Jobs run in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Resolves once the watchers have listed Jobs and pods (readiness).
    pub async fn ready(&self) {
        self.tracker.synced().await;
    }

    /// Requests sent and retried.
    pub fn api_stats(&self) -> &ApiStats {
        &self.stats
    }

    /// Lists and errors of the watchers.
    pub fn watch_stats(&self) -> &WatchStats {
        self.tracker.stats()
    }

    /// The installation's unfinished executor Jobs in the namespace, as the Job watcher last reported them (no
    /// API request), for the dispatcher's sweep to delete those that belong to no live attempt. `None` until the
    /// watcher has listed the Jobs once.
    pub fn unfinished_jobs(&self) -> Option<Vec<SweptJob>> {
        self.tracker.unfinished_jobs()
    }

    /// Deletes a Job and (in the background) its pods; false when it was already gone.
    pub async fn delete_job(&self, name: &str) -> Result<bool, kube::Error> {
        // Background: the Job is gone at once and the garbage collector deletes its pods, whose executors get
        // SIGTERM and their grace period. (The batch/v1 REST default, Orphan, would leave the pods running;
        // Foreground would keep the Job, and its deterministic name, until every pod has stopped.)
        match self.jobs.delete(name, &DeleteParams::background()).await {
            Ok(_) => {
                self.metrics.job("deleted");
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
            Err(err) => Err(err),
        }
    }

    async fn delete_quietly(&self, name: &str) {
        if let Err(err) = self.delete_job(name).await {
            tracing::warn!(job = name, cause = %err, "deleting the Job failed; the sweep will retry");
        }
    }

    #[tracing::instrument(skip_all, fields(execution_id = %attempt.execution_id, attempt = attempt.attempt))]
    async fn run_attempt(
        &self,
        attempt: &Attempt,
        started: tokio::sync::oneshot::Sender<Started>,
        cancel: CancellationToken,
    ) -> AttemptEnd {
        if cancel.is_cancelled() {
            return cancelled(None);
        }
        let name = job_name(attempt.execution_id, attempt.attempt);
        let input = JobSpecInput {
            execution_id: attempt.execution_id,
            attempt: attempt.attempt,
            tenant: attempt.tenant.clone(),
            workflow: attempt.workflow.clone(),
            deadline_ms: attempt.deadline_ms,
            resources: attempt.resources.clone(),
            traceparent: attempt.trace.map(|t| t.traceparent()),
        };
        let job = match job_manifest(&input, &self.settings) {
            Ok(job) => job,
            Err(err) => return AttemptEnd::Fail { reason: format!("the Job manifest cannot be built: {err}") },
        };
        // Subscribe before creating, so no event about the Job can be missed.
        let mut subscription = self.tracker.subscribe(&name);
        let placed = tokio::select! {
            // Boxed, as are the other requests below: an attempt waits for hours in `follow`, and its task should
            // not keep room for every request future it might make.
            placed = Box::pin(self.create_or_adopt(&name, &job, attempt)) => placed,
            () = cancel.cancelled() => {
                // The create may have been applied already.
                Box::pin(self.delete_quietly(&name)).await;
                return cancelled(None);
            }
        };
        // The attempt may run for hours: keep none of the manifest while following it.
        drop(job);
        if let Err(end) = placed {
            self.metrics.outcome(classify::cause(&end));
            return end;
        }
        let _ = started.send(Started { runner_ref: Some(name.clone()) });
        let end = self.follow(&name, &mut subscription, &cancel).await;
        self.metrics.outcome(classify::cause(&end));
        end
    }

    /// `Api::create`, with the answer read as a [`SlimJob`].
    async fn create(&self, job: &Job) -> Result<SlimJob, kube::Error> {
        let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PostParams::default() };
        let body = serde_json::to_vec(job).map_err(kube::Error::SerdeError)?;
        let path = <Job as kube::Resource>::url_path(&(), Some(&self.namespace));
        let mut request = kube::core::Request::new(path).create(&params, body).map_err(kube::Error::BuildRequest)?;
        request.extensions_mut().insert("create");
        self.client.request::<SlimJob>(request).await
    }

    async fn create_or_adopt(&self, name: &str, job: &Job, attempt: &Attempt) -> Result<(), AttemptEnd> {
        let tracer = self.tracer.get().filter(|t| t.is_enabled());
        let span = attempt.trace.filter(|_| tracer.is_some()).map(|parent| {
            let mut span = Span::start("kubernetes.create_job", SpanKind::Client, parent.child(), Some(parent));
            span.attr("k8s.job.name", name).attr("k8s.namespace.name", self.namespace.as_str());
            span
        });
        let placed = self.create_or_adopt_untraced(name, job, attempt).await;
        if let (Some(mut span), Some(tracer)) = (span, tracer) {
            if let Err(end) = &placed {
                span.fail(format!("{end:?}"));
            }
            tracer.end(span);
        }
        placed
    }

    async fn create_or_adopt_untraced(&self, name: &str, job: &Job, attempt: &Attempt) -> Result<(), AttemptEnd> {
        match self.create(job).await {
            Ok(created) => {
                self.metrics.job("created");
                self.tracker.offer_job(name, created);
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 409 => self.adopt(name, attempt).await,
            Err(err) => Err(classify::api_failure("the Job", &err)),
        }
    }

    /// The attempt's Job exists already (a dispatcher stopped after creating it, a create retried after it was
    /// applied, a redelivered message): follow it instead of running the attempt twice.
    async fn adopt(&self, name: &str, attempt: &Attempt) -> Result<(), AttemptEnd> {
        let existing = match self.jobs.get_opt(name).await {
            Ok(Some(job)) => job,
            Ok(None) => return Err(AttemptEnd::Retry { reason: vanished(name) }),
            Err(err) => return Err(classify::api_failure("reading the existing Job", &err)),
        };
        let labels = existing.labels();
        let (execution, number) = (labels.get(LABEL_EXECUTION), labels.get(LABEL_ATTEMPT));
        if execution != Some(&attempt.execution_id.to_string()) || number != Some(&attempt.attempt.to_string()) {
            return Err(AttemptEnd::Retry {
                reason: format!(
                    "a Job named {name} exists but is not this attempt's ({LABEL_EXECUTION}={}, {LABEL_ATTEMPT}={}); \
                     it is left alone",
                    execution.map_or("none", String::as_str),
                    number.map_or("none", String::as_str),
                ),
            });
        }
        tracing::info!(job = name, takeover = attempt.takeover, "the attempt's Job exists already; adopting it");
        self.metrics.job("adopted");
        self.tracker.offer_job(name, existing);
        // Its pod may have been stuck or evicted before this runner subscribed, with no event to come.
        self.list_pods(name).await;
        Ok(())
    }

    async fn list_pods(&self, name: &str) {
        let params = ListParams::default().labels(&format!("{LABEL_INSTANCE}={name}"));
        match self.pods.list(&params).await {
            Ok(list) => self.tracker.offer_pods(name, list.items),
            Err(err) => tracing::warn!(job = name, cause = %err, "listing the Job's pods failed"),
        }
    }
}

impl Runner for KubeRunner {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }

    fn use_tracer(&self, tracer: &Tracer) {
        let _ = self.tracer.set(tracer.clone());
    }

    fn run<'a>(
        &'a self,
        attempt: &'a Attempt,
        started: tokio::sync::oneshot::Sender<Started>,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, AttemptEnd> {
        Box::pin(self.run_attempt(attempt, started, cancel))
    }
}
