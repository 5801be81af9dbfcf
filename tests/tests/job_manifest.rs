//! Every executor Job the manifest builder produces validates against the official Kubernetes schemas
//! (`kubernetes-validate --strict`) for Kubernetes 1.33.0 and the newest version the package ships, and
//! against the simulator's in-process copy of the same schema.

use flow_like_dispatcher::config::KubernetesConfig;
use flow_like_dispatcher::runner::kubernetes::{
    ExecutorEnv, JobSettings, JobSpecInput, job_manifest, render_job_manifest_yaml,
};
use flow_like_kube_sim::{JobSchema, schema_root};
use flow_like_shared::workflow::Resources;
use std::path::{Path, PathBuf};
use std::process::Command;
use uuid::Uuid;

fn base_config() -> KubernetesConfig {
    KubernetesConfig {
        namespace: Some("flow-like".into()),
        service_account: "flow-like-executor".into(),
        ..KubernetesConfig::from_env().unwrap()
    }
}

fn input(attempt: u32) -> JobSpecInput {
    JobSpecInput {
        execution_id: Uuid::new_v4(),
        attempt,
        tenant: "Acme Corp".into(),
        workflow: "order-report".into(),
        deadline_ms: None,
        resources: None,
        traceparent: None,
    }
}

/// The matrix of configurations and attempts every Job is built from.
fn matrix() -> Vec<(&'static str, KubernetesConfig, JobSpecInput)> {
    let mut kata = base_config();
    kata.runtime_class = Some("kata".into());

    let mut scheduling = base_config();
    scheduling.node_selector = Some(r#"{"flow-like.dev/pool":"executors","kubernetes.io/os":"linux"}"#.into());
    scheduling.tolerations = Some(
        r#"[{"key":"dedicated","operator":"Equal","value":"executors","effect":"NoSchedule"},{"operator":"Exists","effect":"NoExecute","tolerationSeconds":30}]"#.into(),
    );
    scheduling.affinity = Some(
        r#"{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"flow-like.dev/pool","operator":"In","values":["executors"]}]}]}},"podAntiAffinity":{"preferredDuringSchedulingIgnoredDuringExecution":[{"weight":50,"podAffinityTerm":{"topologyKey":"kubernetes.io/hostname","labelSelector":{"matchLabels":{"app.kubernetes.io/name":"flow-like-executor"}}}}]}}"#.into(),
    );
    scheduling.priority_class = Some("flow-like-executor".into());
    scheduling.image_pull_secrets = vec!["regcred".into(), "mirror-cred".into()];
    scheduling.image_pull_policy = "Always".into();

    let mut overrides = input(2);
    overrides.resources = Some(Resources { cpu: Some("750m".into()), memory: Some("384Mi".into()) });
    let mut deadline = input(3);
    deadline.deadline_ms = Some(90_500);
    let mut all = input(7);
    all.deadline_ms = Some(1);
    all.resources = Some(Resources { cpu: Some("1".into()), memory: None });
    let mut retries = base_config();
    retries.backoff_limit = 3;
    retries.ttl_secs = 0;

    vec![
        ("defaults", base_config(), input(1)),
        ("kata", kata, input(1)),
        ("scheduling", scheduling.clone(), input(1)),
        ("overrides", base_config(), overrides),
        ("deadline", base_config(), deadline),
        ("everything", scheduling, all),
        ("retries", retries, input(4)),
    ]
}

fn ensure_cli() {
    let present = Command::new("kubernetes-validate").arg("--version").output().is_ok_and(|o| o.status.success());
    if !present {
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "kubernetes-validate"])
            .status()
            .expect("running pip");
        assert!(status.success(), "pip install kubernetes-validate failed");
    }
}

/// The newest Kubernetes version the installed package has strict schemas for.
fn newest_version(root: &Path) -> String {
    let mut versions: Vec<(Vec<u32>, String)> = std::fs::read_dir(root)
        .expect("schema directory")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            let version = name.strip_prefix('v')?.strip_suffix("-local-strict")?.to_owned();
            let parts = version.split('.').map(|p| p.parse().ok()).collect::<Option<Vec<u32>>>()?;
            Some((parts, version))
        })
        .collect();
    versions.sort();
    versions.pop().expect("at least one schema version").1
}

fn write_matrix(dir: &Path) -> Vec<PathBuf> {
    matrix()
        .into_iter()
        .map(|(label, config, spec)| {
            let settings =
                JobSettings::from_config(&config, ExecutorEnv::default()).unwrap_or_else(|e| panic!("{label}: {e}"));
            let yaml = render_job_manifest_yaml(&spec, &settings).unwrap_or_else(|e| panic!("{label}: {e}"));
            let path = dir.join(format!("{label}.yaml"));
            std::fs::write(&path, yaml).unwrap();
            path
        })
        .collect()
}

#[test]
fn every_job_validates_with_kubernetes_validate_strict() {
    ensure_cli();
    let dir = std::env::temp_dir().join(format!("job-manifest-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = write_matrix(&dir);
    let newest = newest_version(&schema_root().expect("kubernetes-validate schemas"));
    for version in ["1.33.0".to_owned(), newest] {
        let output = Command::new("kubernetes-validate")
            .args(["--strict", "--no-warn", "-k", &version])
            .args(&files)
            .output()
            .expect("running kubernetes-validate");
        let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "Kubernetes {version}:\n{report}");
        assert!(!report.contains("ERROR"), "Kubernetes {version}:\n{report}");
    }
    // The check itself must be able to fail: a Job with an unknown field is refused.
    let bad = dir.join("bad.yaml");
    let text = std::fs::read_to_string(&files[0]).unwrap().replace("backoffLimit:", "backofLimit:");
    std::fs::write(&bad, text).unwrap();
    let output = Command::new("kubernetes-validate").args(["--strict", "-k", "1.33.0"]).arg(&bad).output().unwrap();
    assert!(!output.status.success(), "a misspelt field must be refused");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_job_validates_against_the_simulator_schema() {
    let schema = JobSchema::load("1.33.0").expect("schema");
    for (label, config, spec) in matrix() {
        let settings = JobSettings::from_config(&config, ExecutorEnv::default()).unwrap();
        let job = serde_json::to_value(job_manifest(&spec, &settings).unwrap()).unwrap();
        assert_eq!(schema.violations(&job), Vec::<(String, String)>::new(), "{label}");
    }
}
