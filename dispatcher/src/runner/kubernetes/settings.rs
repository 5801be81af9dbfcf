//! The operator's Job settings, parsed and checked once from `KubernetesConfig` so building a manifest per
//! attempt cannot fail on configuration; errors name the environment variable to fix.

use super::quantity::Quantity;
use crate::config::KubernetesConfig;
use flow_like_shared::config::{LogFormat, RedisConfig, S3Config, TelemetryConfig};
use k8s_openapi::api::core::v1::{Affinity, EnvFromSource, EnvVar, Toleration, Volume, VolumeMount};
use std::collections::BTreeMap;

#[path = "settings_rules.rs"]
mod rules;

/// A setting the operator gave that no Job could be built from.
#[derive(Debug, thiserror::Error)]
#[error("setting {setting}: {reason}")]
pub struct SettingsError {
    /// Environment variable of the setting.
    pub setting: &'static str,
    pub reason: String,
}

fn invalid(setting: &'static str, reason: impl ToString) -> SettingsError {
    SettingsError { setting, reason: reason.to_string() }
}

/// The executor's non-secret environment, copied into every Job. Credentials (REDIS_URL, S3 keys) never go
/// here: they reach the pod through `envFrom` of the executor Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorEnv {
    pub redis_prefix: String,
    pub s3_endpoint: String,
    pub s3_region: String,
    pub s3_meta_bucket: String,
    pub s3_content_bucket: String,
    pub s3_force_path_style: bool,
    pub rust_log: String,
    pub log_format: String,
    /// The dispatcher's own REDIS_CA_FILE: the chart mounts the same bundle at the same path in executor pods.
    pub redis_ca_file: Option<String>,
    /// The dispatcher's OTLP endpoints (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).
    pub otlp_endpoint: Option<String>,
    pub otlp_traces_endpoint: Option<String>,
}

impl Default for ExecutorEnv {
    /// The defaults of the shared settings, with empty bucket names (for rendering a manifest to inspect).
    fn default() -> Self {
        Self {
            redis_prefix: "flowlike".into(),
            s3_endpoint: String::new(),
            s3_region: "us-east-1".into(),
            s3_meta_bucket: String::new(),
            s3_content_bucket: String::new(),
            s3_force_path_style: true,
            rust_log: "info".into(),
            log_format: "text".into(),
            redis_ca_file: None,
            otlp_endpoint: None,
            otlp_traces_endpoint: None,
        }
    }
}

impl ExecutorEnv {
    /// Takes the non-secret fields of the dispatcher's own settings; the secret ones are left behind on purpose.
    pub fn from_configs(redis: &RedisConfig, s3: &S3Config, telemetry: &TelemetryConfig) -> Self {
        Self {
            redis_prefix: redis.prefix.clone(),
            s3_endpoint: s3.endpoint.clone(),
            s3_region: s3.region.clone(),
            s3_meta_bucket: s3.meta_bucket.clone(),
            s3_content_bucket: s3.content_bucket.clone(),
            s3_force_path_style: s3.force_path_style,
            rust_log: telemetry.log_filter.clone(),
            log_format: match telemetry.log_format {
                LogFormat::Text => "text".into(),
                LogFormat::Json => "json".into(),
            },
            redis_ca_file: redis.ca_file.as_ref().map(|path| path.display().to_string()),
            otlp_endpoint: None,
            otlp_traces_endpoint: None,
        }
    }

    /// Passes the dispatcher's OTLP endpoints on (its headers may hold credentials and are not: give executors
    /// theirs with EXECUTOR_EXTRA_ENV_FROM).
    pub fn with_traces(mut self, trace: &flow_like_shared::config::TraceConfig) -> Self {
        let set = |value: &Option<String>| value.clone().filter(|v| !v.trim().is_empty());
        self.otlp_endpoint = set(&trace.otlp_endpoint);
        self.otlp_traces_endpoint = set(&trace.otlp_traces_endpoint);
        self
    }

    /// `(name, value)` pairs in the order they appear in the container env.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![
            ("REDIS_PREFIX", self.redis_prefix.clone()),
            ("S3_ENDPOINT", self.s3_endpoint.clone()),
            ("S3_REGION", self.s3_region.clone()),
            ("S3_META_BUCKET", self.s3_meta_bucket.clone()),
            ("S3_CONTENT_BUCKET", self.s3_content_bucket.clone()),
            ("S3_FORCE_PATH_STYLE", self.s3_force_path_style.to_string()),
            ("RUST_LOG", self.rust_log.clone()),
            ("LOG_FORMAT", self.log_format.clone()),
        ];
        if let Some(path) = &self.redis_ca_file {
            pairs.push(("REDIS_CA_FILE", path.clone()));
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            pairs.push(("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()));
        }
        if let Some(endpoint) = &self.otlp_traces_endpoint {
            pairs.push(("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint.clone()));
        }
        pairs
    }
}

/// Everything about an executor Job that comes from the operator rather than the execution.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub image: String,
    pub image_pull_policy: String,
    pub image_pull_secrets: Vec<String>,
    pub service_account: String,
    /// Secret passed whole with `envFrom` (REDIS_URL, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY).
    pub secret_name: String,
    pub runtime_class: Option<String>,
    pub cpu_request: Quantity,
    pub cpu_limit: Quantity,
    pub memory_request: Quantity,
    pub memory_limit: Quantity,
    pub ephemeral_storage_limit: Quantity,
    pub deadline_secs: i64,
    pub backoff_limit: i32,
    pub ttl_secs: i32,
    pub node_selector: Option<BTreeMap<String, String>>,
    pub tolerations: Option<Vec<Toleration>>,
    pub affinity: Option<Affinity>,
    pub priority_class: Option<String>,
    pub executor_env: ExecutorEnv,
    /// The operator's additions to every executor pod (service-mesh annotations, proxies, a CA bundle).
    pub pod_extras: PodExtras,
    /// `runAsUser`/`runAsGroup`/`fsGroup` of executor pods; `None` leaves them to the platform (OpenShift).
    pub run_as_user: Option<i64>,
}

/// What the operator adds to every executor pod. The dispatcher's own labels, env and volumes win on a clash.
#[derive(Debug, Clone, Default)]
pub struct PodExtras {
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub env: Vec<EnvVar>,
    pub env_from: Vec<EnvFromSource>,
    pub volumes: Vec<Volume>,
    pub volume_mounts: Vec<VolumeMount>,
}

impl JobSettings {
    /// Parses and checks the operator's settings.
    pub fn from_config(config: &KubernetesConfig, executor_env: ExecutorEnv) -> Result<Self, SettingsError> {
        if config.image.trim().is_empty() {
            return Err(invalid("EXECUTOR_IMAGE", "must not be empty"));
        }
        if !matches!(config.image_pull_policy.as_str(), "Always" | "IfNotPresent" | "Never") {
            return Err(invalid(
                "EXECUTOR_IMAGE_PULL_POLICY",
                format!("`{}` is not one of Always, IfNotPresent, Never", config.image_pull_policy),
            ));
        }
        let image_pull_secrets: Vec<String> =
            config.image_pull_secrets.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
        for name in &image_pull_secrets {
            check_object_name("EXECUTOR_IMAGE_PULL_SECRETS", name)?;
        }
        check_object_name("EXECUTOR_SERVICE_ACCOUNT", &config.service_account)?;
        check_object_name("EXECUTOR_SECRET", &config.secret)?;
        let runtime_class = non_empty(&config.runtime_class);
        if let Some(name) = &runtime_class {
            check_object_name("EXECUTOR_RUNTIME_CLASS", name)?;
        }
        let priority_class = non_empty(&config.priority_class);
        if let Some(name) = &priority_class {
            check_object_name("EXECUTOR_PRIORITY_CLASS", name)?;
        }

        let quantity =
            |setting: &'static str, text: &str| Quantity::parse(text.trim()).map_err(|e| invalid(setting, e));
        let cpu_request = quantity("EXECUTOR_CPU_REQUEST", &config.cpu_request)?;
        let cpu_limit = quantity("EXECUTOR_CPU_LIMIT", &config.cpu_limit)?;
        let memory_request = quantity("EXECUTOR_MEMORY_REQUEST", &config.memory_request)?;
        let memory_limit = quantity("EXECUTOR_MEMORY_LIMIT", &config.memory_limit)?;
        let ephemeral_storage_limit = quantity("EXECUTOR_EPHEMERAL_STORAGE_LIMIT", &config.ephemeral_storage_limit)?;
        // The API server refuses a pod whose request exceeds its limit; say so at start-up instead.
        if cpu_request > cpu_limit {
            return Err(invalid(
                "EXECUTOR_CPU_REQUEST",
                format!("{cpu_request} is above EXECUTOR_CPU_LIMIT {cpu_limit}"),
            ));
        }
        if memory_request > memory_limit {
            return Err(invalid(
                "EXECUTOR_MEMORY_REQUEST",
                format!("{memory_request} is above EXECUTOR_MEMORY_LIMIT {memory_limit}"),
            ));
        }

        let deadline_secs = i64::try_from(config.deadline_secs)
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| invalid("EXECUTOR_DEADLINE_SECS", "must be a positive number"))?;
        if config.backoff_limit < 0 {
            return Err(invalid("EXECUTOR_BACKOFF_LIMIT", "must not be negative"));
        }
        if config.ttl_secs < 0 {
            return Err(invalid("EXECUTOR_TTL_SECS", "must not be negative"));
        }
        let run_as_user = match config.run_as_user.trim() {
            "" => None,
            text => Some(
                text.parse::<i64>()
                    .ok()
                    .filter(|uid| *uid >= 0)
                    .ok_or_else(|| invalid("EXECUTOR_RUN_AS_USER", format!("`{text}` is not a user id (or empty)")))?,
            ),
        };
        let pod_extras = PodExtras {
            annotations: parse_json("EXECUTOR_POD_ANNOTATIONS", &config.pod_annotations)?.unwrap_or_default(),
            labels: parse_json("EXECUTOR_POD_LABELS", &config.pod_labels)?.unwrap_or_default(),
            env: parse_json("EXECUTOR_EXTRA_ENV", &config.extra_env)?.unwrap_or_default(),
            env_from: parse_json("EXECUTOR_EXTRA_ENV_FROM", &config.extra_env_from)?.unwrap_or_default(),
            volumes: parse_json("EXECUTOR_EXTRA_VOLUMES", &config.extra_volumes)?.unwrap_or_default(),
            volume_mounts: parse_json("EXECUTOR_EXTRA_VOLUME_MOUNTS", &config.extra_volume_mounts)?.unwrap_or_default(),
        };
        check_pod_extras(&pod_extras)?;

        let settings = Self {
            image: config.image.trim().to_owned(),
            image_pull_policy: config.image_pull_policy.clone(),
            image_pull_secrets,
            service_account: config.service_account.clone(),
            secret_name: config.secret.clone(),
            runtime_class,
            cpu_request,
            cpu_limit,
            memory_request,
            memory_limit,
            ephemeral_storage_limit,
            deadline_secs,
            backoff_limit: config.backoff_limit,
            ttl_secs: config.ttl_secs,
            node_selector: parse_json("EXECUTOR_NODE_SELECTOR", &config.node_selector)?,
            tolerations: parse_json("EXECUTOR_TOLERATIONS", &config.tolerations)?,
            affinity: parse_json("EXECUTOR_AFFINITY", &config.affinity)?,
            priority_class,
            executor_env,
            pod_extras,
            run_as_user,
        };
        rules::check(&settings)?;
        Ok(settings)
    }
}

/// Names the dispatcher sets itself: an extra may not replace them (the attempt's identity, its /tmp).
const RESERVED_ENV: &[&str] = &["EXECUTION_ID", "EXECUTION_ATTEMPT", "EXECUTION_TENANT"];
const RESERVED_VOLUME: &str = "tmp";

fn check_pod_extras(extras: &PodExtras) -> Result<(), SettingsError> {
    if let Some(var) = extras.env.iter().find(|v| RESERVED_ENV.contains(&v.name.as_str())) {
        return Err(invalid("EXECUTOR_EXTRA_ENV", format!("`{}` is set by the dispatcher for each attempt", var.name)));
    }
    if extras.volumes.iter().any(|v| v.name == RESERVED_VOLUME) {
        return Err(invalid("EXECUTOR_EXTRA_VOLUMES", "the volume name `tmp` is the executor's own /tmp"));
    }
    for mount in &extras.volume_mounts {
        if mount.name != RESERVED_VOLUME && !extras.volumes.iter().any(|v| v.name == mount.name) {
            return Err(invalid(
                "EXECUTOR_EXTRA_VOLUME_MOUNTS",
                format!("mounts `{}`, which EXECUTOR_EXTRA_VOLUMES does not define", mount.name),
            ));
        }
        if mount.mount_path == "/tmp" {
            return Err(invalid("EXECUTOR_EXTRA_VOLUME_MOUNTS", "/tmp is the executor's own scratch volume"));
        }
    }
    Ok(())
}

fn non_empty(value: &Option<String>) -> Option<String> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

fn parse_json<T: serde::de::DeserializeOwned>(
    setting: &'static str,
    value: &Option<String>,
) -> Result<Option<T>, SettingsError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => serde_json::from_str(text)
            .map(Some)
            .map_err(|e| invalid(setting, format!("not valid JSON for this field: {e}"))),
    }
}

/// Object names referenced from a pod (Secrets, service accounts, classes) are DNS-1123 subdomains.
fn check_object_name(setting: &'static str, name: &str) -> Result<(), SettingsError> {
    if is_dns1123_subdomain(name) {
        Ok(())
    } else {
        Err(invalid(setting, format!("`{name}` is not a valid Kubernetes object name (lowercase DNS-1123 subdomain)")))
    }
}

pub(crate) fn is_dns1123_subdomain(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(is_dns1123_label)
}

pub(crate) fn is_dns1123_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}
