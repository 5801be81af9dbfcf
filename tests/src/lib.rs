//! Test support: service launchers, the Kubernetes API simulator, fixtures.
