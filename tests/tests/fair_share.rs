//! Admission fairness end to end, from the order in which attempts started: weighted fair share across tenants
//! (weights set through the admin API, two dispatchers under a global limit) and priority aging within one.

use flow_like_test_harness::{ADMIN_TOKEN, DispatcherArgs, InProcessDispatcher, TestApi};
use flow_like_tests::fixtures::{Submission, wait_until};
use flow_like_tests::scripted_runner::{Script, ScriptedRunner};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// Three tenants weighted 1:2:4, all saturated (each has far more queued than the global limit of 7 lets run),
/// two dispatchers: in every window of 200 consecutive starts, each tenant's share is its weight's share within
/// ±10%.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn saturated_tenants_start_in_proportion_to_their_weights() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let tenants = [("t-1", 1.0), ("t-2", 2.0), ("t-4", 4.0)];
    let mut owner: HashMap<Uuid, &str> = HashMap::new();
    for (tenant, weight) in tenants {
        let response = api
            .http
            .put(api.url(&format!("/api/v1/tenants/{tenant}/limits")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"weight": weight}))
            .send()
            .await?;
        assert_eq!(response.status(), 200);
        let key = api.tenant_key(tenant).await?;
        let submissions = (0..300).map(|i| {
            let (api, key) = (&api, key.clone());
            async move { Submission::sample().input(json!({"n": i})).submit(api, &key).await }
        });
        for id in futures::future::try_join_all(submissions).await? {
            owner.insert(id, tenant);
        }
    }

    let runner = ScriptedRunner::new(|_| Script::Succeed(Duration::from_millis(20)));
    let args = |n: usize| -> anyhow::Result<DispatcherArgs> {
        Ok(DispatcherArgs::new(&api.configs, &format!("d{n}"))?.set("--global-limit", 7).set("--tenant-limit", 7))
    };
    let dispatchers = [
        InProcessDispatcher::start_with_runner(&args(0)?, runner.clone())?,
        InProcessDispatcher::start_with_runner(&args(1)?, runner.clone())?,
    ];
    // t-4 runs dry after about 300 / (4/7) = 525 starts; the first 500 are all under saturation.
    let runner_ref = &runner;
    wait_until(Duration::from_secs(60), "500 attempts to start", || async move {
        Ok(runner_ref.start_order().len() >= 500)
    })
    .await?;
    for dispatcher in dispatchers {
        dispatcher.stop().await?;
    }

    let order: Vec<&str> = runner.start_order().iter().take(500).map(|id| owner[id]).collect();
    let mut worst: f64 = 0.0;
    for window in order.windows(200) {
        for (tenant, weight) in tenants {
            let expected = 200.0 * weight / 7.0;
            let got = window.iter().filter(|t| **t == tenant).count() as f64;
            let off = (got - expected).abs() / expected;
            worst = worst.max(off);
            assert!(off <= 0.10, "{tenant} started {got} of 200, expected {expected:.1}");
        }
    }
    eprintln!("largest deviation from the weights' shares over windows of 200 starts: {:.1}%", worst * 100.0);
    Ok(())
}

/// Priority aging: with 200 ms of waiting worth one level, a priority-0 execution goes after the priority-9
/// executions submitted less than 9 x 200 ms after it and before those submitted later, instead of after all of
/// them (strict priority would start it last).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_low_priority_execution_is_not_starved_by_a_high_priority_stream() -> anyhow::Result<()> {
    const AGING_MS: i64 = 200;
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    // A stream of priority-9 work over 3 s, with one priority-0 execution early in it.
    let mut low = None;
    let mut high = Vec::new();
    for i in 0..75 {
        if i == 12 {
            low = Some(Submission::sample().priority(0).submit(&api, &key).await?);
        }
        high.push(Submission::sample().priority(9).input(json!({"n": i})).submit(&api, &key).await?);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let low = low.unwrap();
    let queued_ms: HashMap<Uuid, i64> = sqlx::query_as::<_, (Uuid, i64)>(
        "SELECT id, (extract(epoch FROM queued_at) * 1000)::bigint FROM executions WHERE tenant = 'acme'",
    )
    .fetch_all(&api.db)
    .await?
    .into_iter()
    .collect();

    // One at a time, so the order is the admission order.
    let runner = ScriptedRunner::new(|_| Script::Succeed(Duration::from_millis(5)));
    let args = DispatcherArgs::new(&api.configs, "d0")?.set("--tenant-limit", 1).set("--priority-aging-ms", AGING_MS);
    let dispatcher = InProcessDispatcher::start_with_runner(&args, runner.clone())?;
    let runner_ref = &runner;
    wait_until(Duration::from_secs(60), "all 76 attempts to start", || async move {
        Ok(runner_ref.start_order().len() >= 76)
    })
    .await?;
    dispatcher.stop().await?;

    let order = runner.start_order();
    let at = order.iter().position(|id| *id == low).unwrap();
    // The priority-0 execution ranks as a priority-9 one submitted 9 levels x 200 ms after it.
    let ranks_as = queued_ms[&low] + 9 * AGING_MS;
    let (before, after) = (&order[..at], &order[at + 1..]);
    assert!(!before.is_empty() && !after.is_empty(), "neither first nor last: at {at} of {}", order.len());
    // Submission times are read to the millisecond on both sides: a few ms of slack at the boundary.
    for id in before {
        assert!(queued_ms[id] <= ranks_as + 5, "a priority-9 execution submitted after the bound went first");
    }
    for id in after {
        assert!(queued_ms[id] >= ranks_as - 5, "a priority-9 execution submitted before the bound went after");
    }
    let waited = order[..at].len();
    eprintln!(
        "the priority-0 execution started {waited}th, behind the priority-9 work of the {} ms after it",
        9 * AGING_MS
    );
    assert_eq!(high.len() + 1, order.len());
    Ok(())
}
