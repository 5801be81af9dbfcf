//! The executor Job manifest: one pure function from (execution attempt, operator settings) to a `batch/v1`
//! Job, plus the Job's deterministic name and the label selector the watcher uses.

use super::quantity::{Quantity, QuantityError};
use super::settings::{JobSettings, is_dns1123_label};
use flow_like_shared::status::exit_code;
use flow_like_shared::workflow::Resources;
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyOnPodConditionsPattern,
    PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar, LocalObjectReference, PodSecurityContext,
    PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, SecretEnvSource, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Name of the executor container; the pod failure policy matches exit codes of this container only.
pub const CONTAINER_NAME: &str = "executor";
/// Seconds added to a workflow's own deadline so the executor can report its timeout before the kill.
pub const DEADLINE_GRACE_SECS: i64 = 30;
/// User and group the executor runs as (the distroless `nonroot` user).
pub const EXECUTOR_UID: i64 = 65532;

/// Labels every executor Job and pod carries.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
pub const LABEL_EXECUTION: &str = "flow-like.dev/execution";
pub const LABEL_TENANT: &str = "flow-like.dev/tenant";
pub const LABEL_WORKFLOW: &str = "flow-like.dev/workflow";
pub const LABEL_ATTEMPT: &str = "flow-like.dev/attempt";

const APP_NAME: &str = "flow-like-executor";
const COMPONENT: &str = "executor";
const MANAGED_BY: &str = "flow-like-dispatcher";
const PART_OF: &str = "flow-like";

/// One execution attempt to run as a Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpecInput {
    pub execution_id: Uuid,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub tenant: String,
    pub workflow: String,
    /// The workflow's own deadline; the Job gets it (rounded up to seconds) plus [`DEADLINE_GRACE_SECS`].
    pub deadline_ms: Option<u64>,
    /// The workflow document's `resources`; each is at most the operator's limit.
    pub resources: Option<Resources>,
    /// The dispatcher's `attempt` span (W3C `traceparent`), given to the executor as `TRACEPARENT`.
    pub traceparent: Option<String>,
}

/// Why no Job could be built for an attempt. Each variant is the execution's fault, not the operator's: the
/// dispatcher fails the execution with this message rather than retrying it.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("resources.{field}: {source}")]
    InvalidOverride {
        field: &'static str,
        #[source]
        source: QuantityError,
    },
    #[error("resources.{field}: {requested} is above the operator's limit {limit}")]
    OverrideAboveLimit { field: &'static str, requested: String, limit: String },
    #[error("deadline_ms: {0} ms is longer than a Job can run")]
    DeadlineOutOfRange(u64),
    #[error("rendering the Job as YAML")]
    Render(#[source] serde_yaml::Error),
}

/// The Job name of an attempt: `fl-<32 hex digits>-a<attempt>`, at most 47 characters, a valid DNS-1123 label
/// (the name is copied into the pods' `job-name` label, which allows 63). The same attempt always gets the same
/// name, so a second create of it is `409 AlreadyExists` instead of a duplicate run.
pub fn job_name(execution_id: Uuid, attempt: u32) -> String {
    format!("fl-{}-a{attempt}", execution_id.simple())
}

/// Selects every executor Job (and pod) this installation's dispatchers manage.
pub fn label_selector() -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_COMPONENT}={COMPONENT}")
}

/// Turns any text into a valid label value: at most 63 of `[A-Za-z0-9._-]`, starting and ending alphanumeric.
/// The exact value is kept in the annotation of the same name.
pub fn sanitize_label_value(value: &str) -> String {
    let replaced: String = value
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' })
        .take(63)
        .collect();
    replaced.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned()
}

/// Builds the executor Job of one attempt.
pub fn job_manifest(spec: &JobSpecInput, settings: &JobSettings) -> Result<Job, ManifestError> {
    let name = job_name(spec.execution_id, spec.attempt);
    debug_assert!(is_dns1123_label(&name));
    let labels = labels(spec, &name);
    let annotations = BTreeMap::from([
        (LABEL_TENANT.to_owned(), spec.tenant.clone()),
        (LABEL_WORKFLOW.to_owned(), spec.workflow.clone()),
    ]);
    let extras = &settings.pod_extras;
    // The operator's extras first, the dispatcher's own entries over them.
    let pod_labels: BTreeMap<String, String> = extras.labels.clone().into_iter().chain(labels.clone()).collect();
    let pod_annotations: BTreeMap<String, String> =
        extras.annotations.clone().into_iter().chain(annotations.clone()).collect();
    let overrides = spec.resources.clone().unwrap_or_default();
    let cpu_request = override_or("cpu", overrides.cpu.as_deref(), &settings.cpu_request, &settings.cpu_limit)?;
    let memory_request =
        override_or("memory", overrides.memory.as_deref(), &settings.memory_request, &settings.memory_limit)?;
    let deadline = match spec.deadline_ms {
        Some(ms) => i64::try_from(ms.div_ceil(1000))
            .ok()
            .and_then(|s| s.checked_add(DEADLINE_GRACE_SECS))
            .ok_or(ManifestError::DeadlineOutOfRange(ms))?,
        None => settings.deadline_secs,
    };

    let mut env = vec![
        env_var("EXECUTION_ID", spec.execution_id.to_string()),
        env_var("EXECUTION_ATTEMPT", spec.attempt.to_string()),
        env_var("EXECUTION_TENANT", spec.tenant.clone()),
    ];
    env.extend(settings.executor_env.pairs().into_iter().map(|(k, v)| env_var(k, v)));
    if let Some(traceparent) = &spec.traceparent {
        env.push(env_var("TRACEPARENT", traceparent.clone()));
    }
    // An extra entry replaces a shared setting of the same name (the operator's explicit choice), never the
    // attempt's identity (refused when the settings were read).
    for extra in &extras.env {
        env.retain(|existing| existing.name != extra.name);
        env.push(extra.clone());
    }
    let mut env_from = vec![EnvFromSource {
        secret_ref: Some(SecretEnvSource { name: settings.secret_name.clone(), optional: Some(false) }),
        ..Default::default()
    }];
    env_from.extend(extras.env_from.iter().cloned());
    let mut volume_mounts =
        vec![VolumeMount { name: "tmp".to_owned(), mount_path: "/tmp".to_owned(), ..Default::default() }];
    volume_mounts.extend(extras.volume_mounts.iter().cloned());
    let mut volumes = vec![Volume {
        name: "tmp".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(k8s_quantity(&settings.ephemeral_storage_limit)),
            ..Default::default()
        }),
        ..Default::default()
    }];
    volumes.extend(extras.volumes.iter().cloned());

    let quantities = |pairs: &[(&str, &Quantity)]| {
        Some(pairs.iter().map(|(k, q)| ((*k).to_owned(), k8s_quantity(q))).collect::<BTreeMap<_, _>>())
    };
    let container = Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(settings.image.clone()),
        image_pull_policy: Some(settings.image_pull_policy.clone()),
        env: Some(env),
        // REDIS_URL and the S3 keys: referenced, never copied into the Job.
        env_from: Some(env_from),
        resources: Some(ResourceRequirements {
            requests: quantities(&[("cpu", &cpu_request), ("memory", &memory_request)]),
            limits: quantities(&[
                ("cpu", &settings.cpu_limit),
                ("memory", &settings.memory_limit),
                ("ephemeral-storage", &settings.ephemeral_storage_limit),
            ]),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), ..Default::default() }),
            ..Default::default()
        }),
        volume_mounts: Some(volume_mounts),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Default::default()
    };

    let pod = PodSpec {
        containers: vec![container],
        restart_policy: Some("Never".to_owned()),
        service_account_name: Some(settings.service_account.clone()),
        // The executor never talks to the Kubernetes API.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        runtime_class_name: settings.runtime_class.clone(),
        priority_class_name: settings.priority_class.clone(),
        node_selector: settings.node_selector.clone(),
        tolerations: settings.tolerations.clone(),
        affinity: settings.affinity.clone(),
        image_pull_secrets: (!settings.image_pull_secrets.is_empty()).then(|| {
            settings.image_pull_secrets.iter().map(|name| LocalObjectReference { name: name.clone() }).collect()
        }),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: settings.run_as_user,
            run_as_group: settings.run_as_user,
            fs_group: settings.run_as_user,
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), ..Default::default() }),
            ..Default::default()
        }),
        volumes: Some(volumes),
        ..Default::default()
    };

    Ok(Job {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(labels.clone()),
            annotations: Some(annotations.clone()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            active_deadline_seconds: Some(deadline),
            backoff_limit: Some(settings.backoff_limit),
            ttl_seconds_after_finished: Some(settings.ttl_secs),
            pod_failure_policy: Some(pod_failure_policy()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    })
}

/// The Job as YAML, for `flow-like-dispatcher job-manifest` and for reviewing what the dispatcher would send.
pub fn render_job_manifest_yaml(spec: &JobSpecInput, settings: &JobSettings) -> Result<String, ManifestError> {
    serde_yaml::to_string(&job_manifest(spec, settings)?).map_err(ManifestError::Render)
}

fn labels(spec: &JobSpecInput, name: &str) -> BTreeMap<String, String> {
    [
        (LABEL_NAME, APP_NAME.to_owned()),
        (LABEL_INSTANCE, name.to_owned()),
        (LABEL_COMPONENT, COMPONENT.to_owned()),
        (LABEL_MANAGED_BY, MANAGED_BY.to_owned()),
        (LABEL_PART_OF, PART_OF.to_owned()),
        (LABEL_EXECUTION, spec.execution_id.to_string()),
        (LABEL_TENANT, sanitize_label_value(&spec.tenant)),
        (LABEL_WORKFLOW, sanitize_label_value(&spec.workflow)),
        (LABEL_ATTEMPT, spec.attempt.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A workflow's wish becomes the request; the operator's limit stays the limit and caps the wish.
fn override_or(
    field: &'static str,
    wish: Option<&str>,
    default: &Quantity,
    limit: &Quantity,
) -> Result<Quantity, ManifestError> {
    let Some(wish) = wish.map(str::trim).filter(|w| !w.is_empty()) else {
        return Ok(default.clone());
    };
    let wish = Quantity::parse(wish).map_err(|source| ManifestError::InvalidOverride { field, source })?;
    if &wish > limit {
        return Err(ManifestError::OverrideAboveLimit { field, requested: wish.to_string(), limit: limit.to_string() });
    }
    Ok(wish)
}

/// Pod failures that retrying cannot fix end the Job at once; evictions do not count against `backoffLimit`.
fn pod_failure_policy() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "Ignore".to_owned(),
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".to_owned(),
                    status: "True".to_owned(),
                }]),
                on_exit_codes: None,
            },
            PodFailurePolicyRule {
                action: "FailJob".to_owned(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(CONTAINER_NAME.to_owned()),
                    operator: "In".to_owned(),
                    values: vec![exit_code::WORKFLOW_FAILED, exit_code::CANCELLED],
                }),
                on_pod_conditions: None,
            },
        ],
    }
}

fn env_var(name: &str, value: String) -> EnvVar {
    EnvVar { name: name.to_owned(), value: Some(value), value_from: None }
}

/// A quantity as the `k8s-openapi` type the manifest holds (the text as written).
fn k8s_quantity(quantity: &Quantity) -> k8s_openapi::apimachinery::pkg::api::resource::Quantity {
    k8s_openapi::apimachinery::pkg::api::resource::Quantity(quantity.as_str().to_owned())
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
