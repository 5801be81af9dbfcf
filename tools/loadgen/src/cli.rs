//! The command line of `flow-like-loadgen`: one subcommand per benchmark mode, each turned into the options of its
//! module and run; the report is printed for people and, on the last line, as one JSON object.

use crate::kube;
use crate::kube_dispatch;
use crate::pgbench::{self, PgbenchOptions};
use crate::pipeline;
use crate::report;
use crate::submit::{self, SubmitOptions};
use clap::{Args, Parser, Subcommand};
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "flow-like-loadgen", about = "Load generator for the flow-like API")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Submit executions and measure submissions/s and latency.
    Submit(SubmitArgs),
    /// Queue executions (no dispatcher should run), then read random queued ones with their queue position.
    Read(ReadArgs),
    /// Dispatcher overhead: N executions queued, then in-process dispatchers with the noop runner.
    Dispatch(DispatchArgs),
    /// Queue-to-dispatch latency at a steady offered load (one dispatcher, noop runner).
    DispatchLatency(LatencyArgs),
    /// Peak memory (VmHWM) of the release dispatcher process with N executions queued (noop runner).
    DispatcherMemory(MemoryArgs),
    /// The release executor's start-up: `startup_ms` of its `started` event and wall time to it.
    Executor(ExecutorArgs),
    /// End to end: API + dispatcher (process runner) + executor, executions/s and queue-to-start.
    E2e(E2eArgs),
    /// Job creation through the Kubernetes runner against the simulator (no pods run): Jobs/s, create latency.
    KubeJobs(KubeJobsArgs),
    /// Dispatchers on the Kubernetes runner against the simulator (no pods run, injected API latency), beside a
    /// plain kube-rs create loop at the same concurrency; then queue-to-Job-created at a steady rate.
    KubeDispatch(KubeDispatchArgs),
}

#[derive(Debug, Args)]
struct DispatchArgs {
    #[arg(long, default_value_t = 50_000)]
    executions: u64,
    #[arg(long, default_value_t = 1)]
    dispatchers: usize,
    #[arg(long, default_value_t = 10)]
    tenants: u32,
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

#[derive(Debug, Args)]
struct LatencyArgs {
    /// Executions queued per second.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 10)]
    tenants: u32,
}

#[derive(Debug, Args)]
struct MemoryArgs {
    #[arg(long, default_value_t = 100_000)]
    executions: u64,
    #[arg(long, default_value_t = 10)]
    tenants: u32,
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

#[derive(Debug, Args)]
struct ExecutorArgs {
    #[arg(long, default_value_t = 50)]
    runs: usize,
}

#[derive(Debug, Args)]
struct E2eArgs {
    #[arg(long, default_value_t = 500)]
    executions: u64,
    /// Concurrent HTTP clients submitting.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The dispatcher's global and tenant limit (executor processes at once).
    #[arg(long, default_value_t = 32)]
    global_limit: u32,
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

#[derive(Debug, Args)]
struct KubeJobsArgs {
    #[arg(long, default_value_t = 1_000)]
    jobs: usize,
    /// Attempts whose Job create is in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The runner's client rate limit (the dispatcher's `--kube-qps` / `--kube-burst`).
    #[arg(long, default_value_t = 50.0)]
    qps: f64,
    #[arg(long, default_value_t = 100)]
    burst: u32,
    /// Latency added to every API request (a remote API server's round trip).
    #[arg(long, default_value_t = 0)]
    api_latency_ms: u64,
    /// Skip validating each Job against the official schema.
    #[arg(long)]
    no_validate: bool,
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

#[derive(Debug, Args)]
struct KubeDispatchArgs {
    /// Executions queued (Jobs created) per throughput phase.
    #[arg(long, default_value_t = 5_000)]
    jobs: u64,
    /// Dispatcher counts, one throughput phase each.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    dispatchers: Vec<usize>,
    /// Each dispatcher's `--kube-max-concurrent-requests`; one set of phases per value.
    #[arg(long, value_delimiter = ',', default_value = "16")]
    max_concurrent_requests: Vec<u32>,
    #[arg(long, default_value_t = 10)]
    tenants: u32,
    /// Latency added to every API request (a remote API server's round trip).
    #[arg(long, default_value_t = 5)]
    api_latency_ms: u64,
    /// The latency phase: executions offered per second, and for how long.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

/// Prints a pipeline report: indented for people, then the same object on one line (the last line).
fn print_report(report: anyhow::Result<serde_json::Value>) -> Result<(), String> {
    let report = report.map_err(|err| format!("{err:#}"))?;
    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    println!("{report}");
    Ok(())
}

async fn pipeline(command: Command) -> Result<(), String> {
    let secs = Duration::from_secs;
    print_report(match command {
        Command::Submit(_) | Command::Read(_) => unreachable!("handled by run"),
        Command::Dispatch(a) => pipeline::dispatch(a.executions, a.dispatchers, a.tenants, secs(a.timeout_secs)).await,
        Command::DispatchLatency(a) => pipeline::dispatch_latency(a.rate, a.seconds, a.tenants).await,
        Command::DispatcherMemory(a) => {
            pipeline::dispatcher_memory(a.executions, a.tenants, secs(a.timeout_secs)).await
        }
        Command::Executor(a) => pipeline::executor(a.runs).await,
        Command::E2e(a) => {
            pipeline::end_to_end(a.executions, a.concurrency, a.global_limit, secs(a.timeout_secs)).await
        }
        Command::KubeJobs(a) => {
            kube::run(&kube::KubeJobsOptions {
                jobs: a.jobs,
                concurrency: a.concurrency,
                qps: a.qps,
                burst: a.burst,
                api_latency: Duration::from_millis(a.api_latency_ms),
                validate: !a.no_validate,
                timeout: secs(a.timeout_secs),
            })
            .await
        }
        Command::KubeDispatch(a) => {
            kube_dispatch::run(&kube_dispatch::KubeDispatchOptions {
                jobs: a.jobs,
                dispatchers: a.dispatchers,
                max_concurrent_requests: a.max_concurrent_requests,
                tenants: a.tenants,
                api_latency: Duration::from_millis(a.api_latency_ms),
                rate: a.rate,
                seconds: a.seconds,
                timeout: secs(a.timeout_secs),
            })
            .await
        }
    })
}

#[derive(Debug, Args)]
struct SubmitArgs {
    /// Base URL of the API.
    #[arg(long, env = "LOADGEN_API_URL")]
    api_url: String,
    /// Admin token used to issue the tenant's API key.
    #[arg(long, env = "FLOWLIKE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// Tenant the executions are submitted for.
    #[arg(long, default_value = "bench")]
    tenant: String,
    /// Submissions in the measured phase.
    #[arg(long, default_value_t = 20_000)]
    requests: u64,
    /// Concurrent clients (each waits for its answer before sending the next request).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Submissions before measuring (connections, key cache, query plans).
    #[arg(long, default_value_t = 1_000)]
    warmup: u64,
    /// Per-request timeout in seconds; a timed-out request counts as an error.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// PostgreSQL URL to measure the single-row INSERT ceiling with pgbench (skipped when absent).
    #[arg(long)]
    pgbench_url: Option<String>,
    /// Seconds pgbench runs.
    #[arg(long, default_value_t = 10)]
    pgbench_secs: u64,
}

async fn submit(args: SubmitArgs) -> Result<(), crate::LoadgenError> {
    let options = SubmitOptions {
        api_url: args.api_url,
        admin_token: args.admin_token,
        tenant: args.tenant,
        requests: args.requests,
        concurrency: args.concurrency.max(1),
        warmup: args.warmup,
        request_timeout: Duration::from_secs(args.timeout_secs),
    };
    let outcome = submit::run(&options).await?;
    let ceiling = match args.pgbench_url {
        Some(database_url) => Some(
            pgbench::insert_ceiling(&PgbenchOptions {
                database_url,
                clients: options.concurrency,
                threads: 2,
                duration: Duration::from_secs(args.pgbench_secs),
                payload: submit::submission_body(0),
            })
            .await?,
        ),
        None => None,
    };
    print!("{}", report::human(&outcome, ceiling));
    println!("{}", report::json(&outcome, ceiling));
    Ok(())
}

#[derive(Debug, Args)]
struct ReadArgs {
    /// Base URL of the API.
    #[arg(long, env = "LOADGEN_API_URL")]
    api_url: String,
    /// Admin token used to issue the tenant's API key.
    #[arg(long, env = "FLOWLIKE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    #[arg(long, default_value = "bench-read")]
    tenant: String,
    /// Executions to submit (and leave queued) first; 0 reads what the tenant has queued already.
    #[arg(long, default_value_t = 100_000)]
    queue: u64,
    /// Reads in the measured phase.
    #[arg(long, default_value_t = 5_000)]
    reads: u64,
    /// Concurrent readers.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

async fn read(args: ReadArgs) -> Result<(), crate::LoadgenError> {
    let mut options = SubmitOptions {
        api_url: args.api_url,
        admin_token: args.admin_token,
        tenant: args.tenant,
        requests: args.queue,
        concurrency: 64,
        warmup: 0,
        request_timeout: Duration::from_secs(30),
    };
    if args.queue > 0 {
        let queued = submit::run(&options).await?;
        println!("queued {} of {} submissions ({:.0}/s)", queued.accepted, args.queue, queued.submissions_per_sec());
    }
    options.concurrency = args.concurrency.max(1);
    let outcome = crate::read::run(&options, args.reads).await?;
    print!("{}", crate::read::human(&outcome));
    println!("{}", crate::read::json(&outcome));
    Ok(())
}

fn with_causes(err: crate::LoadgenError) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        message.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    message
}

/// Runs the chosen mode; the error is the message to print (with its causes).
pub async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Read(args) => read(args).await.map_err(with_causes),
        Command::Submit(args) => submit(args).await.map_err(with_causes),
        other => pipeline(other).await,
    }
}
