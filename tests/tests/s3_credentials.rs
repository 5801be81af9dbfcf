//! S3 without static keys: with S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY empty, the API, a dispatcher and the
//! executor it starts take credentials from the AWS SDK's default chain (here its standard `AWS_*` environment
//! variables, as IRSA or a metadata endpoint would supply them in a cluster) and run an execution against the
//! test S3 server, which checks every signature. Half-set static keys stop each binary at start, naming the
//! missing setting.

use flow_like_test_harness::{ADMIN_TOKEN, DispatcherArgs, DispatcherProcess, workspace_binary};
use flow_like_test_services::{ServiceConfigs, TestServices, free_port};
use flow_like_tests::fixtures::{Submission, WorkflowDoc, wait_terminal};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A binary, its arguments and the environment of its own it needs.
type BinaryRun = (&'static str, &'static [&'static str], Vec<(&'static str, String)>);

/// Settings every binary reads, with the static S3 keys left out.
fn env_without_keys(configs: &ServiceConfigs) -> Vec<(&'static str, String)> {
    let mut env = configs.env();
    env.retain(|(name, _)| !matches!(*name, "S3_ACCESS_KEY_ID" | "S3_SECRET_ACCESS_KEY"));
    env
}

fn sdk_credentials(configs: &ServiceConfigs) -> [(&'static str, String); 2] {
    [
        ("AWS_ACCESS_KEY_ID", configs.s3.access_key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", configs.s3.secret_access_key.clone()),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn binaries_use_the_sdk_default_credential_chain_when_no_static_keys_are_set() -> anyhow::Result<()> {
    flow_like_shared::telemetry::install_crypto_provider();
    let configs = TestServices::get().await?.fresh_configs().await?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let _api = tokio::process::Command::new(workspace_binary("flow-like-api")?)
        .arg("serve")
        .env_clear()
        .envs(env_without_keys(&configs))
        .envs(sdk_credentials(&configs))
        .env("API_LISTEN", format!("127.0.0.1:{port}"))
        .env("API_METRICS_LISTEN", "127.0.0.1:0")
        .env("FLOWLIKE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    let args =
        DispatcherArgs::new(&configs, "sdk-chain")?.set("--s3-access-key-id", "").set("--s3-secret-access-key", "");
    let credentials = sdk_credentials(&configs);
    let env: Vec<(&str, &str)> = credentials.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _dispatcher = DispatcherProcess::start_with_env(&args, &env)?;

    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/readyz")).send().await.map(|r| r.status() != 200).unwrap_or(true) {
        anyhow::ensure!(Instant::now() < deadline, "the API never became ready (S3 included) without static keys");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let issued: Value =
        http.post(format!("{base}/api/v1/tenants/acme/api-keys")).bearer_auth(ADMIN_TOKEN).send().await?.json().await?;
    let key = issued["key"].as_str().unwrap_or_default().to_owned();
    // An input above the inline limit goes to the meta bucket through the API's own S3 client.
    let big = "x".repeat(70 * 1024);
    let workflow = WorkflowDoc::new().transform("t", ".input.s | length").output("t").build();
    let body = Submission::of(workflow).input(json!({"s": big})).body();
    let submitted: Value =
        http.post(format!("{base}/api/v1/executions")).bearer_auth(&key).json(&body).send().await?.json().await?;
    let id = submitted["id"].as_str().unwrap_or_default().parse()?;
    let db = sqlx::PgPool::connect(&configs.database.url).await?;
    assert_eq!(wait_terminal(&db, &[id], Duration::from_secs(60)).await?, ["succeeded"]);
    let result: Value =
        http.get(format!("{base}/api/v1/executions/{id}/result")).bearer_auth(&key).send().await?.json().await?;
    assert_eq!(result["output"], json!(70 * 1024));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn half_set_static_keys_stop_every_binary_naming_the_missing_setting() -> anyhow::Result<()> {
    let configs = TestServices::get().await?.fresh_configs().await?;
    let binaries: [BinaryRun; 3] = [
        (
            "flow-like-api",
            &["serve"],
            vec![("API_LISTEN", "127.0.0.1:0".into()), ("API_METRICS_LISTEN", "127.0.0.1:0".into())],
        ),
        ("flow-like-dispatcher", &["run"], vec![("DISPATCHER_METRICS_LISTEN", "127.0.0.1:0".into())]),
        (
            "flow-like-executor",
            &[],
            vec![
                ("EXECUTION_ID", uuid::Uuid::now_v7().to_string()),
                ("EXECUTION_ATTEMPT", "1".into()),
                ("EXECUTION_TENANT", "acme".into()),
            ],
        ),
    ];
    for (binary, args, own) in &binaries {
        let output = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::process::Command::new(workspace_binary(binary)?)
                .args(*args)
                .env_clear()
                .envs(env_without_keys(&configs))
                .env("S3_ACCESS_KEY_ID", "only-the-id")
                .envs(own.iter().cloned())
                .kill_on_drop(true)
                .output(),
        )
        .await??;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{binary} started with half-set S3 keys");
        assert!(stderr.contains("S3_SECRET_ACCESS_KEY is empty"), "{binary} did not name the missing key:\n{stderr}");
    }
    Ok(())
}
