//! Validation of Job bodies against the official Kubernetes JSON schema (the strict, standalone schemas shipped
//! in the `kubernetes-validate` Python package), as the API server's own validation would refuse them.

use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why the schema could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("finding the kubernetes-validate package (pip install kubernetes-validate): {0}")]
    PackageNotFound(String),
    #[error("reading schema file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing schema file {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("compiling the Job schema: {0}")]
    Compile(String),
}

/// The directory holding `v<version>-local-strict/` schema folders: `$KUBE_SIM_SCHEMA_DIR`, else the
/// `kubernetes-json-schema` folder of the installed `kubernetes_validate` package.
pub fn schema_root() -> Result<PathBuf, SchemaError> {
    if let Some(dir) = std::env::var_os("KUBE_SIM_SCHEMA_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let output = Command::new("python3")
        .args(["-c", "import kubernetes_validate,os;print(os.path.dirname(kubernetes_validate.__file__))"])
        .output()
        .map_err(|e| SchemaError::PackageNotFound(e.to_string()))?;
    if !output.status.success() {
        return Err(SchemaError::PackageNotFound(String::from_utf8_lossy(&output.stderr).trim().to_owned()));
    }
    let dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Ok(Path::new(&dir).join("kubernetes-json-schema"))
}

/// Unknown fields of a body: `(JSON pointer of the parent, field name)`.
pub type UnknownFieldList = Vec<(String, String)>;

/// A compiled validator for `batch/v1` Job objects of one Kubernetes version.
pub struct JobSchema {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for JobSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobSchema")
    }
}

impl JobSchema {
    /// Loads the strict Job schema of `version` (e.g. `1.33.0`).
    pub fn load(version: &str) -> Result<Self, SchemaError> {
        let dir = schema_root()?.join(format!("v{version}-local-strict"));
        let job = read_json(&dir.join("job-batch-v1.json"))?;
        let definitions = read_json(&dir.join("_definitions.json"))?;
        let all_defs = definitions["$defs"].as_object().cloned().unwrap_or_default();
        // The schema files point into `/api/_definitions.json`; inline only the definitions a Job reaches so
        // the validator compiles in milliseconds instead of compiling every Kubernetes type.
        let mut defs = Map::new();
        let mut pending = Vec::new();
        let mut schema = job;
        rewrite_refs(&mut schema, &mut pending);
        while let Some(name) = pending.pop() {
            if defs.contains_key(&name) {
                continue;
            }
            let Some(mut def) = all_defs.get(&name).cloned() else {
                continue;
            };
            rewrite_refs(&mut def, &mut pending);
            defs.insert(name, def);
        }
        schema["$defs"] = Value::Object(defs);
        let validator = jsonschema::validator_for(&schema).map_err(|e| SchemaError::Compile(e.to_string()))?;
        Ok(Self { validator })
    }

    /// Every violation as `(JSON pointer, message)`; empty when the Job is valid.
    pub fn violations(&self, job: &Value) -> Vec<(String, String)> {
        self.validator.iter_errors(job).map(|e| (e.instance_path().to_string(), e.to_string())).collect()
    }

    /// The violations split into unknown fields (`(JSON pointer of the parent, field name)`) and the rest
    /// (`(JSON pointer, message)`), since the API server treats the first kind by `fieldValidation`.
    pub fn violations_and_unknown_fields(&self, job: &Value) -> (Vec<(String, String)>, UnknownFieldList) {
        let mut violations = Vec::new();
        let mut unknown = Vec::new();
        for error in self.validator.iter_errors(job) {
            let pointer = error.instance_path().to_string();
            match error.kind() {
                jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                    unknown.extend(unexpected.iter().map(|name| (pointer.clone(), name.clone())));
                }
                _ => violations.push((pointer, error.to_string())),
            }
        }
        (violations, unknown)
    }
}

fn read_json(path: &Path) -> Result<Value, SchemaError> {
    let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Read { path: path.to_owned(), source })?;
    serde_json::from_str(&text).map_err(|source| SchemaError::Parse { path: path.to_owned(), source })
}

const DEFINITIONS_REF: &str = "/api/_definitions.json#/$defs/";

fn rewrite_refs(value: &mut Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "$ref"
                    && let Some(name) = child
                        .as_str()
                        .and_then(|r| r.strip_prefix(DEFINITIONS_REF).or_else(|| r.strip_prefix("#/$defs/")))
                {
                    found.push(name.to_owned());
                    *child = Value::String(format!("#/$defs/{name}"));
                } else {
                    rewrite_refs(child, found);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, found)),
        _ => {}
    }
}
