//! The product's own services on one machine, for the integration tests and the load generator: the API in this
//! process on the shared service pool ([`api::TestApi`]) and dispatchers in this process or as real child
//! processes ([`dispatcher`]), with the real executor binary.
//!
//! It sits between `flow-like-test-services` (PostgreSQL, Redis, S3) and its two users, `flow-like-tests` and
//! `flow-like-loadgen`, so the load generator never depends on the integration-test crate.

pub mod api;
pub mod dispatcher;

pub use api::{ADMIN_TOKEN, TestApi};
pub use dispatcher::{DispatcherArgs, DispatcherProcess, InProcessDispatcher, workspace_binary};
