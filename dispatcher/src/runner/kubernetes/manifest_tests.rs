//! Unit tests of the Job manifest: names, labels, secrets, resources, deadlines, the pod failure policy.

use super::*;
use crate::config::KubernetesConfig;
use crate::runner::kubernetes::settings::{ExecutorEnv, SettingsError};
use flow_like_shared::config::{LogFormat, RedisConfig, S3Config, TelemetryConfig};

pub(crate) fn config() -> KubernetesConfig {
    KubernetesConfig {
        image: "ghcr.io/flow-like/flow-like-executor:1.0.0".into(),
        service_account: "flow-like-executor".into(),
        ..KubernetesConfig::from_env().unwrap()
    }
}

fn settings() -> JobSettings {
    JobSettings::from_config(&config(), ExecutorEnv::default()).unwrap()
}

fn input() -> JobSpecInput {
    JobSpecInput {
        execution_id: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
        attempt: 1,
        tenant: "acme".into(),
        workflow: "order-report".into(),
        deadline_ms: None,
        resources: None,
        traceparent: None,
    }
}

fn pod(job: &Job) -> &PodSpec {
    job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

#[test]
fn names_are_deterministic_and_valid_dns_labels() {
    let mut seen = std::collections::HashSet::new();
    for i in 0..2000u128 {
        let id = if i % 2 == 0 { Uuid::new_v4() } else { Uuid::from_u128(u128::MAX - i) };
        for attempt in [0, 1, 2, 9, 10, 99, 1000, u32::MAX] {
            let name = job_name(id, attempt);
            assert_eq!(name, job_name(id, attempt));
            assert!(is_dns1123_label(&name), "{name}");
            // A pod name is the Job name plus `-xxxxx`, and must stay a valid label value too.
            assert!(name.len() + 6 <= 63, "{name}");
            assert!(seen.insert(name));
        }
    }
}

#[test]
fn labels_identify_the_attempt_and_match_the_selector() {
    let job = job_manifest(&input(), &settings()).unwrap();
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[LABEL_NAME], "flow-like-executor");
    assert_eq!(labels[LABEL_INSTANCE], job_name(input().execution_id, 1));
    assert_eq!(labels[LABEL_EXECUTION], input().execution_id.to_string());
    assert_eq!(labels[LABEL_TENANT], "acme");
    assert_eq!(labels[LABEL_WORKFLOW], "order-report");
    assert_eq!(labels[LABEL_ATTEMPT], "1");
    for term in label_selector().split(',') {
        let (k, v) = term.split_once('=').unwrap();
        assert_eq!(labels[k], v);
    }
    let template = job.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
    assert_eq!(template.labels.as_ref(), Some(labels));
}

#[test]
fn label_values_are_sanitised_and_exact_values_kept_in_annotations() {
    let mut spec = input();
    spec.tenant = "Acme Corp/EU".into();
    spec.workflow = format!("-{}-", "x".repeat(100));
    let job = job_manifest(&spec, &settings()).unwrap();
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[LABEL_TENANT], "Acme-Corp-EU");
    assert_eq!(labels[LABEL_WORKFLOW], "x".repeat(62));
    assert_eq!(job.metadata.annotations.as_ref().unwrap()[LABEL_TENANT], "Acme Corp/EU");
    for value in ["", "---", "é", "a.b_c-d", "ÄÖÜ tenant"] {
        let v = sanitize_label_value(value);
        assert!(v.len() <= 63);
        assert!(v.is_empty() || v.starts_with(|c: char| c.is_ascii_alphanumeric()));
        assert!(v.is_empty() || v.ends_with(|c: char| c.is_ascii_alphanumeric()));
    }
}

#[test]
fn env_carries_the_attempt_and_no_secret_value() {
    let redis =
        RedisConfig { url: "redis://exec:hunter2-redis@redis:6379".into(), prefix: "fl-test".into(), ca_file: None };
    let s3 = S3Config {
        endpoint: "http://s3:9000".into(),
        region: "eu-west-1".into(),
        access_key_id: "AKIA-SECRET-ID".into(),
        secret_access_key: "hunter2-s3".into(),
        meta_bucket: "meta".into(),
        content_bucket: "content".into(),
        force_path_style: true,
    };
    let telemetry = TelemetryConfig { log_filter: "debug".into(), log_format: LogFormat::Json };
    let env = ExecutorEnv::from_configs(&redis, &s3, &telemetry);
    let settings = JobSettings::from_config(&config(), env).unwrap();
    let job = job_manifest(&input(), &settings).unwrap();
    let text = serde_json::to_string(&job).unwrap();
    for secret in ["hunter2", "AKIA-SECRET-ID", "redis://"] {
        assert!(!text.contains(secret), "{secret} leaked into the Job");
    }
    let container = &pod(&job).containers[0];
    let env: BTreeMap<_, _> =
        container.env.as_ref().unwrap().iter().map(|e| (e.name.as_str(), e.value.as_deref().unwrap())).collect();
    for forbidden in ["REDIS_URL", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"] {
        assert!(!env.contains_key(forbidden));
    }
    assert_eq!(env["EXECUTION_ID"], input().execution_id.to_string());
    assert_eq!(env["EXECUTION_ATTEMPT"], "1");
    assert_eq!(env["EXECUTION_TENANT"], "acme");
    assert_eq!(env["REDIS_PREFIX"], "fl-test");
    assert_eq!(env["S3_ENDPOINT"], "http://s3:9000");
    assert_eq!(env["S3_REGION"], "eu-west-1");
    assert_eq!(env["S3_META_BUCKET"], "meta");
    assert_eq!(env["S3_CONTENT_BUCKET"], "content");
    assert_eq!(env["S3_FORCE_PATH_STYLE"], "true");
    assert_eq!(env["RUST_LOG"], "debug");
    assert_eq!(env["LOG_FORMAT"], "json");
    let from = container.env_from.as_ref().unwrap();
    assert_eq!(from[0].secret_ref.as_ref().unwrap().name, "flow-like-executor");
}

#[test]
fn overrides_become_requests_and_are_refused_above_the_limit() {
    let mut spec = input();
    spec.resources = Some(Resources { cpu: Some("750m".into()), memory: Some("256Mi".into()) });
    let job = job_manifest(&spec, &settings()).unwrap();
    let resources = pod(&job).containers[0].resources.as_ref().unwrap();
    let requests = resources.requests.as_ref().unwrap();
    let limits = resources.limits.as_ref().unwrap();
    assert_eq!(requests["cpu"].0, "750m");
    assert_eq!(requests["memory"].0, "256Mi");
    assert_eq!(limits["cpu"].0, "1");
    assert_eq!(limits["memory"].0, "512Mi");
    assert_eq!(limits["ephemeral-storage"].0, "1Gi");

    // Exactly the limit is allowed.
    spec.resources = Some(Resources { cpu: Some("1000m".into()), memory: Some("0.5Gi".into()) });
    job_manifest(&spec, &settings()).unwrap();

    spec.resources = Some(Resources { cpu: Some("1001m".into()), memory: None });
    match job_manifest(&spec, &settings()) {
        Err(ManifestError::OverrideAboveLimit { field: "cpu", .. }) => {}
        other => panic!("expected cpu refused, got {other:?}"),
    }
    spec.resources = Some(Resources { cpu: None, memory: Some("1Gi".into()) });
    let err = job_manifest(&spec, &settings()).unwrap_err();
    assert!(matches!(err, ManifestError::OverrideAboveLimit { field: "memory", .. }));
    assert!(err.to_string().contains("resources.memory"), "{err}");
    spec.resources = Some(Resources { cpu: Some("lots".into()), memory: None });
    assert!(matches!(job_manifest(&spec, &settings()), Err(ManifestError::InvalidOverride { field: "cpu", .. })));
}

#[test]
fn deadline_comes_from_the_workflow_rounded_up_plus_grace() {
    let mut spec = input();
    let deadline =
        |spec: &JobSpecInput| job_manifest(spec, &settings()).unwrap().spec.unwrap().active_deadline_seconds.unwrap();
    assert_eq!(deadline(&spec), 3600);
    spec.deadline_ms = Some(1500);
    assert_eq!(deadline(&spec), 2 + DEADLINE_GRACE_SECS);
    spec.deadline_ms = Some(60_000);
    assert_eq!(deadline(&spec), 60 + DEADLINE_GRACE_SECS);
    spec.deadline_ms = Some(0);
    assert_eq!(deadline(&spec), DEADLINE_GRACE_SECS);
    // The largest possible wish still fits: no overflow into a negative deadline.
    spec.deadline_ms = Some(u64::MAX);
    assert_eq!(deadline(&spec), 18_446_744_073_709_552 + DEADLINE_GRACE_SECS);
}

#[test]
fn pod_is_restricted_and_policy_stops_on_workflow_failure() {
    let job = job_manifest(&input(), &settings()).unwrap();
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(spec.ttl_seconds_after_finished, Some(600));
    let rules = &spec.pod_failure_policy.as_ref().unwrap().rules;
    assert_eq!(rules[0].action, "Ignore");
    assert_eq!(rules[0].on_pod_conditions.as_ref().unwrap()[0].type_, "DisruptionTarget");
    assert_eq!(rules[1].action, "FailJob");
    let codes = rules[1].on_exit_codes.as_ref().unwrap();
    assert_eq!(codes.container_name.as_deref(), Some(CONTAINER_NAME));
    assert!(codes.values.contains(&exit_code::WORKFLOW_FAILED));
    assert!(!codes.values.contains(&exit_code::INFRA_FAILURE));

    let pod = pod(&job);
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.enable_service_links, Some(false));
    assert_eq!(pod.runtime_class_name, None);
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(EXECUTOR_UID));
    assert_eq!(psc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    let csc = pod.containers[0].security_context.as_ref().unwrap();
    assert_eq!(csc.allow_privilege_escalation, Some(false));
    assert_eq!(csc.read_only_root_filesystem, Some(true));
    assert_eq!(csc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_owned()][..]));
    let tmp = &pod.volumes.as_ref().unwrap()[0];
    assert_eq!(tmp.empty_dir.as_ref().unwrap().size_limit.as_ref().unwrap().0, "1Gi");
}

#[test]
fn scheduling_settings_are_parsed_and_bad_ones_name_the_setting() {
    let mut cfg = config();
    cfg.runtime_class = Some("kata".into());
    cfg.priority_class = Some("flow-like-batch".into());
    cfg.image_pull_secrets = vec!["regcred".into(), " ".into()];
    cfg.node_selector = Some(r#"{"pool":"executors"}"#.into());
    cfg.tolerations = Some(r#"[{"key":"dedicated","operator":"Equal","value":"flow","effect":"NoSchedule"}]"#.into());
    cfg.affinity = Some(
        r#"{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"pool","operator":"In","values":["executors"]}]}]}}}"#
            .into(),
    );
    let settings = JobSettings::from_config(&cfg, ExecutorEnv::default()).unwrap();
    let job = job_manifest(&input(), &settings).unwrap();
    let pod = pod(&job);
    assert_eq!(pod.runtime_class_name.as_deref(), Some("kata"));
    assert_eq!(pod.priority_class_name.as_deref(), Some("flow-like-batch"));
    assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "executors");
    assert_eq!(pod.tolerations.as_ref().unwrap()[0].key.as_deref(), Some("dedicated"));
    assert!(pod.affinity.as_ref().unwrap().node_affinity.is_some());
    assert_eq!(pod.image_pull_secrets.as_ref().unwrap().len(), 1);

    type Breaks = fn(&mut KubernetesConfig);
    let cases: Vec<(&str, Breaks)> = vec![
        ("EXECUTOR_NODE_SELECTOR", |c| c.node_selector = Some("[1]".into())),
        ("EXECUTOR_TOLERATIONS", |c| c.tolerations = Some("{".into())),
        ("EXECUTOR_AFFINITY", |c| c.affinity = Some("[]".into())),
        ("EXECUTOR_CPU_LIMIT", |c| c.cpu_limit = "one".into()),
        ("EXECUTOR_MEMORY_REQUEST", |c| c.memory_request = "1Gi".into()),
        ("EXECUTOR_IMAGE_PULL_POLICY", |c| c.image_pull_policy = "Sometimes".into()),
        ("EXECUTOR_SECRET", |c| c.secret = "Not_A_Name".into()),
        ("EXECUTOR_RUNTIME_CLASS", |c| c.runtime_class = Some("Kata!".into())),
        ("EXECUTOR_DEADLINE_SECS", |c| c.deadline_secs = 0),
        ("EXECUTOR_BACKOFF_LIMIT", |c| c.backoff_limit = -1),
    ];
    for (setting, breaks) in cases {
        let mut cfg = config();
        breaks(&mut cfg);
        let err = JobSettings::from_config(&cfg, ExecutorEnv::default()).unwrap_err();
        assert_eq!(err.setting, setting, "{err}");
        assert!(err.to_string().contains(setting));
    }
}

#[test]
fn yaml_rendering_round_trips() {
    let yaml = render_job_manifest_yaml(&input(), &settings()).unwrap();
    assert!(yaml.starts_with("apiVersion: batch/v1\nkind: Job\n"), "{yaml}");
    let back: Job = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(back, job_manifest(&input(), &settings()).unwrap());
}

/// A Job as the runner reads it off the wire (`SlimJob`).
fn slim(job: Job) -> Job {
    serde_json::from_slice::<crate::runner::kubernetes::slim::SlimJob>(&serde_json::to_vec(&job).unwrap()).unwrap().0
}

/// The runner's slim reading of a Job keeps what classification reads and drops the rest of the pod template.
#[test]
fn a_slim_job_classifies_like_the_full_one_at_a_fraction_of_the_size() {
    use crate::runner::kubernetes::classify::{self, PodState};
    let mut full = job_manifest(&JobSpecInput { deadline_ms: Some(60_000), ..input() }, &settings()).unwrap();
    full.status = Some(
        serde_json::from_value(serde_json::json!({"conditions": [
            {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too long"}
        ]}))
        .unwrap(),
    );
    let read = slim(full.clone());
    assert_eq!(read.metadata.labels, full.metadata.labels);
    assert_eq!(read.metadata.name, full.metadata.name);
    assert_eq!(read.status, full.status);
    let (full_size, slim_size) = (serde_json::to_vec(&full).unwrap().len(), serde_json::to_vec(&read).unwrap().len());
    assert!(slim_size * 3 < full_size, "slim {slim_size} bytes, full {full_size} bytes");

    let oom = PodState {
        name: "p".into(),
        phase: "Failed".into(),
        terminated: Some(classify::Terminated { exit_code: 137, reason: Some("OOMKilled".into()), message: None }),
        ..PodState::default()
    };
    let deadline = classify::finished(&full, [&oom]);
    assert!(format!("{deadline:?}").contains("activeDeadlineSeconds 90"), "{deadline:?}");
    assert_eq!(classify::finished(&read, [&oom]), deadline);
    let mut failed = full.clone();
    failed.status = Some(
        serde_json::from_value(serde_json::json!({"conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "backoff"}
        ]}))
        .unwrap(),
    );
    let oom_killed = classify::finished(&failed, [&oom]);
    assert!(format!("{oom_killed:?}").contains("512Mi"), "{oom_killed:?}");
    assert_eq!(classify::finished(&slim(failed), [&oom]), oom_killed);
}

fn settings_with(tweak: impl FnOnce(&mut KubernetesConfig)) -> Result<JobSettings, SettingsError> {
    let mut config = config();
    tweak(&mut config);
    JobSettings::from_config(&config, ExecutorEnv::default())
}

#[test]
fn pod_extras_reach_the_executor_pod_and_the_dispatchers_own_entries_win() {
    let settings = settings_with(|c| {
        c.pod_annotations = Some(r#"{"sidecar.istio.io/inject": "false"}"#.into());
        c.pod_labels = Some(format!(r#"{{"team": "data", "{LABEL_TENANT}": "spoofed"}}"#));
        c.extra_env = Some(
            r#"[{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}, {"name": "RUST_LOG", "value": "debug"}]"#.into(),
        );
        c.extra_env_from = Some(r#"[{"configMapRef": {"name": "proxy-settings"}}]"#.into());
        c.extra_volumes = Some(r#"[{"name": "redis-ca", "secret": {"secretName": "redis-ca"}}]"#.into());
        c.extra_volume_mounts =
            Some(r#"[{"name": "redis-ca", "mountPath": "/etc/flow-like/redis-ca", "readOnly": true}]"#.into());
    })
    .unwrap();
    let job = job_manifest(&input(), &settings).unwrap();
    let template = job.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
    assert_eq!(template.annotations.as_ref().unwrap()["sidecar.istio.io/inject"], "false");
    let labels = template.labels.as_ref().unwrap();
    assert_eq!(labels["team"], "data");
    assert_eq!(labels[LABEL_TENANT], "acme", "the dispatcher's label wins");
    // The Job's own metadata is not changed by pod extras.
    assert!(!job.metadata.labels.as_ref().unwrap().contains_key("team"));

    let container = &pod(&job).containers[0];
    let env = container.env.as_ref().unwrap();
    let value = |name: &str| env.iter().filter(|v| v.name == name).map(|v| v.value.clone()).collect::<Vec<_>>();
    assert_eq!(value("HTTPS_PROXY"), [Some("http://proxy:3128".to_owned())]);
    assert_eq!(value("RUST_LOG"), [Some("debug".to_owned())], "an extra replaces a shared setting, once");
    assert_eq!(value("EXECUTION_ID"), [Some(input().execution_id.to_string())]);
    let env_from = container.env_from.as_ref().unwrap();
    assert_eq!(env_from[0].secret_ref.as_ref().unwrap().name, settings.secret_name, "the executor Secret stays first");
    assert_eq!(env_from[1].config_map_ref.as_ref().unwrap().name, "proxy-settings");
    let mounts: Vec<&str> = container.volume_mounts.as_ref().unwrap().iter().map(|m| m.mount_path.as_str()).collect();
    assert_eq!(mounts, ["/tmp", "/etc/flow-like/redis-ca"]);
    let volumes: Vec<&str> = pod(&job).volumes.as_ref().unwrap().iter().map(|v| v.name.as_str()).collect();
    assert_eq!(volumes, ["tmp", "redis-ca"]);
}

#[test]
fn bad_pod_extras_name_the_setting() {
    type Tweak = fn(&mut KubernetesConfig);
    let cases: [(&str, Tweak); 6] = [
        ("EXECUTOR_POD_ANNOTATIONS", |c| c.pod_annotations = Some(r#"{"a": 1}"#.into())),
        ("EXECUTOR_EXTRA_ENV", |c| c.extra_env = Some(r#"[{"name": "EXECUTION_ID", "value": "x"}]"#.into())),
        ("EXECUTOR_EXTRA_VOLUMES", |c| c.extra_volumes = Some(r#"[{"name": "tmp", "emptyDir": {}}]"#.into())),
        ("EXECUTOR_EXTRA_VOLUME_MOUNTS", |c| {
            c.extra_volume_mounts = Some(r#"[{"name": "nowhere", "mountPath": "/x"}]"#.into())
        }),
        ("EXECUTOR_EXTRA_ENV_FROM", |c| c.extra_env_from = Some("{}".into())),
        ("EXECUTOR_RUN_AS_USER", |c| c.run_as_user = "nobody".into()),
    ];
    for (setting, tweak) in cases {
        let err = settings_with(tweak).unwrap_err();
        assert_eq!(err.setting, setting, "{err}");
    }
}

#[test]
fn an_empty_run_as_user_leaves_the_ids_to_the_platform() {
    let job = job_manifest(&input(), &settings_with(|c| c.run_as_user = String::new()).unwrap()).unwrap();
    let psc = pod(&job).security_context.as_ref().unwrap();
    assert_eq!((psc.run_as_user, psc.run_as_group, psc.fs_group), (None, None, None));
    assert_eq!(psc.run_as_non_root, Some(true), "still non-root");
    let default = job_manifest(&input(), &settings()).unwrap();
    assert_eq!(pod(&default).security_context.as_ref().unwrap().run_as_user, Some(EXECUTOR_UID));
}

#[test]
fn the_redis_ca_path_is_passed_to_executors() {
    let redis = RedisConfig {
        url: "rediss://exec@redis:6380".into(),
        prefix: "p".into(),
        ca_file: Some("/etc/flow-like/redis-ca/ca.crt".into()),
    };
    let s3 = S3Config {
        endpoint: String::new(),
        region: "r".into(),
        access_key_id: String::new(),
        secret_access_key: String::new(),
        meta_bucket: "m".into(),
        content_bucket: "c".into(),
        force_path_style: true,
    };
    let telemetry = TelemetryConfig { log_filter: "info".into(), log_format: LogFormat::Json };
    let env = ExecutorEnv::from_configs(&redis, &s3, &telemetry);
    let job = job_manifest(&input(), &JobSettings::from_config(&config(), env).unwrap()).unwrap();
    let vars = pod(&job).containers[0].env.as_ref().unwrap();
    let ca = vars.iter().find(|v| v.name == "REDIS_CA_FILE").and_then(|v| v.value.as_deref());
    assert_eq!(ca, Some("/etc/flow-like/redis-ca/ca.crt"));
}
