//! `flow-like-loadgen submit`: submits executions to a running API from many concurrent clients and prints
//! submissions/s and latency percentiles beside pgbench's single-row INSERT rate (the ceiling); the last line
//! of stdout is one JSON object with the figures.

use clap::{Args, Parser, Subcommand};
use flow_like_tests::loadgen::pgbench::{self, PgbenchOptions};
use flow_like_tests::loadgen::report;
use flow_like_tests::loadgen::submit::{self, SubmitOptions};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "flow-like-loadgen", about = "Load generator for the flow-like API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Submit executions and measure submissions/s and latency.
    Submit(SubmitArgs),
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

async fn submit(args: SubmitArgs) -> Result<(), flow_like_tests::loadgen::LoadgenError> {
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

#[tokio::main]
async fn main() -> ExitCode {
    flow_like_shared::telemetry::install_crypto_provider();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Submit(args) => submit(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut message = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                message.push_str(&format!("\n  caused by: {cause}"));
                source = cause.source();
            }
            eprintln!("flow-like-loadgen: {message}");
            ExitCode::FAILURE
        }
    }
}
