//! `flow-like-test-services start|stop|env|stack-up`: manages the shared test service pool from scripts
//! (`scripts/test.sh` stops it after the test run) and starts the local stack's servers (`scripts/stack.sh up`).

use clap::{Parser, Subcommand};
use flow_like_test_services::TestServices;
use flow_like_test_services::stack::{self, StackConfig};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "flow-like-test-services",
    about = "PostgreSQL, Redis and S3 servers for the tests and the local stack",
    after_help = "The test pool's state directory is FLOWLIKE_TEST_STATE (default <workspace>/target/test-services)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the shared PostgreSQL, Redis and S3 test servers (or find them running).
    Start,
    /// Stop them and remove their files.
    Stop,
    /// Start them if needed and print shell exports (eval "$(flow-like-test-services env)").
    Env,
    /// Start the local stack's durable servers where scripts/stack.sh says (or find them running).
    StackUp(StackConfig),
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Start => TestServices::start_blocking().map(|_| ()),
        Command::Stop => TestServices::stop_blocking(),
        Command::Env => TestServices::start_blocking().map(|services| {
            print!("{}", services.env_exports());
        }),
        Command::StackUp(config) => stack::up(&config).map(|started| {
            for server in started {
                eprintln!("stack: {server}");
            }
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The chain carries the useful part (command output, log tail).
            let mut message = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                message.push_str(&format!("\n  caused by: {cause}"));
                source = cause.source();
            }
            eprintln!("flow-like-test-services: {message}");
            ExitCode::FAILURE
        }
    }
}
