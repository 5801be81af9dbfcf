//! `rediss://` end to end against a real `redis-server --tls-port` whose certificate a private CA (made by the
//! test) signed: the API, a dispatcher process and the executor it starts trust it through `REDIS_CA_FILE`; the
//! executor's append-only ACL user publishes over TLS; and each binary refuses to start, naming the setting, when
//! the certificate cannot be trusted.

use flow_like_shared::config::RedisConfig;
use flow_like_shared::protocol::keys::Keys;
use flow_like_shared::status::StatusEvent;
use flow_like_test_harness::{DispatcherArgs, DispatcherProcess, TestApi, workspace_binary};
use flow_like_test_services::tls::{ServerCertificate, make_server_certificate};
use flow_like_test_services::{DedicatedRedis, RedisOptions, ServiceConfigs, TestServices, state_dir};
use flow_like_tests::fixtures::{Submission, WorkflowDoc, wait_terminal};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

/// A binary, its arguments and the environment of its own it needs.
type BinaryRun = (&'static str, &'static [&'static str], Vec<(&'static str, String)>);
/// A case name, the Redis settings that make it, and what the error must say.
type TrustCase = (&'static str, Vec<(&'static str, String)>, &'static str);

/// A TLS-only Redis with a private CA, and the pool's PostgreSQL and S3 with fresh names.
struct TlsWorld {
    redis: DedicatedRedis,
    cert: ServerCertificate,
    /// A CA that did not sign the server's certificate.
    other_ca: PathBuf,
    configs: ServiceConfigs,
    dir: PathBuf,
}

impl TlsWorld {
    async fn start() -> anyhow::Result<Self> {
        flow_like_shared::telemetry::install_crypto_provider();
        let dir = state_dir().join("dedicated").join(format!("tls-{}", Uuid::new_v4().simple()));
        let cert = make_server_certificate(&dir, "redis")?;
        let other_ca = make_server_certificate(&dir, "other")?.ca;
        let redis = DedicatedRedis::start_with(RedisOptions { tls: Some(cert.clone()), ..Default::default() }).await?;
        let mut configs = TestServices::get().await?.fresh_configs().await?;
        configs.redis.url = redis.url();
        configs.redis.ca_file = Some(cert.ca.clone());
        Ok(Self { redis, cert, other_ca, configs, dir })
    }

    fn redis_config(&self, url: String, ca_file: Option<PathBuf>) -> RedisConfig {
        RedisConfig { url, prefix: self.configs.redis.prefix.clone(), ca_file }
    }

    /// The environment every binary reads for PostgreSQL, S3 and the key prefix (Redis is set per case).
    fn service_env(&self) -> Vec<(&'static str, String)> {
        let mut env = self.configs.env();
        env.retain(|(name, _)| !matches!(*name, "REDIS_URL" | "REDIS_CA_FILE"));
        env
    }
}

impl Drop for TlsWorld {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn api_dispatcher_and_executor_run_an_execution_over_tls_with_a_private_ca() -> anyhow::Result<()> {
    let world = TlsWorld::start().await?;
    let api = TestApi::start_with(world.configs.clone(), |_| {}).await?;
    let key = api.tenant_key("acme").await?;
    // A real dispatcher process; its process runner hands the executor REDIS_URL and REDIS_CA_FILE as a Job would.
    let _dispatcher = DispatcherProcess::start(&DispatcherArgs::new(&world.configs, "tls-dispatcher")?)?;

    let workflow = WorkflowDoc::new().name("double").transform("t", ".input.n * 2").output("t").build();
    let id = Submission::of(workflow).input(json!({"n": 21})).submit(&api, &key).await?;
    let statuses = wait_terminal(&api.db, &[id], Duration::from_secs(60)).await?;
    assert_eq!(statuses, ["succeeded"]);

    let result: Value = api.get(&format!("/api/v1/executions/{id}/result"), &key).await?.json().await?;
    assert_eq!(result["output"], json!(42));
    // The SSE endpoint reads the progress stream on connections of its own, also over TLS.
    let events = api.get(&format!("/api/v1/executions/{id}/events"), &key).await?;
    assert_eq!(events.status(), 200);
    let text = events.text().await?;
    assert!(text.contains("event: finished"), "no finished event over TLS: {text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_executors_append_only_acl_user_publishes_over_tls() -> anyhow::Result<()> {
    let world = TlsWorld::start().await?;
    let prefix = world.configs.redis.prefix.clone();
    let admin = world.configs.redis.client()?;
    let mut admin = admin.get_multiplexed_async_connection().await?;
    // The user the chart gives executors: XADD on its status keys and nothing else.
    let acl = format!("~{prefix}:status* resetchannels -@all +xadd +ping +hello");
    let mut setuser = redis::cmd("ACL");
    setuser.arg("SETUSER").arg("executor").arg("on").arg(">executor-pw");
    for rule in acl.split(' ') {
        setuser.arg(rule);
    }
    setuser.query_async::<()>(&mut admin).await?;

    let port = world.redis.port();
    let executor =
        world.redis_config(format!("rediss://executor:executor-pw@127.0.0.1:{port}"), Some(world.cert.ca.clone()));
    executor.check().await?;
    let connection = flow_like_executor::status::connect(&executor).await?;
    let execution = Uuid::now_v7();
    let keys = Keys::new(prefix);
    let publisher = flow_like_executor::status::StatusPublisher::new(connection, &keys, execution, 1);
    publisher.publish(StatusEvent::Started { startup_ms: 7 }).await?;

    let on_status: u64 = redis::cmd("XLEN").arg(keys.status()).query_async(&mut admin).await?;
    let on_progress: u64 =
        redis::cmd("XLEN").arg(keys.progress(&execution.to_string())).query_async(&mut admin).await?;
    assert_eq!((on_status, on_progress), (1, 1));

    // The same user over the same TLS connection code may not read anything.
    let mut limited = executor.client_with(|s| s.set_skip_set_lib_name())?.get_multiplexed_async_connection().await?;
    let read: redis::RedisResult<u64> = redis::cmd("XLEN").arg(keys.status()).query_async(&mut limited).await;
    assert!(read.is_err_and(|e| e.code() == Some("NOPERM")), "the executor user could read");
    Ok(())
}

/// Runs `binary args` with `env` (and nothing inherited but PATH) and returns its exit code and stderr; it must
/// exit on its own within 30 s.
async fn run_to_exit(binary: &str, args: &[&str], env: &[(&str, String)]) -> anyhow::Result<(Option<i32>, String)> {
    let mut command = tokio::process::Command::new(workspace_binary(binary)?);
    command.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).kill_on_drop(true);
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let output = tokio::time::timeout(Duration::from_secs(30), command.output()).await??;
    Ok((output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned()))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_redis_certificate_stops_every_binary_at_start_naming_redis_ca_file() -> anyhow::Result<()> {
    let world = TlsWorld::start().await?;
    let other_ca = world.other_ca.display().to_string();
    let cases: [TrustCase; 3] = [
        (
            "REDIS_CA_FILE is another CA",
            vec![("REDIS_CA_FILE", other_ca.clone())],
            "not trusted (checked against REDIS_CA_FILE",
        ),
        ("no REDIS_CA_FILE: system roots", vec![], "set REDIS_CA_FILE for a private CA"),
        (
            "REDIS_CA_FILE missing",
            vec![("REDIS_CA_FILE", "/nonexistent/ca.crt".into())],
            "REDIS_CA_FILE /nonexistent/ca.crt: cannot be read",
        ),
    ];
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
                ("EXECUTION_ID", Uuid::now_v7().to_string()),
                ("EXECUTION_ATTEMPT", "1".into()),
                ("EXECUTION_TENANT", "acme".into()),
            ],
        ),
    ];
    for (case, redis_env, expected) in &cases {
        for (binary, args, own_env) in &binaries {
            let mut env = world.service_env();
            env.push(("REDIS_URL", world.redis.url()));
            env.extend(redis_env.iter().cloned());
            env.extend(own_env.iter().cloned());
            let (code, stderr) = run_to_exit(binary, args, &env).await?;
            assert_ne!(code, Some(0), "{binary} started although {case}");
            assert!(stderr.contains(expected), "{binary} ({case}) did not say `{expected}`:\n{stderr}");
        }
    }
    Ok(())
}
