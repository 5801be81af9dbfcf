//! Validation of a raw workflow document: every problem is collected with an RFC 6901 JSON Pointer to the bad
//! part, and an accepted document comes back typed, with its jq compiled and its topological order.

use super::checker::{Checker, ValidationError, ValidationErrors, pointer};
use super::graph::{TopoResult, topological_order};
use super::jq::JqProgram;
use super::limits::Limits;
use super::model::Workflow;
use super::params::check_node_body;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Node id that may not be used: the execution input appears under it in every node's view.
pub const RESERVED_NODE_IDS: &[&str] = &["input"];

/// Longest node id.
pub const MAX_NODE_ID_LEN: usize = 64;

/// A document that passed [`validate`].
#[derive(Debug, Clone)]
pub struct ValidatedWorkflow {
    workflow: Workflow,
    order: Vec<String>,
    programs: HashMap<String, Arc<JqProgram>>,
}

impl ValidatedWorkflow {
    pub fn workflow(&self) -> &Workflow {
        &self.workflow
    }

    pub fn into_workflow(self) -> Workflow {
        self.workflow
    }

    /// Node ids, every node after all of its inputs.
    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// The compiled jq expression found at `pointer` in the document, e.g. `/nodes/total/params/expr` or
    /// `/nodes/fan/params/node/when`.
    pub fn program(&self, pointer: &str) -> Option<&Arc<JqProgram>> {
        self.programs.get(pointer)
    }
}

/// `resources`: an object with `cpu` and/or `memory`, each a Kubernetes quantity. Whether it is within the
/// operator's limits is only known where the Job is built; above them, the execution fails naming the limit.
fn check_resources(checker: &mut Checker<'_>, resources: &Value) {
    let Some(object) = resources.as_object() else {
        checker.error("/resources", "must be an object with `cpu` and/or `memory`");
        return;
    };
    checker.unknown_fields("/resources", object, &["cpu", "memory"]);
    for (field, example) in [("cpu", "\"500m\" or \"2\""), ("memory", "\"512Mi\" or \"2Gi\"")] {
        let Some(value) = object.get(field) else { continue };
        if !value.as_str().is_some_and(is_quantity) {
            checker.error(
                pointer("/resources", field),
                format!("must be a Kubernetes quantity such as {example} (a number with an optional suffix n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi or Ei)"),
            );
        }
    }
}

/// A positive Kubernetes quantity (`250m`, `1.5`, `512Mi`, `2G`; not `1e3`), read by the same grammar the
/// dispatcher builds Jobs with (`crate::quantity`), so an accepted workflow never fails later on its `resources`.
pub fn is_quantity(text: &str) -> bool {
    text.len() <= 32 && crate::quantity::Quantity::parse(text).is_ok_and(|q| q.is_positive())
}

/// Checks `doc` against the workflow document contract and `limits`.
pub fn validate(doc: &Value, limits: &Limits) -> Result<ValidatedWorkflow, ValidationErrors> {
    let mut checker = Checker { limits, errors: Vec::new(), programs: HashMap::new() };
    // Depth first, without recursion: everything after it (including measuring the size) walks the document.
    if let Some(deep) = first_too_deep(doc, limits.max_depth) {
        checker.error(deep, format!("document nests deeper than {} levels", limits.max_depth));
        return Err(ValidationErrors(checker.errors));
    }
    let size = serde_json::to_vec(doc).map_or(usize::MAX, |bytes| bytes.len());
    if size > limits.max_document_bytes {
        checker.error("", format!("document is {size} bytes, more than the limit of {}", limits.max_document_bytes));
        return Err(ValidationErrors(checker.errors));
    }
    let Some(root) = doc.as_object() else {
        checker.error("", "a workflow must be a JSON object");
        return Err(ValidationErrors(checker.errors));
    };
    checker.unknown_fields("", root, &["name", "nodes", "output", "deadline_ms", "resources"]);
    if let Some(name) = root.get("name")
        && !name.is_string()
    {
        checker.error("/name", "must be a string");
    }
    if let Some(deadline) = root.get("deadline_ms") {
        checker.positive_u64("/deadline_ms", deadline);
    }
    if let Some(resources) = root.get("resources") {
        check_resources(&mut checker, resources);
    }

    let edges = check_nodes(&mut checker, root.get("nodes"));

    if let Some(output) = root.get("output") {
        match output.as_str() {
            Some(id) if edges.as_ref().is_some_and(|e| !e.contains_key(id)) => {
                checker.error("/output", format!("names node `{id}`, which does not exist"));
            }
            Some(_) => {}
            None => checker.error("/output", "must be a string naming a node"),
        }
    }

    let order = match edges.as_ref().map(topological_order) {
        Some(TopoResult::Order(order)) => order,
        Some(TopoResult::Cycle(cycle)) => {
            let at = pointer(&pointer("/nodes", &cycle[0]), "inputs");
            checker.error(at, format!("cycle: {}", cycle.join(" -> ")));
            Vec::new()
        }
        None => Vec::new(),
    };

    if !checker.errors.is_empty() {
        return Err(ValidationErrors(checker.errors));
    }
    match serde_json::from_value::<Workflow>(doc.clone()) {
        Ok(workflow) => Ok(ValidatedWorkflow { workflow, order, programs: checker.programs }),
        // The checks above mirror the typed model; this only fires if they drift apart.
        Err(err) => Err(ValidationErrors(vec![ValidationError { pointer: String::new(), message: err.to_string() }])),
    }
}

/// Checks `/nodes` and returns each node id's inputs (as written, for the graph checks), or `None` when
/// `/nodes` itself is unusable.
fn check_nodes(checker: &mut Checker<'_>, nodes: Option<&Value>) -> Option<BTreeMap<String, Vec<String>>> {
    let Some(nodes) = nodes else {
        checker.error("/nodes", "missing field `nodes`");
        return None;
    };
    let Some(nodes) = nodes.as_object() else {
        checker.error("/nodes", "must be an object mapping node ids to nodes");
        return None;
    };
    if nodes.is_empty() {
        checker.error("/nodes", "a workflow needs at least one node");
    }
    if nodes.len() > checker.limits.max_nodes {
        checker.error("/nodes", format!("{} nodes, more than the limit of {}", nodes.len(), checker.limits.max_nodes));
        return None;
    }
    let mut edges = BTreeMap::new();
    for (id, node) in nodes {
        let at = pointer("/nodes", id);
        if let Err(problem) = check_node_id(id) {
            checker.error(at.clone(), problem);
        }
        let inputs = check_graph_node(checker, &at, id, node, nodes);
        edges.insert(id.clone(), inputs);
    }
    Some(edges)
}

/// Node ids are 1 to [`MAX_NODE_ID_LEN`] characters of `[A-Za-z0-9_-]`, starting with a letter or `_`.
pub fn check_node_id(id: &str) -> Result<(), String> {
    let mut chars = id.chars();
    let valid_first = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let valid_rest = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_first || !valid_rest || id.len() > MAX_NODE_ID_LEN {
        return Err(format!(
            "invalid node id `{id}`: use 1 to {MAX_NODE_ID_LEN} characters of letters, digits, `_` and `-`, starting with a letter or `_`"
        ));
    }
    if RESERVED_NODE_IDS.contains(&id) {
        return Err(format!("node id `{id}` is reserved: the execution input appears under it in every node's view"));
    }
    Ok(())
}

/// Checks one top-level node and returns its (string) inputs.
fn check_graph_node(
    checker: &mut Checker<'_>,
    at: &str,
    id: &str,
    node: &Value,
    nodes: &Map<String, Value>,
) -> Vec<String> {
    let Some(object) = node.as_object() else {
        checker.error(at, "a node must be an object");
        return Vec::new();
    };
    checker.unknown_fields(at, object, &["type", "params", "inputs", "when", "retry", "timeout_ms"]);
    check_node_body(checker, at, object);

    let mut inputs = Vec::new();
    let Some(raw_inputs) = object.get("inputs") else {
        return inputs;
    };
    let inputs_at = pointer(at, "inputs");
    let Some(list) = raw_inputs.as_array() else {
        checker.error(inputs_at, "must be an array of node ids");
        return inputs;
    };
    let is_map = object.get("type").and_then(Value::as_str) == Some("map");
    let mut seen = BTreeSet::new();
    for (index, entry) in list.iter().enumerate() {
        let entry_at = pointer(&inputs_at, &index.to_string());
        let Some(dep) = entry.as_str() else {
            checker.error(entry_at, "must be a string naming a node");
            continue;
        };
        if dep == id {
            checker.error(entry_at, format!("node `{id}` cannot take itself as input"));
        } else if !nodes.contains_key(dep) {
            checker.error(entry_at, format!("names node `{dep}`, which does not exist"));
        } else if !seen.insert(dep) {
            checker.error(entry_at, format!("node `{dep}` is listed twice"));
        } else if is_map && (dep == "item" || dep == "index") {
            checker.error(
                entry_at,
                format!("a map node cannot take `{dep}` as input: its inner node's view uses that name"),
            );
        } else {
            inputs.push(dep.to_owned());
        }
    }
    inputs
}

/// Pointer to the first value nested deeper than `max_depth` (the document itself is depth 1), found with an
/// explicit stack.
fn first_too_deep(doc: &Value, max_depth: usize) -> Option<String> {
    let mut stack: Vec<(&Value, usize, String)> = vec![(doc, 1, String::new())];
    while let Some((value, depth, at)) = stack.pop() {
        let children: Box<dyn Iterator<Item = (String, &Value)>> = match value {
            Value::Array(items) => Box::new(items.iter().enumerate().map(|(i, v)| (i.to_string(), v))),
            Value::Object(map) => Box::new(map.iter().map(|(k, v)| (k.clone(), v))),
            _ => continue,
        };
        if depth > max_depth {
            return Some(at);
        }
        for (token, child) in children {
            if child.is_array() || child.is_object() {
                stack.push((child, depth + 1, pointer(&at, &token)));
            }
        }
    }
    None
}
