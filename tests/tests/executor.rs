//! The real `flow-like-executor` binary against real Redis and S3 (s3s-fs), given only what a Kubernetes Job
//! gives it: environment, the spec in the meta bucket, and a Redis user that may only append status events.
//!
//! The binary is found next to the test binary (`target/debug/flow-like-executor`); build it first with
//! `cargo build -p flow-like-executor`.

use aws_sdk_s3::primitives::ByteStream;
use flow_like_shared::config::{RedisConfig, S3Config};
use flow_like_shared::protocol::keys::Keys;
use flow_like_shared::spec::AttemptSpec;
use flow_like_shared::status::{
    AttemptManifest, EventKind, FinishedOutcome, NodePhase, StatusEntry, StatusEvent, exit_code,
};
use flow_like_shared::storage::layout;
use flow_like_test_services::{DedicatedRedis, TestServices};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use uuid::Uuid;

const TENANT: &str = "acme";
const GRACE_SECS: u64 = 2;

fn executor_binary() -> anyhow::Result<PathBuf> {
    // The test binary is target/debug/deps/executor-<hash>; the executor is target/debug/flow-like-executor.
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or_else(|| anyhow::anyhow!("no target directory above {}", exe.display()))?;
    let path = dir.join("flow-like-executor");
    anyhow::ensure!(path.exists(), "{} is missing: run `cargo build -p flow-like-executor` first", path.display());
    Ok(path)
}

/// One execution's world: fresh key prefix and buckets, and the spec to run.
struct Fixture {
    redis: RedisConfig,
    s3: S3Config,
    s3_client: aws_sdk_s3::Client,
    execution: Uuid,
    /// Overrides the Redis URL the executor gets (an ACL user's).
    executor_redis_url: Option<String>,
}

impl Fixture {
    async fn new() -> anyhow::Result<Self> {
        let services = TestServices::get().await?;
        let configs = services.fresh_configs().await?;
        Ok(Self {
            redis: configs.redis,
            s3: configs.s3,
            s3_client: configs.s3_settings.client(),
            execution: Uuid::now_v7(),
            executor_redis_url: None,
        })
    }

    async fn put_meta(&self, key: &str, value: &Value) -> anyhow::Result<()> {
        self.s3_client
            .put_object()
            .bucket(&self.s3.meta_bucket)
            .key(key)
            .body(ByteStream::from(serde_json::to_vec(value)?))
            .send()
            .await?;
        Ok(())
    }

    async fn put_spec(&self, workflow: Value, input: Value) -> anyhow::Result<()> {
        let spec = AttemptSpec {
            execution_id: self.execution,
            tenant: TENANT.into(),
            workflow_name: "test".into(),
            workflow,
            input: Some(input),
            input_key: None,
        };
        self.put_meta(&layout::spec(self.execution), &serde_json::to_value(&spec)?).await
    }

    /// The content bucket's JSON at `key`, if any.
    async fn content(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self.s3_client.get_object().bucket(&self.s3.content_bucket).key(key).send().await {
            Ok(output) => Ok(Some(output.body.collect().await?.into_bytes().to_vec())),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    async fn content_json(&self, key: &str) -> anyhow::Result<Value> {
        let bytes = self.content(key).await?.ok_or_else(|| anyhow::anyhow!("{key} is missing"))?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    fn command(&self) -> anyhow::Result<tokio::process::Command> {
        let mut command = tokio::process::Command::new(executor_binary()?);
        let redis_url = self.executor_redis_url.clone().unwrap_or_else(|| self.redis.url.clone());
        command
            .env_clear()
            .env("EXECUTION_ID", self.execution.to_string())
            .env("EXECUTION_ATTEMPT", "1")
            .env("EXECUTION_TENANT", TENANT)
            .env("REDIS_URL", redis_url)
            .env("REDIS_PREFIX", &self.redis.prefix)
            .env("S3_ENDPOINT", &self.s3.endpoint)
            .env("S3_REGION", &self.s3.region)
            .env("S3_ACCESS_KEY_ID", &self.s3.access_key_id)
            .env("S3_SECRET_ACCESS_KEY", &self.s3.secret_access_key)
            .env("S3_META_BUCKET", &self.s3.meta_bucket)
            .env("S3_CONTENT_BUCKET", &self.s3.content_bucket)
            .env("S3_FORCE_PATH_STYLE", "true")
            .env("RUST_LOG", "info")
            .env("EXECUTOR_SHUTDOWN_GRACE_SECS", GRACE_SECS.to_string())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        Ok(command)
    }

    /// Runs the executor to the end and returns its exit code.
    async fn run(&self) -> anyhow::Result<i32> {
        let output = tokio::time::timeout(Duration::from_secs(60), self.command()?.output()).await??;
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        output.status.code().ok_or_else(|| anyhow::anyhow!("executor killed by a signal"))
    }

    async fn redis(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        Ok(redis::Client::open(self.redis.url.as_str())?.get_multiplexed_async_connection().await?)
    }

    async fn entries(&self, stream: &str) -> anyhow::Result<Vec<StatusEntry>> {
        let mut connection = self.redis().await?;
        let reply: redis::streams::StreamRangeReply =
            redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query_async(&mut connection).await?;
        reply.ids.iter().map(|entry| StatusEntry::from_fields(&entry.map).map_err(Into::into)).collect()
    }

    async fn progress(&self) -> anyhow::Result<Vec<StatusEntry>> {
        let keys = Keys::new(self.redis.prefix.clone());
        self.entries(&keys.progress(&self.execution.to_string())).await
    }

    async fn pipeline(&self) -> anyhow::Result<Vec<StatusEntry>> {
        let keys = Keys::new(self.redis.prefix.clone());
        self.entries(&keys.status()).await
    }

    async fn manifest(&self) -> anyhow::Result<AttemptManifest> {
        Ok(serde_json::from_value(self.content_json(&layout::manifest(self.execution, 1)).await?)?)
    }
}

fn transform_workflow() -> Value {
    json!({
        "name": "double",
        "nodes": {
            "double": {"type": "transform", "params": {"expr": ".input.n * 2"}},
            "say": {"type": "log", "inputs": ["double"], "params": {"message": "\"doubled to \\(.double)\""}}
        },
        "output": "double"
    })
}

fn finished(entry: &StatusEntry) -> Option<(FinishedOutcome, Option<String>, Option<String>)> {
    match &entry.event {
        StatusEvent::Finished { outcome, error, result_key, .. } => Some((*outcome, error.clone(), result_key.clone())),
        _ => None,
    }
}

fn kinds(entries: &[StatusEntry]) -> Vec<EventKind> {
    entries.iter().map(|e| e.event.kind()).collect()
}

/// Checks what every completed attempt shows on the streams: `started` first and `finished` last on the
/// progress stream with `seq` 1, 2, 3, ..., and exactly those two on the pipeline stream with the same seqs.
async fn assert_streams(fixture: &Fixture) -> anyhow::Result<(Vec<StatusEntry>, StatusEntry)> {
    let progress = fixture.progress().await?;
    let seqs: Vec<u64> = progress.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=progress.len() as u64).collect::<Vec<_>>());
    assert!(progress.iter().all(|e| e.execution == fixture.execution && e.attempt == 1));
    assert_eq!(progress.first().map(|e| e.event.kind()), Some(EventKind::Started));
    assert_eq!(progress.last().map(|e| e.event.kind()), Some(EventKind::Finished));

    let pipeline = fixture.pipeline().await?;
    assert_eq!(kinds(&pipeline), vec![EventKind::Started, EventKind::Finished]);
    assert_eq!(pipeline[0], progress[0]);
    assert_eq!(pipeline[1], progress[progress.len() - 1]);
    let last = pipeline[1].clone();
    Ok((progress, last))
}

#[tokio::test]
async fn transform_workflow_succeeds_and_reports_everything() -> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    fixture.put_spec(transform_workflow(), json!({"n": 21})).await?;
    assert_eq!(fixture.run().await?, exit_code::SUCCEEDED);

    let result = fixture.content_json(&layout::result(fixture.execution, 1)).await?;
    assert_eq!(result["output"], json!(42));
    assert_eq!(result["outcome"]["status"], "succeeded");
    assert_eq!(result["nodes"]["double"]["status"], "succeeded");
    assert_eq!(result["nodes"]["double"]["attempts"], 1);

    let logs = fixture.content(&layout::logs(fixture.execution, 1)).await?.unwrap_or_default();
    let lines: Vec<Value> = String::from_utf8(logs)?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["node"], "say");
    assert_eq!(lines[0]["message"], "doubled to 42");

    let manifest = fixture.manifest().await?;
    assert_eq!(manifest.outcome, FinishedOutcome::Succeeded);
    assert_eq!(manifest.execution_id, fixture.execution);
    assert_eq!(manifest.result_key, Some(layout::result(fixture.execution, 1)));
    assert_eq!(manifest.logs_key, layout::logs(fixture.execution, 1));

    let (progress, last) = assert_streams(&fixture).await?;
    assert_eq!(finished(&last), Some((FinishedOutcome::Succeeded, None, Some(layout::result(fixture.execution, 1)))));
    let StatusEvent::Started { startup_ms } = progress[0].event else {
        anyhow::bail!("first event is not started");
    };
    eprintln!("executor start to first event: {startup_ms} ms");
    assert!(startup_ms < 2_000, "{startup_ms} ms");
    let node_phases: Vec<(String, NodePhase)> = progress
        .iter()
        .filter_map(|e| match &e.event {
            StatusEvent::Node { node, phase, .. } => Some((node.clone(), *phase)),
            _ => None,
        })
        .collect();
    assert!(node_phases.contains(&("double".into(), NodePhase::Started)));
    assert!(node_phases.contains(&("double".into(), NodePhase::Succeeded)));
    assert!(node_phases.contains(&("say".into(), NodePhase::Succeeded)));
    assert!(progress.iter().any(|e| matches!(
        &e.event,
        StatusEvent::Log { node: Some(node), message, .. } if node == "say" && message == "doubled to 42"
    )));
    Ok(())
}

#[tokio::test]
async fn failing_node_exits_3_with_a_failed_outcome() -> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    let workflow = json!({"nodes": {"stop": {"type": "fail", "params": {"message": "negative total"}}}});
    fixture.put_spec(workflow, Value::Null).await?;
    assert_eq!(fixture.run().await?, exit_code::WORKFLOW_FAILED);

    assert_eq!(fixture.manifest().await?.outcome, FinishedOutcome::Failed);
    let result = fixture.content_json(&layout::result(fixture.execution, 1)).await?;
    assert_eq!(result["nodes"]["stop"]["status"], "failed");
    let (_, last) = assert_streams(&fixture).await?;
    let (outcome, error, _) = finished(&last).ok_or_else(|| anyhow::anyhow!("not finished"))?;
    assert_eq!(outcome, FinishedOutcome::Failed);
    let error = error.unwrap_or_default();
    assert!(error.contains("stop") && error.contains("negative total"), "{error}");
    Ok(())
}

#[tokio::test]
async fn invalid_workflow_in_the_spec_is_a_failed_attempt() -> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    let workflow = json!({"nodes": {"a": {"type": "no.such.type", "params": {}}}});
    fixture.put_spec(workflow, Value::Null).await?;
    assert_eq!(fixture.run().await?, exit_code::WORKFLOW_FAILED);
    let manifest = fixture.manifest().await?;
    assert_eq!(manifest.outcome, FinishedOutcome::Failed);
    assert_eq!(manifest.result_key, None);
    let (_, last) = assert_streams(&fixture).await?;
    let error = finished(&last).and_then(|f| f.1).unwrap_or_default();
    assert!(error.contains("/nodes/a"), "{error}");
    Ok(())
}

#[tokio::test]
async fn object_put_then_get_stays_under_the_tenant_prefix() -> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    let workflow = json!({
        "nodes": {
            "save": {"type": "object.put", "params": {"key": "reports/total.json", "value": ".input.report"}},
            "load": {"type": "object.get", "inputs": ["save"], "params": {"key": "reports/total.json"}},
            "absent": {"type": "object.get", "params": {"key": "reports/none.json"}}
        },
        "output": "load"
    });
    let report = json!({"total": 120, "items": ["a", "b"]});
    fixture.put_spec(workflow, json!({"report": report.clone()})).await?;
    assert_eq!(fixture.run().await?, exit_code::SUCCEEDED);

    let result = fixture.content_json(&layout::result(fixture.execution, 1)).await?;
    assert_eq!(result["output"], report);
    let stored = fixture.content_json(&layout::tenant_object(TENANT, "reports/total.json")).await?;
    assert_eq!(stored, report);
    assert_eq!(fixture.content("reports/total.json").await?, None);
    Ok(())
}

#[tokio::test]
async fn input_is_read_from_input_key() -> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    let input_key = layout::input(fixture.execution);
    fixture.put_meta(&input_key, &json!({"n": 5})).await?;
    let spec = AttemptSpec {
        execution_id: fixture.execution,
        tenant: TENANT.into(),
        workflow_name: "double".into(),
        workflow: transform_workflow(),
        input: None,
        input_key: Some(input_key),
    };
    fixture.put_meta(&layout::spec(fixture.execution), &serde_json::to_value(&spec)?).await?;
    assert_eq!(fixture.run().await?, exit_code::SUCCEEDED);
    let result = fixture.content_json(&layout::result(fixture.execution, 1)).await?;
    assert_eq!(result["output"], json!(10));
    Ok(())
}

#[tokio::test]
async fn missing_spec_is_an_infrastructure_failure() -> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    assert_eq!(fixture.run().await?, exit_code::INFRA_FAILURE);
    // Started was reported; no verdict, so the runner retries the attempt.
    assert_eq!(kinds(&fixture.pipeline().await?), vec![EventKind::Started]);
    let progress = fixture.progress().await?;
    assert!(!kinds(&progress).contains(&EventKind::Finished));
    assert!(
        progress
            .iter()
            .any(|e| matches!(&e.event, StatusEvent::Log { node: None, message, .. } if message.contains("spec.json")))
    );
    assert_eq!(fixture.content(&layout::manifest(fixture.execution, 1)).await?, None);
    Ok(())
}

#[tokio::test]
async fn unreachable_redis_is_an_infrastructure_failure() -> anyhow::Result<()> {
    let mut fixture = Fixture::new().await?;
    fixture.put_spec(transform_workflow(), json!({"n": 1})).await?;
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    fixture.executor_redis_url = Some(format!("redis://127.0.0.1:{port}"));
    assert_eq!(fixture.run().await?, exit_code::INFRA_FAILURE);
    assert_eq!(fixture.content(&layout::manifest(fixture.execution, 1)).await?, None);
    Ok(())
}

/// Polls the progress stream until `node` has started.
async fn wait_for_node_start(fixture: &Fixture, node: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let progress = fixture.progress().await.unwrap_or_default();
        if progress
            .iter()
            .any(|e| matches!(&e.event, StatusEvent::Node { node: n, phase: NodePhase::Started, .. } if n == node))
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "node {node} never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn redis_lost_mid_run_is_an_infrastructure_failure() -> anyhow::Result<()> {
    let mut server = DedicatedRedis::start().await?;
    let mut fixture = Fixture::new().await?;
    fixture.redis.url = server.url();
    let workflow = json!({"nodes": {"wait": {"type": "sleep", "params": {"ms": 500}}}});
    fixture.put_spec(workflow, Value::Null).await?;
    let mut child = fixture.command()?.stderr(Stdio::inherit()).spawn()?;
    wait_for_node_start(&fixture, "wait").await?;
    server.kill().await?;

    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
    assert_eq!(exit.code(), Some(exit_code::INFRA_FAILURE));
    // The run itself completed and its files were written; only the verdict could not be reported.
    assert_eq!(fixture.manifest().await?.outcome, FinishedOutcome::Succeeded);
    Ok(())
}

#[tokio::test]
async fn sigterm_during_sleep_cancels_within_the_grace() -> anyhow::Result<()> {
    let fixture = Fixture::new().await?;
    let workflow = json!({"nodes": {"wait": {"type": "sleep", "params": {"ms": 60000}}}});
    fixture.put_spec(workflow, Value::Null).await?;
    let mut child = fixture.command()?.stderr(Stdio::inherit()).spawn()?;
    let pid = child.id().ok_or_else(|| anyhow::anyhow!("no pid"))?;

    wait_for_node_start(&fixture, "wait").await?;

    let signalled = Instant::now();
    let status = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status()?;
    anyhow::ensure!(status.success(), "kill failed");
    let exit = tokio::time::timeout(Duration::from_secs(GRACE_SECS + 5), child.wait()).await??;
    let took = signalled.elapsed();
    assert_eq!(exit.code(), Some(exit_code::CANCELLED));
    assert!(took < Duration::from_secs(GRACE_SECS), "took {took:?}");

    let (_, last) = assert_streams(&fixture).await?;
    assert_eq!(finished(&last).map(|f| f.0), Some(FinishedOutcome::Cancelled));
    assert_eq!(fixture.manifest().await?.outcome, FinishedOutcome::Cancelled);
    let result = fixture.content_json(&layout::result(fixture.execution, 1)).await?;
    assert_eq!(result["nodes"]["wait"]["status"], "cancelled");
    Ok(())
}

#[tokio::test]
async fn executor_needs_only_xadd_on_its_status_keys() -> anyhow::Result<()> {
    let mut fixture = Fixture::new().await?;
    let user = format!("exec_{}", Uuid::new_v4().simple());
    let mut admin = fixture.redis().await?;
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(">pw")
        .arg(format!("~{}:status*", fixture.redis.prefix))
        .arg("resetchannels")
        .arg("-@all")
        .arg("+xadd")
        .arg("+ping")
        .arg("+hello")
        .query_async(&mut admin)
        .await?;
    let address = fixture
        .redis
        .url
        .strip_prefix("redis://")
        .ok_or_else(|| anyhow::anyhow!("unexpected Redis URL {}", fixture.redis.url))?;
    fixture.executor_redis_url = Some(format!("redis://{user}:pw@{address}"));

    fixture.put_spec(transform_workflow(), json!({"n": 4})).await?;
    let code = fixture.run().await;
    // Redis logs every command an ACL refused: the executor must not have caused any.
    let denied = acl_denials(&mut admin, &user).await?;

    // The user really is limited. (This client's own handshake sends `CLIENT SETINFO`, which Redis rejects
    // (unknown before 7.2, not allowed by the ACL after) and redis-rs ignores; the connection still works.)
    let mut limited = redis::Client::open(fixture.executor_redis_url.as_deref().unwrap_or_default())?
        .get_multiplexed_async_connection()
        .await?;
    let refused: redis::RedisResult<Option<String>> =
        redis::cmd("GET").arg(format!("{}:status", fixture.redis.prefix)).query_async(&mut limited).await;
    let () = redis::cmd("ACL").arg("DELUSER").arg(&user).query_async(&mut admin).await?;
    assert!(refused.is_err());
    assert_eq!(denied, Vec::<String>::new());
    assert_eq!(code?, exit_code::SUCCEEDED);
    let (progress, last) = assert_streams(&fixture).await?;
    assert_eq!(finished(&last).map(|f| f.0), Some(FinishedOutcome::Succeeded));
    assert!(progress.len() > 2);
    Ok(())
}

/// The commands or keys Redis refused to `user`, from `ACL LOG`.
async fn acl_denials(admin: &mut redis::aio::MultiplexedConnection, user: &str) -> anyhow::Result<Vec<String>> {
    let entries: Vec<std::collections::HashMap<String, redis::Value>> =
        redis::cmd("ACL").arg("LOG").arg(1000).query_async(admin).await?;
    let text = |value: Option<&redis::Value>| match value {
        Some(redis::Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        Some(redis::Value::SimpleString(text)) => text.clone(),
        _ => String::new(),
    };
    Ok(entries
        .iter()
        .filter(|entry| text(entry.get("username")) == user)
        .map(|entry| format!("{} {}", text(entry.get("reason")), text(entry.get("object"))))
        .collect())
}
