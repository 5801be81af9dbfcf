//! Where a pod may run: tolerations, node affinity, pod (anti-)affinity and their label selectors, as
//! `ValidateTolerations`, `validateAffinity` and `ValidateLabelSelector` check them.

use super::error::{BadValue, FieldError, Path, go_quote};
use super::names::{is_label_value, is_qualified_name, validate_labels};
use serde_json::Value;

const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

fn str_value(value: &Value) -> BadValue {
    BadValue::Str(text(value).to_owned())
}

fn items(value: &Value) -> impl Iterator<Item = (usize, &Value)> {
    value.as_array().into_iter().flatten().enumerate()
}

/// `ValidateLabelName`: a key (label, toleration, topology) must be a qualified name.
fn validate_label_name(name: &str, path: &Path) -> Vec<FieldError> {
    is_qualified_name(name).into_iter().map(|m| FieldError::invalid(path, BadValue::Str(name.to_owned()), m)).collect()
}

/// Go's `%#v` of an internal `core.Toleration`, the value the API server prints when an `Exists` toleration
/// has a value. A set `tolerationSeconds` is a pointer Go prints as an address; a fixed one stands in for it.
fn go_toleration(t: &Value) -> String {
    let seconds = if t["tolerationSeconds"].is_null() { "(*int64)(nil)" } else { "(*int64)(0xc000000000)" };
    format!(
        "core.Toleration{{Key:{}, Operator:{}, Value:{}, Effect:{}, TolerationSeconds:{seconds}}}",
        go_quote(text(&t["key"])),
        go_quote(text(&t["operator"])),
        go_quote(text(&t["value"])),
        go_quote(text(&t["effect"])),
    )
}

/// `ValidateTolerations` over a JSON array of tolerations.
pub fn validate_tolerations(tolerations: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, t) in items(tolerations) {
        let at = path.index(i);
        let (key, operator, value, effect) =
            (text(&t["key"]), text(&t["operator"]), text(&t["value"]), text(&t["effect"]));
        if !key.is_empty() {
            errs.extend(validate_label_name(key, &at.child("key")));
        }
        if key.is_empty() && operator != "Exists" {
            errs.push(FieldError::invalid(
                &at.child("operator"),
                str_value(&t["operator"]),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if !t["tolerationSeconds"].is_null() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                &at.child("effect"),
                str_value(&t["effect"]),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "" | "Equal" => {
                let problems = is_label_value(value);
                if !problems.is_empty() {
                    errs.push(FieldError::invalid(
                        &at.child("operator"),
                        BadValue::Str(value.to_owned()),
                        problems.join(";"),
                    ));
                }
            }
            "Exists" if !value.is_empty() => errs.push(FieldError::invalid(
                &at.child("operator"),
                BadValue::Go(go_toleration(t)),
                "value must be empty when `operator` is 'Exists'",
            )),
            "Exists" => {}
            _ => errs.push(FieldError::not_supported(
                &at.child("operator"),
                BadValue::Str(operator.to_owned()),
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            errs.push(FieldError::not_supported(&at.child("effect"), BadValue::Str(effect.to_owned()), TAINT_EFFECTS));
        }
    }
    errs
}

/// `validateAffinity`: node affinity, pod affinity and pod anti-affinity.
pub fn validate_affinity(affinity: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let node = &affinity["nodeAffinity"];
    if node.is_object() {
        let at = path.child("nodeAffinity");
        let required = &node["requiredDuringSchedulingIgnoredDuringExecution"];
        if required.is_object() {
            errs.extend(validate_node_selector(required, &at.child("requiredDuringSchedulingIgnoredDuringExecution")));
        }
        let preferred_path = at.child("preferredDuringSchedulingIgnoredDuringExecution");
        for (i, term) in items(&node["preferredDuringSchedulingIgnoredDuringExecution"]) {
            errs.extend(validate_weight(&term["weight"], &preferred_path.index(i).child("weight")));
            errs.extend(validate_node_selector_term(
                &term["preference"],
                false,
                &preferred_path.index(i).child("preference"),
            ));
        }
    }
    for field in ["podAffinity", "podAntiAffinity"] {
        let pod = &affinity[field];
        if !pod.is_object() {
            continue;
        }
        let at = path.child(field);
        let required_path = at.child("requiredDuringSchedulingIgnoredDuringExecution");
        for (i, term) in items(&pod["requiredDuringSchedulingIgnoredDuringExecution"]) {
            errs.extend(validate_pod_affinity_term(term, &required_path.index(i)));
        }
        let preferred_path = at.child("preferredDuringSchedulingIgnoredDuringExecution");
        for (i, term) in items(&pod["preferredDuringSchedulingIgnoredDuringExecution"]) {
            errs.extend(validate_weight(&term["weight"], &preferred_path.index(i).child("weight")));
            errs.extend(validate_pod_affinity_term(
                &term["podAffinityTerm"],
                &preferred_path.index(i).child("podAffinityTerm"),
            ));
        }
    }
    errs
}

fn validate_weight(weight: &Value, path: &Path) -> Option<FieldError> {
    let w = weight.as_i64().unwrap_or(0);
    (w <= 0 || w > 100).then(|| FieldError::invalid(path, BadValue::Int(w), "must be in the range 1-100"))
}

/// `ValidateNodeSelector` (the required node affinity).
fn validate_node_selector(selector: &Value, path: &Path) -> Vec<FieldError> {
    let terms_path = path.child("nodeSelectorTerms");
    if selector["nodeSelectorTerms"].as_array().is_none_or(Vec::is_empty) {
        return vec![FieldError::required(&terms_path, "must have at least one node selector term")];
    }
    items(&selector["nodeSelectorTerms"])
        .flat_map(|(i, term)| validate_node_selector_term(term, true, &terms_path.index(i)))
        .collect()
}

fn validate_node_selector_term(term: &Value, check_values: bool, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (j, req) in items(&term["matchExpressions"]) {
        errs.extend(validate_node_selector_requirement(req, check_values, &path.child("matchExpressions").index(j)));
    }
    for (j, req) in items(&term["matchFields"]) {
        errs.extend(validate_node_field_selector_requirement(req, &path.child("matchFields").index(j)));
    }
    errs
}

fn values_len(req: &Value) -> usize {
    req["values"].as_array().map_or(0, Vec::len)
}

/// `ValidateNodeSelectorRequirement`.
fn validate_node_selector_requirement(req: &Value, check_values: bool, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let values = path.child("values");
    match text(&req["operator"]) {
        "In" | "NotIn" if values_len(req) == 0 => {
            errs.push(FieldError::required(&values, "must be specified when `operator` is 'In' or 'NotIn'"));
        }
        "Exists" | "DoesNotExist" if values_len(req) > 0 => errs
            .push(FieldError::forbidden(&values, "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")),
        "Gt" | "Lt" if values_len(req) != 1 => {
            errs.push(FieldError::required(&values, "must be specified single value when `operator` is 'Lt' or 'Gt'"))
        }
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
        other => errs.push(FieldError::invalid(
            &path.child("operator"),
            BadValue::Str(other.to_owned()),
            "not a valid selector operator",
        )),
    }
    errs.extend(validate_label_name(text(&req["key"]), &path.child("key")));
    if check_values {
        errs.extend(label_values(req, &values));
    }
    errs
}

fn label_values(req: &Value, path: &Path) -> Vec<FieldError> {
    items(&req["values"])
        .flat_map(|(i, v)| {
            is_label_value(text(v)).into_iter().map(move |m| FieldError::invalid(&path.index(i), str_value(v), m))
        })
        .collect()
}

/// `validateNodeFieldSelectorRequirement`: only `metadata.name`, with one value for `In`/`NotIn`.
fn validate_node_field_selector_requirement(req: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match text(&req["operator"]) {
        "In" | "NotIn" if values_len(req) != 1 => errs.push(FieldError::required(
            &path.child("values"),
            "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
        )),
        "In" | "NotIn" => {}
        other => errs.push(FieldError::invalid(
            &path.child("operator"),
            BadValue::Str(other.to_owned()),
            "not a valid selector operator",
        )),
    }
    if text(&req["key"]) != "metadata.name" {
        errs.push(FieldError::invalid(&path.child("key"), str_value(&req["key"]), "not a valid field selector key"));
    }
    errs
}

/// `validatePodAffinityTerm`: its selectors and a topology key.
fn validate_pod_affinity_term(term: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for selector in ["labelSelector", "namespaceSelector"] {
        if term[selector].is_object() {
            errs.extend(validate_label_selector(&term[selector], &path.child(selector)));
        }
    }
    let topology_key = text(&term["topologyKey"]);
    if topology_key.is_empty() {
        errs.push(FieldError::required(&path.child("topologyKey"), "can not be empty"));
    }
    errs.extend(validate_label_name(topology_key, &path.child("topologyKey")));
    errs
}

/// `ValidateLabelSelector` (`metav1.LabelSelector`).
pub fn validate_label_selector(selector: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = validate_labels(&selector["matchLabels"], &path.child("matchLabels"));
    for (i, req) in items(&selector["matchExpressions"]) {
        let at = path.child("matchExpressions").index(i);
        let values = at.child("values");
        match text(&req["operator"]) {
            "In" | "NotIn" if values_len(req) == 0 => {
                errs.push(FieldError::required(&values, "must be specified when `operator` is 'In' or 'NotIn'"));
            }
            "Exists" | "DoesNotExist" if values_len(req) > 0 => errs.push(FieldError::forbidden(
                &values,
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(FieldError::invalid(
                &at.child("operator"),
                BadValue::Str(other.to_owned()),
                "not a valid selector operator",
            )),
        }
        errs.extend(validate_label_name(text(&req["key"]), &at.child("key")));
        errs.extend(label_values(req, &values));
    }
    errs
}
