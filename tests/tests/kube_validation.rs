//! The simulator refuses what a real API server refuses: each invalid variant of the dispatcher's own executor
//! Job is answered `422 Invalid` with kube-apiserver's causes and message (ported from
//! `pkg/apis/batch/validation` and `pkg/apis/core/validation`), unparsable quantities and `fieldValidation=Strict`
//! with `400`, and the Job the product really creates is still accepted.

use flow_like_dispatcher::config::KubernetesConfig;
use flow_like_dispatcher::runner::kubernetes::{ExecutorEnv, JobSettings, job_manifest};
use flow_like_kube_sim::{KubeSim, KubeSimOptions};
use serde_json::{Value, json};

/// The executor Job the dispatcher builds with its default settings, as JSON.
fn product_job() -> Value {
    let config =
        KubernetesConfig { service_account: "flow-like-executor".into(), ..KubernetesConfig::from_env().unwrap() };
    let settings = JobSettings::from_config(&config, ExecutorEnv::default()).unwrap();
    let spec = flow_like_tests::fixtures::job_spec_input();
    serde_json::to_value(job_manifest(&spec, &settings).unwrap()).unwrap()
}

async fn post(sim: &KubeSim, job: &Value, query: &str) -> (u16, Option<String>, Value) {
    flow_like_shared::telemetry::install_crypto_provider();
    let url = format!("{}/apis/batch/v1/namespaces/default/jobs{query}", sim.url());
    let response = reqwest::Client::new().post(url).json(job).send().await.unwrap();
    let code = response.status().as_u16();
    let warning = response.headers().get("warning").map(|w| w.to_str().unwrap().to_owned());
    (code, warning, response.json().await.unwrap())
}

const NAME_PART: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and \
                         end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex \
                         used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or \
                           '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or \
                           'my_value',  or '12345', regex used for validation is \
                           '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const DNS_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and \
                         must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex \
                         used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

type Variant = (&'static str, fn(&mut Value), Vec<(&'static str, &'static str, String)>);

fn pod(job: &mut Value) -> &mut Value {
    &mut job["spec"]["template"]["spec"]
}

fn container(job: &mut Value) -> &mut Value {
    &mut job["spec"]["template"]["spec"]["containers"][0]
}

fn exit_codes(job: &mut Value) -> &mut Value {
    &mut job["spec"]["podFailurePolicy"]["rules"][1]["onExitCodes"]
}

const AFFINITY_OPERATOR: &str = "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution\
                                 .nodeSelectorTerms[0].matchExpressions[0].operator";
const AFFINITY_VALUES: &str = "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution\
                               .nodeSelectorTerms[0].matchExpressions[0].values";

fn node_affinity(expression: Value) -> Value {
    json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [expression]}
    ]}}})
}

/// Each variant: what it breaks, and the causes kube-apiserver answers with (reason, field, message).
fn variants() -> Vec<Variant> {
    let invalid = "FieldValueInvalid";
    vec![
        ("podFailurePolicy names an unknown container", |j| exit_codes(j)["containerName"] = json!("main"), vec![(
            invalid,
            "spec.podFailurePolicy.rules[1].onExitCodes.containerName",
            "Invalid value: \"main\": must be one of the container or initContainer names in the pod template".into(),
        )]),
        ("onExitCodes In lists 0", |j| exit_codes(j)["values"] = json!([0, 3]), vec![(
            invalid,
            "spec.podFailurePolicy.rules[1].onExitCodes.values[0]",
            "Invalid value: 0: must not be 0 for the In operator".into(),
        )]),
        ("onExitCodes values not ordered", |j| exit_codes(j)["values"] = json!([4, 3]), vec![(
            invalid,
            "spec.podFailurePolicy.rules[1].onExitCodes.values",
            "Invalid value: []int32{4, 3}: must be ordered".into(),
        )]),
        ("onExitCodes values duplicated", |j| exit_codes(j)["values"] = json!([3, 3]), vec![(
            "FieldValueDuplicate",
            "spec.podFailurePolicy.rules[1].onExitCodes.values[1]",
            "Duplicate value: 3".into(),
        )]),
        (
            "more than 20 podFailurePolicy rules",
            |j| {
                let rule = j["spec"]["podFailurePolicy"]["rules"][0].clone();
                j["spec"]["podFailurePolicy"]["rules"] = Value::Array(vec![rule; 21]);
            },
            vec![("FieldValueTooMany", "spec.podFailurePolicy.rules", "Too many: 21: must have at most 20 items".into())],
        ),
        ("negative ttlSecondsAfterFinished", |j| j["spec"]["ttlSecondsAfterFinished"] = json!(-1), vec![(
            invalid,
            "spec.ttlSecondsAfterFinished",
            "Invalid value: -1: must be greater than or equal to 0".into(),
        )]),
        ("negative activeDeadlineSeconds", |j| j["spec"]["activeDeadlineSeconds"] = json!(-5), vec![(
            invalid,
            "spec.activeDeadlineSeconds",
            "Invalid value: -5: must be greater than or equal to 0".into(),
        )]),
        ("negative backoffLimit", |j| j["spec"]["backoffLimit"] = json!(-1), vec![(
            invalid,
            "spec.backoffLimit",
            "Invalid value: -1: must be greater than or equal to 0".into(),
        )]),
        ("requests above limits", |j| container(j)["resources"]["requests"]["cpu"] = json!("2"), vec![(
            invalid,
            "spec.template.spec.containers[0].resources.requests",
            "Invalid value: \"2\": must be less than or equal to cpu limit of 1".into(),
        )]),
        ("negative quantity", |j| container(j)["resources"]["requests"]["memory"] = json!("-1"), vec![(
            invalid,
            "spec.template.spec.containers[0].resources.requests[memory]",
            "Invalid value: \"-1\": must be greater than or equal to 0".into(),
        )]),
        (
            "container name not a DNS-1123 label",
            |j| {
                container(j)["name"] = json!("Executor");
                exit_codes(j)["containerName"] = json!("Executor");
            },
            vec![(invalid, "spec.template.spec.containers[0].name", format!("Invalid value: \"Executor\": {DNS_LABEL}"))],
        ),
        (
            "duplicate container names",
            |j| {
                let first = container(j).clone();
                pod(j)["containers"].as_array_mut().unwrap().push(first);
            },
            vec![("FieldValueDuplicate", "spec.template.spec.containers[1].name", "Duplicate value: \"executor\"".into())],
        ),
        ("empty image", |j| container(j)["image"] = json!(""), vec![(
            "FieldValueRequired",
            "spec.template.spec.containers[0].image",
            "Required value".into(),
        )]),
        (
            "volumeMount of a volume that does not exist",
            |j| {
                let mounts = container(j)["volumeMounts"].as_array_mut().unwrap();
                mounts.push(json!({"name": "data", "mountPath": "/data"}));
            },
            vec![("FieldValueNotFound", "spec.template.spec.containers[0].volumeMounts[1].name", "Not found: \"data\"".into())],
        ),
        (
            "toleration Exists with a value",
            |j| pod(j)["tolerations"] = json!([{"key": "pool", "operator": "Exists", "value": "batch", "effect": "NoSchedule"}]),
            vec![(
                invalid,
                "spec.template.spec.tolerations[0].operator",
                "Invalid value: core.Toleration{Key:\"pool\", Operator:\"Exists\", Value:\"batch\", Effect:\"NoSchedule\", \
                 TolerationSeconds:(*int64)(nil)}: value must be empty when `operator` is 'Exists'"
                    .into(),
            )],
        ),
        (
            "toleration with an invalid effect",
            |j| pod(j)["tolerations"] = json!([{"key": "pool", "operator": "Exists", "effect": "NoRun"}]),
            vec![(
                "FieldValueNotSupported",
                "spec.template.spec.tolerations[0].effect",
                "Unsupported value: \"NoRun\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"".into(),
            )],
        ),
        (
            "toleration key invalid",
            |j| pod(j)["tolerations"] = json!([{"key": "bad key", "operator": "Exists"}]),
            vec![(invalid, "spec.template.spec.tolerations[0].key", format!("Invalid value: \"bad key\": {NAME_PART}"))],
        ),
        (
            "nodeSelectorTerm with an invalid operator",
            |j| pod(j)["affinity"] = node_affinity(json!({"key": "pool", "operator": "Equals", "values": ["batch"]})),
            vec![(invalid, AFFINITY_OPERATOR, "Invalid value: \"Equals\": not a valid selector operator".into())],
        ),
        (
            "nodeSelectorTerm In without values",
            |j| pod(j)["affinity"] = node_affinity(json!({"key": "pool", "operator": "In"})),
            vec![(
                "FieldValueRequired",
                AFFINITY_VALUES,
                "Required value: must be specified when `operator` is 'In' or 'NotIn'".into(),
            )],
        ),
        ("negative runAsUser", |j| pod(j)["securityContext"]["runAsUser"] = json!(-1), vec![(
            invalid,
            "spec.template.spec.securityContext.runAsUser",
            "Invalid value: -1: must be between 0 and 2147483647, inclusive".into(),
        )]),
        (
            "invalid annotation key",
            |j| j["metadata"]["annotations"]["bad key!"] = json!("x"),
            vec![(invalid, "metadata.annotations", format!("Invalid value: \"bad key!\": {NAME_PART}"))],
        ),
        (
            "invalid label value",
            |j| j["spec"]["template"]["metadata"]["labels"]["team"] = json!("-data"),
            vec![(invalid, "spec.template.metadata.labels", format!("Invalid value: \"-data\": {LABEL_VALUE}"))],
        ),
        ("restartPolicy Always", |j| pod(j)["restartPolicy"] = json!("Always"), vec![(
            "FieldValueRequired",
            "spec.template.spec.restartPolicy",
            "Required value: valid values: \"OnFailure\", \"Never\"".into(),
        )]),
        ("podFailurePolicy with restartPolicy OnFailure", |j| pod(j)["restartPolicy"] = json!("OnFailure"), vec![(
            invalid,
            "spec.template.spec.restartPolicy",
            "Invalid value: \"OnFailure\": only \"Never\" is supported when podFailurePolicy is specified".into(),
        )]),
        ("invalid env var name", |j| container(j)["env"][0]["name"] = json!("EXECUTION=ID"), vec![(
            invalid,
            "spec.template.spec.containers[0].env[0].name",
            "Invalid value: \"EXECUTION=ID\": a valid environment variable name must consist only of printable ASCII \
             characters other than '='"
                .into(),
        )]),
        (
            "duplicate volume names",
            |j| pod(j)["volumes"].as_array_mut().unwrap().push(json!({"name": "tmp", "emptyDir": {}})),
            vec![("FieldValueDuplicate", "spec.template.spec.volumes[1].name", "Duplicate value: \"tmp\"".into())],
        ),
        (
            "secret volume without a secret name",
            |j| pod(j)["volumes"].as_array_mut().unwrap().push(json!({"name": "ca", "secret": {}})),
            vec![("FieldValueRequired", "spec.template.spec.volumes[1].secret.secretName", "Required value".into())],
        ),
    ]
}

#[tokio::test]
async fn invalid_jobs_are_refused_with_the_api_servers_causes() {
    let sim = KubeSim::start(KubeSimOptions::default()).await.unwrap();
    for (label, breaks, expected) in variants() {
        let mut job = product_job();
        breaks(&mut job);
        let name = job["metadata"]["name"].as_str().unwrap().to_owned();
        let (code, _, status) = post(&sim, &job, "").await;
        assert_eq!((code, status["reason"].as_str()), (422, Some("Invalid")), "{label}: {status}");
        let causes: Vec<(String, String, String)> = status["details"]["causes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["reason"].as_str().unwrap().into(),
                    c["field"].as_str().unwrap().into(),
                    c["message"].as_str().unwrap().into(),
                )
            })
            .collect();
        let wanted: Vec<(String, String, String)> =
            expected.iter().map(|(r, f, m)| ((*r).into(), (*f).into(), m.clone())).collect();
        assert_eq!(causes, wanted, "{label}");
        let listed: Vec<String> = expected.iter().map(|(_, f, m)| format!("{f}: {m}")).collect();
        let listed = if listed.len() == 1 { listed[0].clone() } else { format!("[{}]", listed.join(", ")) };
        assert_eq!(status["message"], format!("Job.batch \"{name}\" is invalid: {listed}"), "{label}");
    }
    assert!(sim.jobs().is_empty(), "no invalid Job may be stored");
    assert!(variants().len() >= 22);
}

#[tokio::test]
async fn the_products_job_is_accepted_and_quantities_and_unknown_fields_are_decoded_as_the_api_server_does() {
    let sim = KubeSim::start(KubeSimOptions::default()).await.unwrap();
    let (code, warning, created) = post(&sim, &product_job(), "").await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(warning, None);

    let mut bad_suffix = product_job();
    bad_suffix["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("512K");
    let (code, _, status) = post(&sim, &bad_suffix, "").await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")), "{status}");
    assert_eq!(
        status["message"],
        "Job in version \"v1\" cannot be handled as a Job: unable to parse quantity's suffix"
    );
    let mut not_a_number = product_job();
    not_a_number["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("lots");
    let (code, _, status) = post(&sim, &not_a_number, "").await;
    assert_eq!(code, 400);
    assert_eq!(
        status["message"],
        "Job in version \"v1\" cannot be handled as a Job: quantities must match the regular expression \
         '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    );

    let mut unknown = product_job();
    unknown["spec"]["foo"] = json!(1);
    let (code, _, status) = post(&sim, &unknown, "?fieldValidation=Strict").await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")), "{status}");
    assert_eq!(
        status["message"],
        "Job in version \"v1\" cannot be handled as a Job: strict decoding error: unknown field \"spec.foo\""
    );
    let (code, warning, created) = post(&sim, &unknown, "?fieldValidation=Warn").await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(warning.as_deref(), Some("299 - \"unknown field \\\"spec.foo\\\"\""));
    assert!(created["spec"].get("foo").is_none(), "unknown fields are dropped");
    let mut ignored = product_job();
    ignored["spec"]["template"]["spec"]["containers"][0]["foo"] = json!("x");
    let (code, warning, _) = post(&sim, &ignored, "?fieldValidation=Ignore").await;
    assert_eq!((code, warning), (201, None));
    // Without the parameter the simulator stays stricter than a real server: a misspelt field is refused.
    let (code, _, status) = post(&sim, &unknown, "").await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(sim.jobs().len(), 3);
}
