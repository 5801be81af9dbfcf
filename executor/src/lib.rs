//! flow-like-executor library: runs one attempt of one workflow execution with what a Kubernetes Job gives it
//! (environment, the meta bucket, an append-only Redis user) and reports it on the status streams.

pub mod config;
pub mod engine;
pub mod progress;
pub mod run;
pub mod spec;
pub mod status;
pub mod store;

pub use run::run;
