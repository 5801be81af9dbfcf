//! Validation of a node's body: `type`, its `params`, `when`, `retry` and `timeout_ms`. Shared by graph nodes
//! and a `map`'s inner node.

use super::checker::{Checker, pointer};
use super::model::{HttpMethod, LogLevel, NodeKind};
use serde_json::{Map, Value};

/// What a param must hold.
#[derive(Clone, Copy)]
enum Param {
    /// Any string.
    Text,
    /// A jq expression (compiled).
    Jq,
    /// An integer > 0.
    Positive,
    /// Any JSON value.
    Any,
    /// An object of string values.
    StringMap,
    /// One of the listed strings.
    OneOf(&'static [&'static str]),
    /// An `http://` or `https://` URL.
    Url,
    /// A relative object key.
    ObjectKey,
    /// A `map`'s inner node.
    InnerNode,
    /// A `map`'s parallelism (1 ..= the limit).
    Parallelism,
}

/// (name, kind, required) for each param of a node type.
type ParamSpec = &'static [(&'static str, Param, bool)];

fn spec(node_type: &str) -> Option<ParamSpec> {
    Some(match node_type {
        "transform" => &[("expr", Param::Jq, true)],
        "http.request" => &[
            ("method", Param::OneOf(HttpMethod::NAMES), false),
            ("url", Param::Url, true),
            ("headers", Param::StringMap, false),
            ("body", Param::Any, false),
            ("body_expr", Param::Jq, false),
            ("timeout_ms", Param::Positive, false),
            ("max_response_bytes", Param::Positive, false),
        ],
        "object.get" => &[("key", Param::ObjectKey, true)],
        "object.put" => &[("key", Param::ObjectKey, true), ("value", Param::Jq, true)],
        "map" => {
            &[("over", Param::Jq, true), ("node", Param::InnerNode, true), ("parallelism", Param::Parallelism, false)]
        }
        "sleep" => &[("ms", Param::Positive, true)],
        "log" => &[("message", Param::Jq, true), ("level", Param::OneOf(LogLevel::NAMES), false)],
        "fail" => &[("message", Param::Text, true)],
        _ => return None,
    })
}

/// Checks the type-independent fields and the params of the node at `at`. Unknown top-level fields of the
/// node are the caller's concern (graph nodes and inner nodes allow different sets).
pub(crate) fn check_node_body(checker: &mut Checker<'_>, at: &str, node: &Map<String, Value>) {
    if let Some(when) = node.get("when") {
        checker.jq(&pointer(at, "when"), when);
    }
    if let Some(timeout) = node.get("timeout_ms") {
        checker.positive_u64(&pointer(at, "timeout_ms"), timeout);
    }
    if let Some(retry) = node.get("retry") {
        check_retry(checker, &pointer(at, "retry"), retry);
    }
    let type_at = pointer(at, "type");
    let node_type = match node.get("type") {
        None => {
            checker.error(type_at, "missing field `type`");
            return;
        }
        Some(Value::String(t)) => t.as_str(),
        Some(_) => {
            checker.error(type_at, "must be a string");
            return;
        }
    };
    let Some(spec) = spec(node_type) else {
        checker.error(
            type_at,
            format!("unknown node type `{node_type}`; expected one of: {}", NodeKind::TYPES.join(", ")),
        );
        return;
    };
    let params_at = pointer(at, "params");
    let Some(params) = node.get("params") else {
        checker.error(params_at, format!("missing field `params` for a `{node_type}` node"));
        return;
    };
    let Some(params) = params.as_object() else {
        checker.error(params_at, "must be an object");
        return;
    };
    let names: Vec<&str> = spec.iter().map(|(name, _, _)| *name).collect();
    checker.unknown_fields(&params_at, params, &names);
    for (name, kind, required) in spec {
        let field_at = pointer(&params_at, name);
        match params.get(*name) {
            Some(value) => check_param(checker, &field_at, *kind, value),
            None if *required => checker.error(field_at, format!("missing field `{name}`")),
            None => {}
        }
    }
    if params.contains_key("body") && params.contains_key("body_expr") {
        checker.error(pointer(&params_at, "body_expr"), "give either `body` or `body_expr`, not both");
    }
}

fn check_param(checker: &mut Checker<'_>, at: &str, kind: Param, value: &Value) {
    match kind {
        Param::Text => {
            if !value.is_string() {
                checker.error(at, "must be a string");
            }
        }
        Param::Jq => checker.jq(at, value),
        Param::Positive => {
            checker.positive_u64(at, value);
        }
        Param::Any => {}
        Param::StringMap => match value.as_object() {
            Some(map) => {
                for (name, v) in map {
                    if !v.is_string() {
                        checker.error(pointer(at, name), "header values must be strings");
                    }
                }
            }
            None => checker.error(at, "must be an object of strings"),
        },
        Param::OneOf(allowed) => match value.as_str() {
            Some(s) if allowed.contains(&s) => {}
            _ => checker.error(at, format!("must be one of: {}", allowed.join(", "))),
        },
        Param::Url => match value.as_str() {
            Some(url) if valid_url(url) => {}
            _ => checker.error(at, "must be an absolute http:// or https:// URL"),
        },
        Param::ObjectKey => match value.as_str() {
            Some(key) => {
                if let Err(problem) = check_object_key(key) {
                    checker.error(at, problem);
                }
            }
            None => checker.error(at, "must be a string"),
        },
        Param::InnerNode => check_inner_node(checker, at, value),
        Param::Parallelism => {
            let max = checker.limits.max_map_parallelism;
            match value.as_u64() {
                Some(n) if n >= 1 && n <= u64::from(max) => {}
                _ => checker.error(at, format!("must be an integer from 1 to {max}")),
            }
        }
    }
}

fn check_retry(checker: &mut Checker<'_>, at: &str, retry: &Value) {
    let Some(object) = retry.as_object() else {
        checker.error(at, "must be an object with `max_attempts` and `backoff_ms`");
        return;
    };
    checker.unknown_fields(at, object, &["max_attempts", "backoff_ms"]);
    let max = checker.limits.max_attempts;
    match object.get("max_attempts").map(Value::as_u64) {
        None => checker.error(pointer(at, "max_attempts"), "missing field `max_attempts`"),
        Some(Some(n)) if n >= 1 && n <= u64::from(max) => {}
        Some(_) => checker.error(pointer(at, "max_attempts"), format!("must be an integer from 1 to {max}")),
    }
    if let Some(backoff) = object.get("backoff_ms")
        && backoff.as_u64().is_none()
    {
        checker.error(pointer(at, "backoff_ms"), "must be a non-negative integer");
    }
}

/// A `map`'s inner node: a node body without `inputs` (nesting is bounded by the document depth limit).
fn check_inner_node(checker: &mut Checker<'_>, at: &str, value: &Value) {
    let Some(object) = value.as_object() else {
        checker.error(at, "must be a node object");
        return;
    };
    if object.contains_key("inputs") {
        checker.error(pointer(at, "inputs"), "a map's inner node takes no inputs: its view is given by the map");
    }
    let allowed = ["type", "params", "when", "retry", "timeout_ms", "inputs"];
    checker.unknown_fields(at, object, &allowed);
    check_node_body(checker, at, object);
}

fn valid_url(url: &str) -> bool {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|rest| {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !url.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

/// Longest object key, in bytes.
pub const MAX_OBJECT_KEY_BYTES: usize = 1024;

/// An `object.get`/`object.put` key is relative to the tenant's prefix: not empty, not absolute, no empty, `.`
/// or `..` segment, no backslash or control character.
pub fn check_object_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("object key must not be empty".into());
    }
    if key.len() > MAX_OBJECT_KEY_BYTES {
        return Err(format!("object key is longer than {MAX_OBJECT_KEY_BYTES} bytes"));
    }
    if key.starts_with('/') {
        return Err(format!("object key `{key}` must be relative (no leading `/`)"));
    }
    if key.contains("..") {
        return Err(format!("object key `{key}` must not contain `..`"));
    }
    if key.contains('\\') || key.chars().any(char::is_control) {
        return Err(format!("object key `{key}` must not contain `\\` or control characters"));
    }
    if key.split('/').any(|segment| segment.is_empty() || segment == ".") {
        return Err(format!("object key `{key}` has an empty or `.` path segment"));
    }
    Ok(())
}
