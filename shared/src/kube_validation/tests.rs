//! The rules against messages copied from kube-apiserver answers and its validation tests.

use super::*;
use serde_json::json;

fn messages(errs: Vec<FieldError>) -> Vec<String> {
    errs.into_iter().map(|e| e.to_string()).collect()
}

#[test]
fn dns_label_messages_match_the_api_server() {
    assert_eq!(
        messages(validate_dns1123_label("Executor", &Path::new("name"))),
        ["name: Invalid value: \"Executor\": a lowercase RFC 1123 label must consist of lower case alphanumeric \
          characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', \
          regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]
    );
    assert_eq!(is_dns1123_label("a.b"), ["must not contain dots"]);
    assert!(is_dns1123_label("executor").is_empty());
    assert!(is_dns1123_subdomain("ghcr.io").is_empty());
}

#[test]
fn qualified_names_and_label_values() {
    assert!(is_qualified_name("flow-like.dev/tenant").is_empty());
    assert_eq!(is_qualified_name("/x"), ["prefix part must be non-empty"]);
    assert_eq!(
        is_qualified_name("bad key"),
        ["name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an \
          alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is \
          '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"]
    );
    assert!(is_qualified_name("a/b/c")[0].starts_with("a qualified name must consist"));
    assert!(is_label_value("").is_empty());
    assert_eq!(is_label_value(&"x".repeat(64)), ["must be no more than 63 characters"]);
    assert!(is_relaxed_env_var_name("HTTPS_PROXY").is_empty());
    assert_eq!(is_relaxed_env_var_name("A=B").len(), 1);
}

#[test]
fn tolerations() {
    let errs = messages(validate_tolerations(
        &json!([{"key": "k", "operator": "Exists", "value": "v", "effect": "NoRun"}]),
        &Path::new("EXECUTOR_TOLERATIONS"),
    ));
    assert_eq!(
        errs,
        [
            "EXECUTOR_TOLERATIONS[0].operator: Invalid value: core.Toleration{Key:\"k\", Operator:\"Exists\", \
             Value:\"v\", Effect:\"NoRun\", TolerationSeconds:(*int64)(nil)}: value must be empty when `operator` is \
             'Exists'",
            "EXECUTOR_TOLERATIONS[0].effect: Unsupported value: \"NoRun\": supported values: \"NoSchedule\", \
             \"PreferNoSchedule\", \"NoExecute\"",
        ]
    );
    assert!(validate_tolerations(&json!([{"operator": "Exists"}]), &Path::new("t")).is_empty());
}

#[test]
fn affinity() {
    let affinity = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "Equals", "values": ["a"]}, {"key": "pool", "operator": "In"}]}
    ]}}});
    assert_eq!(
        messages(validate_affinity(&affinity, &Path::new("a"))),
        [
            "a.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]\
             .operator: Invalid value: \"Equals\": not a valid selector operator",
            "a.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[1]\
             .values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
        ]
    );
}

#[test]
fn quantities_and_resources() {
    assert!(KubeQuantity::parse("1e3").is_ok());
    assert_eq!(KubeQuantity::parse("abc"), Err(QuantityDecodeError::FormatWrong));
    assert_eq!(KubeQuantity::parse("1.5.5"), Err(QuantityDecodeError::FormatWrong));
    assert_eq!(KubeQuantity::parse("1K"), Err(QuantityDecodeError::Suffix));
    assert!(KubeQuantity::parse("1Gi").unwrap() > KubeQuantity::parse("1000M").unwrap());
    assert!(KubeQuantity::parse("-1").unwrap().is_negative());
    let resources = json!({"requests": {"cpu": "2", "memory": "-1"}, "limits": {"cpu": "1"}});
    assert_eq!(
        messages(validate_resource_requirements(&resources, &Path::new("r"))),
        [
            "r.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
            "r.requests[memory]: Invalid value: \"-1\": must be greater than or equal to 0",
        ]
    );
}
