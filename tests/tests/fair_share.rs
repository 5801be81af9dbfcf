//! Weighted fair share across tenants, end to end: weights set through the admin API, executions submitted
//! through the API, two dispatchers admitting under a global limit, and the order in which attempts started.

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
