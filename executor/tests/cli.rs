//! The binary's behaviour before it reaches any service: settings errors end it at once with the
//! infrastructure exit code (or clap's usage code), never with a workflow verdict. The tests against real
//! Redis and S3 live in the `flow-like-tests` crate (`tests/tests/executor.rs`), which also relies on this file
//! to have cargo build the binary.

use flow_like_shared::status::exit_code;
use std::process::Command;

fn executor() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flow-like-executor"));
    command.env_clear();
    command
}

fn with_settings<'a>(command: &'a mut Command, execution_id: &str) -> &'a mut Command {
    command
        .env("EXECUTION_ID", execution_id)
        .env("EXECUTION_ATTEMPT", "1")
        .env("EXECUTION_TENANT", "acme")
        // Nothing listens on port 1: if the binary got this far, it would fail on Redis instead.
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("S3_ACCESS_KEY_ID", "k")
        .env("S3_SECRET_ACCESS_KEY", "s")
        .env("S3_META_BUCKET", "meta")
        .env("S3_CONTENT_BUCKET", "content")
}

#[test]
fn missing_settings_are_a_usage_error() {
    let output = executor().output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("EXECUTION_ID") || stderr.contains("--execution-id"), "{stderr}");
}

#[test]
fn an_execution_id_that_is_not_a_uuid_is_an_infrastructure_failure() {
    let output = with_settings(&mut executor(), "not-a-uuid").output().unwrap();
    assert_eq!(output.status.code(), Some(exit_code::INFRA_FAILURE));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a UUID"));
}

#[test]
fn unreachable_redis_is_an_infrastructure_failure() {
    let id = uuid::Uuid::now_v7().to_string();
    let output = with_settings(&mut executor(), &id).output().unwrap();
    assert_eq!(output.status.code(), Some(exit_code::INFRA_FAILURE));
}
