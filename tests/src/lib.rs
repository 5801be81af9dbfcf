//! Test support: service launchers, the Kubernetes API simulator, fixtures.

pub mod services;
pub mod kube_sim;
pub mod api;
pub mod loadgen;
