//! flow-like-executor library.

pub mod config;
