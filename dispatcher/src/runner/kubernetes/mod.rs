//! The Kubernetes runner and its building blocks: the executor Job manifest, the operator settings it is built
//! from, resource quantities, the rate-limited API client, the shared Job and pod watchers, and the
//! classification of how a Job ended.

pub mod classify;
pub mod client;
pub mod manifest;
pub mod metrics;
pub mod ratelimit;
pub mod runner;
pub mod settings;
pub mod slim;
pub mod watch;

pub use flow_like_shared::quantity;

pub use manifest::{JobSpecInput, ManifestError, job_manifest, job_name, label_selector, render_job_manifest_yaml};
pub use runner::{KubeRunner, KubeRunnerError, RunnerTuning};
pub use settings::{ExecutorEnv, JobSettings, SettingsError};
pub use watch::SweptJob;
