//! The OpenAPI document, generated from the handlers' annotations and served at `/openapi.json`.
//!
//! utoipa writes the paths and the response schemas from the code. Then [`document`] makes it exact where the
//! annotations cannot: the request bodies and the workflow document get the schemas of `schemas` (the same
//! rules their parsers enforce); every operation gets the answers every route of its kind can give (401 and
//! 503 when it needs a key, 403 for admin operations, 400 for a path, query or body that cannot be read, 413,
//! 415 and 422 for a body); and errors are documented as what they are, `application/problem+json`.

mod schemas;

pub use schemas::{ENTRY_ID_PATTERN, TENANT_NAME_PATTERN, WORKFLOW_NAME_PATTERN};

use crate::routes::{
    admin, bulk, dead_letters, execution_events, execution_logs, execution_ops, executions, health, queue, workflows,
};
use flow_like_shared::lifecycle::ExecutionStatus;
use serde_json::{Value, json};
use std::sync::OnceLock;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "flow-like API",
        description = "Submit and follow workflow executions. Errors are RFC 9457 problem+json."
    ),
    paths(
        executions::submit,
        executions::get,
        executions::list,
        execution_events::events,
        execution_ops::result,
        execution_logs::logs,
        execution_ops::cancel,
        bulk::cancel,
        workflows::put,
        workflows::get_latest,
        workflows::get_version,
        queue::get,
        admin::create_key,
        admin::revoke_key,
        admin::put_limits,
        admin::pause_tenant,
        admin::resume_tenant,
        admin::pause_workflow,
        admin::resume_workflow,
        dead_letters::list,
        dead_letters::redrive,
        bulk::redrive,
        health::healthz,
        health::readyz,
    ),
    components(schemas(crate::error::Problem))
)]
pub struct ApiDoc;

/// Content type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The document, built once.
pub fn document() -> Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(build).clone()
}

fn build() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    doc["components"]["securitySchemes"] = json!({"api_key": {"type": "http", "scheme": "bearer", "description": "A tenant's API key, or the admin token"}});
    for (name, schema) in schemas::components() {
        doc["components"]["schemas"][name.as_str()] = schema;
    }
    refine_response_schemas(&mut doc["components"]["schemas"]);
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else { continue };
            for operation in item.values_mut() {
                complete_operation(path, operation);
            }
        }
    }
    doc
}

/// Request bodies by operation: (schema, required).
fn request_body(operation_id: &str) -> Option<(&'static str, bool)> {
    Some(match operation_id {
        "submitExecution" => ("SubmitExecution", true),
        "registerWorkflow" => ("Workflow", true),
        "createApiKey" => ("NewApiKey", false),
        "setTenantLimits" => ("LimitsBody", true),
        "cancelExecutions" => ("CancelFilter", true),
        "redriveDeadLetters" => ("RedriveFilter", true),
        _ => return None,
    })
}

/// Schema of a path, query or header parameter, by name (what the handlers accept, exactly).
fn parameter_schema(operation_id: &str, name: &str) -> Option<Value> {
    let entry_id = json!({"type": "string", "pattern": ENTRY_ID_PATTERN});
    Some(match name {
        "id" => json!({"type": "string", "format": "uuid"}),
        "tenant" => json!({"type": "string", "pattern": TENANT_NAME_PATTERN}),
        "name" => json!({"type": "string", "pattern": WORKFLOW_NAME_PATTERN}),
        "version" => json!({"type": "integer", "minimum": 1, "maximum": i32::MAX}),
        "attempt" => json!({"type": "integer", "minimum": 1, "maximum": i32::MAX}),
        "entry_id" => entry_id,
        "status" => json!({"type": "string", "enum": ExecutionStatus::ALL}),
        "workflow" => json!({"type": "string", "pattern": WORKFLOW_NAME_PATTERN}),
        "label" => json!({"type": "string", "pattern": "^[^=]+=", "description": "name=value"}),
        "submitted_after" | "submitted_before" => json!({"type": "string", "format": "date-time"}),
        "follow" => json!({"type": "boolean", "default": false}),
        "limit" => json!({"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
        "cursor" if operation_id == "listExecutions" => json!({"type": "string", "format": "uuid"}),
        "cursor" => entry_id,
        "last_event_id" => json!({"type": "string", "pattern": ENTRY_ID_PATTERN}),
        // An empty header is a client that has no id yet (and what some proxies leave): the same as none.
        "Last-Event-ID" => json!({"type": "string", "pattern": format!("^$|{ENTRY_ID_PATTERN}")}),
        "Idempotency-Key" => {
            json!({"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\t\\x20-\\x7e]+$"})
        }
        _ => return None,
    })
}

/// One Server-Sent Event of `GET /executions/{id}/events`, as a client's event-stream parser gives it.
fn sse_event() -> Value {
    let kinds: Vec<&str> = flow_like_shared::status::EventKind::ALL.iter().map(|k| k.as_str()).collect();
    json!({
        "description": "One event of the stream (keep-alive comments aside). `data` is a JSON object with execution, attempt, seq, at (ms since the epoch), kind and the event's own fields.",
        "type": "object",
        "additionalProperties": false,
        "required": ["id", "event", "data"],
        "properties": {
            "id": {"type": "string", "pattern": ENTRY_ID_PATTERN, "description": "The stream entry id; send it back as Last-Event-ID to resume after it."},
            "event": {"type": "string", "enum": kinds},
            "data": {"type": "string", "contentMediaType": "application/json"}
        }
    })
}

/// One Server-Sent Event of `GET /executions/{id}/logs?follow=true`.
fn log_sse_event() -> Value {
    json!({
        "description": "A `log` event (data: one log line, as in `AttemptLogs.lines`; id: its progress entry id), or \
                        the last event, `end` (data: `{\"status\": ...}`, the attempt's outcome or `retrying`; no id).",
        "type": "object",
        "additionalProperties": false,
        "required": ["event", "data"],
        "properties": {
            "id": {"type": "string", "pattern": ENTRY_ID_PATTERN},
            "event": {"type": "string", "enum": ["log", "end"]},
            "data": {"type": "string", "contentMediaType": "application/json"}
        }
    })
}

fn problem(description: &str) -> Value {
    json!({"description": description, "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

fn complete_operation(path: &str, operation: &mut Value) {
    let operation_id = operation["operationId"].as_str().unwrap_or_default().to_string();
    let secured = operation.get("security").is_some();
    let admin = operation["tags"].as_array().is_some_and(|tags| tags.iter().any(|t| t == "admin"));
    let has_parameters = operation["parameters"].as_array().is_some_and(|p| !p.is_empty());

    if let Some(parameters) = operation.get_mut("parameters").and_then(Value::as_array_mut) {
        for parameter in parameters {
            let name = parameter["name"].as_str().unwrap_or_default().to_string();
            if let Some(schema) = parameter_schema(&operation_id, &name) {
                parameter["schema"] = schema;
            }
        }
    }
    let body = request_body(&operation_id);
    if let Some((schema, required)) = body {
        operation["requestBody"] = json!({
            "required": required,
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
        });
    }

    if operation_id == "streamExecutionEvents" {
        operation["responses"]["200"]["content"] = json!({"text/event-stream": {"schema": sse_event()}});
    }
    if operation_id == "getExecutionLogs" {
        operation["responses"]["200"]["content"]["text/event-stream"] = json!({"schema": log_sse_event()});
    }

    let mut standard: Vec<(&str, &str)> = Vec::new();
    if has_parameters || body.is_some() {
        standard.push((
            "400",
            "Malformed: a path, query or header value that cannot be read (e.g. one holding NUL), or a body that is not JSON",
        ));
    }
    if secured {
        standard.push(("401", "Missing or invalid API key"));
        standard.push(("503", "A backing service is down; retry after Retry-After"));
    }
    if admin {
        standard.push(("403", "The key is not an admin key"));
    }
    if body.is_some() {
        standard.push(("413", "The body is larger than API_MAX_BODY_BYTES"));
        standard.push(("415", "The body is not application/json"));
        standard.push((
            "422",
            "Valid JSON of the wrong shape (not an object, an unknown field, a wrong type or range, NUL in a string), each part named by a JSON Pointer",
        ));
    }
    let responses = &mut operation["responses"];
    for (status, description) in standard {
        if responses.get(status).is_none() {
            responses[status] = problem(description);
        }
    }
    // Errors are problem documents; the annotations can only say application/json.
    if let Some(responses) = responses.as_object_mut() {
        for (status, response) in responses.iter_mut() {
            if status.starts_with(['4', '5']) && path != "/readyz" {
                let description = response["description"].as_str().filter(|d| !d.is_empty()).map(str::to_string);
                *response = problem(&description.unwrap_or_else(|| default_description(status)));
            }
        }
    }
}

fn default_description(status: &str) -> String {
    match status {
        "400" => "Malformed request",
        "401" => "Missing or invalid API key",
        "403" => "The key is not an admin key",
        "404" => "Not found (another tenant's resource is not found either)",
        "409" => "Conflict with the resource's state",
        "422" => "Invalid request, each part named by a JSON Pointer",
        "503" => "A backing service is down; retry after Retry-After",
        _ => "Error",
    }
    .to_string()
}

/// Constraints on response fields the derive cannot state.
fn refine_response_schemas(schemas: &mut Value) {
    for view in ["ExecutionView", "Accepted"] {
        if let Some(status) = schemas[view]["properties"].get_mut("status") {
            status["enum"] = json!(ExecutionStatus::ALL);
        }
    }
    if let Some(priority) = schemas["ExecutionView"]["properties"].get_mut("priority") {
        priority["minimum"] = json!(0);
        priority["maximum"] = json!(flow_like_shared::protocol::MAX_PRIORITY);
    }
    schemas["ExecutionView"]["properties"]["labels"] =
        json!({"type": "object", "additionalProperties": {"type": "string"}});
    schemas["WorkflowVersionView"]["properties"]["document"] = json!({"$ref": "#/components/schemas/Workflow"});
    // `flow_like_shared::protocol::reads::TenantQueue` and `flow_like_shared::protocol::limits::EffectiveLimits`, as serialized.
    let count = json!({"type": "integer", "minimum": 0});
    schemas["TenantQueueView"]["properties"]["queue"] = json!({
        "type": "object",
        "required": ["waiting", "running", "waiting_by_priority"],
        "properties": {
            "waiting": {"type": "integer", "minimum": 0, "description": "Executions waiting in the tenant's lanes, not yet claimed by a dispatcher."},
            "running": {"type": "integer", "minimum": 0, "description": "Executions holding a concurrency lease (dispatched or running)."},
            "waiting_by_priority": {
                "type": "object", "propertyNames": {"pattern": "^[0-9]$"}, "additionalProperties": count,
                "description": "Waiting executions per priority lane (only lanes with work)."
            }
        }
    });
    let limit = |what: &str| json!({"type": ["integer", "null"], "minimum": 0, "description": what});
    schemas["TenantQueueView"]["properties"]["limits"] = json!({
        "type": "object",
        "required": ["global", "tenant", "workflow"],
        "description": "The limits that apply now, as the dispatchers see them; null until a dispatcher has published its defaults.",
        "properties": {
            "global": limit("Most executions running at once across all tenants."),
            "tenant": limit("Most executions of this tenant running at once."),
            "workflow": limit("Most executions of any one workflow of this tenant running at once.")
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_are_unique() {
        let doc = document();
        let mut seen = std::collections::BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                let id = operation["operationId"].as_str().expect("every operation has an id");
                assert!(seen.insert(id.to_string()), "operationId {id} is used twice");
            }
        }
    }

    #[test]
    fn every_error_is_a_problem_document() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if status.starts_with(['4', '5']) && path != "/readyz" {
                        assert!(response["content"][PROBLEM_JSON].is_object(), "{method} {path} {status}");
                    }
                }
                if operation.get("security").is_some() {
                    assert!(operation["responses"]["401"].is_object(), "{method} {path} documents no 401");
                }
            }
        }
    }
}
