//! The workflow document (DESIGN.md, "Workflow document"): its typed model, its validation with JSON Pointers
//! to every problem, and the jq programs its expressions compile to. docs/workflows.md is the user reference.

mod checker;
mod graph;
pub mod jq;
mod limits;
mod model;
mod params;
mod validate;

#[cfg(test)]
mod tests;

pub use checker::{ValidationError, ValidationErrors};
pub use limits::Limits;
pub use model::{
    FailParams, HttpMethod, HttpRequestParams, InnerNode, LogLevel, LogParams, MapParams, Node, NodeControl, NodeKind,
    ObjectGetParams, ObjectPutParams, Resources, RetryPolicy, SleepParams, TransformParams, Workflow,
};
pub use params::{MAX_OBJECT_KEY_BYTES, check_object_key};
pub use validate::{MAX_NODE_ID_LEN, RESERVED_NODE_IDS, ValidatedWorkflow, check_node_id, validate};
