//! What the integration tests (`tests/tests/*.rs`) share beyond the tools crates: builder-style fixtures, ways to
//! look at what the product did, a scripted runner and an OTLP receiver.
//!
//! The servers come from `flow-like-test-services` (PostgreSQL, Redis, S3), the API and dispatchers from
//! `flow-like-test-harness`, the Kubernetes API simulator from `flow-like-kube-sim`; none of them depends on
//! this crate.

pub mod cli;
pub mod fixtures;
pub mod inspect;
pub mod otlp;
pub mod scripted_runner;
pub mod seed;
pub mod sse;
