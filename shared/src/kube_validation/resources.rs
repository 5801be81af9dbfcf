//! A container's `resources` (`ValidateContainerResourceRequirements`): resource names, non-negative
//! quantities, and requests at most their limits.

use super::error::{BadValue, FieldError, Path};
use super::names::is_qualified_name;
use super::quantity::KubeQuantity;
use serde_json::Value;

/// Resource names a container may ask for without a domain prefix (besides `hugepages-*`).
const CONTAINER_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];
/// Other standard resource names: valid somewhere, not in a container.
const OTHER_STANDARD_RESOURCES: &[&str] = &[
    "storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

/// Checks `resources` (a `ResourceRequirements` object) at `path`. Quantities that do not decode are the
/// caller's to refuse first (they fail the request before validation); here they are skipped.
pub fn validate_resource_requirements(resources: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let limits_path = path.child("limits");
    let requests_path = path.child("requests");
    let limits = &resources["limits"];
    for (name, value) in limits.as_object().into_iter().flatten() {
        let field = limits_path.key(name);
        errs.extend(validate_container_resource_name(name, &field));
        if let Ok(q) = KubeQuantity::from_json(value) {
            errs.extend(nonnegative(&q, &field));
        }
    }
    for (name, value) in resources["requests"].as_object().into_iter().flatten() {
        let field = requests_path.key(name);
        errs.extend(validate_container_resource_name(name, &field));
        let Ok(request) = KubeQuantity::from_json(value) else { continue };
        errs.extend(nonnegative(&request, &field));
        let Some(Ok(limit)) = limits.get(name).map(KubeQuantity::from_json) else { continue };
        let value = BadValue::Str(request.as_str().to_owned());
        if request != limit && !overcommit_allowed(name) {
            let detail = format!("must be equal to {name} limit of {}", limit.as_str());
            errs.push(FieldError::invalid(&requests_path, value, detail));
        } else if request > limit {
            let detail = format!("must be less than or equal to {name} limit of {}", limit.as_str());
            errs.push(FieldError::invalid(&requests_path, value, detail));
        }
    }
    errs
}

fn nonnegative(q: &KubeQuantity, path: &Path) -> Option<FieldError> {
    q.is_negative()
        .then(|| FieldError::invalid(path, BadValue::Str(q.as_str().to_owned()), "must be greater than or equal to 0"))
}

/// `validateContainerResourceName`.
fn validate_container_resource_name(name: &str, path: &Path) -> Vec<FieldError> {
    let errs: Vec<FieldError> = is_qualified_name(name)
        .into_iter()
        .map(|m| FieldError::invalid(path, BadValue::Str(name.to_owned()), m))
        .collect();
    if !errs.is_empty() || name.contains('/') {
        return errs;
    }
    let value = BadValue::Str(name.to_owned());
    if CONTAINER_RESOURCES.contains(&name) || name.starts_with("hugepages-") {
        Vec::new()
    } else if OTHER_STANDARD_RESOURCES.contains(&name) {
        vec![FieldError::invalid(path, value, "must be a standard resource for containers")]
    } else {
        vec![FieldError::invalid(path, value, "must be a standard resource type or fully qualified")]
    }
}

/// Native resources other than huge pages may be overcommitted (request below limit); extended resources
/// (`example.com/gpu`) and huge pages may not.
fn overcommit_allowed(name: &str) -> bool {
    let native = !name.contains('/') || name.contains("kubernetes.io/");
    native && !name.starts_with("hugepages-")
}
