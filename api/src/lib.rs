//! flow-like-api library.

pub mod config;
