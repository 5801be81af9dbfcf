//! The API server's validation rules applied to the operator's settings at start-up (the same functions the
//! Kubernetes simulator answers Job creates with, from `flow_like_shared::kube_validation`): a node selector,
//! toleration, affinity, label, annotation, env or volume a real cluster would refuse stops the dispatcher with
//! the setting and the rule, instead of every attempt failing with `422`. The image reference is checked with
//! the kubelet's grammar (a bad one leaves pods in `InvalidImageName`).

use super::{JobSettings, SettingsError};
use flow_like_shared::kube_validation::{
    BadValue, FieldError, Path, is_relaxed_env_var_name, validate_affinity, validate_annotations,
    validate_dns1123_label, validate_labels, validate_tolerations,
};
use serde_json::Value;
use std::collections::HashSet;

/// Every rule over the parsed settings; the first setting with errors is reported with all of its errors.
pub(super) fn check(settings: &JobSettings) -> Result<(), SettingsError> {
    let extras = &settings.pod_extras;
    let checks: [(&'static str, Vec<FieldError>); 8] = [
        ("EXECUTOR_IMAGE", check_image(&settings.image)),
        (
            "EXECUTOR_NODE_SELECTOR",
            validate_labels(&json(&settings.node_selector), &Path::new("EXECUTOR_NODE_SELECTOR")),
        ),
        (
            "EXECUTOR_TOLERATIONS",
            validate_tolerations(&json(&settings.tolerations), &Path::new("EXECUTOR_TOLERATIONS")),
        ),
        ("EXECUTOR_AFFINITY", validate_affinity(&json(&settings.affinity), &Path::new("EXECUTOR_AFFINITY"))),
        ("EXECUTOR_POD_LABELS", validate_labels(&json(&extras.labels), &Path::new("EXECUTOR_POD_LABELS"))),
        (
            "EXECUTOR_POD_ANNOTATIONS",
            validate_annotations(&json(&extras.annotations), &Path::new("EXECUTOR_POD_ANNOTATIONS")),
        ),
        ("EXECUTOR_EXTRA_ENV", check_env_names(&json(&extras.env), &Path::new("EXECUTOR_EXTRA_ENV"))),
        ("EXECUTOR_EXTRA_VOLUMES", check_volume_names(&json(&extras.volumes), &Path::new("EXECUTOR_EXTRA_VOLUMES"))),
    ];
    match checks.into_iter().find(|(_, errs)| !errs.is_empty()) {
        Some((setting, errs)) => Err(SettingsError { setting, reason: describe(setting, &errs) }),
        None => Ok(()),
    }
}

/// The errors as the API server words them; an error on the setting itself drops the repeated name.
fn describe(setting: &str, errs: &[FieldError]) -> String {
    let items: Vec<String> = errs.iter().map(|e| if e.field == setting { e.body() } else { e.to_string() }).collect();
    items.join(", ")
}

/// A parsed setting as the JSON the rules read (`null` when unset).
fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// `ValidateEnv`'s name rule (relaxed since Kubernetes 1.32).
fn check_env_names(env: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, var) in env.as_array().into_iter().flatten().enumerate() {
        let name = var["name"].as_str().unwrap_or_default();
        let at = path.index(i).child("name");
        errs.extend(
            is_relaxed_env_var_name(name).into_iter().map(|m| FieldError::invalid(&at, BadValue::Str(name.into()), m)),
        );
    }
    errs
}

/// `ValidateVolumes`' name rules: DNS-1123 labels, each once.
fn check_volume_names(volumes: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for (i, volume) in volumes.as_array().into_iter().flatten().enumerate() {
        let name = volume["name"].as_str().unwrap_or_default();
        let at = path.index(i).child("name");
        if name.is_empty() {
            errs.push(FieldError::required(&at, ""));
        } else {
            errs.extend(validate_dns1123_label(name, &at));
        }
        if !seen.insert(name.to_owned()) {
            errs.push(FieldError::duplicate(&at, BadValue::Str(name.to_owned())));
        }
    }
    errs
}

/// The image reference grammar of `distribution/reference`, which the kubelet parses every image with:
/// `[domain[:port]/]path[:tag][@digest]`, path components lowercase.
fn check_image(image: &str) -> Vec<FieldError> {
    if is_image_reference(image) {
        return Vec::new();
    }
    vec![FieldError::invalid(
        &Path::new("EXECUTOR_IMAGE"),
        BadValue::Str(image.to_owned()),
        "invalid reference format (the kubelet would leave every executor pod in InvalidImageName)",
    )]
}

fn is_image_reference(image: &str) -> bool {
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    if digest.is_some_and(|d| !is_digest(d)) {
        return false;
    }
    // A tag follows the last `:` after the last `/` (a `:` before it is a registry port).
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
        None => (rest, None),
    };
    if tag.is_some_and(|t| !is_tag(t)) || name.len() > 255 {
        return false;
    }
    let components: Vec<&str> = name.split('/').collect();
    let path = match components.as_slice() {
        [domain, path @ ..] if !path.is_empty() && is_domain_like(domain) => {
            if !is_domain(domain) {
                return false;
            }
            path
        }
        all => all,
    };
    !path.is_empty() && path.iter().all(|c| is_path_component(c))
}

fn is_domain_like(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost" || first.bytes().any(|b| b.is_ascii_uppercase())
}

fn is_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    host.split('.').all(label_ok) && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`.
fn is_path_component(component: &str) -> bool {
    let b = component.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    if !b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')) {
        return false;
    }
    // Separators between alphanumeric runs: one `.`, one or two `_`, or any number of `-`.
    component
        .split(|c: char| c.is_ascii_alphanumeric())
        .filter(|s| !s.is_empty())
        .all(|sep| sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-'))
}

/// `[\w][\w.-]{0,127}`.
fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = tag.as_bytes();
    !b.is_empty() && b.len() <= 128 && word(b[0]) && b.iter().all(|c| word(*c) || matches!(c, b'.' | b'-'))
}

/// `algorithm:hex`, at least 32 hex digits.
fn is_digest(digest: &str) -> bool {
    digest.split_once(':').is_some_and(|(algorithm, hex)| {
        !algorithm.is_empty()
            && algorithm.as_bytes()[0].is_ascii_alphabetic()
            && algorithm.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'.'))
            && hex.len() >= 32
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

#[cfg(test)]
#[path = "settings_rules_tests.rs"]
mod tests;
