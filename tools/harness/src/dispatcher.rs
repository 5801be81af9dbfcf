//! Dispatchers for tests and benchmarks: their settings as command-line flags ([`DispatcherArgs`]), one running as
//! a task of this process ([`InProcessDispatcher`]) or as a real `flow-like-dispatcher` child process
//! ([`DispatcherProcess`], to `kill -9` or SIGTERM it), and where the workspace's binaries are.

use clap::Parser;
use flow_like_dispatcher::config::{Cli, Command, DispatcherConfig};
use flow_like_dispatcher::runner::Runner;
use flow_like_test_services::ServiceConfigs;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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
        let runner = flow_like_dispatcher::build_runner(&config).await?.runner;
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
