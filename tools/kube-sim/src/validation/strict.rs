//! Unknown fields and the `fieldValidation` query parameter. The real API server drops unknown fields with a
//! warning by default (`Warn`), drops them silently with `Ignore` and refuses the body with `400` under
//! `Strict`. Without the parameter the simulator stays stricter than a real server: unknown fields are
//! schema violations (`422`), so a misspelt field in the product's own Job is caught.

use serde_json::Value;

/// The `fieldValidation` directive of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldValidation {
    /// Not given: the simulator's default, unknown fields are `422`.
    Unset,
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    /// Reads the query value; an unknown directive is the `400` message.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("") => Ok(Self::Unset),
            Some("Ignore") => Ok(Self::Ignore),
            Some("Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some(other) => {
                Err(format!("fieldValidation parameter unsupported: {other}. Supported values: Ignore, Warn, Strict"))
            }
        }
    }
}

/// The unknown fields of a body, as JSON pointers to their parent plus their name.
#[derive(Debug, Default)]
pub(crate) struct UnknownFields(pub Vec<(String, String)>);

impl UnknownFields {
    /// Each field as the API server names it: `spec.template.spec.containers[0].foo`.
    pub fn paths(&self) -> Vec<String> {
        self.0.iter().map(|(parent, name)| dotted(parent, name)).collect()
    }

    /// The `400` message under `Strict`.
    pub fn strict_message(&self) -> String {
        let fields: Vec<String> = self.paths().iter().map(|p| format!("unknown field \"{p}\"")).collect();
        format!("Job in version \"v1\" cannot be handled as a Job: strict decoding error: {}", fields.join(", "))
    }

    /// One `Warning` header value per field under `Warn`: `299 - "unknown field \"spec.foo\""`.
    pub fn warnings(&self) -> Vec<String> {
        self.paths().iter().map(|p| format!("299 - \"unknown field \\\"{p}\\\"\"")).collect()
    }

    /// Drops the fields from `object`, as decoding into the typed object does.
    pub fn drop_from(&self, object: &mut Value) {
        for (parent, name) in &self.0 {
            if let Some(map) = object.pointer_mut(parent).and_then(Value::as_object_mut) {
                map.remove(name);
            }
        }
    }
}

fn dotted(pointer: &str, name: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').filter(|s| !s.is_empty()) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    if out.is_empty() { name.to_owned() } else { format!("{out}.{name}") }
}
