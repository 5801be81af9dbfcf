//! The API server's own validation of Job creates, beyond the JSON schema: `ValidateJob` with the Pod template
//! checks of `pkg/apis/core/validation` for the fields flow-like uses, answering with the real causes and
//! message. The rules shared with the dispatcher's start-up checks live in `flow_like_shared::kube_validation`.

mod job;
mod pod;
mod strict;

pub(crate) use strict::{FieldValidation, UnknownFields};

use flow_like_shared::kube_validation::{FieldError, KubeQuantity};
use serde_json::Value;

/// One `StatusCause` of a `422 Invalid` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cause {
    pub reason: &'static str,
    pub field: String,
    /// The error without its field (`ErrorBody()`).
    pub message: String,
}

impl Cause {
    /// A schema violation: reported as an invalid value at the offending JSON pointer.
    pub fn schema(pointer: String, message: String) -> Self {
        Self { reason: "FieldValueInvalid", field: pointer, message }
    }

    /// `field: message`, one item of the answer's message.
    pub fn summary(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

impl From<FieldError> for Cause {
    fn from(e: FieldError) -> Self {
        Self { reason: e.kind.reason(), message: e.body(), field: e.field }
    }
}

/// The message of a `400` for a Job body that cannot be decoded: the API server decodes quantities while it
/// reads the body, so an unparsable one fails the request before any validation.
pub(crate) fn decode_error(job: &Value) -> Option<String> {
    let err = quantities(job).into_iter().find_map(|q| KubeQuantity::from_json(q).err())?;
    Some(format!("Job in version \"v1\" cannot be handled as a Job: {err}"))
}

fn quantities(job: &Value) -> Vec<&Value> {
    let pod = &job["spec"]["template"]["spec"];
    let mut found = Vec::new();
    for list in ["containers", "initContainers"] {
        for container in pod[list].as_array().into_iter().flatten() {
            for part in ["limits", "requests"] {
                found.extend(container["resources"][part].as_object().into_iter().flat_map(|m| m.values()));
            }
        }
    }
    for volume in pod["volumes"].as_array().into_iter().flatten() {
        let size = &volume["emptyDir"]["sizeLimit"];
        if !size.is_null() {
            found.push(size);
        }
    }
    found
}

/// Every field error of a Job create named `name`, in the order kube-apiserver reports them.
pub(crate) fn validate_job(job: &Value, name: &str) -> Vec<FieldError> {
    job::validate(job, name)
}
