//! The attempt spec: everything the executor needs to run an execution, written by the dispatcher to the meta
//! bucket at `storage::layout::spec(execution_id)` before it starts the executor, and never changed afterwards.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The spec document (JSON). The executor takes the input from `input_key` when it is set (an input too large
/// to inline lives in the meta bucket), otherwise from `input` (`null` when absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptSpec {
    pub execution_id: Uuid,
    pub tenant: String,
    /// The workflow's registered name, or the document's `name` for an inline workflow.
    pub workflow_name: String,
    /// The workflow document as submitted; the executor validates it again before running it.
    pub workflow: Value,
    #[serde(default)]
    pub input: Option<Value>,
    /// Meta-bucket key of the input document, instead of `input`.
    #[serde(default)]
    pub input_key: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_documented_shape() {
        let id = Uuid::now_v7();
        let doc = json!({
            "execution_id": id, "tenant": "acme", "workflow_name": "wf",
            "workflow": {"nodes": {}}, "input": {"a": 1}, "input_key": null
        });
        let spec: AttemptSpec = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(spec.execution_id, id);
        assert_eq!(spec.input, Some(json!({"a": 1})));
        assert_eq!(spec.input_key, None);
        assert_eq!(serde_json::to_value(&spec).unwrap(), doc);
    }

    #[test]
    fn input_fields_are_optional() {
        let doc = json!({
            "execution_id": Uuid::now_v7(), "tenant": "acme", "workflow_name": "wf", "workflow": {},
            "input_key": "executions/x/input.json"
        });
        let spec: AttemptSpec = serde_json::from_value(doc).unwrap();
        assert_eq!(spec.input, None);
        assert_eq!(spec.input_key.as_deref(), Some("executions/x/input.json"));
    }
}
