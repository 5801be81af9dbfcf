//! Start-up refuses each setting a real API server (or kubelet) would refuse, naming the setting and the rule.

use super::is_image_reference;
use crate::config::KubernetesConfig;
use crate::runner::kubernetes::settings::{ExecutorEnv, JobSettings};

fn config() -> KubernetesConfig {
    KubernetesConfig { service_account: "flow-like-executor".into(), ..KubernetesConfig::from_env().unwrap() }
}

fn refused(tweak: impl FnOnce(&mut KubernetesConfig)) -> String {
    let mut config = config();
    tweak(&mut config);
    JobSettings::from_config(&config, ExecutorEnv::default()).unwrap_err().to_string()
}

const NAME_PART: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and \
                         end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex \
                         used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

#[test]
fn the_default_settings_are_accepted_and_the_default_image_is_this_release() {
    let settings = JobSettings::from_config(&config(), ExecutorEnv::default()).unwrap();
    assert_eq!(settings.image, format!("ghcr.io/flow-like/flow-like-executor:{}", env!("CARGO_PKG_VERSION")));
    assert!(!settings.image.ends_with(":latest"));
}

#[test]
fn bad_tolerations_are_refused_with_the_api_servers_message() {
    assert_eq!(
        refused(|c| c.tolerations =
            Some(r#"[{"key": "pool", "operator": "Equal", "value": "x", "effect": "NoRun"}]"#.into())),
        "setting EXECUTOR_TOLERATIONS: EXECUTOR_TOLERATIONS[0].effect: Unsupported value: \"NoRun\": supported values: \
         \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""
    );
    assert_eq!(
        refused(|c| c.tolerations = Some(r#"[{"key": "pool", "operator": "Exists", "value": "x"}]"#.into())),
        "setting EXECUTOR_TOLERATIONS: EXECUTOR_TOLERATIONS[0].operator: Invalid value: core.Toleration{Key:\"pool\", \
         Operator:\"Exists\", Value:\"x\", Effect:\"\", TolerationSeconds:(*int64)(nil)}: value must be empty when \
         `operator` is 'Exists'"
    );
    assert_eq!(
        refused(|c| c.tolerations = Some(r#"[{"key": "bad key", "operator": "Exists"}]"#.into())),
        format!("setting EXECUTOR_TOLERATIONS: EXECUTOR_TOLERATIONS[0].key: Invalid value: \"bad key\": {NAME_PART}")
    );
}

#[test]
fn bad_affinity_is_refused() {
    let affinity = r#"{"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "Equals", "values": ["batch"]}]}]}}}"#;
    assert_eq!(
        refused(|c| c.affinity = Some(affinity.into())),
        "setting EXECUTOR_AFFINITY: EXECUTOR_AFFINITY.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution\
         .nodeSelectorTerms[0].matchExpressions[0].operator: Invalid value: \"Equals\": not a valid selector operator"
    );
    let no_values = affinity.replace(r#""operator": "Equals", "values": ["batch"]"#, r#""operator": "In""#);
    assert!(
        refused(|c| c.affinity = Some(no_values)).ends_with(
            "matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
        )
    );
}

#[test]
fn bad_labels_annotations_env_and_volumes_are_refused() {
    assert_eq!(
        refused(|c| c.node_selector = Some(r#"{"pool": "batch jobs"}"#.into())),
        "setting EXECUTOR_NODE_SELECTOR: Invalid value: \"batch jobs\": a valid label must be \
         an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an \
         alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is \
         '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
    );
    assert_eq!(
        refused(|c| c.pod_annotations = Some(r#"{"bad key!": "x"}"#.into())),
        format!("setting EXECUTOR_POD_ANNOTATIONS: Invalid value: \"bad key!\": {NAME_PART}")
    );
    assert!(refused(|c| c.pod_labels = Some(r#"{"team": "-x"}"#.into())).starts_with("setting EXECUTOR_POD_LABELS:"));
    assert_eq!(
        refused(|c| c.extra_env = Some(r#"[{"name": "A=B", "value": "1"}]"#.into())),
        "setting EXECUTOR_EXTRA_ENV: EXECUTOR_EXTRA_ENV[0].name: Invalid value: \"A=B\": a valid environment variable \
         name must consist only of printable ASCII characters other than '='"
    );
    let volumes = r#"[{"name": "ca", "emptyDir": {}}, {"name": "ca", "emptyDir": {}}]"#;
    assert_eq!(
        refused(|c| c.extra_volumes = Some(volumes.into())),
        "setting EXECUTOR_EXTRA_VOLUMES: EXECUTOR_EXTRA_VOLUMES[1].name: Duplicate value: \"ca\""
    );
    assert!(
        refused(|c| c.extra_volumes = Some(r#"[{"name": "Certs", "emptyDir": {}}]"#.into()))
            .contains("EXECUTOR_EXTRA_VOLUMES[0].name: Invalid value: \"Certs\": a lowercase RFC 1123 label")
    );
}

#[test]
fn bad_images_resources_and_names_are_refused() {
    assert_eq!(
        refused(|c| c.image = "ghcr.io/Flow-Like/executor:1.0".into()),
        "setting EXECUTOR_IMAGE: Invalid value: \"ghcr.io/Flow-Like/executor:1.0\": invalid reference format (the \
         kubelet would leave every executor pod in InvalidImageName)"
    );
    assert!(refused(|c| c.image = " ".into()).starts_with("setting EXECUTOR_IMAGE:"));
    assert!(refused(|c| c.cpu_request = "2".into()).starts_with("setting EXECUTOR_CPU_REQUEST: 2 is above"));
    assert!(refused(|c| c.memory_limit = "1K".into()).starts_with("setting EXECUTOR_MEMORY_LIMIT:"));
    assert!(
        refused(|c| c.image_pull_secrets = vec!["Regcred".into()]).starts_with("setting EXECUTOR_IMAGE_PULL_SECRETS:")
    );
    assert!(refused(|c| c.priority_class = Some("High!".into())).starts_with("setting EXECUTOR_PRIORITY_CLASS:"));
}

#[test]
fn image_references() {
    for good in [
        "ghcr.io/flow-like/flow-like-executor:0.1.0",
        "localhost:5000/executor",
        "executor",
        "registry.example.com:8443/team/exec_utor__x:v1.2-rc.1",
        "ghcr.io/flow-like/flow-like-executor@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ] {
        assert!(is_image_reference(good), "{good}");
    }
    for bad in ["", "Executor", "ghcr.io/x:", "ghcr.io/x:-tag", "ghcr.io//x", "x@sha256:abc", "a b", "ghcr.io/x..y"] {
        assert!(!is_image_reference(bad), "{bad}");
    }
}
