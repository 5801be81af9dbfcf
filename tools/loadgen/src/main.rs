//! `flow-like-loadgen`: `submit` submits executions to a running API from many concurrent clients and prints
//! submissions/s and latency percentiles beside pgbench's single-row INSERT rate (the ceiling); the last line
//! of stdout is one JSON object with the figures. The pipeline modes (`dispatch`, `dispatch-latency`,
//! `dispatcher-memory`, `executor`, `e2e`, see `flow_like_loadgen::pipeline`) and the Kubernetes modes
//! (`kube-jobs`, `kube-dispatch`) start their own services from the test pool and also end with one JSON line.
//! The command line is `flow_like_loadgen::cli`.

use clap::Parser;
use flow_like_loadgen::cli::{self, Cli};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    flow_like_shared::telemetry::install_crypto_provider();
    match cli::run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("flow-like-loadgen: {message}");
            ExitCode::FAILURE
        }
    }
}
