//! The workflow engine: runs a validated workflow against an input, nodes concurrently as their inputs finish,
//! with `when`, retries, timeouts, the run deadline and cancellation, and reports progress as it goes.
//!
//! The caller supplies the object store (tenant-scoped) and the progress sink; the engine owns the rest.

mod error;
mod http;
mod node;
mod report;
mod reporter;
mod run;
mod store;

#[cfg(test)]
mod tests;

pub use error::NodeError;
pub use http::{DEFAULT_HTTP_TIMEOUT, HttpRunner};
pub use report::{NodeReport, NodeStatus, Outcome, RunReport};
pub use reporter::{ChannelReporter, EngineEvent, NullReporter, Reporter};
pub use run::{Engine, EngineError, EngineSettings};
pub use store::{MemoryObjectStore, ObjectStore, StoreError};
