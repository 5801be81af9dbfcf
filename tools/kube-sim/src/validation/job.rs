//! `ValidateJob` (`pkg/apis/batch/validation`): object metadata, the spec's counters, the pod failure policy
//! and the Job-only restart policy rule, around the Pod template checks.

use super::pod;
use flow_like_shared::kube_validation::{
    BadValue, FieldError, Path, validate_annotations, validate_dns1123_subdomain, validate_labels,
};
use serde_json::Value;
use std::collections::HashSet;

const MAX_POD_FAILURE_POLICY_RULES: usize = 20;
const MAX_ON_EXIT_CODES_VALUES: usize = 255;
const MAX_ON_POD_CONDITIONS: usize = 20;
const NEGATIVE: &str = "must be greater than or equal to 0";

pub(super) fn validate(job: &Value, name: &str) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&job["metadata"], name);
    let spec = &job["spec"];
    let spec_path = Path::new("spec");
    for field in ["parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished"] {
        if let Some(value) = spec[field].as_i64()
            && value < 0
        {
            errs.push(FieldError::invalid(&spec_path.child(field), BadValue::Int(value), NEGATIVE));
        }
    }
    if spec["podFailurePolicy"].is_object() {
        errs.extend(validate_pod_failure_policy(spec, &spec_path.child("podFailurePolicy")));
    }
    let template = spec_path.child("template");
    errs.extend(pod::validate_template(&spec["template"], &template));
    // A label the API server adds from the name (job-name) must fit a label value: 63 characters.
    if name.len() > 63 {
        for _ in ["batch.kubernetes.io/job-name", "job-name"] {
            errs.push(FieldError::invalid(
                &template.child("metadata").child("labels"),
                BadValue::Str(name.to_owned()),
                "must be no more than 63 characters",
            ));
        }
    }
    errs.extend(validate_restart_policy(spec, &template.child("spec").child("restartPolicy")));
    errs
}

/// `ValidateObjectMeta` with the Job's name rule (a DNS-1123 subdomain).
fn validate_object_meta(meta: &Value, name: &str) -> Vec<FieldError> {
    let path = Path::new("metadata");
    let mut errs = validate_dns1123_subdomain(name, &path.child("name"));
    errs.extend(validate_labels(&meta["labels"], &path.child("labels")));
    errs.extend(validate_annotations(&meta["annotations"], &path.child("annotations")));
    errs
}

/// The restart policy after defaulting (unset is `Always`): a Job's pods must end.
fn validate_restart_policy(spec: &Value, path: &Path) -> Option<FieldError> {
    let policy = spec["template"]["spec"]["restartPolicy"].as_str().unwrap_or("Always");
    match policy {
        "Always" | "" => Some(FieldError::required(path, "valid values: \"OnFailure\", \"Never\"")),
        "OnFailure" | "Never" if spec["podFailurePolicy"].is_object() && policy != "Never" => {
            Some(FieldError::invalid(
                path,
                BadValue::Str(policy.to_owned()),
                "only \"Never\" is supported when podFailurePolicy is specified",
            ))
        }
        "OnFailure" | "Never" => None,
        other => Some(FieldError::not_supported(path, BadValue::Str(other.to_owned()), &["OnFailure", "Never"])),
    }
}

fn validate_pod_failure_policy(spec: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let rules_path = path.child("rules");
    let rules = spec["podFailurePolicy"]["rules"].as_array().map(Vec::as_slice).unwrap_or_default();
    if rules.len() > MAX_POD_FAILURE_POLICY_RULES {
        errs.push(FieldError::too_many(&rules_path, rules.len(), MAX_POD_FAILURE_POLICY_RULES));
    }
    let pod = &spec["template"]["spec"];
    let containers: HashSet<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|list| pod[*list].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    for (i, rule) in rules.iter().enumerate() {
        errs.extend(validate_rule(rule, &rules_path.index(i), &containers));
    }
    errs
}

fn validate_rule(rule: &Value, path: &Path, containers: &HashSet<&str>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let action_path = path.child("action");
    match rule["action"].as_str().unwrap_or_default() {
        "" => errs.push(FieldError::required(&action_path, "valid values: [\"Count\" \"FailJob\" \"Ignore\"]")),
        "Count" | "FailJob" | "Ignore" => {}
        "FailIndex" => errs.push(FieldError::invalid(
            &action_path,
            BadValue::Str("FailIndex".into()),
            "requires the backoffLimitPerIndex to be set",
        )),
        other => errs.push(FieldError::not_supported(
            &action_path,
            BadValue::Str(other.to_owned()),
            &["Count", "FailJob", "Ignore"],
        )),
    }
    let on_exit_codes = &rule["onExitCodes"];
    let on_conditions = rule["onPodConditions"].as_array().map(Vec::as_slice).unwrap_or_default();
    if on_exit_codes.is_object() {
        errs.extend(validate_on_exit_codes(on_exit_codes, &path.child("onExitCodes"), containers));
    }
    if !on_conditions.is_empty() {
        errs.extend(validate_on_pod_conditions(on_conditions, &path.child("onPodConditions")));
    }
    if on_exit_codes.is_object() && !on_conditions.is_empty() {
        errs.push(FieldError::invalid(
            path,
            BadValue::Omit,
            "specifying both OnExitCodes and OnPodConditions is not supported",
        ));
    }
    if !on_exit_codes.is_object() && on_conditions.is_empty() {
        errs.push(FieldError::invalid(
            path,
            BadValue::Omit,
            "specifying one of OnExitCodes and OnPodConditions is required",
        ));
    }
    errs
}

/// Go's `%#v` of an `[]int32`.
fn go_int32s(values: &[i64]) -> String {
    let items: Vec<String> = values.iter().map(i64::to_string).collect();
    format!("[]int32{{{}}}", items.join(", "))
}

fn validate_on_exit_codes(on: &Value, path: &Path, containers: &HashSet<&str>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let operator = on["operator"].as_str().unwrap_or_default();
    match operator {
        "" => errs.push(FieldError::required(&path.child("operator"), "valid values: [\"In\" \"NotIn\"]")),
        "In" | "NotIn" => {}
        other => errs.push(FieldError::not_supported(
            &path.child("operator"),
            BadValue::Str(other.to_owned()),
            &["In", "NotIn"],
        )),
    }
    if let Some(container) = on["containerName"].as_str()
        && !containers.contains(container)
    {
        errs.push(FieldError::invalid(
            &path.child("containerName"),
            BadValue::Str(container.to_owned()),
            "must be one of the container or initContainer names in the pod template",
        ));
    }
    let values_path = path.child("values");
    let values: Vec<i64> = on["values"].as_array().into_iter().flatten().filter_map(Value::as_i64).collect();
    if values.is_empty() {
        errs.push(FieldError::invalid(
            &values_path,
            BadValue::Go("[]int32(nil)".into()),
            "at least one value is required",
        ));
    } else if values.len() > MAX_ON_EXIT_CODES_VALUES {
        errs.push(FieldError::too_many(&values_path, values.len(), MAX_ON_EXIT_CODES_VALUES));
    }
    let mut seen = HashSet::new();
    for (j, &value) in values.iter().enumerate() {
        if operator == "In" && value == 0 {
            errs.push(FieldError::invalid(
                &values_path.index(j),
                BadValue::Int(0),
                "must not be 0 for the In operator",
            ));
        }
        if !seen.insert(value) {
            errs.push(FieldError::duplicate(&values_path.index(j), BadValue::Int(value)));
        }
    }
    if values.windows(2).any(|pair| pair[0] > pair[1]) {
        errs.push(FieldError::invalid(&values_path, BadValue::Go(go_int32s(&values)), "must be ordered"));
    }
    errs
}

fn validate_on_pod_conditions(patterns: &[Value], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if patterns.len() > MAX_ON_POD_CONDITIONS {
        errs.push(FieldError::too_many(path, patterns.len(), MAX_ON_POD_CONDITIONS));
    }
    for (j, pattern) in patterns.iter().enumerate() {
        let at = path.index(j);
        let kind = pattern["type"].as_str().unwrap_or_default();
        errs.extend(
            flow_like_shared::kube_validation::is_qualified_name(kind)
                .into_iter()
                .map(|m| FieldError::invalid(&at.child("type"), BadValue::Str(kind.to_owned()), m)),
        );
        match pattern["status"].as_str().unwrap_or_default() {
            "" => {
                errs.push(FieldError::required(&at.child("status"), "valid values: [\"False\" \"True\" \"Unknown\"]"))
            }
            "True" | "False" | "Unknown" => {}
            other => errs.push(FieldError::not_supported(
                &at.child("status"),
                BadValue::Str(other.to_owned()),
                &["False", "True", "Unknown"],
            )),
        }
    }
    errs
}
