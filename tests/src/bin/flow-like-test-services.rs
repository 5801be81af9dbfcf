//! `flow-like-test-services start|stop|env`: manages the shared test service pool from scripts
//! (`scripts/test.sh` stops it after the test run).

use flow_like_tests::services::TestServices;
use std::process::ExitCode;

const USAGE: &str = "usage: flow-like-test-services start|stop|env
  start  start the shared PostgreSQL, Redis and S3 test servers (or find them running)
  stop   stop them and remove their files
  env    start them if needed and print shell exports (eval \"$(flow-like-test-services env)\")
The state directory is FLOWLIKE_TEST_STATE (default <workspace>/target/test-services).";

fn main() -> ExitCode {
    let command = std::env::args().nth(1);
    let outcome = match command.as_deref() {
        Some("start") => TestServices::start_blocking().map(|_| ()),
        Some("stop") => TestServices::stop_blocking(),
        Some("env") => TestServices::start_blocking().map(|services| {
            print!("{}", services.env_exports());
        }),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
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
