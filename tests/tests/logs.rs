//! Logs an operator can search and share: the API, a dispatcher and the executors it starts, run as the real
//! binaries at the chart's level (`info`, JSON), log each execution with its `execution_id`, and never log a
//! secret input value or an API key.

use flow_like_test_harness::{ADMIN_TOKEN, DispatcherArgs, workspace_binary};
use flow_like_test_services::TestServices;
use flow_like_tests::fixtures::{Submission, WorkflowDoc, wait_terminal};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};

const SECRET_INPUT: &str = "sentinel-secret-input-7f3a9c";

#[tokio::test(flavor = "multi_thread")]
async fn execution_logs_carry_the_id_and_never_a_secret_input_or_an_api_key() -> anyhow::Result<()> {
    flow_like_shared::telemetry::install_crypto_provider();
    let configs = TestServices::get().await?.fresh_configs().await?;
    let dir = tempfile_dir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    let api_log = std::fs::File::create(dir.join("api.log"))?;
    let _api = tokio::process::Command::new(workspace_binary("flow-like-api")?)
        .arg("serve")
        .env_clear()
        .envs(configs.env())
        .envs([("FLOWLIKE_ADMIN_TOKEN", ADMIN_TOKEN), ("RUST_LOG", "info"), ("LOG_FORMAT", "json")])
        .env("API_LISTEN", format!("127.0.0.1:{port}"))
        .env("API_METRICS_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(api_log)
        .kill_on_drop(true)
        .spawn()?;
    let dispatcher_log = std::fs::File::create(dir.join("dispatcher.log"))?;
    let args = DispatcherArgs::new(&configs, "logs-dispatcher")?;
    let mut dispatcher = tokio::process::Command::new(workspace_binary("flow-like-dispatcher")?)
        .arg("run")
        .args(args.argv())
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(dispatcher_log)
        .kill_on_drop(true)
        .spawn()?;

    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/readyz")).send().await.map(|r| r.status() != 200).unwrap_or(true) {
        anyhow::ensure!(Instant::now() < deadline, "the API never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let issued: Value =
        http.post(format!("{base}/api/v1/tenants/acme/api-keys")).bearer_auth(ADMIN_TOKEN).send().await?.json().await?;
    let key = issued["key"].as_str().unwrap_or_default().to_owned();
    anyhow::ensure!(!key.is_empty(), "no key issued: {issued}");
    let workflow = WorkflowDoc::new().name("logs").transform("t", ".input.password | length").output("t").build();
    let body = Submission::of(workflow).input(json!({"password": SECRET_INPUT})).body();
    let submitted: Value =
        http.post(format!("{base}/api/v1/executions")).bearer_auth(&key).json(&body).send().await?.json().await?;
    let id: uuid::Uuid =
        submitted["id"].as_str().unwrap_or_default().parse().map_err(|_| anyhow::anyhow!("submit: {submitted}"))?;
    let db = sqlx::PgPool::connect(&configs.database.url).await?;
    assert_eq!(wait_terminal(&db, &[id], Duration::from_secs(60)).await?, ["succeeded"]);
    // Let the last lines reach the files, then stop the dispatcher (its drain is logged too).
    tokio::time::sleep(Duration::from_millis(300)).await;
    dispatcher.start_kill()?;
    let _ = dispatcher.wait().await;

    let api_text = std::fs::read_to_string(dir.join("api.log"))?;
    let dispatcher_text = std::fs::read_to_string(dir.join("dispatcher.log"))?;
    for (name, text) in [("API", &api_text), ("dispatcher", &dispatcher_text)] {
        assert!(!text.contains(SECRET_INPUT), "the {name} logged the secret input value");
        assert!(!text.contains(&key), "the {name} logged the API key");
        assert!(!text.contains(ADMIN_TOKEN), "the {name} logged the admin token");
        assert!(!text.contains(&configs.s3.secret_access_key), "the {name} logged the S3 secret");
    }
    let lines = |text: &str| -> Vec<Value> { text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect() };
    let id_text = id.to_string();
    let accepted = lines(&api_text)
        .into_iter()
        .find(|l| l["message"] == "execution accepted")
        .ok_or_else(|| anyhow::anyhow!("no `execution accepted` line:\n{api_text}"))?;
    assert_eq!(
        (accepted["execution_id"].as_str(), accepted["tenant"].as_str()),
        (Some(id_text.as_str()), Some("acme"))
    );
    assert_eq!(accepted["workflow"], "logs");
    // The executor (its stderr is the dispatcher's) logs its outcome inside the attempt's span.
    let outcome = lines(&dispatcher_text)
        .into_iter()
        .find(|l| l["message"] == "attempt finished")
        .ok_or_else(|| anyhow::anyhow!("no executor outcome line:\n{dispatcher_text}"))?;
    assert_eq!(outcome["span"]["execution_id"].as_str(), Some(id_text.as_str()), "{outcome}");
    assert_eq!(outcome["span"]["attempt"], 1, "{outcome}");
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir =
        flow_like_test_services::state_dir().join("dedicated").join(format!("logs-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
