//! What the command line hands in beside flags: JSON files (or stdin for `-`), `K=V` labels, `NAME[@VERSION]`
//! workflow references and `--since` durations, each checked before anything is sent.

use crate::error::CliError;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A JSON document from a file, or from stdin when the path is `-`.
pub fn read_json(path: &Path) -> Result<Value, CliError> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|source| CliError::ReadFile { path: PathBuf::from("stdin"), source })?;
        text
    } else {
        std::fs::read_to_string(path).map_err(|source| CliError::ReadFile { path: path.to_owned(), source })?
    };
    let shown = if path == Path::new("-") { PathBuf::from("stdin") } else { path.to_owned() };
    serde_json::from_str(&text).map_err(|source| CliError::NotJson { path: shown, source })
}

/// A workflow document: a JSON object (the API checks the rest and names each problem by a JSON Pointer).
pub fn read_workflow(path: &Path) -> Result<Value, CliError> {
    let document = read_json(path)?;
    if !document.is_object() {
        let why = format!("a workflow is a JSON object with `nodes`, not {}", kind(&document));
        return Err(CliError::NotAWorkflow { path: path.to_owned(), why });
    }
    Ok(document)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One `K=V` label (for clap's `value_parser`).
pub fn label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("a label is NAME=VALUE, not {text:?}")),
    }
}

/// Labels as a JSON object.
pub fn labels_object(labels: &[(String, String)]) -> Map<String, Value> {
    labels.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect()
}

/// A registered workflow: `NAME` or `NAME@VERSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRef {
    pub name: String,
    pub version: Option<u32>,
}

impl WorkflowRef {
    pub fn to_json(&self) -> Value {
        let mut reference = Map::new();
        reference.insert("name".into(), self.name.clone().into());
        if let Some(version) = self.version {
            reference.insert("version".into(), version.into());
        }
        Value::Object(reference)
    }
}

/// Parses `NAME[@VERSION]` (for clap's `value_parser`).
pub fn workflow_ref(text: &str) -> Result<WorkflowRef, String> {
    let (name, version) = match text.split_once('@') {
        Some((name, version)) => {
            let version = version
                .parse::<u32>()
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| format!("the version in {text:?} is not a number from 1"))?;
            (name, Some(version))
        }
        None => (text, None),
    };
    if name.is_empty() {
        return Err(format!("{text:?} has no workflow name"));
    }
    Ok(WorkflowRef { name: name.to_owned(), version })
}

/// A `--since` duration such as `90s`, `15m`, `1h`, `2d` (for clap's `value_parser`).
pub fn since(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|err| format!("{text:?} is not a duration such as 30m, 1h or 2d: {err}"))
}

/// `now - since` as the RFC 3339 time the API takes.
pub fn submitted_after(since: std::time::Duration, now: DateTime<Utc>) -> Result<String, CliError> {
    let delta = chrono::TimeDelta::from_std(since).map_err(|_| CliError::Usage("--since is too long".into()))?;
    let at = now.checked_sub_signed(delta).ok_or_else(|| CliError::Usage("--since is too long".into()))?;
    Ok(at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_refs_and_durations_parse() {
        assert_eq!(label("team=ops").unwrap(), ("team".into(), "ops".into()));
        assert_eq!(label("k=a=b").unwrap(), ("k".into(), "a=b".into()));
        assert_eq!(label("empty=").unwrap(), ("empty".into(), String::new()));
        assert!(label("noequals").is_err());
        assert!(label("=v").is_err());
        assert_eq!(workflow_ref("billing").unwrap(), WorkflowRef { name: "billing".into(), version: None });
        assert_eq!(workflow_ref("billing@3").unwrap().to_json(), serde_json::json!({"name": "billing", "version": 3}));
        assert!(workflow_ref("billing@0").is_err());
        assert!(workflow_ref("billing@x").is_err());
        assert!(workflow_ref("@2").is_err());
        assert_eq!(since("1h").unwrap().as_secs(), 3600);
        assert_eq!(since("90s").unwrap().as_secs(), 90);
        assert!(since("soon").is_err());
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(submitted_after(since("1h").unwrap(), now).unwrap(), "2026-12-01T09:00:00.000Z");
    }
}
