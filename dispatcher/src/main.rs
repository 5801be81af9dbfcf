//! `flow-like-dispatcher`: parse settings, set up logging, run the chosen command.

use clap::Parser;
use flow_like_dispatcher::config::{Cli, Command};
use tokio_util::sync::CancellationToken;

/// jemalloc rather than glibc's malloc: on the Kubernetes path (a Job parsed per create answer and per watch
/// event, many short-lived buffers beside long-lived attempts) glibc's malloc/free led the CPU profile and
/// fragmented; jemalloc cut the dispatcher's CPU per Job and its peak memory (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    flow_like_shared::telemetry::install_crypto_provider();
    flow_like_shared::telemetry::init(&cli.telemetry);
    match cli.command {
        Command::Run(config) => {
            let shutdown = CancellationToken::new();
            tokio::spawn(flow_like_shared::telemetry::cancel_on_signal(shutdown.clone()));
            flow_like_dispatcher::run(*config, shutdown).await?;
        }
        Command::JobManifest(args) => print!("{}", flow_like_dispatcher::job_manifest_yaml(&args)?),
    }
    Ok(())
}
