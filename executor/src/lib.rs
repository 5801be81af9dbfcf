//! flow-like-executor library.

pub mod config;
pub mod engine;
