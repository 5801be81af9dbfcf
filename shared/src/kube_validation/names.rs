//! Names, label keys and values, annotation keys and environment variable names, with the messages of
//! `k8s.io/apimachinery/pkg/util/validation` (Kubernetes 1.33 wording).

use super::error::{BadValue, FieldError, Path};
use serde_json::Value;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
                                 and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
                                     characters, '-' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' \
                               or '.', and must start and end with an alphanumeric character";
const RELAXED_ENV_MSG: &str =
    "a valid environment variable name must consist only of printable ASCII characters other than '='";
/// Most bytes all annotations of one object may take together.
const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

/// `RegexError`: the message, the examples and the regular expression, punctuated as Go does (including the
/// double space before each "or").
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!("{msg} (e.g. {}regex used for validation is '{fmt}')", examples.join(" or "))
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn matches_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn matches_dns_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns_label)
}

fn matches_qualified_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Why `value` is not a DNS-1123 label (container, volume and port names); empty when it is one.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !matches_dns_label(value) {
        if matches_dns_subdomain(value) {
            errs.push("must not contain dots".to_owned());
        } else {
            errs.push(regex_error(DNS1123_LABEL_MSG, DNS1123_LABEL_FMT, &["my-name", "123-abc"]));
        }
    }
    errs
}

/// Why `value` is not a DNS-1123 subdomain (most object names); empty when it is one.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !matches_dns_subdomain(value) {
        errs.push(regex_error(DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errs
}

/// Why `value` is not a qualified name (`[prefix/]name`: label keys, annotation keys, toleration keys).
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_owned());
            } else {
                errs.extend(is_dns1123_subdomain(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            )];
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !matches_qualified_name(name) {
        errs.push(format!(
            "name part {}",
            regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    errs
}

/// Why `value` is not a label value (empty is allowed).
pub fn is_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !value.is_empty() && !matches_qualified_name(value) {
        errs.push(regex_error(LABEL_VALUE_MSG, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

/// Why `value` is not an environment variable name under the relaxed rule kube-apiserver applies since 1.32
/// (`RelaxedEnvironmentVariableValidation`, on by default): printable ASCII other than `=`.
pub fn is_relaxed_env_var_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.is_empty() {
        errs.push("environment variable name must be non-empty".to_owned());
    }
    if value.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        errs.push(RELAXED_ENV_MSG.to_owned());
    }
    errs
}

/// `ValidateDNS1123Label`: one `Invalid` per reason.
pub fn validate_dns1123_label(value: &str, path: &Path) -> Vec<FieldError> {
    is_dns1123_label(value).into_iter().map(|m| FieldError::invalid(path, BadValue::Str(value.to_owned()), m)).collect()
}

/// `NameIsDNSSubdomain` applied to a field (service account, priority class, runtime class names).
pub fn validate_dns1123_subdomain(value: &str, path: &Path) -> Vec<FieldError> {
    is_dns1123_subdomain(value)
        .into_iter()
        .map(|m| FieldError::invalid(path, BadValue::Str(value.to_owned()), m))
        .collect()
}

/// `ValidateLabels`: every key a qualified name, every value a label value; the field is the map itself.
pub fn validate_labels(labels: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (key, value) in labels.as_object().into_iter().flatten() {
        errs.extend(
            is_qualified_name(key).into_iter().map(|m| FieldError::invalid(path, BadValue::Str(key.clone()), m)),
        );
        let value = value.as_str().unwrap_or_default();
        errs.extend(
            is_label_value(value).into_iter().map(|m| FieldError::invalid(path, BadValue::Str(value.to_owned()), m)),
        );
    }
    errs
}

/// `ValidateAnnotations`: keys are qualified names once lower-cased; all of them together at most 256 KiB.
pub fn validate_annotations(annotations: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0;
    for (key, value) in annotations.as_object().into_iter().flatten() {
        errs.extend(
            is_qualified_name(&key.to_lowercase())
                .into_iter()
                .map(|m| FieldError::invalid(path, BadValue::Str(key.clone()), m)),
        );
        total += key.len() + value.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE));
    }
    errs
}
