//! Bounds a workflow document must stay within; checked by validation, and (for map fan-out) by the engine.

use serde::{Deserialize, Serialize};

/// Bounds on a workflow document. `Limits::default()` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Most nodes in `nodes` (inner nodes of `map` not counted).
    pub max_nodes: usize,
    /// Largest `parallelism` a `map` node may ask for.
    pub max_map_parallelism: u32,
    /// Most elements a `map` node may fan out to; enforced by the engine when the array is known.
    pub max_map_items: usize,
    /// Largest document, measured as compact serialized JSON.
    pub max_document_bytes: usize,
    /// Deepest JSON nesting of the document (the top-level object is depth 1).
    pub max_depth: usize,
    /// Longest jq expression, in bytes.
    pub max_expression_bytes: usize,
    /// Largest `retry.max_attempts`.
    pub max_attempts: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_nodes: 500,
            max_map_parallelism: 64,
            max_map_items: 10_000,
            max_document_bytes: 256 * 1024,
            max_depth: 32,
            max_expression_bytes: 4 * 1024,
            max_attempts: 10,
        }
    }
}
