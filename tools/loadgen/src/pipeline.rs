//! Pipeline benchmarks behind `flow-like-loadgen dispatch|dispatch-latency|dispatcher-memory|executor|e2e`: the
//! dispatcher with the noop runner (admission rate, queue-to-dispatch latency, peak memory of a release process),
//! the executor's start-up, and the whole path API → dispatcher → executor. Each run works on the test service
//! pool (`TestServices`: PostgreSQL, Redis and s3s-fs started once per machine) with a fresh database, key prefix
//! and bucket pair, so runs never see each other's executions.

use crate::cpu::CpuProbe;
use crate::kube_dispatch::SERVICES;
use crate::redis_stats::{self, RedisCounters};
use anyhow::Context;
use aws_sdk_s3::primitives::ByteStream;
use flow_like_shared::protocol::keys::Keys;
use flow_like_shared::protocol::{self, QueueBody, QueueMessage};
use flow_like_shared::record::{self, batch, executions::NewExecution};
use flow_like_shared::spec::AttemptSpec;
use flow_like_shared::status::{StatusEntry, StatusEvent};
use flow_like_shared::storage::layout;
use flow_like_test_harness::TestApi;
use flow_like_test_harness::{DispatcherArgs, InProcessDispatcher};
use flow_like_test_services::{ServiceConfigs, TestServices};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The one-node workflow every pipeline benchmark runs (the same as the submission benchmark's).
pub fn bench_workflow() -> Value {
    serde_json::from_str(super::submit::BENCH_WORKFLOW).expect("the bench workflow is JSON")
}

/// Percentiles of millisecond samples (nearest rank), as `{count, p50_ms, p90_ms, p99_ms, max_ms}`.
pub fn percentiles(samples: &mut [f64]) -> Value {
    if samples.is_empty() {
        return json!({"count": 0});
    }
    samples.sort_by(f64::total_cmp);
    let rank = |q: f64| samples[((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    json!({
        "count": samples.len(),
        "p50_ms": round(rank(0.50)),
        "p90_ms": round(rank(0.90)),
        "p99_ms": round(rank(0.99)),
        "max_ms": round(samples[samples.len() - 1]),
    })
}

/// A binary of this workspace beside the running load generator (target/release when it is the release build).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the load generator has no directory")?;
    // Under `cargo test` the binary is target/<profile>/deps/<test>-<hash>.
    let dir = if dir.ends_with("deps") { dir.parent().unwrap_or(dir) } else { dir };
    let path = dir.join(name);
    anyhow::ensure!(path.exists(), "{} is missing: build it with `cargo build --release -p ...`", path.display());
    Ok(path)
}

/// A port nothing listens on right now (for a dispatcher's metrics endpoint).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Fresh database (migrated), key prefix and buckets on the test service pool.
pub async fn fresh() -> anyhow::Result<(ServiceConfigs, PgPool)> {
    flow_like_shared::telemetry::install_crypto_provider();
    let services = TestServices::get().await?;
    let mut configs = services.fresh_configs().await?;
    configs.database.max_connections = 16;
    let db = record::connect_lazy(&configs.database)?;
    record::migrate(&db).await?;
    Ok((configs, db))
}

/// Dispatcher flags for benchmarks: noop runner, limits far above the queue, one metrics port each.
pub fn bench_dispatcher_args(configs: &ServiceConfigs, id: &str, metrics_port: u16) -> DispatcherArgs {
    DispatcherArgs::services(configs, id)
        .set("--runner", "noop")
        .set("--global-limit", 1_000_000)
        .set("--tenant-limit", 1_000_000)
        .set("--lease-ttl-secs", 30)
        .set("--drain-timeout-secs", 10)
        .set("--reconcile-interval-secs", 3600)
        .set("--metrics-listen", format!("127.0.0.1:{metrics_port}"))
        .set("--database-max-connections", 16)
}

/// Commits `n` executions (tenants `bench-0` … `bench-{tenants-1}` in turn) the way the API's submit path does
/// (one multi-row INSERT per chunk, then one pipelined enqueue per chunk); numbering starts at `first`.
pub async fn fill(
    db: &PgPool,
    redis: &mut redis::aio::ConnectionManager,
    keys: &Keys,
    first: u64,
    n: u64,
    tenants: u32,
) -> anyhow::Result<()> {
    let workflow = bench_workflow();
    let mut done = 0;
    while done < n {
        let chunk = (n - done).min(2_000);
        let rows: Vec<NewExecution> = (first + done..first + done + chunk)
            .map(|i| NewExecution {
                id: Uuid::now_v7(),
                tenant: format!("bench-{}", i % u64::from(tenants.max(1))),
                workflow_name: "bench".into(),
                workflow_version: None,
                workflow: workflow.clone(),
                input: Some(json!({"n": i})),
                input_key: None,
                priority: 5,
                labels: json!({}),
                traceparent: None,
            })
            .collect();
        let queued = batch::insert_many(db, &rows).await?;
        let messages: Vec<QueueMessage> = rows
            .into_iter()
            .zip(queued)
            .map(|(row, queued_at)| QueueMessage {
                execution_id: row.id,
                tenant: row.tenant,
                workflow: row.workflow_name,
                priority: 5,
                attempt: 1,
                queued_at_ms: queued_at.timestamp_millis(),
                body: QueueBody { workflow_version: None, labels: BTreeMap::new(), traceparent: None },
            })
            .collect();
        for result in protocol::enqueue_many(redis, keys, &messages).await? {
            result?;
        }
        done += chunk;
    }
    Ok(())
}

pub async fn create_tenants(db: &PgPool, tenants: u32) -> anyhow::Result<()> {
    let names: Vec<String> = (0..tenants.max(1)).map(|i| format!("bench-{i}")).collect();
    sqlx::query("INSERT INTO tenants (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING")
        .bind(&names)
        .execute(db)
        .await?;
    Ok(())
}

/// Commits and queues `total` executions at `rate` per second (a batch every 10 ms, or one execution per tick
/// below 100/s), as clients of the API would; returns how long that took in seconds.
pub async fn offer(
    db: &PgPool,
    redis: &mut redis::aio::ConnectionManager,
    keys: &Keys,
    rate: u64,
    total: u64,
    tenants: u32,
) -> anyhow::Result<f64> {
    let per_tick = (rate / 100).max(1);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(per_tick as f64 / rate.max(1) as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut sent = 0;
    while sent < total {
        ticker.tick().await;
        let n = per_tick.min(total - sent);
        fill(db, redis, keys, sent, n, tenants).await?;
        sent += n;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// `admitted_total` of one dispatcher's `/metrics`.
async fn admitted(http: &reqwest::Client, port: u16) -> anyhow::Result<u64> {
    let text = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await?.text().await?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix("flowlike_dispatcher_admitted_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64))
}

async fn terminal_rows(db: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM executions WHERE status IN ('succeeded', 'failed', 'timed_out', 'cancelled')",
    )
    .fetch_one(db)
    .await?)
}

pub fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// `dispatch`: `executions` queued up front, then `dispatchers` in-process dispatchers with the noop runner;
/// admission rate (the dispatchers' `admitted` counters) and the rate at which PostgreSQL shows them terminal.
pub async fn dispatch(executions: u64, dispatchers: usize, tenants: u32, timeout: Duration) -> anyhow::Result<Value> {
    let (configs, db) = fresh().await?;
    let keys = Keys::new(configs.redis.prefix.clone());
    let mut redis = protocol::connect_lazy(&configs.redis)?;
    create_tenants(&db, tenants).await?;
    let memory_before = redis_stats::used_memory(&mut redis).await?;
    let fill_started = Instant::now();
    fill(&db, &mut redis, &keys, 0, executions, tenants).await?;
    let fill_secs = fill_started.elapsed().as_secs_f64();

    let http = reqwest::Client::new();
    let mut ports = Vec::new();
    let mut running = Vec::new();
    let before = RedisCounters::read(&mut redis).await?;
    // This process runs the dispatchers (in process), so its CPU is theirs plus the cheap polling below.
    let probe = CpuProbe { commands: SERVICES.iter().map(|&s| s.to_owned()).collect(), ..CpuProbe::default() };
    let cpu_before = probe.snapshot();
    let started = Instant::now();
    for i in 0..dispatchers.max(1) {
        let port = free_port()?;
        let args = bench_dispatcher_args(&configs, &format!("bench-d{i}"), port);
        running.push(InProcessDispatcher::start(&args).await?);
        ports.push(port);
    }
    let deadline = started + timeout;
    let (mut admitted_at, mut terminal_at, mut after) = (None, None, None);
    let mut last_terminal_poll = Instant::now() - Duration::from_secs(1);
    while admitted_at.is_none() || terminal_at.is_none() {
        anyhow::ensure!(Instant::now() < deadline, "not done within {timeout:?}");
        if admitted_at.is_none() {
            let mut sum = 0;
            for port in &ports {
                sum += admitted(&http, *port).await.unwrap_or(0);
            }
            if sum >= executions {
                admitted_at = Some(started.elapsed());
            }
        }
        if last_terminal_poll.elapsed() >= Duration::from_millis(200) {
            last_terminal_poll = Instant::now();
            if terminal_rows(&db).await? >= executions as i64 {
                terminal_at = Some(started.elapsed());
                after = Some((RedisCounters::read(&mut redis).await?, probe.snapshot()));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for dispatcher in running {
        dispatcher.stop().await?;
    }
    // What the finished executions leave in Redis: the growth of `used_memory` since before the queue was
    // filled, and the progress streams of a sample of them.
    let memory_after = redis_stats::used_memory(&mut redis).await?;
    let sample: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM executions ORDER BY id LIMIT 200").fetch_all(&db).await?;
    let stream_keys: Vec<String> = sample.iter().map(|id| keys.progress(&id.to_string())).collect();
    let stream_bytes = redis_stats::memory_usage(&mut redis, &stream_keys).await?;
    let stream_mean = stream_bytes.iter().sum::<u64>() as f64 / stream_bytes.len().max(1) as f64;
    let streams_left = stream_bytes.iter().filter(|bytes| **bytes > 0).count();
    // Where the progress went instead: the archive table in PostgreSQL (with its TOAST and index).
    let archive_bytes: i64 =
        sqlx::query_scalar("SELECT pg_total_relation_size('execution_progress')").fetch_one(&db).await?;
    let (redis_after, cpu_after) = after.unwrap_or_else(|| (before, probe.snapshot()));
    let (commands_per_job, cpu_us_per_job) = before.per_job(&redis_after, executions);
    let admitted_secs = admitted_at.unwrap_or_default().as_secs_f64();
    let terminal_secs = terminal_at.unwrap_or_default().as_secs_f64();
    // The same figure from PostgreSQL's own timestamps: first to last dispatch.
    let (span_ms, statuses): (Option<f64>, Vec<(String, i64)>) = (
        sqlx::query_scalar(
            "SELECT (EXTRACT(EPOCH FROM max(dispatched_at) - min(dispatched_at)) * 1000)::float8 FROM executions",
        )
        .fetch_one(&db)
        .await?,
        sqlx::query_as("SELECT status, count(*) FROM executions GROUP BY status").fetch_all(&db).await?,
    );
    Ok(json!({
        "mode": "dispatch",
        "executions": executions,
        "dispatchers": dispatchers,
        "tenants": tenants,
        "fill_secs": round1(fill_secs),
        "admitted_per_sec": round1(executions as f64 / admitted_secs.max(f64::EPSILON)),
        "terminal_per_sec": round1(executions as f64 / terminal_secs.max(f64::EPSILON)),
        "dispatched_at_span_ms": span_ms.map(round1),
        // Start of the dispatchers to every execution terminal in PostgreSQL (admission, events, release and
        // the status pipeline's reads and acknowledgements all fall inside).
        "redis_commands_per_job": round1(commands_per_job),
        "redis_cpu_us_per_job": round1(cpu_us_per_job),
        "redis_memory_bytes_left_per_execution": round1(memory_after.saturating_sub(memory_before) as f64 / executions.max(1) as f64),
        "redis_memory_bytes_left_total": memory_after.saturating_sub(memory_before),
        // MEMORY USAGE of the progress streams of 200 finished executions (0 for a stream that is gone).
        "progress_stream_bytes_mean": round1(stream_mean),
        "progress_streams_left_of_200": streams_left,
        "progress_archive_bytes_per_execution": round1(archive_bytes as f64 / executions.max(1) as f64),
        // CPU ms per execution over the same window: `rest_of_this_process` is the in-process dispatchers.
        "cpu_ms_per_job": cpu_before.per_unit_since(&cpu_after, executions),
        "statuses": statuses.into_iter().collect::<BTreeMap<_, _>>(),
        "target_dispatch_per_sec": 5000,
    }))
}

/// `dispatch-latency`: one idle dispatcher (noop runner), then executions committed and queued at `rate`/s for
/// `seconds`, in batches every 10 ms; queue-to-claim and queue-to-dispatch from the rows' timestamps.
pub async fn dispatch_latency(rate: u64, seconds: u64, tenants: u32) -> anyhow::Result<Value> {
    let (configs, db) = fresh().await?;
    let keys = Keys::new(configs.redis.prefix.clone());
    let mut redis = protocol::connect_lazy(&configs.redis)?;
    create_tenants(&db, tenants).await?;
    let args = bench_dispatcher_args(&configs, "bench-latency", free_port()?);
    let dispatcher = InProcessDispatcher::start(&args).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let total = rate * seconds;
    let offered_secs = offer(&db, &mut redis, &keys, rate, total, tenants).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while terminal_rows(&db).await? < total as i64 {
        anyhow::ensure!(Instant::now() < deadline, "not all executions finished within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    dispatcher.stop().await?;
    let rows: Vec<(f64, f64)> = sqlx::query_as(
        "SELECT (EXTRACT(EPOCH FROM claimed_at - queued_at) * 1000)::float8,
                (EXTRACT(EPOCH FROM dispatched_at - queued_at) * 1000)::float8
         FROM executions",
    )
    .fetch_all(&db)
    .await?;
    let (mut claim, mut dispatch): (Vec<f64>, Vec<f64>) = rows.into_iter().unzip();
    Ok(json!({
        "mode": "dispatch-latency",
        "offered_per_sec": rate,
        "achieved_offer_per_sec": round1(total as f64 / offered_secs),
        "executions": total,
        "queue_to_claim": percentiles(&mut claim),
        "queue_to_dispatch": percentiles(&mut dispatch),
        "target_queue_to_dispatch_p99_ms": 10,
    }))
}

fn vm_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| line.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// `dispatcher-memory`: `executions` queued, then the release `flow-like-dispatcher run --runner noop` as a child
/// process until PostgreSQL shows every execution terminal; its VmHWM (peak resident set) at the end.
pub async fn dispatcher_memory(executions: u64, tenants: u32, timeout: Duration) -> anyhow::Result<Value> {
    let (configs, db) = fresh().await?;
    let keys = Keys::new(configs.redis.prefix.clone());
    let mut redis = protocol::connect_lazy(&configs.redis)?;
    create_tenants(&db, tenants).await?;
    fill(&db, &mut redis, &keys, 0, executions, tenants).await?;

    let binary = sibling_binary("flow-like-dispatcher")?;
    let args = bench_dispatcher_args(&configs, "bench-memory", free_port()?);
    let argv: Vec<String> = args.args.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect();
    let mut child = tokio::process::Command::new(&binary)
        .arg("run")
        .args(argv)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("the dispatcher exited at once")?;
    let started = Instant::now();
    let idle_rss_kb = {
        tokio::time::sleep(Duration::from_millis(300)).await;
        vm_field(pid, "VmRSS:")
    };
    let mut done = None;
    while done.is_none() {
        anyhow::ensure!(started.elapsed() < timeout, "not done within {timeout:?}");
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the dispatcher exited early with {status}");
        }
        if terminal_rows(&db).await? >= executions as i64 {
            done = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let hwm_kb = vm_field(pid, "VmHWM:").context("no VmHWM in /proc")?;
    let rss_kb = vm_field(pid, "VmRSS:");
    tokio::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await?;
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let secs = done.unwrap_or_default().as_secs_f64();
    Ok(json!({
        "mode": "dispatcher-memory",
        "binary": binary.display().to_string(),
        "executions": executions,
        "vm_hwm_mb": round1(hwm_kb as f64 / 1024.0),
        "vm_rss_end_mb": rss_kb.map(|kb| round1(kb as f64 / 1024.0)),
        "vm_rss_after_300ms_mb": idle_rss_kb.map(|kb| round1(kb as f64 / 1024.0)),
        "terminal_per_sec": round1(executions as f64 / secs.max(f64::EPSILON)),
        "target_vm_hwm_mb": 64,
    }))
}

/// `executor`: the release executor `runs` times, each on its own execution of the one-node workflow; the
/// `startup_ms` its `started` event reports and the wall time from spawn to that event on the status stream.
pub async fn executor(runs: usize) -> anyhow::Result<Value> {
    flow_like_shared::telemetry::install_crypto_provider();
    let services = TestServices::get().await?;
    let configs = services.fresh_configs().await?;
    let binary = sibling_binary("flow-like-executor")?;
    let s3 = configs.s3_settings.client();
    let keys = Keys::new(configs.redis.prefix.clone());
    let client = redis::Client::open(configs.redis.url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let (mut startup, mut wall, mut exit) = (Vec::new(), Vec::new(), Vec::new());
    let mut failures = 0;
    for _ in 0..runs.max(1) {
        let execution = Uuid::now_v7();
        let spec = AttemptSpec {
            execution_id: execution,
            tenant: "bench".into(),
            workflow_name: "bench".into(),
            workflow: bench_workflow(),
            input: Some(json!({"n": 1})),
            input_key: None,
        };
        s3.put_object()
            .bucket(&configs.s3.meta_bucket)
            .key(layout::spec(execution))
            .body(ByteStream::from(serde_json::to_vec(&spec)?))
            .send()
            .await?;
        let stream = keys.progress(&execution.to_string());
        let c = &configs.s3;
        let spawned = Instant::now();
        let mut child = tokio::process::Command::new(&binary)
            .env_clear()
            .env("EXECUTION_ID", execution.to_string())
            .env("EXECUTION_ATTEMPT", "1")
            .env("EXECUTION_TENANT", "bench")
            .env("REDIS_URL", &configs.redis.url)
            .env("REDIS_PREFIX", &configs.redis.prefix)
            .env("S3_ENDPOINT", &c.endpoint)
            .env("S3_REGION", &c.region)
            .env("S3_ACCESS_KEY_ID", &c.access_key_id)
            .env("S3_SECRET_ACCESS_KEY", &c.secret_access_key)
            .env("S3_META_BUCKET", &c.meta_bucket)
            .env("S3_CONTENT_BUCKET", &c.content_bucket)
            .env("S3_FORCE_PATH_STYLE", "true")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        // Poll the execution's progress stream for its first entry (1 ms steps: the figure is in milliseconds).
        let mut seen = None;
        while seen.is_none() && spawned.elapsed() < Duration::from_secs(30) {
            let reply: redis::streams::StreamRangeReply =
                redis::cmd("XRANGE").arg(&stream).arg("-").arg("+").arg("COUNT").arg(1).query_async(&mut conn).await?;
            if let Some(entry) = reply.ids.first() {
                seen = Some((spawned.elapsed(), StatusEntry::from_fields(&entry.map)?));
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
        exit.push(spawned.elapsed().as_secs_f64() * 1000.0);
        match seen {
            Some((elapsed, StatusEntry { event: StatusEvent::Started { startup_ms }, .. })) if status.success() => {
                startup.push(startup_ms as f64);
                wall.push(elapsed.as_secs_f64() * 1000.0);
            }
            _ => failures += 1,
        }
    }
    Ok(json!({
        "mode": "executor",
        "runs": runs,
        "failures": failures,
        "startup_ms": percentiles(&mut startup),
        "spawn_to_started_event": percentiles(&mut wall),
        "spawn_to_exit": percentiles(&mut exit),
        "target_start_to_first_event_ms": 50,
    }))
}

/// `e2e`: a real API and one in-process dispatcher with the process runner (release executor), `executions`
/// submitted over HTTP as fast as `concurrency` clients go; executions/s from the first queued to the last finished
/// and queue-to-start (`started_at - queued_at`) from the rows.
pub async fn end_to_end(
    executions: u64,
    concurrency: usize,
    global_limit: u32,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let (configs, db) = fresh().await?;
    let api = TestApi::start_with(configs.clone(), |_| {}).await?;
    let key = api.tenant_key("bench").await?;
    let args = bench_dispatcher_args(&configs, "bench-e2e", free_port()?)
        .set("--runner", "process")
        .set("--executor-path", sibling_binary("flow-like-executor")?.display())
        .set("--global-limit", global_limit)
        .set("--tenant-limit", global_limit);
    let dispatcher = InProcessDispatcher::start(&args).await?;

    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/executions", api.base);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (http, url, key, next) = (http.clone(), url.clone(), key.clone(), next.clone());
            tokio::spawn(async move {
                let mut failed = 0u64;
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= executions {
                        return failed;
                    }
                    let sent = http
                        .post(&url)
                        .bearer_auth(&key)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(super::submit::submission_body(n))
                        .send()
                        .await;
                    if !matches!(sent, Ok(ref r) if r.status() == reqwest::StatusCode::ACCEPTED) {
                        failed += 1;
                    }
                }
            })
        })
        .collect();
    let mut rejected = 0;
    for task in tasks {
        rejected += task.await?;
    }
    let submitted_secs = started.elapsed().as_secs_f64();
    let accepted = executions - rejected;
    let deadline = Instant::now() + timeout;
    while terminal_rows(&db).await? < accepted as i64 {
        anyhow::ensure!(Instant::now() < deadline, "not all executions finished within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let wall_secs = started.elapsed().as_secs_f64();
    dispatcher.stop().await?;
    let span: f64 = sqlx::query_scalar(
        "SELECT (EXTRACT(EPOCH FROM max(finished_at) - min(queued_at)) * 1000)::float8 FROM executions",
    )
    .fetch_one(&db)
    .await?;
    let rows: Vec<(Option<f64>, Option<f64>)> = sqlx::query_as(
        "SELECT (EXTRACT(EPOCH FROM dispatched_at - queued_at) * 1000)::float8,
                (EXTRACT(EPOCH FROM started_at - queued_at) * 1000)::float8
         FROM executions",
    )
    .fetch_all(&db)
    .await?;
    let mut dispatch: Vec<f64> = rows.iter().filter_map(|r| r.0).collect();
    let mut start: Vec<f64> = rows.iter().filter_map(|r| r.1).collect();
    let statuses: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM executions GROUP BY status").fetch_all(&db).await?;
    Ok(json!({
        "mode": "e2e",
        "executions": executions,
        "rejected": rejected,
        "concurrency": concurrency,
        "global_limit": global_limit,
        "submit_secs": round1(submitted_secs),
        "executions_per_sec": round1(accepted as f64 / (span / 1000.0).max(f64::EPSILON)),
        "executions_per_sec_wall": round1(accepted as f64 / wall_secs),
        "queue_to_dispatch": percentiles(&mut dispatch),
        "queue_to_start": percentiles(&mut start),
        "statuses": statuses.into_iter().collect::<BTreeMap<_, _>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let p = percentiles(&mut samples);
        assert_eq!(p["p50_ms"], 50.0);
        assert_eq!(p["p99_ms"], 99.0);
        assert_eq!(p["max_ms"], 100.0);
        assert_eq!(percentiles(&mut [])["count"], 0);
    }

    /// A small dispatch run on the real services: every queued execution ends `succeeded` (noop runner).
    #[tokio::test]
    async fn a_small_dispatch_run_finishes_every_execution() {
        let report = dispatch(200, 2, 3, Duration::from_secs(60)).await.unwrap();
        assert_eq!(report["statuses"]["succeeded"], 200, "{report}");
        assert!(report["admitted_per_sec"].as_f64().unwrap() > 0.0);
    }
}
