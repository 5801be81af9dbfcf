//! The `flow-like` command-line tool, run as its own process against the real stack (API, a dispatcher with the
//! process runner and the real executor, or a scripted runner where only admission matters): `submit --watch`
//! of workflows that succeed and fail (exit 0 and 1), `-o json` documents, `why` for a tenant held at its limit,
//! bulk cancel with and without `--dry-run`, pause and resume, the logs of a finished and of a running attempt, dead-letter
//! redrive by reason, registered workflows, the queue view, and bad input (exit 2 with a one-line error, a 422
//! with each JSON Pointer).
//!
//! Needs the workspace binaries: `cargo build --workspace --bins` (scripts/test.sh does it).

use flow_like_test_harness::{ADMIN_TOKEN, DispatcherArgs, InProcessDispatcher, TestApi};
use flow_like_tests::cli::{Scratch, flow_like, run_at, status};
use flow_like_tests::fixtures::{Submission, WorkflowDoc, sample_workflow, wait_terminal, wait_until};
use flow_like_tests::scripted_runner::{Script, ScriptedRunner};
use flow_like_tests::seed::{DeadLetterSeed, dead_letter};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

fn failing() -> Value {
    WorkflowDoc::new()
        .name("doomed")
        .transform("amount", ".input.amount")
        .node(
            "reject",
            json!({"type": "fail", "inputs": ["amount"], "when": ".amount < 0", "params": {"message": "negative amount"}}),
        )
        .build()
}

/// Logs one line, then sleeps `sleep_ms`.
fn logging(sleep_ms: u64) -> Value {
    WorkflowDoc::new()
        .name("chatty")
        .node("say", json!({"type": "log", "params": {"message": "\"n is \\(.input.n)\"", "level": "warn"}}))
        .sleep("wait", sleep_ms)
        .build()
}

fn ids(text: &str) -> Vec<Uuid> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submit_watch_ends_with_the_outcome_and_exits_0_or_1() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    let dispatcher = InProcessDispatcher::start(&DispatcherArgs::new(&api.configs, "d0")?).await?;
    let files = Scratch::new();
    let workflow = files.json("double.json", &sample_workflow());
    let input = files.json("input.json", &json!({"n": 21}));

    let ok =
        flow_like(&api, Some(&key), &["submit", &workflow, "--input", &input, "--label", "team=ops", "--watch"]).await;
    ok.expect(0);
    let id = ok.stdout.lines().next().unwrap_or_default().trim().to_owned();
    assert!(id.parse::<Uuid>().is_ok(), "the first line is the id: {}", ok.stdout);
    // Not a terminal: timestamped lines, then the outcome, the timeline and the output.
    assert!(ok.stdout.contains("dispatched by d0 (process runner"), "{}", ok.stdout);
    assert!(ok.stdout.contains("node double succeeded (1 attempt"), "{}", ok.stdout);
    assert!(ok.stdout.lines().any(|l| l.starts_with("outcome") && l.contains("succeeded")), "{}", ok.stdout);
    for step in ["queued", "claimed", "dispatched", "started", "finished"] {
        assert!(ok.stdout.lines().any(|l| l.starts_with(step)), "timeline step {step}: {}", ok.stdout);
    }
    assert!(ok.stdout.lines().any(|l| l.trim() == "42"), "the output: {}", ok.stdout);
    assert!(!ok.stdout.contains('\u{1b}'), "no colour when stdout is not a terminal");
    assert_eq!(status(&api, &id).await, "succeeded");

    let doomed = files.json("doomed.json", &failing());
    let bad = files.json("bad-input.json", &json!({"amount": -5}));
    let failed = flow_like(&api, Some(&key), &["submit", &doomed, "--input", &bad, "--watch"]).await;
    failed.expect(1);
    assert!(failed.stdout.lines().any(|l| l.starts_with("outcome") && l.contains("failed")), "{}", failed.stdout);
    assert!(failed.stdout.contains("negative amount"), "{}", failed.stdout);

    // `watch` of an execution that has ended replays it and ends the same way.
    flow_like(&api, Some(&key), &["watch", &id]).await.expect(0);
    let failed_id = failed.stdout.lines().next().unwrap_or_default().trim().to_owned();
    flow_like(&api, Some(&key), &["watch", &failed_id]).await.expect(1);

    // -o json: the submission's answer, each event's data, then the execution as the last line.
    let json_run =
        flow_like(&api, Some(&key), &["-o", "json", "submit", &workflow, "--input", &input, "--watch"]).await;
    json_run.expect(0);
    let lines = json_run.json_lines();
    assert_eq!(lines[0]["status"], "queued", "{}", json_run.stdout);
    let kinds: Vec<&str> = lines.iter().filter_map(|l| l["kind"].as_str()).collect();
    assert!(kinds.starts_with(&["dispatched", "started"]) && kinds.ends_with(&["finished"]), "{kinds:?}");
    let last = lines.last().unwrap();
    assert_eq!((last["id"].clone(), last["status"].clone()), (lines[0]["id"].clone(), json!("succeeded")));
    dispatcher.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_output_is_the_apis_documents_and_registered_workflows_run_by_ref() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    let dispatcher = InProcessDispatcher::start(&DispatcherArgs::new(&api.configs, "d0")?).await?;
    let files = Scratch::new();
    let workflow = files.json("double.json", &sample_workflow());

    let put = flow_like(&api, Some(&key), &["workflows", "put", "double", &workflow]).await;
    assert_eq!(put.expect(0).stdout.trim(), "registered double version 1");
    let got = flow_like(&api, Some(&key), &["-o", "json", "workflows", "get", "double", "--version", "1"]).await;
    assert_eq!(got.expect(0).json_lines()[0]["document"]["nodes"], sample_workflow()["nodes"]);

    let input = files.json("input.json", &json!({"n": 5}));
    let by_ref =
        flow_like(&api, Some(&key), &["submit", "--ref", "double@1", "--input", &input, "--priority", "7", "--watch"])
            .await;
    let id = by_ref.expect(0).stdout.lines().next().unwrap_or_default().trim().to_owned();
    assert!(by_ref.stdout.lines().any(|l| l.trim() == "10"), "{}", by_ref.stdout);

    // get, list and result print the API's documents as returned.
    let from_api: Value = api.get(&format!("/api/v1/executions/{id}"), &key).await?.json().await?;
    let get = flow_like(&api, Some(&key), &["get", &id, "-o", "json"]).await;
    assert_eq!(get.expect(0).json_lines(), std::slice::from_ref(&from_api));
    assert_eq!(from_api["workflow_version"], 1);
    assert_eq!(from_api["priority"], 7);
    let other = Submission::sample().label("team", "ops").input(json!({"n": 1})).submit(&api, &key).await?;
    wait_terminal(&api.db, &[other], Duration::from_secs(30)).await?;
    let list = flow_like(&api, Some(&key), &["-o", "json", "list"]).await;
    let listed: Vec<Value> = list.expect(0).json_lines();
    assert_eq!(listed.len(), 2, "one document per line: {}", list.stdout);
    assert_eq!(listed[0]["id"], other.to_string(), "newest first");
    let labelled = flow_like(&api, Some(&key), &["-o", "json", "list", "--label", "team=ops", "--since", "1h"]).await;
    let labelled = labelled.expect(0).json_lines();
    assert_eq!(labelled.iter().map(|l| l["id"].clone()).collect::<Vec<_>>(), [json!(other.to_string())]);
    let admin = flow_like(&api, Some(ADMIN_TOKEN), &["-o", "json", "list", "--tenant", "acme", "--limit", "1"]).await;
    assert_eq!(admin.expect(0).json_lines().len(), 1, "an admin lists a tenant's executions");
    let table = flow_like(&api, Some(&key), &["list", "--status", "succeeded"]).await;
    let table = table.expect(0).stdout.clone();
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains("just now") || table.contains(" s ago"), "relative times: {table}");
    assert!(table.contains("team=ops"), "{table}");

    let result = flow_like(&api, Some(&key), &["-o", "json", "result", &id]).await;
    assert_eq!(result.expect(0).json_lines()[0]["output"], 10);
    let result = flow_like(&api, Some(&key), &["result", &id]).await;
    assert!(result.expect(0).stdout.contains("double"), "{}", result.stdout);
    dispatcher.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn why_gives_each_waiting_execution_its_place_at_the_tenants_limit() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    let limits = flow_like(&api, Some(ADMIN_TOKEN), &["tenants", "set-limits", "acme", "--concurrency", "0"]).await;
    assert!(limits.expect(0).stdout.contains("concurrency"), "{}", limits.stdout);
    let runner = ScriptedRunner::new(|_| Script::Succeed(Duration::from_millis(10)));
    let dispatcher = InProcessDispatcher::start_with_runner(&DispatcherArgs::new(&api.configs, "d0")?, runner)?;
    let files = Scratch::new();
    let workflow = files.json("double.json", &sample_workflow());
    let mut held = Vec::new();
    for _ in 0..3 {
        let submitted = flow_like(&api, Some(&key), &["submit", &workflow]).await;
        held.push(submitted.expect(0).stdout.trim().to_owned());
    }
    let (api_ref, key_ref, first) = (&api, key.as_str(), held[0].clone());
    wait_until(Duration::from_secs(30), "a dispatcher alive and the limit known", || {
        let first = first.clone();
        async move {
            let view: Value = api_ref.get(&format!("/api/v1/executions/{first}"), key_ref).await?.json().await?;
            Ok(view["waiting_reason"].as_str().is_some_and(|r| r.contains("limit")))
        }
    })
    .await?;
    for (place, id) in held.iter().enumerate() {
        let why = flow_like(&api, Some(&key), &["why", id]).await;
        let out = why.expect(0).stdout.clone();
        assert!(out.lines().any(|l| l.starts_with("status") && l.contains("queued")), "{out}");
        assert!(out.lines().any(|l| l.starts_with("waiting") && l.contains("tenant acme at its limit")), "{out}");
        let position = out.lines().find(|l| l.starts_with("position")).unwrap_or_default();
        assert_eq!(position.split_whitespace().nth(1), Some((place + 1).to_string().as_str()), "{out}");
    }
    let json_why = flow_like(&api, Some(&key), &["-o", "json", "why", &held[2]]).await;
    assert_eq!(json_why.expect(0).json_lines()[0]["queue_position"], 3);

    // Not queued: it says the status.
    flow_like(&api, Some(&key), &["cancel", &held[0]]).await.expect(0);
    let why = flow_like(&api, Some(&key), &["why", &held[0]]).await;
    assert!(why.expect(0).stdout.contains("is cancelled"), "{}", why.stdout);
    dispatcher.stop().await?;
    Ok(())
}

#[tokio::test]
async fn bulk_cancel_dry_run_changes_nothing_and_then_cancels_only_the_matches() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    // No dispatcher: everything stays queued.
    let mut batch = Vec::new();
    for n in 0..3 {
        batch.push(Submission::sample().label("batch", "a").input(json!({"n": n})).submit(&api, &key).await?);
    }
    let others = [
        Submission::sample().label("batch", "b").submit(&api, &key).await?,
        Submission::sample().submit(&api, &key).await?,
    ];
    let dry = flow_like(&api, Some(&key), &["cancel", "--status", "queued", "--label", "batch=a", "--dry-run"]).await;
    let out = dry.expect(0).stdout.clone();
    let mut matched = ids(&out);
    matched.sort();
    let mut expected = batch.clone();
    expected.sort();
    assert_eq!(matched, expected, "{out}");
    assert!(out.contains("matched 3 (dry run: nothing cancelled)"), "{out}");
    for id in batch.iter().chain(&others) {
        assert_eq!(status(&api, &id.to_string()).await, "queued", "a dry run changes nothing");
    }
    let json_dry = flow_like(&api, Some(&key), &["-o", "json", "cancel", "--label", "batch=a", "--dry-run"]).await;
    let answer = &json_dry.expect(0).json_lines()[0];
    assert_eq!(
        (answer["dry_run"].clone(), answer["matched"].clone(), answer["acted"].clone()),
        (json!(true), json!(3), json!(0))
    );

    let done =
        flow_like(&api, Some(&key), &["cancel", "--status", "queued", "--label", "batch=a", "--since", "1h"]).await;
    assert!(done.expect(0).stdout.contains("matched 3, cancelled 3"), "{}", done.stdout);
    for id in &batch {
        assert_eq!(status(&api, &id.to_string()).await, "cancelled");
    }
    for id in &others {
        assert_eq!(status(&api, &id.to_string()).await, "queued", "only the matches are cancelled");
    }
    // By id.
    let single = flow_like(&api, Some(&key), &["cancel", &others[0].to_string()]).await;
    assert!(single.expect(0).stdout.contains("cancelled"), "{}", single.stdout);
    assert_eq!(status(&api, &others[1].to_string()).await, "queued");
    // Ids and a filter, or neither: a usage error.
    flow_like(&api, Some(&key), &["cancel", &others[1].to_string(), "--status", "queued"]).await.expect(2);
    flow_like(&api, Some(&key), &["cancel"]).await.expect(2);
    assert_eq!(status(&api, &others[1].to_string()).await, "queued");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_tenant_waits_until_it_is_resumed() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    let paused = flow_like(&api, Some(ADMIN_TOKEN), &["tenants", "pause", "acme"]).await;
    assert_eq!(paused.expect(0).stdout.trim(), "tenant acme paused");
    // Only an admin pauses: a tenant key is refused with the API's reason.
    let refused = flow_like(&api, Some(&key), &["tenants", "pause", "acme"]).await;
    assert_eq!(refused.expect(2).stderr_lines(), ["flow-like: this needs an admin key (HTTP 403)"]);
    let runner = ScriptedRunner::new(|_| Script::Succeed(Duration::from_millis(10)));
    let dispatcher = InProcessDispatcher::start_with_runner(&DispatcherArgs::new(&api.configs, "d0")?, runner)?;
    let held = Submission::sample().submit(&api, &key).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status(&api, &held.to_string()).await, "queued");
    let why = flow_like(&api, Some(&key), &["why", &held.to_string()]).await;
    assert!(why.expect(0).stdout.contains("tenant acme is paused"), "{}", why.stdout);
    let queue = flow_like(&api, Some(ADMIN_TOKEN), &["queue", "--tenant", "acme"]).await;
    assert!(queue.expect(0).stdout.contains("acme"), "{}", queue.stdout);

    let workflow = flow_like(&api, Some(ADMIN_TOKEN), &["tenants", "pause", "acme", "--workflow", "nightly"]).await;
    assert_eq!(workflow.expect(0).stdout.trim(), "workflow nightly of tenant acme paused");
    let resumed = flow_like(&api, Some(ADMIN_TOKEN), &["-o", "json", "tenants", "resume", "acme"]).await;
    assert_eq!(resumed.expect(0).json_lines(), [json!({"tenant": "acme", "workflow": null, "paused": false})]);
    assert_eq!(wait_terminal(&api.db, &[held], Duration::from_secs(30)).await?, ["succeeded"]);
    dispatcher.stop().await?;
    Ok(())
}

#[tokio::test]
async fn the_queue_view_is_a_table_and_its_json_the_apis_document() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    Submission::sample().submit(&api, &key).await?;
    let json_run = flow_like(&api, Some(&key), &["-o", "json", "queue"]).await;
    let view = json_run.expect(0).json_lines().remove(0);
    let from_api: Value = api.get("/api/v1/queue", &key).await?.json().await?;
    // The document as returned (ages move on between two reads: the fields that stand still are compared).
    let stable = |view: &Value| {
        let tenants = view["tenants"].as_array().cloned().unwrap_or_default();
        tenants.iter().map(|t| (t["tenant"].clone(), t["queue"].clone(), t["admission"].clone())).collect::<Vec<_>>()
    };
    assert_eq!(stable(&view), stable(&from_api));
    assert_eq!(view["dispatchers_alive"], from_api["dispatchers_alive"]);
    let tenants = view["tenants"].as_array().cloned().unwrap_or_default();
    let acme = tenants.iter().find(|t| t["tenant"] == "acme").unwrap_or_else(|| panic!("acme in {view}"));
    assert_eq!(acme["queue"]["waiting"], 1);
    assert_eq!(acme["workflows"][0]["workflow"], "double");
    let table = flow_like(&api, Some(&key), &["queue"]).await;
    let out = table.expect(0).stdout.clone();
    assert!(out.starts_with("dispatchers"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("TENANT")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("acme")), "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_logs_of_a_finished_and_of_a_running_attempt_are_printed_and_followed() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    let dispatcher = InProcessDispatcher::start(&DispatcherArgs::new(&api.configs, "d0")?).await?;
    let done = Submission::of(logging(1)).input(json!({"n": 8})).submit(&api, &key).await?;
    assert_eq!(wait_terminal(&api.db, &[done], Duration::from_secs(30)).await?, ["succeeded"]);
    let id = done.to_string();

    let logs = flow_like(&api, Some(&key), &["logs", &id, "--attempt", "1"]).await;
    let line = logs.expect(0).stdout.lines().find(|l| l.contains("n is 8")).unwrap_or_default().to_owned();
    assert!(line.contains("WARN") && line.contains("say"), "{}", logs.stdout);
    let json_logs = flow_like(&api, Some(&key), &["-o", "json", "logs", &id]).await;
    let lines = json_logs.expect(0).json_lines();
    assert!(lines.iter().any(|l| l["message"] == "n is 8" && l["node"] == "say" && l["level"] == "warn"), "{lines:?}");
    let followed = flow_like(&api, Some(&key), &["logs", &id, "--follow"]).await;
    assert!(followed.expect(0).stdout.contains("n is 8"), "{}", followed.stdout);
    assert!(followed.stderr.contains("attempt ended: succeeded"), "{}", followed.stderr);
    // No such attempt: the API's 404.
    let missing = flow_like(&api, Some(&key), &["logs", &id, "--attempt", "2"]).await;
    assert_eq!(missing.expect(2).stderr_lines().len(), 1, "{}", missing.stderr);

    // A running attempt: its lines so far (from its progress events), then followed until it is cancelled.
    let running = Submission::of(logging(60_000)).input(json!({"n": 9})).submit(&api, &key).await?.to_string();
    let (api_ref, key_ref, running_ref) = (&api, key.as_str(), running.as_str());
    wait_until(Duration::from_secs(30), "the running attempt's line from the tool", || async move {
        let run = flow_like(api_ref, Some(key_ref), &["logs", running_ref]).await;
        Ok(run.code == 0 && run.stdout.contains("n is 9"))
    })
    .await?;
    assert_eq!(status(&api, &running).await, "running");
    let follow = {
        let (url, key, id) = (api.base.clone(), key.clone(), running.clone());
        tokio::spawn(async move { run_at(&url, Some(&key), &["logs", &id, "--follow"]).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!follow.is_finished(), "--follow waits while the attempt runs");
    flow_like(&api, Some(&key), &["cancel", &running]).await.expect(0);
    let followed = follow.await?;
    assert!(followed.expect(0).stdout.contains("n is 9"), "{}", followed.stdout);
    assert!(followed.stderr.contains("attempt ended: cancelled"), "{}", followed.stderr);
    dispatcher.stop().await?;
    Ok(())
}

#[tokio::test]
async fn dead_letters_are_listed_and_redriven_by_reason() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    let unreadable = Submission::sample().submit(&api, &key).await?;
    let poison = Submission::sample().submit(&api, &key).await?;
    let first = dead_letter(&api, unreadable, &DeadLetterSeed::new("acme", "spec unreadable")).await;
    let second = dead_letter(&api, poison, &DeadLetterSeed::new("acme", "delivered 5 times without a lease")).await;

    let list = flow_like(&api, Some(ADMIN_TOKEN), &["dead-letters", "list"]).await;
    let out = list.expect(0).stdout.clone();
    assert!(out.contains(&first) && out.contains(&second) && out.contains("spec unreadable"), "{out}");
    let listed = flow_like(&api, Some(ADMIN_TOKEN), &["-o", "json", "dead-letters", "list"]).await;
    assert_eq!(listed.expect(0).json_lines().len(), 2);

    let dry =
        flow_like(&api, Some(ADMIN_TOKEN), &["dead-letters", "redrive", "--reason", "unreadable", "--dry-run"]).await;
    let out = dry.expect(0).stdout.clone();
    assert!(out.contains(&first) && !out.contains(&second), "{out}");
    assert!(out.contains("matched 1 (dry run: nothing redriven)"), "{out}");
    assert_eq!(status(&api, &unreadable.to_string()).await, "failed", "a dry run changes nothing");

    let redriven = flow_like(&api, Some(ADMIN_TOKEN), &["dead-letters", "redrive", "--reason", "unreadable"]).await;
    assert!(redriven.expect(0).stdout.contains("matched 1, redriven 1"), "{}", redriven.stdout);
    assert_eq!(status(&api, &unreadable.to_string()).await, "queued");
    assert_eq!(status(&api, &poison.to_string()).await, "failed", "only the match is redriven");

    let by_entry = flow_like(&api, Some(ADMIN_TOKEN), &["dead-letters", "redrive", &second]).await;
    assert!(
        by_entry.expect(0).stdout.contains(&format!("execution {poison} queued for attempt 2")),
        "{}",
        by_entry.stdout
    );
    let empty = flow_like(&api, Some(ADMIN_TOKEN), &["-o", "json", "dead-letters", "list"]).await;
    assert!(empty.expect(0).json_lines().is_empty());
    // Neither entries nor a filter: a usage error.
    flow_like(&api, Some(ADMIN_TOKEN), &["dead-letters", "redrive"]).await.expect(2);
    Ok(())
}

#[tokio::test]
async fn bad_input_is_one_line_on_stderr_and_exit_2() -> anyhow::Result<()> {
    let api = TestApi::start().await?;
    let key = api.tenant_key("acme").await?;
    let files = Scratch::new();
    let workflow = files.json("double.json", &sample_workflow());
    let one_line = |run: &flow_like_tests::cli::CliRun, what: &str| {
        run.expect(2);
        let lines = run.stderr_lines();
        assert_eq!(lines.len(), 1, "{what}: {}", run.stderr);
        assert!(lines[0].starts_with("flow-like: "), "{what}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{what}: {}", run.stdout);
        lines[0].to_owned()
    };

    // An API nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let closed = format!("http://{}", listener.local_addr()?);
    drop(listener);
    let line = one_line(&run_at(&closed, Some(&key), &["submit", &workflow]).await, "unreachable");
    assert!(line.contains("cannot reach the API"), "{line}");
    let line = one_line(&flow_like(&api, Some("wrong-token"), &["list"]).await, "wrong token");
    assert!(line.contains("401"), "{line}");
    let line = one_line(&flow_like(&api, None, &["get", &Uuid::new_v4().to_string()]).await, "no token");
    assert!(line.contains("401"), "{line}");
    let line = one_line(&flow_like(&api, Some(&key), &["submit", "/no/such/workflow.json"]).await, "missing file");
    assert!(line.contains("cannot read /no/such/workflow.json"), "{line}");
    let malformed = files.file("malformed.json", "{\"nodes\": {");
    let line = one_line(&flow_like(&api, Some(&key), &["submit", &malformed]).await, "malformed");
    assert!(line.contains("is not valid JSON"), "{line}");
    let not_object = files.file("list.json", "[1, 2]");
    one_line(&flow_like(&api, Some(&key), &["submit", &not_object]).await, "not an object");
    let line = one_line(&flow_like(&api, Some(&key), &["get", &Uuid::new_v4().to_string()]).await, "not found");
    assert!(line.contains("404"), "{line}");

    // A workflow the API refuses: the title, then each JSON Pointer with its message.
    let invalid =
        files.json("invalid.json", &json!({"nodes": {"a": {"type": "teleport"}, "b": {"type": "transform"}}}));
    let refused = flow_like(&api, Some(&key), &["submit", &invalid]).await;
    refused.expect(2);
    let lines = refused.stderr_lines();
    assert!(lines[0].starts_with("flow-like: ") && lines[0].contains("422"), "{}", refused.stderr);
    assert!(lines.len() >= 2, "{}", refused.stderr);
    assert!(lines[1..].iter().all(|l| l.trim_start().starts_with("/workflow/nodes/")), "{}", refused.stderr);
    // A usage error is clap's: exit 2 as well.
    flow_like(&api, Some(&key), &["submit", &workflow, "--priority", "12"]).await.expect(2);
    flow_like(&api, Some(&key), &["list", "--since", "soon"]).await.expect(2);
    assert_eq!(api.execution_rows().await?, 0, "nothing was submitted");
    Ok(())
}
