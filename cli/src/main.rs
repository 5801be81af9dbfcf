//! `flow-like`: parse the command line (clap exits 2 on a usage error), run the command, exit with its code.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = flow_like_cli::args::Cli::parse();
    // One thread is plenty for one client; a runtime that cannot start is an environment problem (exit 2).
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(flow_like_cli::run(cli)),
        Err(err) => {
            eprintln!("flow-like: cannot start: {err}");
            ExitCode::from(2)
        }
    }
}
