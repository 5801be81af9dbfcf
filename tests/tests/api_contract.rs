//! The API contract at the edge, against a real API on real PostgreSQL, Redis and S3: no client input gets a
//! 500 (NUL characters in paths, queries and bodies are refused before they reach PostgreSQL), only the
//! documented body shapes are accepted (objects, no unknown fields, integers as JSON Schema defines them), and
//! the document itself passes checks a client generator relies on.
//!
//! The last test, `schemathesis_and_the_generated_client_against_the_stack`, is what
//! `scripts/check-api-contract.sh` runs: it starts the API and a dispatcher and hands them to Schemathesis and
//! to a test of a client generated from docs/openapi.json (ignored unless that script provides the tools).

use flow_like_test_harness::{ADMIN_TOKEN, DispatcherArgs, InProcessDispatcher, TestApi};
use flow_like_tests::fixtures::{sample_workflow, submit, wait_terminal};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// Asserts a problem+json answer with `status`; returns the problem document.
async fn assert_problem(response: reqwest::Response, status: u16, what: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "{what}");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(content_type, "application/problem+json", "{what}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status, "{what}: {body}");
    body
}

fn pointers(problem: &Value) -> Vec<String> {
    problem["errors"].as_array().into_iter().flatten().map(|e| e["pointer"].as_str().unwrap().to_string()).collect()
}

async fn send(
    api: &TestApi,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut request = api.http.request(method, api.url(path)).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn nul_in_a_path_or_query_is_400_on_every_route() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let id = Uuid::now_v7();
    use reqwest::Method as M;
    let tenant_routes = [
        (M::GET, "/api/v1/executions?workflow=nul%00byte".to_string()),
        (M::GET, "/api/v1/executions?status=queued%00".to_string()),
        (M::GET, "/api/v1/executions?cursor=%00".to_string()),
        (M::GET, "/api/v1/executions?%00=1".to_string()),
        (M::GET, "/api/v1/executions/%00".to_string()),
        (M::GET, format!("/api/v1/executions/{id}%00")),
        (M::GET, "/api/v1/executions/%00/events".to_string()),
        (M::GET, format!("/api/v1/executions/{id}/events?last_event_id=1-0%00")),
        (M::GET, "/api/v1/executions/%00/result".to_string()),
        (M::POST, "/api/v1/executions/%00/cancel".to_string()),
        (M::GET, "/api/v1/workflows/a%00b".to_string()),
        (M::GET, "/api/v1/workflows/a%00b/versions/1".to_string()),
    ];
    for (method, path) in tenant_routes {
        let problem = assert_problem(send(&api, method.clone(), &path, &key, None).await, 400, &path).await;
        assert!(problem["title"].as_str().unwrap().contains("NUL"), "{path}: {problem}");
    }
    let put = send(&api, M::PUT, "/api/v1/workflows/a%00b", &key, Some(&sample_workflow())).await;
    assert_problem(put, 400, "PUT /workflows/a%00b").await;

    let admin_routes = [
        (M::GET, "/api/v1/dead-letters?cursor=%00".to_string()),
        (M::POST, "/api/v1/dead-letters/%00/redrive".to_string()),
        (M::POST, "/api/v1/tenants/a%00/api-keys".to_string()),
        (M::DELETE, "/api/v1/api-keys/%00".to_string()),
    ];
    for (method, path) in admin_routes {
        assert_problem(send(&api, method, &path, ADMIN_TOKEN, None).await, 400, &path).await;
    }
    let limits = send(&api, M::PUT, "/api/v1/tenants/a%00/limits", ADMIN_TOKEN, Some(&json!({}))).await;
    assert_problem(limits, 400, "PUT /tenants/a%00/limits").await;
    assert_eq!(api.execution_rows().await.unwrap(), 0);
}

#[tokio::test]
async fn nul_in_a_body_is_422_with_a_pointer_to_the_string() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let cases = [
        (json!({"workflow_ref": {"name": "a\u{0}b"}}), "/workflow_ref/name"),
        (json!({"workflow": sample_workflow(), "input": {"n": "x\u{0}"}}), "/input/n"),
        (json!({"workflow": sample_workflow(), "input": ["ok", {"k\u{0}": 1}]}), "/input/1/k\u{0}"),
        (json!({"workflow": sample_workflow(), "labels": {"team": "a\u{0}"}}), "/labels/team"),
        (json!({"workflow": {"name": "n\u{0}", "nodes": {}}}), "/workflow/name"),
    ];
    for (body, pointer) in cases {
        let response = api.post_json("/api/v1/executions", &key, &body).await.unwrap();
        let problem = assert_problem(response, 422, pointer).await;
        assert_eq!(pointers(&problem), [pointer], "{problem}");
    }
    // The same with an Idempotency-Key (the path that inserts on its own).
    let response = api
        .http
        .post(api.url("/api/v1/executions"))
        .bearer_auth(&key)
        .header("idempotency-key", "k1")
        .json(&json!({"workflow": sample_workflow(), "input": "\u{0}"}))
        .send()
        .await
        .unwrap();
    assert_eq!(pointers(&assert_problem(response, 422, "idempotent").await), ["/input"]);

    let mut workflow = sample_workflow();
    workflow["nodes"]["double"]["params"]["expr"] = json!("\"\u{0}\"");
    let put = send(&api, reqwest::Method::PUT, "/api/v1/workflows/double", &key, Some(&workflow)).await;
    assert_eq!(pointers(&assert_problem(put, 422, "PUT workflow").await), ["/nodes/double/params/expr"]);
    assert_eq!(api.execution_rows().await.unwrap(), 0);
}

#[tokio::test]
async fn bodies_are_objects_and_arrays_change_nothing() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    use reqwest::Method as M;
    let submit_array = json!([sample_workflow(), null, {}, 7]);
    let cases: [(M, &str, &str, Value); 8] = [
        (M::POST, "/api/v1/executions", key.as_str(), submit_array),
        (M::POST, "/api/v1/executions", key.as_str(), json!("workflow")),
        (M::PUT, "/api/v1/workflows/double", key.as_str(), json!([{"nodes": {}}])),
        (M::PUT, "/api/v1/workflows/double", key.as_str(), json!(null)),
        (M::PUT, "/api/v1/tenants/acme/limits", ADMIN_TOKEN, json!([5, 3])),
        (M::PUT, "/api/v1/tenants/acme/limits", ADMIN_TOKEN, json!(5)),
        (M::POST, "/api/v1/tenants/acme/api-keys", ADMIN_TOKEN, json!([true])),
        (M::POST, "/api/v1/tenants/acme/api-keys", ADMIN_TOKEN, json!(true)),
    ];
    for (method, path, key, body) in cases {
        let what = format!("{method} {path} {body}");
        let problem = assert_problem(send(&api, method, path, key, Some(&body)).await, 422, &what).await;
        assert!(problem["title"].as_str().unwrap().contains("must be a JSON object"), "{what}: {problem}");
        assert_eq!(pointers(&problem), [""], "{what}");
    }
    // A nested reference given as an array is refused too.
    let response = api.post_json("/api/v1/executions", &key, &json!({"workflow_ref": ["double", 1]})).await.unwrap();
    assert_eq!(pointers(&assert_problem(response, 422, "workflow_ref array").await), ["/workflow_ref"]);

    assert_eq!(api.execution_rows().await.unwrap(), 0);
    let (keys,): (i64,) = sqlx::query_as("SELECT count(*) FROM api_keys").fetch_one(&api.db).await.unwrap();
    assert_eq!(keys, 1, "only the key of the test itself");
    let (tenants,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM tenants WHERE concurrency_limit IS NOT NULL OR workflow_limit IS NOT NULL
         OR weight IS NOT NULL OR submit_rate IS NOT NULL OR submit_burst IS NOT NULL",
    )
    .fetch_one(&api.db)
    .await
    .unwrap();
    assert_eq!(tenants, 0, "no limits were set");
}

#[tokio::test]
async fn unknown_fields_and_wrong_types_are_named() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let submit_cases = [
        (json!({"workflow": sample_workflow(), "extra": 1}), "/extra"),
        (json!({"workflow_ref": {"name": "double", "tag": "x"}}), "/workflow_ref/tag"),
        (json!({"workflow_ref": {"name": "double", "version": 0}}), "/workflow_ref/version"),
        (json!({"workflow_ref": {"name": "Not A Name"}}), "/workflow_ref/name"),
        (json!({"workflow": sample_workflow(), "priority": "high"}), "/priority"),
        (json!({"workflow": sample_workflow(), "priority": 10}), "/priority"),
        (json!({"workflow": sample_workflow(), "priority": 5.5}), "/priority"),
        (json!({"workflow": sample_workflow(), "labels": {"n": 1}}), "/labels/n"),
        (json!({"workflow": sample_workflow(), "labels": ["a"]}), "/labels"),
        (json!({"workflow": [1]}), "/workflow"),
    ];
    for (body, pointer) in submit_cases {
        let response = api.post_json("/api/v1/executions", &key, &body).await.unwrap();
        assert_eq!(pointers(&assert_problem(response, 422, pointer).await), [pointer], "{body}");
    }
    let limits =
        send(&api, reqwest::Method::PUT, "/api/v1/tenants/acme/limits", ADMIN_TOKEN, Some(&json!({"max": 1}))).await;
    assert_eq!(pointers(&assert_problem(limits, 422, "limits").await), ["/max"]);
    let negative = send(
        &api,
        reqwest::Method::PUT,
        "/api/v1/tenants/acme/limits",
        ADMIN_TOKEN,
        Some(&json!({"workflow_limit": -1})),
    )
    .await;
    assert_eq!(pointers(&assert_problem(negative, 422, "limits").await), ["/workflow_limit"]);
    let issue =
        send(&api, reqwest::Method::POST, "/api/v1/tenants/acme/api-keys", ADMIN_TOKEN, Some(&json!({"admin": "yes"})))
            .await;
    assert_eq!(pointers(&assert_problem(issue, 422, "api-keys").await), ["/admin"]);
    let bad_tenant =
        send(&api, reqwest::Method::POST, "/api/v1/tenants/Not_A_Tenant/api-keys", ADMIN_TOKEN, None).await;
    assert_problem(bad_tenant, 400, "bad tenant name").await;
    assert_eq!(api.execution_rows().await.unwrap(), 0);
}

#[tokio::test]
async fn integers_are_what_json_schema_calls_integers() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    let response = api
        .post_json("/api/v1/executions", &key, &json!({"workflow": sample_workflow(), "priority": 7.0}))
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(accepted["priority"], 7);

    let mut workflow = sample_workflow();
    workflow["deadline_ms"] = json!(60000.0);
    workflow["nodes"]["double"]["retry"] = json!({"max_attempts": 2.0, "backoff_ms": 0.0});
    let put = send(&api, reqwest::Method::PUT, "/api/v1/workflows/double", &key, Some(&workflow)).await;
    assert_eq!(put.status(), 201);
    let registered: Value = put.json().await.unwrap();
    assert_eq!(registered["document"]["deadline_ms"], json!(60000));
    assert!(registered["document"]["deadline_ms"].is_u64(), "stored as an integer: {registered}");

    let by_ref = api
        .post_json("/api/v1/executions", &key, &json!({"workflow_ref": {"name": "double", "version": 1.0}}))
        .await
        .unwrap();
    assert_eq!(by_ref.status(), 202);

    let limits = send(
        &api,
        reqwest::Method::PUT,
        "/api/v1/tenants/acme/limits",
        ADMIN_TOKEN,
        Some(&json!({"concurrency_limit": 3.0})),
    )
    .await;
    assert_eq!(limits.status(), 200);
    let limits: Value = limits.json().await.unwrap();
    assert_eq!(
        limits,
        json!({"concurrency_limit": 3, "workflow_limit": null, "weight": null, "submit_rate": null, "submit_burst": null})
    );
}

#[tokio::test]
async fn query_and_path_values_outside_the_document_are_refused() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    for path in [
        "/api/v1/executions?workflow=Not%20A%20Name",
        "/api/v1/executions?status=bogus",
        "/api/v1/executions?limit=501",
        "/api/v1/executions?limit=1&limit=2",
        "/api/v1/executions?bogus=1",
        "/api/v1/executions?=x",
    ] {
        assert_problem(api.get(path, &key).await.unwrap(), 400, path).await;
    }
    for path in ["/api/v1/workflows/Not_A_Name", "/api/v1/workflows/Not_A_Name/versions/1"] {
        assert_problem(api.get(path, &key).await.unwrap(), 404, path).await;
    }
    let letters = api.http.get(api.url("/api/v1/dead-letters?cursor=99999999999999999999-0")).bearer_auth(ADMIN_TOKEN);
    assert_problem(letters.send().await.unwrap(), 400, "20-digit cursor").await;
    let letters = api.http.get(api.url("/api/v1/dead-letters?cursor=")).bearer_auth(ADMIN_TOKEN);
    assert_problem(letters.send().await.unwrap(), 400, "empty cursor").await;
    // Event and entry ids are `ms-seq`, both parts present; a resumed stream checks the query even when a
    // header is given too.
    let id = submit(&api, &key, &json!({"workflow": sample_workflow()})).await.unwrap();
    for (header, query) in
        [(None, "0"), (None, "1-"), (None, ""), (Some("0-0"), "x"), (Some("0"), "0-0"), (Some(""), "x")]
    {
        let mut request = api.http.get(api.url(&format!("/api/v1/executions/{id}/events?last_event_id={query}")));
        if let Some(header) = header {
            request = request.header("Last-Event-ID", header);
        }
        assert_problem(request.bearer_auth(&key).send().await.unwrap(), 400, query).await;
    }
    // Nothing comes before the smallest entry id: an empty page, not Redis's refusal of `(0-0` as a 500.
    let letters = api.http.get(api.url("/api/v1/dead-letters?cursor=0-0")).bearer_auth(ADMIN_TOKEN);
    let letters = letters.send().await.unwrap();
    assert_eq!(letters.status(), 200);
    assert_eq!(letters.json::<Value>().await.unwrap()["items"], json!([]));
}

/// The document a generator reads: unique operation ids, every error a problem document, and the shapes the
/// code enforces (a sample of them) stated in the schemas.
#[test]
fn the_document_states_what_the_code_enforces() {
    let doc = flow_like_api::openapi::document();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["SubmitExecution"]["oneOf"].as_array().unwrap().len(), 2);
    for variant in ["SubmitInlineWorkflow", "SubmitRegisteredWorkflow"] {
        assert_eq!(schemas[variant]["additionalProperties"], false, "{variant}");
        assert_eq!(schemas[variant]["properties"]["priority"]["maximum"], 9, "{variant}");
    }
    assert_eq!(schemas["NewApiKey"]["additionalProperties"], false);
    // One branch per node type, each a complete object told apart by `type`, in graph nodes and inner nodes.
    for union in ["Node", "InnerNode"] {
        let mapping = schemas[union]["discriminator"]["mapping"].as_object().unwrap();
        let node_types: Vec<&str> = mapping.keys().map(String::as_str).collect();
        let mut expected = flow_like_shared::workflow::NodeKind::TYPES.to_vec();
        expected.sort_unstable();
        assert_eq!(node_types, expected, "{union}");
        for (name, reference) in mapping {
            let component = reference.as_str().unwrap().trim_start_matches("#/components/schemas/");
            assert_eq!(schemas[component]["properties"]["type"]["const"], name.as_str(), "{component}");
            assert_eq!(schemas[component]["additionalProperties"], false, "{component}");
            assert_eq!(schemas[component]["properties"]["inputs"].is_object(), union == "Node", "{component}");
        }
    }
    let statuses = &doc["paths"]["/api/v1/executions"]["get"]["parameters"];
    let status = statuses.as_array().unwrap().iter().find(|p| p["name"] == "status").unwrap();
    let documented: Vec<&str> =
        status["schema"]["enum"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let known: Vec<&str> = flow_like_shared::record::ExecutionStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(documented, known);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if operation.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(operation["responses"][status].is_object(), "{method} {path} documents no {status}");
                }
            }
        }
    }
}

/// Leaves `id` as a dispatcher leaves a dead-lettered execution: `failed`, with an entry on the dead-letter
/// stream. Returns the entry id.
async fn dead_letter(api: &TestApi, id: Uuid, tenant: &str) -> String {
    let reason = "attempt 1 of 1 failed: the executor exited with code 101";
    flow_like_tests::seed::dead_letter(api, id, &flow_like_tests::seed::DeadLetterSeed::new(tenant, reason)).await
}

/// Issues a key through the admin endpoint, an admin key when `admin`.
async fn issue_key(api: &TestApi, tenant: &str, admin: bool) -> String {
    let response = send(
        api,
        reqwest::Method::POST,
        &format!("/api/v1/tenants/{tenant}/api-keys"),
        ADMIN_TOKEN,
        Some(&json!({"admin": admin})),
    )
    .await;
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string()
}

/// A finished, then dead-lettered execution of `tenant`, ready to be redriven.
async fn dead_execution(api: &TestApi, key: &str, tenant: &str) -> Uuid {
    let id = submit(api, key, &json!({"workflow": sample_workflow(), "input": {"n": 2}})).await.unwrap();
    wait_terminal(&api.db, &[id], Duration::from_secs(60)).await.unwrap();
    dead_letter(api, id, tenant).await;
    id
}

/// Starts the API and a dispatcher (process runner, real executor) and runs `FLOWLIKE_CONTRACT_RUNNER` (a shell
/// script) against them, with their address and keys in its environment; passes when it exits 0.
#[tokio::test]
#[ignore = "run by scripts/check-api-contract.sh, which installs Schemathesis and generates the client"]
async fn schemathesis_and_the_generated_client_against_the_stack() {
    let runner = std::env::var("FLOWLIKE_CONTRACT_RUNNER")
        .expect("FLOWLIKE_CONTRACT_RUNNER names the script to run (scripts/check-api-contract.sh sets it)");
    let api = TestApi::start().await.unwrap();
    let dispatcher =
        InProcessDispatcher::start(&DispatcherArgs::new(&api.configs, "contract-1").unwrap()).await.unwrap();

    let admin_key = issue_key(&api, "fuzz-admin", true).await;
    let tenant_key = issue_key(&api, "fuzz", false).await;
    let client_key = issue_key(&api, "client", true).await;
    // Something to find for the stateful phase of the admin run, and the dead letter the client redrives.
    for _ in 0..3 {
        dead_execution(&api, &admin_key, "fuzz-admin").await;
    }
    let client_dead = dead_execution(&api, &client_key, "client").await;

    let status = tokio::process::Command::new("bash")
        .arg(&runner)
        .env("FLOWLIKE_API_URL", &api.base)
        .env("FLOWLIKE_ADMIN_KEY", &admin_key)
        .env("FLOWLIKE_TENANT_KEY", &tenant_key)
        .env("FLOWLIKE_CLIENT_KEY", &client_key)
        .env("FLOWLIKE_CLIENT_DEAD_EXECUTION", client_dead.to_string())
        .status()
        .await
        .unwrap();
    dispatcher.stop().await.unwrap();
    assert!(status.success(), "{runner} failed ({status}); its output is above");
}
