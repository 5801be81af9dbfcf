//! flow-like-dispatcher library.

pub mod config;
