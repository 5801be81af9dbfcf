//! `ValidatePodTemplateSpec` for the fields flow-like's Jobs use: template metadata, volumes, containers
//! (names, image, env, envFrom, mounts, pull policy, resources, security context), restart policy, node
//! selector, security context, affinity, tolerations and the names of referenced objects.

use flow_like_shared::kube_validation::{
    BadValue, FieldError, Path, is_relaxed_env_var_name, validate_affinity, validate_annotations,
    validate_dns1123_label, validate_dns1123_subdomain, validate_labels, validate_resource_requirements,
    validate_tolerations,
};
use serde_json::Value;
use std::collections::HashSet;

/// Volume sources a pod template may name; exactly one per volume.
const VOLUME_SOURCES: &[&str] = &[
    "emptyDir",
    "secret",
    "configMap",
    "projected",
    "downwardAPI",
    "persistentVolumeClaim",
    "hostPath",
    "csi",
    "ephemeral",
    "nfs",
    "image",
];
const USER_ID_RANGE: &str = "must be between 0 and 2147483647, inclusive";

fn items(value: &Value) -> impl Iterator<Item = (usize, &Value)> {
    value.as_array().into_iter().flatten().enumerate()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

pub(super) fn validate_template(template: &Value, path: &Path) -> Vec<FieldError> {
    let meta = path.child("metadata");
    let mut errs = validate_annotations(&template["metadata"]["annotations"], &meta.child("annotations"));
    errs.extend(validate_labels(&template["metadata"]["labels"], &meta.child("labels")));
    errs.extend(validate_pod_spec(&template["spec"], &path.child("spec")));
    errs
}

fn validate_pod_spec(spec: &Value, path: &Path) -> Vec<FieldError> {
    let (volumes, mut errs) = validate_volumes(&spec["volumes"], &path.child("volumes"));
    errs.extend(validate_containers(&spec["containers"], &volumes, &path.child("containers")));
    let policy = spec["restartPolicy"].as_str().unwrap_or("Always");
    if !matches!(policy, "Always" | "OnFailure" | "Never") {
        errs.push(FieldError::not_supported(
            &path.child("restartPolicy"),
            BadValue::Str(policy.to_owned()),
            &["Always", "OnFailure", "Never"],
        ));
    }
    errs.extend(validate_labels(&spec["nodeSelector"], &path.child("nodeSelector")));
    errs.extend(validate_pod_security_context(&spec["securityContext"], &path.child("securityContext")));
    if spec["affinity"].is_object() {
        errs.extend(validate_affinity(&spec["affinity"], &path.child("affinity")));
    }
    for field in ["serviceAccountName", "priorityClassName", "runtimeClassName"] {
        if let Some(name) = spec[field].as_str().filter(|n| !n.is_empty()) {
            errs.extend(validate_dns1123_subdomain(name, &path.child(field)));
        }
    }
    if let Some(seconds) = spec["activeDeadlineSeconds"].as_i64()
        && !(1..=i64::from(i32::MAX)).contains(&seconds)
    {
        errs.push(FieldError::invalid(
            &path.child("activeDeadlineSeconds"),
            BadValue::Int(seconds),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    errs.extend(validate_tolerations(&spec["tolerations"], &path.child("tolerations")));
    errs
}

/// `ValidateVolumes`: the names of the volumes that passed (mounts may only name those) and the errors.
fn validate_volumes(volumes: &Value, path: &Path) -> (HashSet<String>, Vec<FieldError>) {
    let mut names = HashSet::new();
    let mut errs = Vec::new();
    for (i, volume) in items(volumes) {
        let at = path.index(i);
        let name = text(&volume["name"]);
        let mut own = validate_volume_source(volume, &at);
        if name.is_empty() {
            own.push(FieldError::required(&at.child("name"), ""));
        } else {
            own.extend(validate_dns1123_label(name, &at.child("name")));
        }
        if names.contains(name) {
            own.push(FieldError::duplicate(&at.child("name"), BadValue::Str(name.to_owned())));
        }
        if own.is_empty() {
            names.insert(name.to_owned());
        }
        errs.extend(own);
    }
    (names, errs)
}

fn validate_volume_source(volume: &Value, path: &Path) -> Vec<FieldError> {
    let sources: Vec<&str> = VOLUME_SOURCES.iter().copied().filter(|s| !volume[*s].is_null()).collect();
    let mut errs = Vec::new();
    match sources.as_slice() {
        [] => errs.push(FieldError::required(path, "must specify a volume type")),
        [_] => {}
        [_, rest @ ..] => {
            for extra in rest {
                errs.push(FieldError::forbidden(&path.child(extra), "may not specify more than 1 volume type"));
            }
        }
    }
    if volume["secret"].is_object() && text(&volume["secret"]["secretName"]).is_empty() {
        errs.push(FieldError::required(&path.child("secret").child("secretName"), ""));
    }
    if volume["configMap"].is_object() && text(&volume["configMap"]["name"]).is_empty() {
        errs.push(FieldError::required(&path.child("configMap").child("name"), ""));
    }
    errs
}

fn validate_containers(containers: &Value, volumes: &HashSet<String>, path: &Path) -> Vec<FieldError> {
    if containers.as_array().is_none_or(Vec::is_empty) {
        return vec![FieldError::required(path, "")];
    }
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    for (i, container) in items(containers) {
        let at = path.index(i);
        errs.extend(validate_container(container, volumes, &at));
        let name = text(&container["name"]);
        if !names.insert(name) {
            errs.push(FieldError::duplicate(&at.child("name"), BadValue::Str(name.to_owned())));
        }
    }
    errs
}

/// `validateContainerCommon` plus the image requirement of regular containers.
fn validate_container(container: &Value, volumes: &HashSet<String>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = text(&container["name"]);
    if name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else {
        errs.extend(validate_dns1123_label(name, &path.child("name")));
    }
    if text(&container["image"]).is_empty() {
        errs.push(FieldError::required(&path.child("image"), ""));
    }
    errs.extend(validate_env(&container["env"], &path.child("env")));
    errs.extend(validate_env_from(&container["envFrom"], &path.child("envFrom")));
    errs.extend(validate_volume_mounts(&container["volumeMounts"], volumes, &path.child("volumeMounts")));
    if let Some(policy) = container["imagePullPolicy"].as_str()
        && !matches!(policy, "Always" | "IfNotPresent" | "Never")
    {
        errs.push(FieldError::not_supported(
            &path.child("imagePullPolicy"),
            BadValue::Str(policy.to_owned()),
            &["Always", "IfNotPresent", "Never"],
        ));
    }
    if let Some(policy) = container["terminationMessagePolicy"].as_str()
        && !matches!(policy, "File" | "FallbackToLogsOnError")
    {
        errs.push(FieldError::not_supported(
            &path.child("terminationMessagePolicy"),
            BadValue::Str(policy.to_owned()),
            &["File", "FallbackToLogsOnError"],
        ));
    }
    if container["resources"].is_object() {
        errs.extend(validate_resource_requirements(&container["resources"], &path.child("resources")));
    }
    errs.extend(validate_ids(
        &container["securityContext"],
        &path.child("securityContext"),
        &["runAsUser", "runAsGroup"],
    ));
    errs
}

/// `ValidateEnv` with the relaxed name rule of Kubernetes 1.32 and later.
fn validate_env(env: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, var) in items(env) {
        let at = path.index(i);
        let name = text(&var["name"]);
        if name.is_empty() {
            errs.push(FieldError::required(&at.child("name"), ""));
        }
        errs.extend(
            is_relaxed_env_var_name(name)
                .into_iter()
                .map(|m| FieldError::invalid(&at.child("name"), BadValue::Str(name.to_owned()), m)),
        );
        let from = &var["valueFrom"];
        if from.is_object() {
            let from_path = at.child("valueFrom");
            if !text(&var["value"]).is_empty() {
                errs.push(FieldError::invalid(
                    &from_path,
                    BadValue::Str(String::new()),
                    "may not be specified when `value` is not empty",
                ));
            }
            let selector = &from["secretKeyRef"];
            if selector.is_object() {
                for field in ["name", "key"] {
                    if text(&selector[field]).is_empty() {
                        errs.push(FieldError::required(&from_path.child("secretKeyRef").child(field), ""));
                    }
                }
            }
        }
    }
    errs
}

fn validate_env_from(env_from: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, source) in items(env_from) {
        let at = path.index(i);
        if let Some(prefix) = source["prefix"].as_str().filter(|p| !p.is_empty()) {
            errs.extend(
                is_relaxed_env_var_name(prefix)
                    .into_iter()
                    .map(|m| FieldError::invalid(&at.child("prefix"), BadValue::Str(prefix.to_owned()), m)),
            );
        }
        let refs: Vec<&str> = ["configMapRef", "secretRef"].into_iter().filter(|r| source[*r].is_object()).collect();
        match refs.as_slice() {
            [] => errs.push(FieldError::invalid(
                &at,
                BadValue::Str(String::new()),
                "must specify one of: `configMapRef` or `secretRef`",
            )),
            [only] if text(&source[*only]["name"]).is_empty() => {
                errs.push(FieldError::required(&at.child(only).child("name"), ""));
            }
            [_] => {}
            _ => errs.push(FieldError::invalid(
                &at,
                BadValue::Str(String::new()),
                "may not have more than one field specified at a time",
            )),
        }
    }
    errs
}

fn validate_volume_mounts(mounts: &Value, volumes: &HashSet<String>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut mount_paths = HashSet::new();
    for (i, mount) in items(mounts) {
        let at = path.index(i);
        let name = text(&mount["name"]);
        if name.is_empty() {
            errs.push(FieldError::required(&at.child("name"), ""));
        }
        if !volumes.contains(name) {
            errs.push(FieldError::not_found(&at.child("name"), BadValue::Str(name.to_owned())));
        }
        let mount_path = text(&mount["mountPath"]);
        if mount_path.is_empty() {
            errs.push(FieldError::required(&at.child("mountPath"), ""));
        }
        if !mount_paths.insert(mount_path) {
            errs.push(FieldError::invalid(
                &at.child("mountPath"),
                BadValue::Str(mount_path.to_owned()),
                "must be unique",
            ));
        }
    }
    errs
}

/// User and group ids of a security context: 0 to 2^31 - 1.
fn validate_ids(context: &Value, path: &Path, fields: &[&str]) -> Vec<FieldError> {
    fields
        .iter()
        .filter_map(|field| {
            let id = context[*field].as_i64()?;
            (!(0..=i64::from(i32::MAX)).contains(&id))
                .then(|| FieldError::invalid(&path.child(field), BadValue::Int(id), USER_ID_RANGE))
        })
        .collect()
}

/// `validatePodSpecSecurityContext`: fsGroup, runAsUser, runAsGroup, supplementalGroups.
fn validate_pod_security_context(context: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = validate_ids(context, path, &["fsGroup", "runAsUser", "runAsGroup"]);
    for (g, gid) in items(&context["supplementalGroups"]) {
        if let Some(gid) = gid.as_i64().filter(|g| !(0..=i64::from(i32::MAX)).contains(g)) {
            errs.push(FieldError::invalid(
                &path.child("supplementalGroups").index(g),
                BadValue::Int(gid),
                USER_ID_RANGE,
            ));
        }
    }
    errs
}
