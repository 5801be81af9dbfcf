//! The typed workflow document: a DAG of nodes keyed by id, each with a type and that type's params.
//!
//! These types are what a document deserializes to after [`super::validate`] accepted it; deserializing
//! directly is possible but skips the checks (cycles, jq, limits) and gives no JSON Pointers.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A workflow document. Node ids are the keys of `nodes`, so they are unique by construction (a JSON object
/// with a repeated key keeps its last entry when parsed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workflow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub nodes: BTreeMap<String, Node>,
    /// Id of the node whose output is the execution's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Bound on the whole run, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// What the run asks of the executor's container (the Kubernetes runner's requests), within the operator's
    /// limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
}

/// A workflow's resource requests, as Kubernetes quantities (`"500m"`, `"2"`, `"512Mi"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// One node of the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    #[serde(flatten)]
    pub kind: NodeKind,
    /// Ids of the nodes this one waits for; their outputs appear in its view under their ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    #[serde(flatten)]
    pub control: NodeControl,
}

/// The per-node settings that are not type specific, shared by graph nodes and a `map`'s inner node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeControl {
    /// jq condition on the node's view; the node is skipped when it yields `false` or `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Bound on each attempt, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// How often a failed node is tried again: `max_attempts` counts the first attempt; the wait before attempt
/// n+1 is `backoff_ms * 2^(n-1)`, capped at [`RetryPolicy::MAX_BACKOFF_MS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    #[serde(default)]
    pub backoff_ms: u64,
}

impl RetryPolicy {
    /// Longest wait between two attempts.
    pub const MAX_BACKOFF_MS: u64 = 60_000;

    /// Wait before attempt `next_attempt` (2 for the first retry).
    pub fn backoff_before(&self, next_attempt: u32) -> std::time::Duration {
        let exponent = next_attempt.saturating_sub(2).min(32);
        let ms = self.backoff_ms.saturating_mul(1u64 << exponent).min(Self::MAX_BACKOFF_MS);
        std::time::Duration::from_millis(ms)
    }
}

/// A node's type and its typed params (`"type": "...", "params": {...}` in the document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "params")]
pub enum NodeKind {
    #[serde(rename = "transform")]
    Transform(TransformParams),
    #[serde(rename = "http.request")]
    HttpRequest(HttpRequestParams),
    #[serde(rename = "object.get")]
    ObjectGet(ObjectGetParams),
    #[serde(rename = "object.put")]
    ObjectPut(ObjectPutParams),
    #[serde(rename = "map")]
    Map(MapParams),
    #[serde(rename = "sleep")]
    Sleep(SleepParams),
    #[serde(rename = "log")]
    Log(LogParams),
    #[serde(rename = "fail")]
    Fail(FailParams),
}

impl NodeKind {
    /// Every `type` value a document may use.
    pub const TYPES: &'static [&'static str] =
        &["transform", "http.request", "object.get", "object.put", "map", "sleep", "log", "fail"];

    /// The document's `type` value for this kind.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Transform(_) => "transform",
            Self::HttpRequest(_) => "http.request",
            Self::ObjectGet(_) => "object.get",
            Self::ObjectPut(_) => "object.put",
            Self::Map(_) => "map",
            Self::Sleep(_) => "sleep",
            Self::Log(_) => "log",
            Self::Fail(_) => "fail",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransformParams {
    /// jq on the node's view; the first output is the node's output.
    pub expr: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl HttpMethod {
    pub const NAMES: &'static [&'static str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRequestParams {
    #[serde(default)]
    pub method: HttpMethod,
    /// `http://` or `https://` URL.
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Literal JSON request body (sent as `application/json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// jq on the node's view whose output is the JSON request body; exclusive with `body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_expr: Option<String>,
    /// Bound on the request, including reading the response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Largest response body accepted; the executor's own cap applies when larger or absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectGetParams {
    /// Relative key under the tenant's prefix.
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectPutParams {
    /// Relative key under the tenant's prefix.
    pub key: String,
    /// jq on the node's view whose output is stored.
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapParams {
    /// jq on the node's view selecting the array to map over.
    pub over: String,
    /// The node run once per element.
    pub node: Box<InnerNode>,
    /// Items run at once (default [`MapParams::DEFAULT_PARALLELISM`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
}

impl MapParams {
    pub const DEFAULT_PARALLELISM: u32 = 1;

    pub fn parallelism(&self) -> usize {
        self.parallelism.unwrap_or(Self::DEFAULT_PARALLELISM).max(1) as usize
    }
}

/// A `map`'s inner node: a node without `inputs` (its view is given by the map).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InnerNode {
    #[serde(flatten)]
    pub kind: NodeKind,
    #[serde(flatten)]
    pub control: NodeControl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SleepParams {
    pub ms: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub const NAMES: &'static [&'static str] = &["debug", "info", "warn", "error"];

    /// The name as documents spell it (one of [`Self::NAMES`]).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogParams {
    /// jq on the node's view; a string output is logged as is, anything else as JSON text.
    pub message: String,
    #[serde(default)]
    pub level: LogLevel,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailParams {
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_round_trips_through_json() {
        let doc = json!({
            "type": "map",
            "inputs": ["a"],
            "when": ".a",
            "retry": {"max_attempts": 3, "backoff_ms": 10},
            "params": {"over": ".a", "parallelism": 2,
                       "node": {"type": "sleep", "params": {"ms": 5}, "timeout_ms": 50}}
        });
        let node: Node = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(node.inputs, vec!["a"]);
        assert_eq!(node.control.when.as_deref(), Some(".a"));
        let NodeKind::Map(map) = &node.kind else { panic!("not a map: {node:?}") };
        assert_eq!(map.node.kind, NodeKind::Sleep(SleepParams { ms: 5 }));
        assert_eq!(map.node.control.timeout_ms, Some(50));
        assert_eq!(serde_json::to_value(&node).unwrap(), doc);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let policy = RetryPolicy { max_attempts: 50, backoff_ms: 100 };
        assert_eq!(policy.backoff_before(2).as_millis(), 100);
        assert_eq!(policy.backoff_before(3).as_millis(), 200);
        assert_eq!(policy.backoff_before(4).as_millis(), 400);
        assert_eq!(policy.backoff_before(40).as_millis(), u128::from(RetryPolicy::MAX_BACKOFF_MS));
    }
}
