//! Engine tests: an in-memory object store, a recording reporter, paused time for time-driven behaviour and a
//! tiny local HTTP server for `http.request`.

use super::*;
use flow_like_shared::workflow::{Limits, ValidatedWorkflow, validate};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Records every event with the (tokio) time it arrived.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<(Instant, EngineEvent)>>,
}

impl Reporter for Recorder {
    fn report(&self, event: EngineEvent) {
        self.events.lock().unwrap().push((Instant::now(), event));
    }
}

impl Recorder {
    fn events(&self) -> Vec<EngineEvent> {
        self.events.lock().unwrap().iter().map(|(_, e)| e.clone()).collect()
    }

    fn started_at(&self, node: &str) -> Vec<Instant> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(at, e)| match e {
                EngineEvent::NodeStarted { node: n, .. } if n == node => Some(*at),
                _ => None,
            })
            .collect()
    }
}

struct Harness {
    engine: Engine,
    store: Arc<MemoryObjectStore>,
    recorder: Arc<Recorder>,
}

fn harness() -> Harness {
    harness_with(EngineSettings::default())
}

fn harness_with(settings: EngineSettings) -> Harness {
    let store = Arc::new(MemoryObjectStore::new());
    let recorder = Arc::new(Recorder::default());
    let engine = Engine::new(settings, store.clone(), recorder.clone()).unwrap();
    Harness { engine, store, recorder }
}

fn workflow(doc: Value) -> ValidatedWorkflow {
    validate(&doc, &Limits::default()).unwrap_or_else(|e| panic!("{e}"))
}

impl Harness {
    async fn run(&self, doc: Value, input: Value) -> RunReport {
        let wf = workflow(doc);
        self.engine.run(&wf, input, &CancellationToken::new(), None).await
    }
}

#[tokio::test(start_paused = true)]
async fn independent_nodes_run_concurrently() {
    let h = harness();
    let start = Instant::now();
    let report = h
        .run(
            json!({"nodes": {
                "a": {"type": "sleep", "params": {"ms": 200}},
                "b": {"type": "sleep", "params": {"ms": 200}},
                "c": {"type": "transform", "inputs": ["a", "b"], "params": {"expr": "\"done\""}}
            }, "output": "c"}),
            json!(null),
        )
        .await;
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(report.output, Some(json!("done")));
    // Paused time advances only as timers fire: 200 ms in total means the sleeps overlapped.
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(h.recorder.started_at("a"), h.recorder.started_at("b"));
    assert_eq!(h.recorder.started_at("c")[0] - h.recorder.started_at("a")[0], Duration::from_millis(200));
}

#[tokio::test]
async fn views_carry_input_and_dependency_outputs() {
    let h = harness();
    let report = h
        .run(
            json!({"nodes": {
                "double": {"type": "transform", "params": {"expr": ".input.n * 2"}},
                "sum": {"type": "transform", "inputs": ["double"], "params": {"expr": "{keys: keys, total: (.double + .input.n)}"}}
            }, "output": "sum"}),
            json!({"n": 21}),
        )
        .await;
    assert_eq!(report.output, Some(json!({"keys": ["double", "input"], "total": 63})));
    assert_eq!(report.nodes["sum"].status, NodeStatus::Succeeded);
    assert_eq!(report.nodes["sum"].attempts, 1);
}

#[tokio::test]
async fn when_false_skips_node_and_its_dependents() {
    let h = harness();
    let report = h
        .run(
            json!({"nodes": {
                "total": {"type": "transform", "params": {"expr": "50"}},
                "big": {"type": "transform", "inputs": ["total"], "when": ".total > 100", "params": {"expr": "\"big\""}},
                "after": {"type": "transform", "inputs": ["big"], "params": {"expr": "1"}},
                "afterafter": {"type": "fail", "inputs": ["after", "total"], "params": {"message": "must not run"}},
                "other": {"type": "transform", "inputs": ["total"], "params": {"expr": ".total + 1"}}
            }}),
            json!(null),
        )
        .await;
    assert_eq!(report.outcome, Outcome::Succeeded);
    for id in ["big", "after", "afterafter"] {
        assert_eq!(report.nodes[id].status, NodeStatus::Skipped, "{id}");
        assert_eq!(report.nodes[id].attempts, 0, "{id}");
    }
    // Without `output`, the output collects the sinks that produced a value.
    assert_eq!(report.output, Some(json!({"other": 51})));
    let skipped: Vec<String> = h
        .recorder
        .events()
        .into_iter()
        .filter_map(|e| match e {
            EngineEvent::NodeSkipped { node } => Some(node),
            _ => None,
        })
        .collect();
    assert_eq!(skipped, ["big", "after", "afterafter"]);
}

#[tokio::test(start_paused = true)]
async fn failing_node_is_retried_with_exponential_backoff() {
    let h = harness();
    let report = h
        .run(
            json!({"nodes": {
                "f": {"type": "fail", "retry": {"max_attempts": 3, "backoff_ms": 100}, "params": {"message": "nope"}}
            }}),
            json!(null),
        )
        .await;
    assert_eq!(report.outcome, Outcome::Failed { node: "f".into(), error: "nope".into() });
    assert_eq!(report.nodes["f"].attempts, 3);
    assert_eq!(report.nodes["f"].status, NodeStatus::Failed);
    assert_eq!(report.nodes["f"].error.as_deref(), Some("nope"));
    let starts = h.recorder.started_at("f");
    assert_eq!(starts.len(), 3);
    assert_eq!(starts[1] - starts[0], Duration::from_millis(100));
    assert_eq!(starts[2] - starts[1], Duration::from_millis(200));
    let retries: Vec<Option<u64>> = h
        .recorder
        .events()
        .into_iter()
        .filter_map(|e| match e {
            EngineEvent::NodeAttemptFailed { retry_in_ms, .. } => Some(retry_in_ms),
            _ => None,
        })
        .collect();
    assert_eq!(retries, [Some(100), Some(200), None]);
}

#[tokio::test(start_paused = true)]
async fn timeout_applies_to_each_attempt() {
    let h = harness();
    let start = Instant::now();
    let report = h
        .run(
            json!({"nodes": {
                "slow": {"type": "sleep", "timeout_ms": 50, "retry": {"max_attempts": 2}, "params": {"ms": 1000}}
            }}),
            json!(null),
        )
        .await;
    assert!(matches!(
        &report.outcome,
        Outcome::Failed { node, error } if node == "slow" && error.contains("timed out after 50 ms")
    ));
    assert_eq!(report.nodes["slow"].attempts, 2);
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn node_timeout_fails_the_attempt() {
    let h = harness();
    let start = Instant::now();
    let report = h
        .run(json!({"nodes": {"s": {"type": "sleep", "timeout_ms": 100, "params": {"ms": 10000}}}}), json!(null))
        .await;
    assert!(matches!(&report.outcome, Outcome::Failed { node, .. } if node == "s"));
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn workflow_deadline_times_out_the_run() {
    let h = harness();
    let start = Instant::now();
    let report = h
        .run(
            json!({"deadline_ms": 300, "nodes": {
                "quick": {"type": "transform", "params": {"expr": "1"}},
                "long": {"type": "sleep", "params": {"ms": 60000}},
                "never": {"type": "transform", "inputs": ["long"], "params": {"expr": "1"}}
            }}),
            json!(null),
        )
        .await;
    assert_eq!(report.outcome, Outcome::TimedOut);
    assert_eq!(report.output, None);
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert_eq!(report.nodes["quick"].status, NodeStatus::Succeeded);
    assert_eq!(report.nodes["long"].status, NodeStatus::Cancelled);
    assert_eq!(report.nodes["long"].attempts, 1);
    assert_eq!(report.nodes["never"].status, NodeStatus::NotStarted);
}

#[tokio::test(start_paused = true)]
async fn caller_deadline_and_cancellation_stop_the_run() {
    let h = harness();
    let wf = workflow(json!({"nodes": {"s": {"type": "sleep", "params": {"ms": 60000}}}}));
    let start = Instant::now();
    let report =
        h.engine.run(&wf, json!(null), &CancellationToken::new(), Some(start + Duration::from_millis(250))).await;
    assert_eq!(report.outcome, Outcome::TimedOut);
    assert_eq!(start.elapsed(), Duration::from_millis(250));

    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(70)).await;
        trigger.cancel();
    });
    let start = Instant::now();
    let report = h.engine.run(&wf, json!(null), &cancel, None).await;
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert_eq!(start.elapsed(), Duration::from_millis(70));
    assert_eq!(report.nodes["s"].status, NodeStatus::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn failure_cancels_nodes_still_running() {
    let h = harness();
    let report = h
        .run(
            json!({"nodes": {
                "boom": {"type": "fail", "params": {"message": "bad input"}},
                "slow": {"type": "sleep", "params": {"ms": 5000}}
            }}),
            json!(null),
        )
        .await;
    assert_eq!(report.outcome, Outcome::Failed { node: "boom".into(), error: "bad input".into() });
    assert_eq!(report.nodes["slow"].status, NodeStatus::Cancelled);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["outcome"]["status"], "failed");
    assert_eq!(json["nodes"]["slow"]["status"], "cancelled");
}

/// Counts how many map items are inside their sleep at once.
struct ConcurrencyProbe {
    now: AtomicUsize,
    max: AtomicUsize,
}

#[tokio::test(start_paused = true)]
async fn map_bounds_parallelism_and_keeps_order() {
    let h = harness();
    let wf = workflow(json!({"nodes": {
        "items": {"type": "transform", "params": {"expr": "[range(10)]"}},
        "m": {"type": "map", "inputs": ["items"], "params": {"over": ".items", "parallelism": 3,
              "node": {"type": "sleep", "params": {"ms": 100}}}},
        "squares": {"type": "map", "inputs": ["items"], "params": {"over": ".items", "parallelism": 4,
              "node": {"type": "transform", "when": ".index != 2", "params": {"expr": "{i: .index, sq: (.item * .item), n: (.items | length)}"}}}}
    }}));
    let start = Instant::now();
    let report = h.engine.run(&wf, json!(null), &CancellationToken::new(), None).await;
    assert_eq!(report.outcome, Outcome::Succeeded);
    // 10 items of 100 ms, 3 at a time: 4 waves.
    assert_eq!(start.elapsed(), Duration::from_millis(400));
    let out = report.output.unwrap();
    assert_eq!(out["m"], json!(vec![Value::Null; 10]));
    let squares = out["squares"].as_array().unwrap();
    assert_eq!(squares.len(), 10);
    assert_eq!(squares[2], Value::Null);
    assert_eq!(squares[3], json!({"i": 3, "sq": 9, "n": 10}));
}

#[tokio::test]
async fn map_parallelism_is_never_exceeded() {
    let probe = Arc::new(ConcurrencyProbe { now: AtomicUsize::new(0), max: AtomicUsize::new(0) });
    let server_probe = probe.clone();
    // The server holds each request for a moment and counts how many are open at once.
    let base = serve(move |_path| {
        let probe = server_probe.clone();
        async move {
            let now = probe.now.fetch_add(1, Ordering::SeqCst) + 1;
            probe.max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            probe.now.fetch_sub(1, Ordering::SeqCst);
            (200, "application/json", b"{\"ok\":true}".to_vec())
        }
    })
    .await;
    let h = harness();
    let report = h
        .run(
            json!({"nodes": {"m": {"type": "map", "params": {"over": "[range(12)]", "parallelism": 4,
                "node": {"type": "http.request", "params": {"url": format!("{base}/x")}}}}}, "output": "m"}),
            json!(null),
        )
        .await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:?}");
    assert_eq!(report.output.unwrap().as_array().unwrap().len(), 12);
    let max = probe.max.load(Ordering::SeqCst);
    assert!(max <= 4, "{max} requests at once");
    assert!(max >= 2, "items did not overlap at all");
}

#[tokio::test]
async fn map_rejects_non_arrays_and_too_many_items() {
    let h = harness_with(EngineSettings { max_map_items: 5, ..EngineSettings::default() });
    let report = h
        .run(
            json!({"nodes": {"m": {"type": "map", "params": {"over": "{}", "node": {"type": "transform", "params": {"expr": "."}}}}}}),
            json!(null),
        )
        .await;
    assert!(
        matches!(&report.outcome, Outcome::Failed { error, .. } if error.contains("must select an array, got an object"))
    );
    let report = h
        .run(
            json!({"nodes": {"m": {"type": "map", "params": {"over": "[range(6)]", "node": {"type": "transform", "params": {"expr": "."}}}}}}),
            json!(null),
        )
        .await;
    assert!(
        matches!(&report.outcome, Outcome::Failed { error, .. } if error.contains("6 items, more than the limit of 5"))
    );
    let report = h
        .run(
            json!({"nodes": {"m": {"type": "map", "params": {"over": "[1, 0]", "node": {"type": "transform", "params": {"expr": "if .item == 0 then error(\"zero\") else . end"}}}}}}),
            json!(null),
        )
        .await;
    assert!(
        matches!(&report.outcome, Outcome::Failed { error, .. } if error.starts_with("item 1:") && error.contains("zero")),
        "{:?}",
        report.outcome
    );
}

#[tokio::test]
async fn object_put_and_get_round_trip() {
    let h = harness();
    let report = h
        .run(
            json!({"nodes": {
                "save": {"type": "object.put", "params": {"key": "reports/total.json", "value": "{total: .input.total}"}},
                "load": {"type": "object.get", "inputs": ["save"], "params": {"key": "reports/total.json"}},
                "missing": {"type": "object.get", "params": {"key": "nothing/here"}}
            }}),
            json!({"total": 130}),
        )
        .await;
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(report.output, Some(json!({"load": {"total": 130}, "missing": null})));
    assert_eq!(h.store.snapshot().get("reports/total.json"), Some(&json!({"total": 130})));
}

#[tokio::test]
async fn engine_rejects_unsafe_keys_even_without_validation() {
    use super::node::{NodeContext, Target, run_node};
    use flow_like_shared::workflow::{NodeControl, NodeKind, ObjectGetParams, ObjectPutParams};
    let h = harness();
    h.store.put("../secret", &json!("other tenant")).await.unwrap();
    // Validation refuses these keys, so hand the engine typed nodes directly.
    let wf = workflow(json!({"nodes": {"p": {"type": "object.put", "params": {"key": "k", "value": "1"}}}}));
    let ctx = NodeContext {
        workflow: &wf,
        store: h.store.as_ref(),
        reporter: h.recorder.as_ref(),
        http: &HttpRunner::new(1024).unwrap(),
        max_map_items: 10,
    };
    let control = NodeControl::default();
    for key in ["../secret", "/abs", "", "a/../../b"] {
        let kinds = [
            NodeKind::ObjectGet(ObjectGetParams { key: key.into() }),
            NodeKind::ObjectPut(ObjectPutParams { key: key.into(), value: "1".into() }),
        ];
        for kind in &kinds {
            let target = Target { kind, control: &control, pointer: "/nodes/p".into(), node: "p", item: None };
            let attempts = std::sync::atomic::AtomicU32::new(0);
            let result = run_node(&ctx, &target, json!({}), &attempts).await;
            assert!(matches!(result, Err(NodeError::InvalidKey(_))), "key {key:?} accepted");
        }
    }
    assert_eq!(h.store.snapshot().len(), 1);
}

#[tokio::test]
async fn log_node_reports_its_message() {
    let h = harness();
    let report = h
        .run(
            json!({"nodes": {
                "l": {"type": "log", "params": {"message": "\"total is \\(.input.total)\"", "level": "warn"}},
                "j": {"type": "log", "params": {"message": "{a: 1}"}}
            }}),
            json!({"total": 7}),
        )
        .await;
    assert_eq!(report.outcome, Outcome::Succeeded);
    let logs: Vec<(String, String)> = h
        .recorder
        .events()
        .into_iter()
        .filter_map(|e| match e {
            EngineEvent::Log { node, message, .. } => Some((node, message)),
            _ => None,
        })
        .collect();
    assert!(logs.contains(&("l".into(), "total is 7".into())));
    assert!(logs.contains(&("j".into(), "{\"a\":1}".into())));
}

#[tokio::test]
async fn jq_runtime_error_fails_the_node() {
    let h = harness();
    let report = h
        .run(json!({"nodes": {"t": {"type": "transform", "params": {"expr": ".input.a + 1"}}}}), json!({"a": "text"}))
        .await;
    assert!(matches!(&report.outcome, Outcome::Failed { node, error } if node == "t" && error.starts_with("expr:")));
}

/// A one-route-per-path HTTP/1.1 server on 127.0.0.1: reads a request head, answers with `handler(path)`
/// and closes the connection.
async fn serve<F, Fut>(handler: F) -> String
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (u16, &'static str, Vec<u8>)> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (status, content_type, body) = handler(path).await;
                let mut response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\nx-test: 1\r\nconnection: close\r\n"
                );
                // `/stream` paths omit the length so the client must enforce the cap while reading.
                if !text.contains("/stream") {
                    response.push_str(&format!("content-length: {}\r\n", body.len()));
                }
                response.push_str("\r\n");
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.write_all(&body).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

async fn shop() -> String {
    serve(|path| async move {
        match path.as_str() {
            "/orders" => (200, "application/json", br#"[{"amount": 60}, {"amount": 70}]"#.to_vec()),
            "/text" => (200, "text/plain", b"hello".to_vec()),
            "/error" => (503, "text/plain", b"down for maintenance".to_vec()),
            "/stream/big" | "/big" => (200, "application/octet-stream", vec![b'x'; 64 * 1024]),
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                (200, "text/plain", b"late".to_vec())
            }
            _ => (404, "text/plain", b"not found".to_vec()),
        }
    })
    .await
}

#[tokio::test]
async fn design_example_runs_end_to_end() {
    let base = shop().await;
    let h = harness();
    let report = h
        .run(
            json!({
              "name": "order-report",
              "nodes": {
                "orders": {"type": "http.request", "params": {"method": "GET", "url": format!("{base}/orders")}},
                "total":  {"type": "transform", "inputs": ["orders"], "params": {"expr": "[.orders.body[].amount] | add"}},
                "big":    {"type": "transform", "inputs": ["total"], "when": ".total > 100", "params": {"expr": "\"big order\""}},
                "save":   {"type": "object.put", "inputs": ["total"], "params": {"key": "reports/total.json", "value": ".total"}}
              },
              "output": "total"
            }),
            json!(null),
        )
        .await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:?}");
    assert_eq!(report.output, Some(json!(130)));
    assert_eq!(report.nodes["big"].status, NodeStatus::Succeeded);
    assert_eq!(h.store.snapshot().get("reports/total.json"), Some(&json!(130)));
}

#[tokio::test]
async fn http_output_has_status_headers_and_body() {
    let base = shop().await;
    let h = harness();
    let report = h
        .run(
            json!({"nodes": {
                "t": {"type": "http.request", "params": {"url": format!("{base}/text"), "headers": {"x-req": "1"}}},
                "p": {"type": "http.request", "params": {"method": "POST", "url": format!("{base}/orders"), "body_expr": "{n: .input}"}}
            }}),
            json!(3),
        )
        .await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:?}");
    let out = report.output.unwrap();
    assert_eq!(out["t"]["status"], 200);
    assert_eq!(out["t"]["body"], "hello");
    assert_eq!(out["t"]["headers"]["x-test"], "1");
    assert_eq!(out["p"]["body"][1]["amount"], 70);
}

#[tokio::test]
async fn http_response_size_cap_is_enforced() {
    let base = shop().await;
    let h = harness_with(EngineSettings { http_max_response_bytes: 1024, ..EngineSettings::default() });
    for path in ["/big", "/stream/big"] {
        let report = h
            .run(
                json!({"nodes": {"h": {"type": "http.request", "params": {"url": format!("{base}{path}")}}}}),
                json!(null),
            )
            .await;
        assert!(
            matches!(&report.outcome, Outcome::Failed { error, .. } if error.contains("exceeds 1024 bytes")),
            "{path}: {:?}",
            report.outcome
        );
    }
    // A node may lower the cap but not raise it.
    let h = harness();
    let report = h
        .run(
            json!({"nodes": {"h": {"type": "http.request", "params": {"url": format!("{base}/stream/big"), "max_response_bytes": 100}}}}),
            json!(null),
        )
        .await;
    assert!(matches!(&report.outcome, Outcome::Failed { error, .. } if error.contains("exceeds 100 bytes")));
}

#[tokio::test]
async fn http_error_status_and_timeout_fail_the_node() {
    let base = shop().await;
    let h = harness();
    let report = h
        .run(
            json!({"nodes": {"h": {"type": "http.request", "retry": {"max_attempts": 2}, "params": {"url": format!("{base}/error")}}}}),
            json!(null),
        )
        .await;
    assert!(
        matches!(&report.outcome, Outcome::Failed { error, .. } if error == "http status 503: down for maintenance"),
        "{:?}",
        report.outcome
    );
    assert_eq!(report.nodes["h"].attempts, 2);
    let report = h
        .run(
            json!({"nodes": {"h": {"type": "http.request", "params": {"url": format!("{base}/slow"), "timeout_ms": 100}}}}),
            json!(null),
        )
        .await;
    assert!(
        matches!(&report.outcome, Outcome::Failed { error, .. } if error.contains("http request failed")),
        "{:?}",
        report.outcome
    );
}
