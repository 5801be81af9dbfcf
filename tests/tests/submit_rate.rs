//! Submit rate limits: per tenant, enforced in Redis across API replicas, 429 with `Retry-After` and the
//! `RateLimit-*` headers, nothing written for a refused submission, replays not charged, other tenants
//! unaffected, overrides through `PUT /api/v1/tenants/{tenant}/limits` with the API's settings as defaults.

use flow_like_test_harness::{ADMIN_TOKEN, TestApi};
use flow_like_tests::fixtures::{Submission, assert_problem};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn put_limits(api: &TestApi, tenant: &str, body: &Value) -> reqwest::Response {
    api.http
        .put(api.url(&format!("/api/v1/tenants/{tenant}/limits")))
        .bearer_auth(ADMIN_TOKEN)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn submit(http: &reqwest::Client, api: &TestApi, key: &str) -> reqwest::Response {
    http.post(api.url("/api/v1/executions")).bearer_auth(key).json(&Submission::sample().body()).send().await.unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> Option<u64> {
    response.headers().get(name).map(|v| v.to_str().unwrap().parse().unwrap())
}

async fn rows_of(api: &TestApi, tenant: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM executions WHERE tenant = $1")
        .bind(tenant)
        .fetch_one(&api.db)
        .await
        .unwrap();
    n
}

async fn metrics_text(api: &TestApi) -> String {
    api.http.get(format!("{}/metrics", api.metrics_base)).send().await.unwrap().text().await.unwrap()
}

async fn queued_entries(api: &TestApi) -> u64 {
    let mut redis = api.redis.clone();
    redis::cmd("HLEN").arg(api.keys.queued()).query_async(&mut redis).await.unwrap()
}

/// Tenant A at 50/s with a burst of 10, hammered by 4 clients for 5 s through 2 API replicas, gets
/// 10 + 50 per second accepted (± 10%) and 429 for the rest; tenant B, submitting in the same seconds through
/// the same replicas, is never refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_over_its_rate_gets_429_across_replicas_and_others_do_not() {
    let first = TestApi::start().await.unwrap();
    let second = TestApi::start_with(first.configs.clone(), |_| {}).await.unwrap();
    let (key_a, key_b) = (first.tenant_key("tenant-a").await.unwrap(), first.tenant_key("tenant-b").await.unwrap());
    let set = put_limits(&first, "tenant-a", &json!({"submit_rate": 50, "submit_burst": 10})).await;
    assert_eq!(set.status(), 200);
    assert_eq!(set.json::<Value>().await.unwrap()["submit_rate"], 50.0);

    let apis = [&first, &second];
    let started = Instant::now();
    let deadline = started + Duration::from_secs(5);
    let hammer = (0..4).map(|client| {
        let (api, key) = (apis[client % 2], key_a.clone());
        async move {
            let http = reqwest::Client::new();
            let (mut accepted, mut refused) = (0u32, 0u32);
            while Instant::now() < deadline {
                let response = submit(&http, api, &key).await;
                match response.status() {
                    StatusCode::ACCEPTED => {
                        assert_eq!(header(&response, "ratelimit-limit"), Some(10));
                        assert!(header(&response, "ratelimit-remaining").unwrap() < 10);
                        accepted += 1;
                    }
                    StatusCode::TOO_MANY_REQUESTS => {
                        assert_eq!(header(&response, "retry-after"), Some(1), "a token comes within 20 ms: 1 s");
                        assert_eq!(header(&response, "ratelimit-limit"), Some(10));
                        assert_eq!(header(&response, "ratelimit-remaining"), Some(0));
                        let problem = assert_problem(response, 429).await;
                        assert_eq!(problem["type"], "https://flow-like.dev/problems/rate-limited");
                        refused += 1;
                    }
                    other => panic!("unexpected {other}: {}", response.text().await.unwrap()),
                }
            }
            (accepted, refused)
        }
    });
    let other_tenant = async {
        let http = reqwest::Client::new();
        let mut statuses = Vec::new();
        while Instant::now() < deadline {
            statuses.push(submit(&http, apis[statuses.len() % 2], &key_b).await.status());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        statuses
    };
    let (counts, b_statuses) = tokio::join!(futures::future::join_all(hammer), other_tenant);
    let elapsed = started.elapsed().as_secs_f64();
    let accepted: u32 = counts.iter().map(|(a, _)| a).sum();
    let refused: u32 = counts.iter().map(|(_, r)| r).sum();

    eprintln!(
        "tenant A: {accepted} accepted, {refused} refused in {elapsed:.2} s; tenant B: {} accepted",
        b_statuses.len()
    );
    // 10 at once, then 50 per second of the run (the clock from the first to the last request).
    let expected = 10.0 + 50.0 * elapsed;
    let band = (10.0 + 50.0 * elapsed * 0.9)..=(10.0 + 50.0 * elapsed * 1.1);
    assert!(band.contains(&f64::from(accepted)), "accepted {accepted} in {elapsed:.2} s, expected about {expected:.0}");
    assert!(refused > accepted, "the clients asked for far more than the rate: {refused} refused");
    assert!(b_statuses.len() >= 50, "tenant B submitted {} times", b_statuses.len());
    assert!(b_statuses.iter().all(|s| *s == StatusCode::ACCEPTED), "tenant B: {b_statuses:?}");

    // A refused submission wrote nothing: one row and one queue entry per 202.
    assert_eq!(rows_of(&first, "tenant-a").await, i64::from(accepted));
    assert_eq!(queued_entries(&first).await, u64::from(accepted) + b_statuses.len() as u64);
    let refusals = metrics_text(&first).await + &metrics_text(&second).await;
    let counted: f64 = refusals
        .lines()
        .filter(|l| l.starts_with("flowlike_api_submissions_refused_total{reason=\"rate_limited\"}"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(counted, f64::from(refused), "every 429 is counted as rate_limited");
}

/// The API's settings are the default; a tenant's own rate replaces it at once, and clearing it brings the
/// default back.
/// `Retry-After` is the time until the next token, in whole seconds rounded up.
#[tokio::test]
async fn the_default_comes_from_the_api_settings_and_overrides_replace_it() {
    let configs = flow_like_test_services::TestServices::get().await.unwrap().fresh_configs().await.unwrap();
    let api = TestApi::start_with(configs, |c| {
        c.submit_rate = 0.01;
        c.submit_burst = 3;
    })
    .await
    .unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let http = reqwest::Client::new();
    for remaining in [2, 1, 0] {
        let response = submit(&http, &api, &key).await;
        assert_eq!(response.status(), 202);
        assert_eq!(header(&response, "ratelimit-limit"), Some(3));
        assert_eq!(header(&response, "ratelimit-remaining"), Some(remaining));
    }
    let refused = submit(&http, &api, &key).await;
    assert_eq!(refused.status(), 429);
    // One token per 100 s: the next is due in just under 100 s; the bucket is full in just under 300 s.
    let retry = header(&refused, "retry-after").unwrap();
    assert!((99..=100).contains(&retry), "Retry-After {retry}");
    let reset = header(&refused, "ratelimit-reset").unwrap();
    assert!((299..=300).contains(&reset), "RateLimit-Reset {reset}");
    let problem = assert_problem(refused, 429).await;
    assert!(problem["title"].as_str().unwrap().contains("submit rate limit"), "{problem}");
    assert_eq!(rows_of(&api, "acme").await, 3);

    // A tenant's own limit replaces the default at once (on this replica's next submission).
    assert_eq!(put_limits(&api, "acme", &json!({"submit_rate": 1000, "submit_burst": 5})).await.status(), 200);
    let response = submit(&http, &api, &key).await;
    assert_eq!(response.status(), 202);
    assert_eq!(header(&response, "ratelimit-limit"), Some(5));
    // Cleared (a PUT replaces every field): the default is back; the tokens left in the bucket (capped at its
    // burst of 3) run out and the slow rate refuses again.
    assert_eq!(put_limits(&api, "acme", &json!({})).await.status(), 200);
    let mut accepted = 0;
    loop {
        let response = submit(&http, &api, &key).await;
        assert_eq!(header(&response, "ratelimit-limit"), Some(3));
        if response.status() == 429 {
            break;
        }
        assert_eq!(response.status(), 202);
        accepted += 1;
        assert!(accepted <= 3, "more than the burst accepted");
    }
    assert_eq!(rows_of(&api, "acme").await, 4 + accepted);
}

/// A replay of an accepted Idempotency-Key answers with the original and is not charged, even when the tenant
/// has no token left; a reused key with another body is still 422, not 429.
#[tokio::test]
async fn an_idempotent_replay_is_not_charged() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    assert_eq!(put_limits(&api, "acme", &json!({"submit_rate": 0.01, "submit_burst": 1})).await.status(), 200);
    let with_key = |idempotency: &'static str, input: i64| {
        api.http
            .post(api.url("/api/v1/executions"))
            .bearer_auth(&key)
            .header("idempotency-key", idempotency)
            .json(&Submission::sample().input(json!({"n": input})).body())
            .send()
    };
    let original = with_key("k1", 1).await.unwrap();
    assert_eq!(original.status(), 202);
    assert_eq!(header(&original, "ratelimit-remaining"), Some(0));
    let id = original.json::<Value>().await.unwrap()["id"].clone();
    for _ in 0..3 {
        let replay = with_key("k1", 1).await.unwrap();
        assert_eq!(replay.status(), 202, "a replay is answered, not rate limited");
        assert_eq!(replay.headers()["idempotent-replayed"], "true");
        assert!(replay.headers().get("ratelimit-remaining").is_none(), "a replay is not charged");
        assert_eq!(replay.json::<Value>().await.unwrap()["id"], id);
    }
    assert_problem(with_key("k1", 2).await.unwrap(), 422).await;
    // The bucket is empty: a new key and a submission without one are refused.
    assert_problem(with_key("k2", 1).await.unwrap(), 429).await;
    assert_problem(submit(&api.http, &api, &key).await, 429).await;
    assert_eq!(rows_of(&api, "acme").await, 1);
    let (keys,): (i64,) = sqlx::query_as("SELECT count(*) FROM idempotency_keys").fetch_one(&api.db).await.unwrap();
    assert_eq!(keys, 1, "the refused key was not stored");
}

/// Bad limits are 422 with a pointer and change nothing.
#[tokio::test]
async fn bad_rate_limits_are_422_and_change_nothing() {
    let api = TestApi::start().await.unwrap();
    assert_eq!(put_limits(&api, "acme", &json!({"submit_rate": 5, "submit_burst": 2})).await.status(), 200);
    let cases = [
        (json!({"submit_rate": 0}), "/submit_rate"),
        (json!({"submit_rate": -1}), "/submit_rate"),
        (json!({"submit_rate": "10"}), "/submit_rate"),
        (json!({"submit_rate": 1e9}), "/submit_rate"),
        (json!({"submit_burst": 0}), "/submit_burst"),
        (json!({"submit_burst": 1.5}), "/submit_burst"),
        (json!({"submit_rate": 5, "burst": 2}), "/burst"),
        (json!({"weight": 0}), "/weight"),
        (json!({"weight": -2}), "/weight"),
        (json!({"weight": 1e6}), "/weight"),
    ];
    for (body, pointer) in cases {
        let problem = assert_problem(put_limits(&api, "acme", &body).await, 422).await;
        assert_eq!(problem["errors"][0]["pointer"], pointer, "{body}: {problem}");
    }
    let (rate, burst): (Option<f64>, Option<i32>) =
        sqlx::query_as("SELECT submit_rate, submit_burst FROM tenants WHERE name = 'acme'")
            .fetch_one(&api.db)
            .await
            .unwrap();
    assert_eq!((rate, burst), (Some(5.0), Some(2)));
    let mut redis = api.redis.clone();
    let stored: (Option<String>, Option<String>) = redis::cmd("HMGET")
        .arg(api.keys.limits())
        .arg("rate:acme")
        .arg("burst:acme")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(stored, (Some("5".into()), Some("2".into())));
}

/// Without a default rate, a replica learns of a tenant's new rate within a second (it reads the set of tenants
/// with a rate of their own at most once a second, so the submit path of tenants without one costs no Redis call).
#[tokio::test]
async fn another_replica_applies_a_new_rate_within_a_second() {
    let first = TestApi::start().await.unwrap();
    let second = TestApi::start_with(first.configs.clone(), |_| {}).await.unwrap();
    let key = first.tenant_key("acme").await.unwrap();
    let http = reqwest::Client::new();
    // The second replica knows acme has no rate of its own.
    let response = submit(&http, &second, &key).await;
    assert_eq!(response.status(), 202);
    assert!(response.headers().get("ratelimit-limit").is_none(), "no limit, no headers");
    assert_eq!(put_limits(&first, "acme", &json!({"submit_rate": 0.01, "submit_burst": 1})).await.status(), 200);
    tokio::time::sleep(flow_like_api::rated_tenants::REFRESH + Duration::from_millis(100)).await;
    let response = submit(&http, &second, &key).await;
    assert_eq!(response.status(), 202);
    assert_eq!(header(&response, "ratelimit-remaining"), Some(0));
    assert_problem(submit(&http, &second, &key).await, 429).await;
    assert_problem(submit(&http, &first, &key).await, 429).await;
}
