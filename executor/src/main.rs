//! The `flow-like-executor` binary: parses the settings, installs logging and the shutdown signal handler,
//! and exits with the attempt's exit code.

use clap::Parser;
use flow_like_executor::config::ExecutorConfig;
use flow_like_shared::status::exit_code;
use flow_like_shared::telemetry;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Time kept back from the grace period so the process is gone before the pod's own deadline.
const EXIT_MARGIN: Duration = Duration::from_millis(250);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let process_start = Instant::now();
    // First of all: from here on a SIGTERM (a cancel, an eviction) drains the attempt instead of killing it.
    let cancel = CancellationToken::new();
    tokio::spawn(telemetry::cancel_on_signal(cancel.clone()));
    telemetry::install_crypto_provider();
    let config = ExecutorConfig::parse();
    telemetry::init(&config.telemetry);

    let grace = Duration::from_secs(config.shutdown_grace_secs).saturating_sub(EXIT_MARGIN);
    tokio::spawn(exit_after_grace(cancel.clone(), grace));

    let code = flow_like_executor::run(config, process_start, cancel).await;
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The hard bound on shutdown: once cancelled, the attempt has `grace` to report; then the process exits as
/// cancelled with whatever it managed to write.
async fn exit_after_grace(cancel: CancellationToken, grace: Duration) {
    cancel.cancelled().await;
    tokio::time::sleep(grace).await;
    tracing::warn!(grace_ms = grace.as_millis() as u64, "shutdown grace passed; exiting");
    std::process::exit(exit_code::CANCELLED);
}
