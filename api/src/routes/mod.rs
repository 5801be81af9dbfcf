//! The HTTP routes, one module per resource. Each route module depends only downwards (on `params`, `body`,
//! `error`, `views`, `rules`, `submit`, `redrive`, ...), never on a sibling; the router that mounts them is
//! `crate::app`.

pub mod admin;
pub mod bulk;
pub mod dead_letters;
pub mod execution_events;
pub mod execution_logs;
pub mod execution_ops;
pub mod executions;
pub mod health;
pub mod queue;
pub mod workflows;
