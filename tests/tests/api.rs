//! The HTTP API against real PostgreSQL, Redis and S3: submission, reads, workflows, admin, and every kind of
//! bad input, each checked to leave no row, message or object behind.

use flow_like_test_harness::{ADMIN_TOKEN, TestApi};
use flow_like_tests::fixtures::{Submission, assert_problem, sample_workflow};
use serde_json::{Value, json};

async fn nothing_left_behind(api: &TestApi) {
    assert_eq!(api.execution_rows().await.unwrap(), 0, "an execution row was left");
    let keys = api.redis_keys().await.unwrap();
    assert!(keys.is_empty(), "Redis keys were left: {keys:?}");
    assert_eq!(api.meta_objects().await.unwrap(), 0, "an input object was left");
}

#[tokio::test]
async fn a_submission_is_committed_then_queued() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let response = api
        .post_json(
            "/api/v1/executions",
            &key,
            &Submission::sample().input(json!({"n": 21})).priority(7).label("team", "ops").body(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let body: Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/v1/executions/{id}"));
    assert_eq!(body["status"], "queued");

    let (status, priority): (String, i16) =
        sqlx::query_as("SELECT status, priority FROM executions WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&api.db)
            .await
            .unwrap();
    assert_eq!((status.as_str(), priority), ("queued", 7));

    let mut redis = api.redis.clone();
    let lane = api.keys.lane("acme", 7);
    let reply: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(&lane).arg("-").arg("+").query_async(&mut redis).await.unwrap();
    assert_eq!(reply.ids.len(), 1);
    let fields: std::collections::HashMap<String, Vec<u8>> = reply.ids[0]
        .map
        .iter()
        .map(|(k, v)| (k.clone(), redis::from_redis_value::<Vec<u8>>(v.clone()).unwrap()))
        .collect();
    assert_eq!(fields["id"], id.as_bytes());
    assert_eq!(fields["tenant"], b"acme");
    assert_eq!(fields["workflow"], b"double");
    assert_eq!(fields["attempt"], b"1");
    let groups: Vec<redis::Value> = redis::cmd("XINFO").arg("GROUPS").arg(&lane).query_async(&mut redis).await.unwrap();
    assert_eq!(groups.len(), 1, "the dispatchers' consumer group exists");

    let view: Value = api.get(&location, &key).await.unwrap().json().await.unwrap();
    assert_eq!(view["status"], "queued");
    assert_eq!(view["workflow"], "double");
    assert_eq!(view["labels"]["team"], "ops");
    assert!(view["timeline"]["queued_at"].is_string());
    assert!(view["timeline"]["dispatched_at"].is_null());
}

#[tokio::test]
async fn a_large_input_goes_to_the_meta_bucket() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let big = "x".repeat(64 * 1024);
    let response = api
        .post_json("/api/v1/executions", &key, &json!({"workflow": sample_workflow(), "input": {"blob": big}}))
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id: String = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().into();
    let (input_key, inline): (Option<String>, Option<Value>) =
        sqlx::query_as("SELECT input_key, input FROM executions WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&api.db)
            .await
            .unwrap();
    assert!(inline.is_none());
    let input_key = input_key.unwrap();
    let object = api
        .configs
        .s3_settings
        .client()
        .get_object()
        .bucket(&api.configs.s3.meta_bucket)
        .key(&input_key)
        .send()
        .await
        .unwrap();
    let stored: Value = serde_json::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(stored["blob"].as_str().unwrap().len(), 64 * 1024);
    // A small input does not touch S3.
    api.post_json("/api/v1/executions", &key, &json!({"workflow": sample_workflow(), "input": {"n": 1}}))
        .await
        .unwrap();
    assert_eq!(api.meta_objects().await.unwrap(), 1);
}

#[tokio::test]
async fn malformed_json_is_400() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let response = api
        .http
        .post(api.url("/api/v1/executions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{\"workflow\": ")
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;
    nothing_left_behind(&api).await;
}

#[tokio::test]
async fn ten_thousand_nested_arrays_are_400_without_overflow() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let body = format!("{{\"workflow\": {}{}, \"input\": 1}}", "[".repeat(10_000), "]".repeat(10_000));
    let response = api
        .http
        .post(api.url("/api/v1/executions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;
    nothing_left_behind(&api).await;
}

#[tokio::test]
async fn an_oversized_body_is_413_declared_or_streamed() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let big = vec![b' '; 2 * 1024 * 1024];
    let response = api
        .http
        .post(api.url("/api/v1/executions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_problem(response, 413).await;
    // Chunked, with no Content-Length: the limit applies while reading.
    let chunks =
        futures::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 64 * 1024]))));
    let response = api
        .http
        .post(api.url("/api/v1/executions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    // The server may answer before reading everything and close the connection; either way it is not accepted.
    if let Ok(response) = response {
        assert_problem(response, 413).await;
    }
    nothing_left_behind(&api).await;
}

#[tokio::test]
async fn a_wrong_content_type_is_415() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let body = json!({"workflow": sample_workflow()}).to_string();
    let response = api
        .http
        .post(api.url("/api/v1/executions"))
        .bearer_auth(&key)
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_problem(response, 415).await;
    nothing_left_behind(&api).await;
}

#[tokio::test]
async fn an_invalid_workflow_is_422_with_pointers() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let workflow = json!({"nodes": {
        "a": {"type": "transform", "params": {"expr": ".input |"}},
        "b": {"type": "transform", "inputs": ["nope"], "params": {"expr": "."}}
    }});
    let response = api.post_json("/api/v1/executions", &key, &json!({"workflow": workflow})).await.unwrap();
    let body = assert_problem(response, 422).await;
    let pointers: Vec<&str> =
        body["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert!(pointers.contains(&"/workflow/nodes/a/params/expr"), "{pointers:?}");
    assert!(pointers.contains(&"/workflow/nodes/b/inputs/0"), "{pointers:?}");

    let cyclic = json!({"nodes": {
        "a": {"type": "transform", "inputs": ["b"], "params": {"expr": "."}},
        "b": {"type": "transform", "inputs": ["a"], "params": {"expr": "."}}
    }});
    let response = api.post_json("/api/v1/executions", &key, &json!({"workflow": cyclic})).await.unwrap();
    assert_problem(response, 422).await;
    let response = api
        .post_json("/api/v1/executions", &key, &json!({"workflow": sample_workflow(), "priority": 12}))
        .await
        .unwrap();
    let body = assert_problem(response, 422).await;
    assert_eq!(body["errors"][0]["pointer"], "/priority");
    let response = api.post_json("/api/v1/executions", &key, &json!({"input": 1})).await.unwrap();
    assert_problem(response, 422).await;
    nothing_left_behind(&api).await;
}

#[tokio::test]
async fn missing_wrong_and_revoked_keys_are_401() {
    let api = TestApi::start().await.unwrap();
    let body = json!({"workflow": sample_workflow()});
    let response = api.http.post(api.url("/api/v1/executions")).json(&body).send().await.unwrap();
    assert_problem(response, 401).await;
    let response = api.post_json("/api/v1/executions", "flk_0123456789ab_wrong", &body).await.unwrap();
    assert_problem(response, 401).await;

    let issued: Value = api
        .http
        .post(api.url("/api/v1/tenants/acme/api-keys"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = issued["key"].as_str().unwrap();
    // A key with a tampered secret part is refused.
    let tampered = format!("{}x", &key[..key.len() - 1]);
    assert_problem(api.post_json("/api/v1/executions", &tampered, &body).await.unwrap(), 401).await;
    let stored: (Vec<u8>,) = sqlx::query_as("SELECT secret_sha256 FROM api_keys").fetch_one(&api.db).await.unwrap();
    assert_eq!(stored.0.len(), 32, "only the hash is stored");
    assert!(!key.contains(&format!("{:x?}", stored.0)));

    let revoked = api
        .http
        .delete(api.url(&format!("/api/v1/api-keys/{}", issued["id"].as_str().unwrap())))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    assert_problem(api.post_json("/api/v1/executions", key, &body).await.unwrap(), 401).await;
    nothing_left_behind(&api).await;

    // A tenant key cannot call the admin endpoints.
    let other = api.tenant_key("other").await.unwrap();
    let response = api.http.post(api.url("/api/v1/tenants/evil/api-keys")).bearer_auth(&other).send().await.unwrap();
    assert_problem(response, 403).await;
}

#[tokio::test]
async fn another_tenants_execution_is_404() {
    let api = TestApi::start().await.unwrap();
    let acme = api.tenant_key("acme").await.unwrap();
    let globex = api.tenant_key("globex").await.unwrap();
    let body: Value = api
        .post_json("/api/v1/executions", &acme, &json!({"workflow": sample_workflow()}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = format!("/api/v1/executions/{}", body["id"].as_str().unwrap());
    assert_eq!(api.get(&path, &acme).await.unwrap().status(), 200);
    assert_problem(api.get(&path, &globex).await.unwrap(), 404).await;
    assert_problem(api.get("/api/v1/executions/not-a-uuid", &acme).await.unwrap(), 404).await;
    let listed: Value = api.get("/api/v1/executions", &globex).await.unwrap().json().await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn idempotency_keys_return_the_original() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let body = json!({"workflow": sample_workflow(), "input": {"n": 1}});
    let send = |body: Value| {
        let request = api
            .http
            .post(api.url("/api/v1/executions"))
            .bearer_auth(&key)
            .header("idempotency-key", "order-17")
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let first: Value = send(body.clone()).await.json().await.unwrap();
    let again = send(body.clone()).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(first["id"], again["id"]);
    let other = send(json!({"workflow": sample_workflow(), "input": {"n": 2}})).await;
    assert_problem(other, 422).await;
    assert_eq!(api.execution_rows().await.unwrap(), 1);

    // Concurrent duplicates with a fresh key create one execution.
    let requests = (0..16).map(|_| {
        let request = api
            .http
            .post(api.url("/api/v1/executions"))
            .bearer_auth(&key)
            .header("idempotency-key", "burst")
            .json(&body);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap()["id"].clone() }
    });
    let ids: std::collections::HashSet<String> =
        futures::future::join_all(requests).await.into_iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(api.execution_rows().await.unwrap(), 2);
    let mut redis = api.redis.clone();
    let queued: u64 = redis::cmd("HLEN").arg(api.keys.queued()).query_async(&mut redis).await.unwrap();
    assert_eq!(queued, 2, "one queue entry per execution");
}

#[tokio::test]
async fn workflows_have_versions_and_can_be_submitted_by_reference() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let put = |doc: Value| {
        let request = api.http.put(api.url("/api/v1/workflows/double")).bearer_auth(&key).json(&doc);
        async move { request.send().await.unwrap() }
    };
    let v1 = put(sample_workflow()).await;
    assert_eq!(v1.status(), 201);
    assert_eq!(v1.json::<Value>().await.unwrap()["version"], 1);
    let mut changed = sample_workflow();
    changed["nodes"]["double"]["params"]["expr"] = json!(".input.n * 3");
    assert_eq!(put(changed).await.json::<Value>().await.unwrap()["version"], 2);
    assert_problem(put(json!({"nodes": {"x": {"type": "nope"}}})).await, 422).await;

    let latest: Value = api.get("/api/v1/workflows/double", &key).await.unwrap().json().await.unwrap();
    assert_eq!(latest["version"], 2);
    assert_eq!(latest["versions"], json!([2, 1]));
    let first: Value = api.get("/api/v1/workflows/double/versions/1", &key).await.unwrap().json().await.unwrap();
    assert_eq!(first["document"]["nodes"]["double"]["params"]["expr"], ".input.n * 2");
    assert_problem(api.get("/api/v1/workflows/double/versions/9", &key).await.unwrap(), 404).await;
    // Another tenant does not see it.
    let other = api.tenant_key("globex").await.unwrap();
    assert_problem(api.get("/api/v1/workflows/double", &other).await.unwrap(), 404).await;

    let submitted: Value = api
        .post_json("/api/v1/executions", &key, &json!({"workflow_ref": {"name": "double", "version": 1}}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(submitted["workflow_version"], 1);
    let missing =
        api.post_json("/api/v1/executions", &key, &json!({"workflow_ref": {"name": "absent"}})).await.unwrap();
    let body = assert_problem(missing, 422).await;
    assert_eq!(body["errors"][0]["pointer"], "/workflow_ref");
}

#[tokio::test]
async fn listing_filters_and_pages() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let body: Value = api
            .post_json("/api/v1/executions", &key, &json!({"workflow": sample_workflow()}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let mut other = sample_workflow();
    other["name"] = json!("other");
    api.post_json("/api/v1/executions", &key, &json!({"workflow": other})).await.unwrap();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/executions?workflow=double&limit=2&cursor={c}"),
            None => "/api/v1/executions?workflow=double&limit=2".into(),
        };
        let page: Value = api.get(&path, &key).await.unwrap().json().await.unwrap();
        seen.extend(page["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, every execution once");
    let queued: Value = api.get("/api/v1/executions?status=queued", &key).await.unwrap().json().await.unwrap();
    assert_eq!(queued["items"].as_array().unwrap().len(), 6);
    let done: Value = api.get("/api/v1/executions?status=succeeded", &key).await.unwrap().json().await.unwrap();
    assert_eq!(done["items"].as_array().unwrap().len(), 0);
    assert_problem(api.get("/api/v1/executions?status=bogus", &key).await.unwrap(), 400).await;
    assert_problem(api.get("/api/v1/executions?limit=0", &key).await.unwrap(), 400).await;
    assert_problem(api.get("/api/v1/executions?cursor=zzz", &key).await.unwrap(), 400).await;
}

#[tokio::test]
async fn queue_view_and_tenant_limits() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let mut submitted = Vec::new();
    for priority in [1, 5, 5, 5] {
        let response = api
            .post_json("/api/v1/executions", &key, &json!({"workflow": sample_workflow(), "priority": priority}))
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        submitted.push(body["id"].as_str().unwrap().to_owned());
    }
    let response = api
        .http
        .put(api.url("/api/v1/tenants/acme/limits"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"concurrency_limit": 3, "workflow_limit": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let whole: Value = api.get("/api/v1/queue", &key).await.unwrap().json().await.unwrap();
    assert_eq!(whole["tenants"].as_array().map(Vec::len), Some(1), "a tenant key sees only its tenant: {whole}");
    let view = &whole["tenants"][0];
    assert_eq!(view["tenant"], "acme");
    assert_eq!(view["workflows"][0]["workflow"], "double");
    assert_eq!(view["workflows"][0]["queued"], 4);
    assert!(view["oldest_queued_age_secs"].as_f64().is_some_and(|age| age >= 0.0), "{view}");
    assert_eq!(view["admitted_last_minute"], 0);
    assert_eq!(view["wait_p50_ms"], Value::Null);
    assert_eq!(view["queue"]["waiting"], 4);
    assert_eq!(view["queue"]["waiting_by_priority"]["5"], 3);
    // A dispatcher claims the first entry of lane 5, then the second is cancelled while queued, which deletes
    // its entry after the group's last delivery: Redis then reports no lag for the lane, and the count falls
    // back to the lane's length less the entries delivered and not yet acknowledged.
    let lane = api.keys.lane("acme", 5);
    let mut redis = api.redis.clone();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("dispatchers")
        .arg("test-dispatcher")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&lane)
        .arg(">")
        .query_async(&mut redis)
        .await
        .unwrap();
    let second_of_lane_5 = &submitted[2];
    let cancel = api.http.post(api.url(&format!("/api/v1/executions/{second_of_lane_5}/cancel"))).bearer_auth(&key);
    assert_eq!(cancel.send().await.unwrap().status(), 202);
    let groups: Vec<std::collections::HashMap<String, redis::Value>> =
        redis::cmd("XINFO").arg("GROUPS").arg(&lane).query_async(&mut redis).await.unwrap();
    assert_eq!(groups[0].get("lag"), Some(&redis::Value::Nil), "Redis no longer knows the lag: {groups:?}");
    let whole: Value = api.get("/api/v1/queue", &key).await.unwrap().json().await.unwrap();
    let view = &whole["tenants"][0];
    assert_eq!(view["queue"]["waiting"], 2, "{view}");
    assert_eq!(view["queue"]["waiting_by_priority"]["5"], 1, "{view}");
    assert_eq!(view["queue"]["running"], 0);
    assert_eq!(view["limits"]["tenant"], 3);
    assert_eq!(whole["dispatchers_alive"], 0);
    assert_eq!(whole["dispatchers"], json!([]));
    let defaults =
        json!({"weight": 1.0, "submit_rate": null, "submit_burst": null, "paused": false, "paused_workflows": []});
    assert_eq!(view["admission"], defaults);
    // The admission settings as set through the admin API.
    let response = api
        .http
        .put(api.url("/api/v1/tenants/acme/limits"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"concurrency_limit": 3, "weight": 2.5, "submit_rate": 7.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for path in ["/api/v1/tenants/acme/workflows/nightly/pause", "/api/v1/tenants/acme/pause"] {
        assert_eq!(api.http.post(api.url(path)).bearer_auth(ADMIN_TOKEN).send().await.unwrap().status(), 200);
    }
    let whole: Value = api.get("/api/v1/queue", &key).await.unwrap().json().await.unwrap();
    let view = &whole["tenants"][0];
    assert_eq!(view["workflows"][0]["paused"], true, "the whole tenant is paused");
    let set =
        json!({"weight": 2.5, "submit_rate": 7.5, "submit_burst": 8, "paused": true, "paused_workflows": ["nightly"]});
    assert_eq!(view["admission"], set);
    let (limit,): (Option<i32>,) =
        sqlx::query_as("SELECT concurrency_limit FROM tenants WHERE name = 'acme'").fetch_one(&api.db).await.unwrap();
    assert_eq!(limit, Some(3));
}

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    let api = TestApi::start().await.unwrap();
    assert_eq!(api.http.get(api.url("/healthz")).send().await.unwrap().status(), 200);
    let ready = api.http.get(api.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().await.unwrap()["ready"], true);
    let key = api.tenant_key("acme").await.unwrap();
    api.post_json("/api/v1/executions", &key, &json!({"workflow": sample_workflow()})).await.unwrap();
    // `/metrics` is on its own listener; the public port (what an Ingress routes) does not serve it.
    assert_eq!(api.http.get(api.url("/metrics")).send().await.unwrap().status(), 404);
    let metrics = api.http.get(format!("{}/metrics", api.metrics_base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("flowlike_api_submissions_total{outcome=\"accepted\"} 1"), "{metrics}");
    assert!(metrics.contains("route=\"/api/v1/executions\""), "{metrics}");
    let openapi: Value = api.http.get(api.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    for path in [
        "/api/v1/executions",
        "/api/v1/executions/{id}",
        "/api/v1/workflows/{name}",
        "/api/v1/queue",
        "/api/v1/tenants/{tenant}/api-keys",
        "/readyz",
    ] {
        assert!(openapi["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
}
