//! The Kubernetes runner's building blocks: the executor Job manifest, the operator settings it is built from,
//! and resource quantities.

pub mod manifest;
pub mod quantity;
pub mod settings;

pub use manifest::{
    CANCELLED_EXIT_CODE, INFRA_FAILURE_EXIT_CODE, JobSpecInput, ManifestError, ResourceOverrides,
    WORKFLOW_FAILED_EXIT_CODE, job_manifest, job_name, label_selector, render_job_manifest_yaml,
};
pub use settings::{ExecutorEnv, JobSettings, SettingsError};
