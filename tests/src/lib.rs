//! Test support: service launchers, the Kubernetes API simulator, fixtures.

pub mod api;
pub mod kube_sim;
pub mod loadgen;
pub mod otlp;
pub mod services;
pub mod stack;
pub mod tls;
