//! flow-like-dispatcher library.

pub mod config;
pub mod kubernetes;
pub mod reconciler;
