//! The JSON Schemas of what clients send: the request bodies (written beside their parsers in `routes`, which
//! enforce exactly this) and the workflow document (checked by `flow_like_shared::workflow::validate`).
//!
//! JSON Schema cannot say everything validation checks: that a jq expression compiles, that `inputs` and
//! `output` name existing nodes, that the graph has no cycle, the document's size and nesting limits, and that
//! an inline workflow's `name` matches the path of `PUT /workflows/{name}`. Those are 422s with a JSON Pointer.

use flow_like_shared::protocol::MAX_PRIORITY;
use flow_like_shared::workflow::{Limits, MAX_NODE_ID_LEN};
use serde_json::{Value, json};

/// A workflow's registered name.
pub const WORKFLOW_NAME_PATTERN: &str = "^[a-z0-9][a-z0-9._-]{0,127}$";
/// A tenant's name.
pub const TENANT_NAME_PATTERN: &str = "^[a-z0-9][a-z0-9-]{0,62}$";
/// A Redis stream entry id (event ids, dead-letter entry ids, dead-letter cursors).
pub const ENTRY_ID_PATTERN: &str = "^[0-9]{1,19}-[0-9]{1,19}$";

/// Characters no object key, URL or similar may contain: controls (Rust's `char::is_control`).
const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";

/// Every schema component this module defines, by name.
pub fn components() -> Vec<(String, Value)> {
    let mut all = submit_execution();
    all.extend([
        ("WorkflowRef".to_string(), workflow_ref()),
        ("NewApiKey".to_string(), new_api_key()),
        ("LimitsBody".to_string(), limits_body()),
        ("CancelFilter".to_string(), cancel_filter()),
        ("RedriveFilter".to_string(), redrive_filter()),
    ]);
    all.extend(workflow_components());
    all
}

/// Body of `POST /api/v1/executions`: a `oneOf` of two complete objects (an inline document, or a registered
/// one by reference) so that client generators give each its own type.
fn submit_execution() -> Vec<(String, Value)> {
    let common = json!({
        "input": {"description": "The execution's input: any JSON value (absent is null). Strings cannot contain NUL (\\u0000)."},
        "priority": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_PRIORITY, "default": 5,
                     "description": "0 (lowest) to 9 (highest); orders work within a tenant. Absent or null: 5."},
        "labels": {
            "type": ["object", "null"],
            "maxProperties": 32,
            "propertyNames": {"minLength": 1, "maxLength": 256},
            "additionalProperties": {"type": "string", "maxLength": 256},
            "description": "At most 32 labels; keys 1-256 bytes, values at most 256 bytes (lengths are checked in UTF-8 bytes)."
        }
    });
    // In every body a JSON null counts as absent, so the other variant's field may be null.
    let variant = |field: &str, target: &str, other: &str, description: &str| {
        let mut properties = common.clone();
        properties[field] = schema_ref(target);
        properties[other] = json!({"type": "null", "description": "Null counts as absent."});
        json!({"description": description, "type": "object", "additionalProperties": false,
               "required": [field], "properties": properties})
    };
    vec![
        (
            "SubmitExecution".to_string(),
            json!({
                "description": "Body of `POST /api/v1/executions`: exactly one of `workflow` (an inline document) and `workflow_ref` (a registered one).",
                "oneOf": [schema_ref("SubmitInlineWorkflow"), schema_ref("SubmitRegisteredWorkflow")]
            }),
        ),
        (
            "SubmitInlineWorkflow".to_string(),
            variant("workflow", "Workflow", "workflow_ref", "Runs the workflow document given inline."),
        ),
        (
            "SubmitRegisteredWorkflow".to_string(),
            variant(
                "workflow_ref",
                "WorkflowRef",
                "workflow",
                "Runs a workflow registered with `PUT /api/v1/workflows/{name}`.",
            ),
        ),
    ]
}

fn workflow_ref() -> Value {
    json!({
        "description": "A registered workflow, by name and optionally version (the latest when absent).",
        "type": "object",
        "additionalProperties": false,
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": WORKFLOW_NAME_PATTERN},
            "version": {"type": ["integer", "null"], "minimum": 1, "maximum": i32::MAX,
                        "description": "A registered version; absent or null: the latest."}
        }
    })
}

fn new_api_key() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "admin": {"type": ["boolean", "null"], "default": false,
                      "description": "An admin key may also call the admin endpoints. Absent or null: false."}
        }
    })
}

fn limits_body() -> Value {
    let limit = |what: &str| {
        json!({"type": ["integer", "null"], "minimum": 0, "maximum": i32::MAX,
               "description": format!("{what}; null or absent falls back to the dispatcher's default.")})
    };
    json!({
        "description": "A tenant's overrides of the concurrency limits, its fair-share weight and the submit rate \
                        limit. A PUT replaces them all; null or absent falls back to the default.",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "concurrency_limit": limit("Most executions of this tenant running at once"),
            "workflow_limit": limit("Most executions of any one workflow of this tenant running at once"),
            "weight": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": crate::routes::admin::MAX_WEIGHT,
                       "description": "This tenant's share of admissions when tenants compete for slots, relative \
                                       to the others' weights; null or absent is 1."},
            "submit_rate": {"type": ["number", "null"], "exclusiveMinimum": 0,
                            "maximum": crate::routes::admin::MAX_SUBMIT_RATE,
                            "description": "Submissions per second this tenant may sustain (over it: 429); null or \
                                            absent falls back to the API's API_SUBMIT_RATE."},
            "submit_burst": {"type": ["integer", "null"], "minimum": 1, "maximum": i32::MAX,
                             "description": "Submissions accepted at once after a quiet spell (the bucket's size); \
                                             null or absent falls back to API_SUBMIT_BURST."}
        }
    })
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn positive(description: &str) -> Value {
    json!({"type": "integer", "minimum": 1, "description": description})
}

fn jq(description: &str) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": Limits::default().max_expression_bytes,
           "description": format!("A jq expression: {description}")})
}

/// (type, component stem, params schema) for each node type.
fn node_types() -> Vec<(&'static str, &'static str, Value)> {
    let limits = Limits::default();
    let segment = format!(r"(?:\.?[^./\\{CONTROL}])+\.?");
    let object_key = json!({
        "type": "string", "minLength": 1, "maxLength": flow_like_shared::workflow::MAX_OBJECT_KEY_BYTES,
        "pattern": format!("^{segment}(?:/{segment})*$"),
        "description": "A key relative to the tenant's prefix: no leading `/`, no empty, `.` or `..` segment, no `\\` or control character (at most 1024 UTF-8 bytes)."
    });
    let object = |required: &[&str], properties: Value| json!({"type": "object", "additionalProperties": false, "required": required, "properties": properties});
    vec![
        (
            "transform",
            "Transform",
            object(&["expr"], json!({"expr": jq("on the node's view; its first output is the node's output.")})),
        ),
        (
            "http.request",
            "HttpRequest",
            json!({
                "type": "object", "additionalProperties": false, "required": ["url"],
                "properties": {
                    "method": {"type": "string", "enum": flow_like_shared::workflow::HttpMethod::NAMES, "default": "GET"},
                    "url": {"type": "string", "pattern": format!(r"^https?://[^/?#\s{CONTROL}]+[^\s{CONTROL}]*$"),
                            "description": "An absolute http:// or https:// URL."},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "body": {"description": "Literal JSON request body (sent as application/json)."},
                    "body_expr": jq("on the node's view whose output is the JSON request body; exclusive with `body`."),
                    "timeout_ms": positive("Bound on the request, including reading the response body."),
                    "max_response_bytes": positive("Largest response body accepted; the executor's own cap applies when larger or absent.")
                },
                "not": {"required": ["body", "body_expr"]}
            }),
        ),
        ("object.get", "ObjectGet", object(&["key"], json!({"key": object_key}))),
        (
            "object.put",
            "ObjectPut",
            object(
                &["key", "value"],
                json!({"key": object_key, "value": jq("on the node's view whose output is stored.")}),
            ),
        ),
        (
            "map",
            "Map",
            object(
                &["over", "node"],
                json!({
                    "over": jq("on the node's view selecting the array to map over."),
                    "node": schema_ref("InnerNode"),
                    "parallelism": {"type": "integer", "minimum": 1, "maximum": limits.max_map_parallelism, "default": 1,
                                    "description": "Items run at once."}
                }),
            ),
        ),
        ("sleep", "Sleep", object(&["ms"], json!({"ms": positive("How long to sleep, in milliseconds.")}))),
        (
            "log",
            "Log",
            object(
                &["message"],
                json!({
                    "message": jq("on the node's view; a string output is logged as is, anything else as JSON text."),
                    "level": {"type": "string", "enum": flow_like_shared::workflow::LogLevel::NAMES, "default": "info"}
                }),
            ),
        ),
        ("fail", "Fail", object(&["message"], json!({"message": {"type": "string"}}))),
    ]
}

/// The node schemas: `Node` (a graph node) and `InnerNode` (a map's inner node, which has no `inputs`) are each a
/// `oneOf` of one complete object schema per type, told apart by the `type` discriminator, so that client
/// generators get one class per node type. Returns the two unions and their branches, by component name.
fn node_components() -> Vec<(String, Value)> {
    let mut components = Vec::new();
    for (union, prefix, description, with_inputs) in [
        ("Node", "", "One node of the graph.", true),
        ("InnerNode", "Inner", "A map's inner node: a node without inputs (its view is given by the map).", false),
    ] {
        let mut branches = Vec::new();
        let mut mapping = serde_json::Map::new();
        for (name, stem, params) in node_types() {
            let component = format!("{prefix}{stem}Node");
            let mut properties = json!({
                "type": {"type": "string", "const": name},
                "params": params,
                "when": jq("condition on the node's view; the node (and what depends on it) is skipped when it yields false or null."),
                "retry": schema_ref("RetryPolicy"),
                "timeout_ms": positive("Bound on each attempt, in milliseconds.")
            });
            if with_inputs {
                properties["inputs"] = json!({
                    "type": "array", "uniqueItems": true, "items": schema_ref("NodeId"),
                    "description": "Ids of the nodes this one waits for (existing, not itself); their outputs appear in its view under their ids."
                });
            }
            let reference = format!("#/components/schemas/{component}");
            branches.push(json!({"$ref": reference}));
            mapping.insert(name.to_string(), Value::String(reference));
            components.push((
                component,
                json!({
                    "description": format!("{description} Type `{name}`."),
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["type", "params"],
                    "properties": properties
                }),
            ));
        }
        components.push((
            union.to_string(),
            json!({
                "description": description,
                "oneOf": branches,
                "discriminator": {"propertyName": "type", "mapping": mapping}
            }),
        ));
    }
    components
}

fn workflow_components() -> Vec<(String, Value)> {
    let limits = Limits::default();
    let node_id = json!({
        "description": "A node id: letters, digits, `_` and `-`, starting with a letter or `_`; `input` is reserved.",
        "type": "string",
        "pattern": format!("^[A-Za-z_][A-Za-z0-9_-]{{0,{}}}$", MAX_NODE_ID_LEN - 1),
        "not": {"const": "input"}
    });
    let workflow = json!({
        "description": "A workflow document: a directed acyclic graph of nodes keyed by id. Validation also checks what JSON Schema cannot say (jq compiles, `inputs` and `output` name existing nodes, no cycle, at most 256 KiB and 32 levels of nesting): a 422 with a JSON Pointer.",
        "type": "object",
        "additionalProperties": false,
        "required": ["nodes"],
        "properties": {
            "name": {"type": "string", "pattern": WORKFLOW_NAME_PATTERN,
                     "description": "The workflow's name (an inline workflow without one is named `inline`)."},
            "nodes": {
                "type": "object", "minProperties": 1, "maxProperties": limits.max_nodes,
                "propertyNames": schema_ref("NodeId"),
                "additionalProperties": schema_ref("Node")
            },
            "output": {"allOf": [schema_ref("NodeId")], "description": "Id of the node whose output is the execution's output."},
            "deadline_ms": positive("Bound on the whole run, in milliseconds."),
            "resources": {
                "type": "object", "additionalProperties": false,
                "description": "What the run asks of the executor's container, as Kubernetes quantities, within the operator's limits.",
                "properties": {
                    "cpu": {"type": "string", "maxLength": 32, "pattern": QUANTITY_PATTERN, "examples": ["500m", "2"]},
                    "memory": {"type": "string", "maxLength": 32, "pattern": QUANTITY_PATTERN, "examples": ["512Mi", "2Gi"]}
                }
            }
        }
    });
    let retry = json!({
        "description": "How often a failed node is tried: `max_attempts` counts the first; the wait before attempt n+1 is backoff_ms * 2^(n-1), at most 60 s.",
        "type": "object",
        "additionalProperties": false,
        "required": ["max_attempts"],
        "properties": {
            "max_attempts": {"type": "integer", "minimum": 1, "maximum": limits.max_attempts},
            "backoff_ms": {"type": "integer", "minimum": 0, "default": 0}
        }
    });
    let mut components =
        vec![("Workflow".to_string(), workflow), ("NodeId".to_string(), node_id), ("RetryPolicy".to_string(), retry)];
    components.extend(node_components());
    components
}

/// A Kubernetes quantity as `flow_like_shared::quantity` reads it: a decimal number with an optional suffix
/// (validation also refuses zero and quantities too large to compare).
const QUANTITY_PATTERN: &str = r"^[0-9]{1,30}(?:\.[0-9]{1,30})?(?:[numkMGTPE]|[KMGTPE]i)?$";

/// The fields every bulk body shares: `dry_run`, `limit` and `cursor`, and the time bounds named `after`/`before`.
fn bulk_common(after: &str, before: &str, cursor: Value) -> serde_json::Map<String, Value> {
    let time = |what: &str| json!({"type": ["string", "null"], "format": "date-time", "description": what});
    let max = crate::routes::bulk::MAX_BULK;
    let mut properties = serde_json::Map::new();
    properties.insert(after.to_owned(), time("At or after this time (RFC 3339)."));
    properties.insert(before.to_owned(), time("Before this time (RFC 3339)."));
    properties.insert(
        "dry_run".into(),
        json!({"type": ["boolean", "null"], "default": false, "description": "Only count and list the matches."}),
    );
    properties.insert(
        "limit".into(),
        json!({"type": ["integer", "null"], "minimum": 1, "maximum": max, "default": max,
               "description": "Most matches this call takes."}),
    );
    properties.insert("cursor".into(), cursor);
    properties.insert(
        "tenant".into(),
        json!({"type": ["string", "null"], "pattern": TENANT_NAME_PATTERN,
               "description": "Admins: only this tenant's (every tenant's when absent)."}),
    );
    properties.insert(
        "workflow".into(),
        json!({"type": ["string", "null"], "pattern": WORKFLOW_NAME_PATTERN, "description": "Only this workflow's."}),
    );
    properties
}

/// Body of `POST /api/v1/executions/cancel`.
fn cancel_filter() -> Value {
    let mut properties = bulk_common(
        "submitted_after",
        "submitted_before",
        json!({"type": ["string", "null"], "format": "uuid", "description": "`next_cursor` of the previous call."}),
    );
    properties["tenant"]["description"] = json!("Admins: only this tenant's. A tenant key may name only its own.");
    properties.insert(
        "status".into(),
        json!({"type": ["array", "null"], "minItems": 1,
               "items": {"type": "string", "enum": ["queued", "dispatched", "running"]},
               "description": "Any of these statuses (default all three)."}),
    );
    properties.insert(
        "labels".into(),
        json!({"type": ["object", "null"], "additionalProperties": {"type": "string"},
               "description": "Labels the executions all carry with these values."}),
    );
    json!({
        "description": "Which executions to cancel: every field narrows, an empty object matches every execution \
                        not finished yet.",
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
    })
}

/// Body of `POST /api/v1/dead-letters/redrive`.
fn redrive_filter() -> Value {
    let mut properties = bulk_common(
        "dead_after",
        "dead_before",
        json!({"type": ["string", "null"], "pattern": ENTRY_ID_PATTERN,
               "description": "`next_cursor` of the previous call."}),
    );
    properties.insert(
        "reason".into(),
        json!({"type": ["string", "null"], "description": "A part of the dead letter's reason (exact case)."}),
    );
    json!({
        "description": "Which dead letters to redrive: every field narrows, an empty object matches all of them.",
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
    })
}
