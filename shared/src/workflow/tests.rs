//! Validation tests: every error kind with its pointer, the DESIGN.md example, and size/depth limits.

use super::*;
use serde_json::{Value, json};

fn design_example() -> Value {
    json!({
      "name": "order-report",
      "nodes": {
        "orders": {"type": "http.request", "params": {"method": "GET", "url": "http://shop.local/orders"}},
        "total":  {"type": "transform", "inputs": ["orders"], "params": {"expr": "[.orders.body[].amount] | add"}},
        "big":    {"type": "transform", "inputs": ["total"], "when": ".total > 100", "params": {"expr": "\"big order\""}},
        "save":   {"type": "object.put", "inputs": ["total"], "params": {"key": "reports/total.json", "value": ".total"}}
      },
      "output": "total"
    })
}

fn errors(doc: &Value) -> Vec<ValidationError> {
    match validate(doc, &Limits::default()) {
        Ok(_) => panic!("document unexpectedly valid: {doc}"),
        Err(errs) => errs.0,
    }
}

/// Asserts that validation reports an error at `pointer` whose message contains `needle`.
fn assert_error(doc: &Value, pointer: &str, needle: &str) {
    let errs = errors(doc);
    assert!(
        errs.iter().any(|e| e.pointer == pointer && e.message.contains(needle)),
        "no error at {pointer} containing {needle:?}; got {errs:#?}"
    );
}

fn with_node(id: &str, node: Value) -> Value {
    let mut doc = design_example();
    doc["nodes"][id] = node;
    doc
}

#[test]
fn design_example_validates() {
    let validated = validate(&design_example(), &Limits::default()).unwrap();
    let workflow = validated.workflow();
    assert_eq!(workflow.name.as_deref(), Some("order-report"));
    assert_eq!(workflow.output.as_deref(), Some("total"));
    assert_eq!(workflow.nodes.len(), 4);
    assert_eq!(validated.order(), ["orders", "total", "big", "save"]);
    assert!(validated.program("/nodes/total/params/expr").is_some());
    assert!(validated.program("/nodes/big/when").is_some());
    assert!(validated.program("/nodes/save/params/value").is_some());
    let NodeKind::HttpRequest(http) = &workflow.nodes["orders"].kind else { panic!("orders is not http.request") };
    assert_eq!(http.method, HttpMethod::Get);
}

#[test]
fn every_node_type_validates() {
    let doc = json!({
        "nodes": {
            "a": {"type": "transform", "params": {"expr": "[1,2,3]"}},
            "h": {"type": "http.request", "params": {"method": "POST", "url": "https://x.test/p?q=1",
                  "headers": {"x-k": "v"}, "body_expr": ".a", "timeout_ms": 1000, "max_response_bytes": 10}},
            "g": {"type": "object.get", "params": {"key": "a/b.json"}},
            "m": {"type": "map", "inputs": ["a"], "params": {"over": ".a", "parallelism": 4,
                  "node": {"type": "transform", "when": ".item > 1", "retry": {"max_attempts": 2},
                           "params": {"expr": ".item * 2"}}}},
            "s": {"type": "sleep", "params": {"ms": 5}, "timeout_ms": 10},
            "l": {"type": "log", "params": {"message": "\"hi\"", "level": "warn"}},
            "f": {"type": "fail", "params": {"message": "no"}, "retry": {"max_attempts": 3, "backoff_ms": 5}}
        },
        "deadline_ms": 60000
    });
    let validated = validate(&doc, &Limits::default()).unwrap();
    assert!(validated.program("/nodes/m/params/node/params/expr").is_some());
    assert!(validated.program("/nodes/m/params/node/when").is_some());
    assert!(validated.program("/nodes/h/params/body_expr").is_some());
    let NodeKind::Map(map) = &validated.workflow().nodes["m"].kind else { panic!("m is not a map") };
    assert_eq!(map.parallelism(), 4);
}

#[test]
fn unknown_node_type() {
    let doc = with_node("x", json!({"type": "shell", "params": {}}));
    assert_error(&doc, "/nodes/x/type", "unknown node type `shell`");
}

#[test]
fn missing_type_and_params() {
    assert_error(&with_node("x", json!({"params": {}})), "/nodes/x/type", "missing");
    assert_error(&with_node("x", json!({"type": "sleep"})), "/nodes/x/params", "missing");
}

#[test]
fn unknown_and_missing_fields() {
    let doc = with_node("x", json!({"type": "transform", "params": {"exp": "."}, "input": ["total"]}));
    assert_error(&doc, "/nodes/x/input", "unknown field");
    assert_error(&doc, "/nodes/x/params/exp", "unknown field");
    assert_error(&doc, "/nodes/x/params/expr", "missing field `expr`");
    let mut doc = design_example();
    doc["nodez"] = json!({});
    assert_error(&doc, "/nodez", "unknown field");
    assert_error(&json!({"name": "x"}), "/nodes", "missing field");
}

#[test]
fn wrong_param_types() {
    let doc = with_node("x", json!({"type": "sleep", "params": {"ms": "5"}}));
    assert_error(&doc, "/nodes/x/params/ms", "positive integer");
    let doc = with_node("x", json!({"type": "log", "params": {"message": ".", "level": "loud"}}));
    assert_error(&doc, "/nodes/x/params/level", "one of");
    let doc = with_node("x", json!({"type": "http.request", "params": {"url": "ftp://x"}}));
    assert_error(&doc, "/nodes/x/params/url", "http");
    let doc = with_node(
        "x",
        json!({"type": "http.request", "params": {"url": "http://x", "method": "get", "headers": {"a": 1}}}),
    );
    assert_error(&doc, "/nodes/x/params/method", "one of");
    assert_error(&doc, "/nodes/x/params/headers/a", "strings");
    let doc =
        with_node("x", json!({"type": "http.request", "params": {"url": "http://x", "body": 1, "body_expr": "."}}));
    assert_error(&doc, "/nodes/x/params/body_expr", "not both");
}

#[test]
fn dangling_self_and_duplicate_inputs() {
    let doc = with_node(
        "x",
        json!({"type": "transform", "inputs": ["nope", "x", "total", "total", 3], "params": {"expr": "."}}),
    );
    assert_error(&doc, "/nodes/x/inputs/0", "`nope`, which does not exist");
    assert_error(&doc, "/nodes/x/inputs/1", "itself");
    assert_error(&doc, "/nodes/x/inputs/3", "listed twice");
    assert_error(&doc, "/nodes/x/inputs/4", "string");
    let doc = with_node("x", json!({"type": "transform", "inputs": "total", "params": {"expr": "."}}));
    assert_error(&doc, "/nodes/x/inputs", "array");
}

#[test]
fn cycle_is_reported_on_a_node_of_the_cycle() {
    let doc = json!({"nodes": {
        "a": {"type": "transform", "inputs": ["c"], "params": {"expr": "."}},
        "b": {"type": "transform", "inputs": ["a"], "params": {"expr": "."}},
        "c": {"type": "transform", "inputs": ["b"], "params": {"expr": "."}},
        "d": {"type": "transform", "inputs": ["c"], "params": {"expr": "."}}
    }});
    let errs = errors(&doc);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(["/nodes/a/inputs", "/nodes/b/inputs", "/nodes/c/inputs"].contains(&errs[0].pointer.as_str()));
    assert!(errs[0].message.starts_with("cycle: "), "{}", errs[0].message);
}

#[test]
fn node_id_syntax_and_reserved_ids() {
    assert_error(
        &with_node("bad id", json!({"type": "sleep", "params": {"ms": 1}})),
        "/nodes/bad id",
        "invalid node id",
    );
    assert_error(&with_node("a/b", json!({"type": "sleep", "params": {"ms": 1}})), "/nodes/a~1b", "invalid node id");
    assert_error(&with_node("input", json!({"type": "sleep", "params": {"ms": 1}})), "/nodes/input", "reserved");
    assert!(check_node_id("fetch-orders_2").is_ok());
    assert!(check_node_id("9lives").is_err());
    assert!(check_node_id(&"a".repeat(MAX_NODE_ID_LEN + 1)).is_err());
}

#[test]
fn output_must_name_a_node() {
    let mut doc = design_example();
    doc["output"] = json!("missing");
    assert_error(&doc, "/output", "does not exist");
    doc["output"] = json!(1);
    assert_error(&doc, "/output", "string");
}

#[test]
fn bad_jq_everywhere_is_reported_with_its_pointer() {
    let doc = json!({"nodes": {
        "t": {"type": "transform", "when": ".a ==", "params": {"expr": "[.x"}},
        "p": {"type": "object.put", "params": {"key": "k", "value": "nosuch(1)"}},
        "l": {"type": "log", "params": {"message": "| |"}},
        "m": {"type": "map", "params": {"over": "..[", "node": {"type": "transform", "params": {"expr": "env"}}}}
    }});
    let errs = errors(&doc);
    for at in [
        "/nodes/t/when",
        "/nodes/t/params/expr",
        "/nodes/p/params/value",
        "/nodes/l/params/message",
        "/nodes/m/params/over",
        "/nodes/m/params/node/params/expr",
    ] {
        assert!(errs.iter().any(|e| e.pointer == at && e.message.contains("jq")), "no jq error at {at}: {errs:#?}");
    }
}

#[test]
fn expression_size_limit() {
    let limits = Limits { max_expression_bytes: 8, ..Limits::default() };
    let doc = json!({"nodes": {"t": {"type": "transform", "params": {"expr": ". | . | . | ."}}}});
    let errs = validate(&doc, &limits).unwrap_err().0;
    assert_eq!(errs[0].pointer, "/nodes/t/params/expr");
    assert!(errs[0].message.contains("limit"));
}

#[test]
fn map_limits_and_inner_node_rules() {
    let doc = with_node(
        "m",
        json!({"type": "map", "inputs": ["total"], "params": {"over": ".total", "parallelism": 65,
               "node": {"type": "sleep", "inputs": ["total"], "params": {"ms": 1}}}}),
    );
    assert_error(&doc, "/nodes/m/params/parallelism", "1 to 64");
    assert_error(&doc, "/nodes/m/params/node/inputs", "no inputs");
    let doc = with_node("m", json!({"type": "map", "params": {"over": ".", "node": {"type": "nope", "params": {}}}}));
    assert_error(&doc, "/nodes/m/params/node/type", "unknown node type");
    let doc = with_node(
        "m",
        json!({"type": "map", "params": {"over": ".", "parallelism": 0, "node": {"type": "sleep", "params": {"ms": 1}}}}),
    );
    assert_error(&doc, "/nodes/m/params/parallelism", "1 to 64");
}

#[test]
fn retry_and_timeout_rules() {
    let doc = with_node(
        "x",
        json!({"type": "sleep", "params": {"ms": 1}, "timeout_ms": 0,
               "retry": {"max_attempts": 11, "backoff_ms": -1, "jitter": true}}),
    );
    assert_error(&doc, "/nodes/x/timeout_ms", "positive");
    assert_error(&doc, "/nodes/x/retry/max_attempts", "1 to 10");
    assert_error(&doc, "/nodes/x/retry/backoff_ms", "non-negative");
    assert_error(&doc, "/nodes/x/retry/jitter", "unknown field");
    let doc = with_node("x", json!({"type": "sleep", "params": {"ms": 1}, "retry": {}}));
    assert_error(&doc, "/nodes/x/retry/max_attempts", "missing");
}

#[test]
fn object_keys_must_be_relative_and_clean() {
    for key in ["", "/etc/passwd", "a/../b", "..", "a//b", "./a", "a\\b"] {
        let doc = with_node("g", json!({"type": "object.get", "params": {"key": key}}));
        assert_error(&doc, "/nodes/g/params/key", "key");
    }
    assert!(check_object_key("reports/2024/total.json").is_ok());
}

#[test]
fn node_count_limit() {
    let limits = Limits { max_nodes: 3, ..Limits::default() };
    let errs = validate(&design_example(), &limits).unwrap_err().0;
    assert_eq!(errs[0].pointer, "/nodes");
    assert!(errs[0].message.contains("limit of 3"));
}

#[test]
fn empty_and_non_object_documents() {
    assert_error(&json!({"nodes": {}}), "/nodes", "at least one");
    assert_error(&json!([]), "", "JSON object");
    assert_error(&json!({"nodes": []}), "/nodes", "object");
    assert_error(&with_node("x", json!(5)), "/nodes/x", "object");
}

#[test]
fn document_size_limit() {
    let limits = Limits { max_document_bytes: 100, ..Limits::default() };
    let errs = validate(&design_example(), &limits).unwrap_err().0;
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].pointer, "");
    assert!(errs[0].message.contains("limit of 100"));
}

#[test]
fn deep_nesting_is_rejected_without_recursion() {
    // Far deeper than any recursive walk could survive; built and dropped iteratively below.
    let depth = 200_000;
    let mut deep = json!(1);
    for _ in 0..depth {
        deep = Value::Array(vec![deep]);
    }
    let doc = with_node("h", json!({"type": "http.request", "params": {"url": "http://x", "body": null}}));
    let mut doc = doc;
    doc["nodes"]["h"]["params"]["body"] = deep;
    let errs = validate(&doc, &Limits::default()).unwrap_err().0;
    assert_eq!(errs.len(), 1);
    assert!(errs[0].pointer.starts_with("/nodes/h/params/body/0"));
    assert!(errs[0].message.contains("deeper than 32"));
    dismantle(doc);
}

/// Drops a deeply nested value without recursing (serde_json's `Drop` is recursive).
fn dismantle(value: Value) {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

#[test]
fn ten_thousand_node_chain_validates() {
    let n = 10_000;
    let mut nodes = serde_json::Map::new();
    for i in 0..n {
        let inputs: Vec<String> = if i == 0 { vec![] } else { vec![format!("n{}", i - 1)] };
        nodes.insert(format!("n{i}"), json!({"type": "sleep", "inputs": inputs, "params": {"ms": 1}}));
    }
    let doc = json!({"nodes": nodes});
    let limits = Limits { max_nodes: n, max_document_bytes: 10 * 1024 * 1024, ..Limits::default() };
    let validated = validate(&doc, &limits).unwrap();
    assert_eq!(validated.order().len(), n);
    assert_eq!(validated.order()[0], "n0");
    assert_eq!(validated.order()[n - 1], format!("n{}", n - 1));

    let mut doc = doc;
    doc["nodes"]["n0"]["inputs"] = json!([format!("n{}", n - 1)]);
    let errs = validate(&doc, &limits).unwrap_err().0;
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.starts_with("cycle: "));
}

#[test]
fn errors_serialize_as_pointer_and_message() {
    let errs = validate(&json!({"nodes": {}}), &Limits::default()).unwrap_err();
    assert_eq!(
        serde_json::to_value(&errs).unwrap(),
        json!([{"pointer": "/nodes", "message": "a workflow needs at least one node"}])
    );
    assert!(errs.to_string().contains("/nodes: a workflow needs at least one node"));
}

#[test]
fn resources_are_kubernetes_quantities() {
    let mut doc = with_node("x", json!({"type": "sleep", "params": {"ms": 1}}));
    doc["resources"] = json!({"cpu": "500m", "memory": "1.5Gi"});
    let workflow = validate(&doc, &Limits::default()).unwrap().into_workflow();
    let resources = workflow.resources.unwrap();
    assert_eq!((resources.cpu.as_deref(), resources.memory.as_deref()), (Some("500m"), Some("1.5Gi")));

    doc["resources"] = json!({"cpu": "lots"});
    assert_error(&doc, "/resources/cpu", "Kubernetes quantity");
    doc["resources"] = json!({"memory": 512});
    assert_error(&doc, "/resources/memory", "Kubernetes quantity");
    doc["resources"] = json!({"gpu": "1"});
    assert_error(&doc, "/resources/gpu", "unknown field");
    doc["resources"] = json!("big");
    assert_error(&doc, "/resources", "must be an object");
    // The last one parses digit by digit but is too large for any comparison: the dispatcher could not build it.
    for bad in ["", "0", "0.0", "-1", "1.", ".5", "1e3", "2 Gi", "1Gb", "99999999999999999999999999999Ei"] {
        doc["resources"] = json!({"memory": bad});
        assert_error(&doc, "/resources/memory", "Kubernetes quantity");
    }
    for good in ["1", "0.5", "250m", "2G", "512Mi", "1Ti"] {
        assert!(super::validate::is_quantity(good), "{good}");
    }
}
