//! The whole product on one machine for end-to-end tests: the API (`TestApi`), dispatchers in this process or
//! as real `flow-like-dispatcher` processes (to `kill -9` or SIGTERM them), the real executor binary, and
//! helpers to wait for executions and to look at leases.

use crate::api::TestApi;
use crate::services::ServiceConfigs;
use clap::Parser;
use flow_like_dispatcher::config::{Cli, Command, DispatcherConfig};
use flow_like_dispatcher::runner::Runner;
use serde_json::Value;
use sqlx::PgPool;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A binary of this workspace beside the test binary (target/<profile>/<name>); `scripts/test.sh` builds them.
pub fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    // The test binary is target/<profile>/deps/<test>-<hash>.
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or_else(|| anyhow::anyhow!("no target directory above {}", exe.display()))?;
    let path = dir.join(name);
    anyhow::ensure!(path.exists(), "{} is missing: run `cargo build --workspace --bins` first", path.display());
    Ok(path)
}

/// Dispatcher settings as command-line flags (the same list drives in-process and child dispatchers).
#[derive(Debug, Clone)]
pub struct DispatcherArgs {
    pub args: Vec<(String, String)>,
}

impl DispatcherArgs {
    /// Test defaults on `configs`: process runner with the real executor, short lease and intervals.
    pub fn new(configs: &ServiceConfigs, id: &str) -> anyhow::Result<Self> {
        let executor = workspace_binary("flow-like-executor")?;
        Ok(Self::services(configs, id)
            .set("--runner", "process")
            .set("--global-limit", 100)
            .set("--tenant-limit", 10)
            .set("--lease-ttl-secs", 2)
            .set("--max-attempts", 3)
            .set("--max-deliveries", 5)
            .set("--retry-backoff-ms", 200)
            .set("--drain-timeout-secs", 5)
            .set("--reconcile-interval-secs", 1)
            .set("--reconcile-grace-secs", 2)
            .set("--metrics-listen", "127.0.0.1:0")
            .set("--executor-path", executor.display())
            .set("--database-max-connections", 4))
    }

    /// Only the dispatcher's id and where PostgreSQL, Redis and S3 are (`configs`); everything else default.
    pub fn services(configs: &ServiceConfigs, id: &str) -> Self {
        let s3 = &configs.s3;
        let args = [
            ("--dispatcher-id", id.to_owned()),
            ("--database-url", configs.database.url.clone()),
            ("--redis-url", configs.redis.url.clone()),
            ("--redis-prefix", configs.redis.prefix.clone()),
            ("--s3-endpoint", s3.endpoint.clone()),
            ("--s3-region", s3.region.clone()),
            ("--s3-access-key-id", s3.access_key_id.clone()),
            ("--s3-secret-access-key", s3.secret_access_key.clone()),
            ("--s3-meta-bucket", s3.meta_bucket.clone()),
            ("--s3-content-bucket", s3.content_bucket.clone()),
        ];
        let mut args: Vec<(String, String)> = args.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        if let Some(ca) = &configs.redis.ca_file {
            args.push(("--redis-ca-file".to_owned(), ca.display().to_string()));
        }
        Self { args }
    }

    /// Sets (or replaces) one flag.
    pub fn set(mut self, flag: &str, value: impl ToString) -> Self {
        self.args.retain(|(k, _)| k != flag);
        self.args.push((flag.to_owned(), value.to_string()));
        self
    }

    /// The flags as `flow-like-dispatcher run` arguments.
    pub fn argv(&self) -> Vec<String> {
        self.args.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect()
    }

    /// The parsed settings, exactly as the binary would read them.
    pub fn config(&self) -> anyhow::Result<DispatcherConfig> {
        let mut argv = vec!["flow-like-dispatcher".to_owned(), "run".to_owned()];
        argv.extend(self.argv());
        match Cli::try_parse_from(argv)?.command {
            Command::Run(config) => Ok(*config),
            Command::JobManifest(_) => anyhow::bail!("not a run command"),
        }
    }
}

/// A dispatcher running as a task of the test process.
pub struct InProcessDispatcher {
    shutdown: CancellationToken,
    handle: Option<JoinHandle<Result<(), flow_like_dispatcher::RunError>>>,
}

impl InProcessDispatcher {
    /// Starts one with the runner its settings name.
    pub async fn start(args: &DispatcherArgs) -> anyhow::Result<Self> {
        let config = args.config()?;
        let runner = flow_like_dispatcher::build_runner(&config).await?;
        Self::start_with_runner(args, runner)
    }

    /// Starts one with a runner the test supplies.
    pub fn start_with_runner(args: &DispatcherArgs, runner: Arc<dyn Runner>) -> anyhow::Result<Self> {
        flow_like_shared::telemetry::install_crypto_provider();
        let config = args.config()?;
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(flow_like_dispatcher::run_with_runner(config, runner, shutdown.clone()));
        Ok(Self { shutdown, handle: Some(handle) })
    }

    /// SIGTERM's equivalent: stop claiming, drain, return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await??;
        }
        Ok(())
    }
}

impl Drop for InProcessDispatcher {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A `flow-like-dispatcher run` child process.
pub struct DispatcherProcess {
    pub child: tokio::process::Child,
}

impl DispatcherProcess {
    pub fn start(args: &DispatcherArgs) -> anyhow::Result<Self> {
        Self::start_binary(&workspace_binary("flow-like-dispatcher")?, args)
    }

    /// `binary run` with these flags (for a load generator that uses the release build).
    pub fn start_binary(binary: &std::path::Path, args: &DispatcherArgs) -> anyhow::Result<Self> {
        Self::start_binary_with_env(binary, args, &[])
    }

    /// Like [`Self::start`], with extra environment variables for the child (e.g. `AWS_*` credentials).
    pub fn start_with_env(args: &DispatcherArgs, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_binary_with_env(&workspace_binary("flow-like-dispatcher")?, args, env)
    }

    fn start_binary_with_env(
        binary: &std::path::Path,
        args: &DispatcherArgs,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let child = tokio::process::Command::new(binary)
            .envs(env.iter().copied())
            .arg("run")
            .args(args.argv())
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        Ok(Self { child })
    }

    /// `kill -9`: no drain, no goodbye.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    /// SIGTERM, then waits for the exit; returns how long the exit took.
    pub async fn terminate(&mut self, within: Duration) -> anyhow::Result<Duration> {
        let pid = self.child.id().ok_or_else(|| anyhow::anyhow!("already exited"))?;
        let start = Instant::now();
        tokio::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await?;
        let status = tokio::time::timeout(within, self.child.wait()).await??;
        anyhow::ensure!(status.success(), "dispatcher exited with {status}");
        Ok(start.elapsed())
    }
}

/// Submits `workflow` with `input` and returns the execution id.
/// The sum of the samples of `family` in a Prometheus text scrape whose labels contain each of `labels`
/// (`key="value"`); 0 when there are none.
pub fn metric_total(text: &str, family: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, rest) = series.split_once('{').unwrap_or((series, ""));
            (name == family && labels.iter().all(|l| rest.contains(l))).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

pub async fn submit(api: &TestApi, key: &str, body: &Value) -> anyhow::Result<Uuid> {
    let response = api.post_json("/api/v1/executions", key, body).await?;
    let status = response.status();
    let body: Value = response.json().await?;
    anyhow::ensure!(status == 202, "submit failed with {status}: {body}");
    Ok(body["id"].as_str().unwrap_or_default().parse()?)
}

/// Waits until every execution is terminal in PostgreSQL; returns their statuses in order.
pub async fn wait_terminal(db: &PgPool, ids: &[Uuid], timeout: Duration) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + timeout;
    loop {
        let rows: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT id, status FROM executions WHERE id = ANY($1)").bind(ids).fetch_all(db).await?;
        let terminal =
            rows.iter().filter(|(_, s)| ["succeeded", "failed", "timed_out", "cancelled"].contains(&s.as_str()));
        if terminal.count() == ids.len() {
            let by_id: std::collections::HashMap<Uuid, String> = rows.into_iter().collect();
            return Ok(ids.iter().map(|id| by_id[id].clone()).collect());
        }
        if Instant::now() > deadline {
            let mut counts = std::collections::BTreeMap::<String, usize>::new();
            for (_, status) in &rows {
                *counts.entry(status.clone()).or_default() += 1;
            }
            anyhow::bail!("not all {} executions finished within {timeout:?}: {counts:?}", ids.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `check` holds, polling every 50 ms.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    while !check().await? {
        anyhow::ensure!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Lease hashes and active-set members left under the API's prefix.
pub async fn leftover_leases(api: &TestApi) -> anyhow::Result<Vec<String>> {
    Ok(api.redis_keys().await?.into_iter().filter(|k| k.contains(":lease:") || k.contains(":active")).collect())
}

/// What a [`ScriptedRunner`] does with one attempt.
#[derive(Debug, Clone)]
pub enum Script {
    /// Succeeds (reporting for the executor) after the delay.
    Succeed(Duration),
    /// Fails on infrastructure after the delay.
    InfraFailure(Duration),
}

/// A runner for tests that starts no executor: it plays a script per attempt and records what it started and
/// when, so tests can check ordering, fairness and concurrency without executor start-up noise.
pub struct ScriptedRunner {
    script: Box<dyn Fn(&flow_like_dispatcher::runner::Attempt) -> Script + Send + Sync>,
    pub started: std::sync::Mutex<Vec<(Uuid, u32, Instant)>>,
}

impl ScriptedRunner {
    pub fn new(script: impl Fn(&flow_like_dispatcher::runner::Attempt) -> Script + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self { script: Box::new(script), started: std::sync::Mutex::new(Vec::new()) })
    }

    /// Execution ids in the order their attempts started.
    pub fn start_order(&self) -> Vec<Uuid> {
        self.started.lock().unwrap().iter().map(|(id, _, _)| *id).collect()
    }
}

impl Runner for ScriptedRunner {
    fn name(&self) -> &'static str {
        "scripted"
    }

    fn needs_spec(&self) -> bool {
        false
    }

    fn run<'a>(
        &'a self,
        attempt: &'a flow_like_dispatcher::runner::Attempt,
        started: tokio::sync::oneshot::Sender<flow_like_dispatcher::runner::Started>,
        cancel: CancellationToken,
    ) -> futures::future::BoxFuture<'a, flow_like_dispatcher::runner::AttemptEnd> {
        use flow_like_dispatcher::runner::{AttemptEnd, Started};
        use flow_like_shared::status::FinishedOutcome;
        Box::pin(async move {
            self.started.lock().unwrap().push((attempt.execution_id, attempt.attempt, Instant::now()));
            let _ = started.send(Started { runner_ref: Some(format!("scripted {}", attempt.attempt)) });
            let script = (self.script)(attempt);
            let delay = match &script {
                Script::Succeed(d) | Script::InfraFailure(d) => *d,
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.cancelled() => {
                    return AttemptEnd::Concluded { outcome: FinishedOutcome::Cancelled, error: None };
                }
            }
            match script {
                Script::Succeed(_) => AttemptEnd::Concluded { outcome: FinishedOutcome::Succeeded, error: None },
                Script::InfraFailure(_) => AttemptEnd::Retry { reason: "scripted infrastructure failure".into() },
            }
        })
    }
}
