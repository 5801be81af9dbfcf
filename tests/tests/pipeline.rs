//! The execution pipeline end to end against real PostgreSQL, Redis and S3: the API, dispatchers (in this
//! process or as child processes) and the real executor.

use flow_like_test_harness::{DispatcherArgs, DispatcherProcess, InProcessDispatcher, TestApi};
use flow_like_test_services::{DedicatedRedis, TestServices, redis_config};
use flow_like_tests::fixtures::{Submission, sleepy, wait_terminal, wait_until};
use flow_like_tests::inspect::{finished_outcomes, leftover_leases};
use flow_like_tests::scripted_runner::{Script, ScriptedRunner};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use uuid::Uuid;

type Time = chrono::DateTime<chrono::Utc>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_workflow_runs_end_to_end_through_the_process_runner() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    let dispatcher = InProcessDispatcher::start(&DispatcherArgs::new(&api.configs, "d1")?).await?;
    let id = Submission::sample().input(json!({"n": 21})).submit(&api, &key).await?;
    assert_eq!(wait_terminal(&api.db, &[id], Duration::from_secs(30)).await?, ["succeeded"]);

    type Timeline = (i32, Option<String>, Option<Time>, Option<Time>, Option<Time>, Option<Time>);
    let (attempts, result_key, claimed, dispatched, started, finished): Timeline = sqlx::query_as(
        "SELECT attempts, result_key, claimed_at, dispatched_at, started_at, finished_at FROM executions WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&api.db)
    .await?;
    assert_eq!(attempts, 1);
    let (claimed, dispatched, started, finished) =
        (claimed.unwrap(), dispatched.unwrap(), started.unwrap(), finished.unwrap());
    assert!(claimed <= dispatched && dispatched <= started && started <= finished, "timeline out of order");

    // The result document the executor wrote, found through the record.
    let result_key = result_key.expect("result key recorded");
    let object = api
        .configs
        .s3_settings
        .client()
        .get_object()
        .bucket(&api.configs.s3.content_bucket)
        .key(&result_key)
        .send()
        .await?;
    let result: Value = serde_json::from_slice(&object.body.collect().await?.into_bytes())?;
    assert_eq!(result["output"], 42);

    let rows: Vec<(i32, String, Option<String>)> =
        sqlx::query_as("SELECT attempt, status, runner_ref FROM attempts WHERE execution_id = $1")
            .bind(id)
            .fetch_all(&api.db)
            .await?;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].0, rows[0].1.as_str()), (1, "succeeded"));
    assert!(rows[0].2.as_deref().unwrap_or_default().starts_with("pid "), "{rows:?}");

    dispatcher.stop().await?;
    assert!(leftover_leases(&api).await?.is_empty());
    Ok(())
}

/// 3 dispatchers (one joining mid-run), 200 executions of 4 tenants, global limit 10, tenant limit 3: a sampler never sees a limit
/// exceeded, everything finishes, and no lease remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_hold_across_three_dispatchers() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenants = ["t0", "t1", "t2", "t3"];
    let mut keys = Vec::new();
    for tenant in tenants {
        keys.push(api.tenant_key(tenant).await?);
    }
    let runner = ScriptedRunner::new(|_| Script::Succeed(Duration::from_millis(15)));
    let args = |n: usize| -> anyhow::Result<DispatcherArgs> {
        Ok(DispatcherArgs::new(&api.configs, &format!("d{n}"))?
            .set("--global-limit", 10)
            .set("--tenant-limit", 3)
            .set("--admit-batch", 4))
    };

    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (mut redis, keys_, done) = (api.redis.clone(), api.keys.clone(), done.clone());
        tokio::spawn(async move {
            let (mut samples, mut peak_global, mut peak_tenant) = (0u64, 0u64, 0u64);
            while !done.load(Ordering::Relaxed) {
                let mut pipe = redis::pipe();
                pipe.atomic().zcard(keys_.active());
                for tenant in tenants {
                    pipe.zcard(keys_.active_tenant(tenant));
                }
                let counts: Vec<u64> = pipe.query_async(&mut redis).await.unwrap();
                peak_global = peak_global.max(counts[0]);
                peak_tenant = peak_tenant.max(counts[1..].iter().copied().max().unwrap_or(0));
                assert!(counts[0] <= 10, "global limit exceeded: {counts:?}");
                assert!(counts[1..].iter().all(|c| *c <= 3), "tenant limit exceeded: {counts:?}");
                samples += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            (samples, peak_global, peak_tenant)
        })
    };

    let mut ids = Vec::new();
    for i in 0..200 {
        let t = i % tenants.len();
        ids.push(Submission::sample().input(json!({"n": i})).submit(&api, &keys[t]).await?);
    }
    // Two dispatchers from the start; the third joins mid-run.
    let mut dispatchers = Vec::new();
    for n in 0..2 {
        dispatchers.push(InProcessDispatcher::start_with_runner(&args(n)?, runner.clone())?);
    }
    let db = api.db.clone();
    wait_until(Duration::from_secs(60), "half the executions to finish", || {
        let db = db.clone();
        async move {
            let (n,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM executions WHERE status = 'succeeded'").fetch_one(&db).await?;
            Ok(n >= 80)
        }
    })
    .await?;
    dispatchers.push(InProcessDispatcher::start_with_runner(&args(2)?, runner.clone())?);
    let statuses = wait_terminal(&api.db, &ids, Duration::from_secs(120)).await?;
    done.store(true, Ordering::Relaxed);
    let (samples, peak_global, peak_tenant) = sampler.await?;
    assert!(statuses.iter().all(|s| s == "succeeded"), "{statuses:?}");
    assert!(samples > 50, "the sampler ran {samples} times");
    assert_eq!(peak_global, 10, "the global limit was reached");
    assert_eq!(peak_tenant, 3, "a tenant limit was reached");
    // Every execution ran exactly once.
    let started = runner.start_order();
    assert_eq!(started.len(), 200);
    for dispatcher in dispatchers {
        dispatcher.stop().await?;
    }
    assert!(leftover_leases(&api).await?.is_empty(), "{:?}", leftover_leases(&api).await?);
    Ok(())
}

/// A tenant at its limit does not hold back another tenant; tenants take turns; priority orders a tenant's work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_take_turns_and_priority_orders_work_within_a_tenant() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let busy = api.tenant_key("busy").await?;
    let light = api.tenant_key("light").await?;
    // Everything is queued before the dispatcher starts, so the order is the dispatcher's choice alone.
    let mut busy_ids = Vec::new();
    for i in 0..6 {
        let priority = if i == 5 { 9 } else { 1 };
        busy_ids.push(Submission::sample().input(json!({"n": i})).priority(priority).submit(&api, &busy).await?);
    }
    let mut light_ids = Vec::new();
    for i in 0..2 {
        light_ids.push(Submission::sample().input(json!({"n": i})).submit(&api, &light).await?);
    }
    let runner = ScriptedRunner::new(|_| Script::Succeed(Duration::from_millis(100)));
    let args = DispatcherArgs::new(&api.configs, "d1")?.set("--global-limit", 2).set("--tenant-limit", 1);
    let dispatcher = InProcessDispatcher::start_with_runner(&args, runner.clone())?;
    let mut all = busy_ids.clone();
    all.extend(&light_ids);
    wait_terminal(&api.db, &all, Duration::from_secs(30)).await?;
    dispatcher.stop().await?;

    let order = runner.start_order();
    let position = |id: &Uuid| order.iter().position(|x| x == id).unwrap();
    // busy's priority-9 execution, submitted last, runs before its priority-1 work.
    assert_eq!(order.iter().find(|id| busy_ids.contains(id)), Some(&busy_ids[5]), "{order:?}");
    // light's two executions do not wait for busy's six: both start within the first four starts.
    assert!(light_ids.iter().all(|id| position(id) < 4), "light waited behind busy: {order:?}");
    Ok(())
}

/// Infrastructure failures are retried as new attempts with backoff, and the slot is free meanwhile; after the
/// last attempt the message is dead-lettered and the execution failed with the reason, while others flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn infra_failures_retry_then_dead_letter_while_others_flow() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    let doomed = Submission::sample().input(json!({"n": 0})).label("doom", "yes").submit(&api, &key).await?;
    let runner = ScriptedRunner::new(move |attempt| {
        if attempt.execution_id == doomed {
            Script::InfraFailure(Duration::from_millis(10))
        } else {
            Script::Succeed(Duration::from_millis(10))
        }
    });
    // Tenant limit 1: the others can only run while the doomed one backs off without its slot.
    let args = DispatcherArgs::new(&api.configs, "d1")?
        .set("--tenant-limit", 1)
        .set("--max-attempts", 3)
        .set("--retry-backoff-ms", 500);
    let dispatcher = InProcessDispatcher::start_with_runner(&args, runner.clone())?;
    let mut others = Vec::new();
    for i in 0..5 {
        others.push(Submission::sample().input(json!({"n": i})).submit(&api, &key).await?);
    }
    let statuses = wait_terminal(&api.db, &others, Duration::from_secs(30)).await?;
    assert!(statuses.iter().all(|s| s == "succeeded"));
    assert_eq!(wait_terminal(&api.db, &[doomed], Duration::from_secs(30)).await?, ["failed"]);

    let (attempts, error): (i32, Option<String>) =
        sqlx::query_as("SELECT attempts, error FROM executions WHERE id = $1").bind(doomed).fetch_one(&api.db).await?;
    assert_eq!(attempts, 3);
    let error = error.unwrap_or_default();
    assert!(error.contains("dead-lettered") && error.contains("attempt 3 of 3"), "{error}");
    let rows: Vec<(i32, String)> =
        sqlx::query_as("SELECT attempt, status FROM attempts WHERE execution_id = $1 ORDER BY attempt")
            .bind(doomed)
            .fetch_all(&api.db)
            .await?;
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3]);
    // Backoff: the others (each 10 ms) were started while the doomed execution waited for its second attempt.
    let order = runner.start_order();
    let first_retry = order.iter().enumerate().filter(|(_, id)| **id == doomed).nth(1).map(|(i, _)| i).unwrap();
    assert!(first_retry > 1, "others ran during the backoff: {order:?}");

    // The dead letter names the execution and the reason.
    let mut redis = api.redis.clone();
    let dead: Vec<(String, HashMap<String, Vec<u8>>)> =
        redis::cmd("XRANGE").arg(api.keys.dead_letters()).arg("-").arg("+").query_async(&mut redis).await?;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].1["id"], doomed.to_string().into_bytes());
    let reason = String::from_utf8_lossy(&dead[0].1["reason"]).into_owned();
    assert!(reason.contains("scripted infrastructure failure"), "{reason}");
    dispatcher.stop().await?;
    assert!(leftover_leases(&api).await?.is_empty());
    Ok(())
}

/// A dispatcher killed with SIGKILL mid-drain: its leases expire, another dispatcher takes them over, and every
/// execution ends succeeded with exactly one successful attempt and one result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_a_dispatcher_mid_drain_loses_nothing() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    let mut ids = Vec::new();
    for i in 0..24 {
        ids.push(Submission::of(sleepy(400)).input(json!({"n": i})).submit(&api, &key).await?);
    }
    let args = |id: &str| -> anyhow::Result<DispatcherArgs> {
        Ok(DispatcherArgs::new(&api.configs, id)?.set("--global-limit", 8).set("--tenant-limit", 8))
    };
    let mut victim = DispatcherProcess::start(&args("victim")?)?;
    // Wait until the victim holds running attempts, then kill it.
    let db = api.db.clone();
    wait_until(Duration::from_secs(30), "the victim to run attempts", || {
        let db = db.clone();
        async move {
            let (n,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM executions WHERE status = 'running'").fetch_one(&db).await?;
            Ok(n >= 4)
        }
    })
    .await?;
    victim.kill9().await?;
    let survivor = InProcessDispatcher::start(&args("survivor")?).await?;
    let statuses = wait_terminal(&api.db, &ids, Duration::from_secs(90)).await?;
    assert!(statuses.iter().all(|s| s == "succeeded"), "{statuses:?}");
    let per_execution: Vec<(Uuid, i64, Option<String>)> = sqlx::query_as(
        "SELECT e.id, count(a.*) FILTER (WHERE a.status = 'succeeded'), e.result_key
         FROM executions e LEFT JOIN attempts a ON a.execution_id = e.id GROUP BY e.id, e.result_key",
    )
    .fetch_all(&api.db)
    .await?;
    for (id, succeeded, result_key) in &per_execution {
        assert_eq!(*succeeded, 1, "{id} has {succeeded} successful attempts");
        assert!(result_key.is_some(), "{id} has no result");
    }
    survivor.stop().await?;
    assert!(leftover_leases(&api).await?.is_empty());
    Ok(())
}

/// Redis loses everything mid-run (FLUSHALL): the reconciler puts queued executions back, in-flight ones are
/// settled, and every execution still finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flushall_mid_run_still_finishes_everything() -> anyhow::Result<()> {
    // A Redis of its own: FLUSHALL on the shared one would wipe the keys of every test running beside this one.
    let redis_server = DedicatedRedis::start().await?;
    let mut configs = TestServices::get().await?.fresh_configs().await?;
    configs.redis = redis_config(&redis_server.url(), "fl");
    let api = TestApi::start_with(configs, |_| {}).await?;
    let key = api.tenant_key("acme").await?;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(Submission::of(sleepy(200)).input(json!({"n": i})).submit(&api, &key).await?);
    }
    let args = DispatcherArgs::new(&api.configs, "d1")?.set("--global-limit", 4).set("--tenant-limit", 4);
    let dispatcher = InProcessDispatcher::start(&args).await?;
    let db = api.db.clone();
    wait_until(Duration::from_secs(30), "some executions to finish", || {
        let db = db.clone();
        async move {
            let (n,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM executions WHERE status = 'succeeded'").fetch_one(&db).await?;
            Ok(n >= 4)
        }
    })
    .await?;
    let mut redis = api.redis.clone();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut redis).await?;
    let statuses = wait_terminal(&api.db, &ids, Duration::from_secs(120)).await?;
    let counts = statuses.iter().fold(BTreeMap::<&str, usize>::new(), |mut m, s| {
        *m.entry(s.as_str()).or_default() += 1;
        m
    });
    assert_eq!(counts, BTreeMap::from([("succeeded", 30)]));
    dispatcher.stop().await?;
    Ok(())
}

/// SIGTERM: the dispatcher stops claiming, finishes or hands back what it holds within its drain timeout, and
/// exits; a second dispatcher finishes the rest. Nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_within_the_bound_and_loses_nothing() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(Submission::of(sleepy(3000)).input(json!({"n": i})).submit(&api, &key).await?);
    }
    let args = |id: &str| -> anyhow::Result<DispatcherArgs> {
        Ok(DispatcherArgs::new(&api.configs, id)?
            .set("--global-limit", 4)
            .set("--tenant-limit", 4)
            .set("--drain-timeout-secs", 1))
    };
    let mut first = DispatcherProcess::start(&args("first")?)?;
    let db = api.db.clone();
    wait_until(Duration::from_secs(30), "attempts to run", || {
        let db = db.clone();
        async move {
            let (n,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM executions WHERE status = 'running'").fetch_one(&db).await?;
            Ok(n >= 2)
        }
    })
    .await?;
    // Drain timeout 1 s, executors killed with the process: well within 10 s.
    let took = first.terminate(Duration::from_secs(10)).await?;
    assert!(took < Duration::from_secs(8), "the drain took {took:?}");
    let second = InProcessDispatcher::start(&args("second")?).await?;
    let statuses = wait_terminal(&api.db, &ids, Duration::from_secs(120)).await?;
    assert!(statuses.iter().all(|s| s == "succeeded"), "{statuses:?}");
    second.stop().await?;
    assert!(leftover_leases(&api).await?.is_empty());
    Ok(())
}

/// Cancelling a running execution stops its executor: the execution ends `cancelled` well before its sleep
/// would have ended, and its slot is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_stops_a_running_execution() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    let dispatcher = InProcessDispatcher::start(&DispatcherArgs::new(&api.configs, "d1")?).await?;
    let id = Submission::of(sleepy(60_000)).input(json!({"n": 1})).submit(&api, &key).await?;
    let db = api.db.clone();
    wait_until(Duration::from_secs(30), "the execution to run", || {
        let db = db.clone();
        async move {
            let (status,): (String,) =
                sqlx::query_as("SELECT status FROM executions WHERE id = $1").bind(id).fetch_one(&db).await?;
            Ok(status == "running")
        }
    })
    .await?;
    let started = std::time::Instant::now();
    let response = api.post_json(&format!("/api/v1/executions/{id}/cancel"), &key, &json!({})).await?;
    assert_eq!(response.status(), 202);
    assert_eq!(wait_terminal(&api.db, &[id], Duration::from_secs(20)).await?, ["cancelled"]);
    // The lease goes once the executor has reported and exited (heartbeat period + executor grace).
    let api_ref = &api;
    wait_until(Duration::from_secs(15), "the lease to be released", || async move {
        Ok(leftover_leases(api_ref).await?.is_empty())
    })
    .await?;
    assert!(started.elapsed() < Duration::from_secs(15), "cancel took {:?}", started.elapsed());
    // The executor itself reported the cancellation on the progress stream (archived once it is applied).
    wait_until(Duration::from_secs(10), "the executor's finished event", || async move {
        Ok(!finished_outcomes(api_ref, id).await?.is_empty())
    })
    .await?;
    assert_eq!(finished_outcomes(&api, id).await?, [flow_like_shared::status::FinishedOutcome::Cancelled]);
    dispatcher.stop().await?;
    Ok(())
}
