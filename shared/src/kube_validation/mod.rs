//! The Kubernetes API server's validation rules for the Pod-template fields flow-like sets (names, labels,
//! annotations, tolerations, affinity, resource quantities and requirements), ported from kube-apiserver
//! (`apimachinery/pkg/util/validation`, `pkg/apis/core/validation`) with its exact messages. Two users: the
//! Kubernetes simulator answers invalid Jobs with the real `422` causes, and the dispatcher checks the operator's
//! settings at start-up with the same rules, so a setting a real cluster would refuse stops the dispatcher
//! instead of failing every attempt. The rules work on JSON values so neither user needs the other's types.

mod error;
mod names;
mod quantity;
mod resources;
mod scheduling;

pub use error::{BadValue, ErrorType, FieldError, Path};
pub use names::{
    is_dns1123_label, is_dns1123_subdomain, is_label_value, is_qualified_name, is_relaxed_env_var_name,
    validate_annotations, validate_dns1123_label, validate_dns1123_subdomain, validate_labels,
};
pub use quantity::{KubeQuantity, QuantityDecodeError};
pub use resources::validate_resource_requirements;
pub use scheduling::{validate_affinity, validate_label_selector, validate_tolerations};

#[cfg(test)]
mod tests;
