//! What validation collects while it walks a document: every problem with an RFC 6901 JSON Pointer to it, and
//! the jq programs compiled on the way. Shared by the document checks (`validate.rs`) and the per-node-type
//! parameter checks (`params.rs`).

use super::jq::JqProgram;
use super::limits::Limits;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// One problem in a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidationError {
    /// RFC 6901 JSON Pointer to the offending value ("" is the whole document).
    pub pointer: String,
    pub message: String,
}

/// Every problem found in a document (never empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(transparent)]
#[error("invalid workflow: {}", summary(.0))]
pub struct ValidationErrors(pub Vec<ValidationError>);

fn summary(errors: &[ValidationError]) -> String {
    let parts: Vec<String> = errors.iter().map(|e| format!("{}: {}", display_pointer(&e.pointer), e.message)).collect();
    parts.join("; ")
}

fn display_pointer(pointer: &str) -> &str {
    if pointer.is_empty() { "/" } else { pointer }
}

impl ValidationErrors {
    pub fn errors(&self) -> &[ValidationError] {
        &self.0
    }
}

/// Appends RFC 6901 tokens to a pointer.
pub(crate) fn pointer(base: &str, token: &str) -> String {
    let mut out = String::with_capacity(base.len() + token.len() + 1);
    out.push_str(base);
    out.push('/');
    for c in token.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
    out
}

/// Collects errors and compiled programs while walking a document.
pub(crate) struct Checker<'a> {
    pub(crate) limits: &'a Limits,
    pub(crate) errors: Vec<ValidationError>,
    pub(crate) programs: HashMap<String, Arc<JqProgram>>,
}

impl Checker<'_> {
    pub(crate) fn error(&mut self, pointer: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ValidationError { pointer: pointer.into(), message: message.into() });
    }

    /// Compiles a jq expression found at `at` (which must hold a string).
    pub(crate) fn jq(&mut self, at: &str, value: &Value) {
        let Some(expr) = value.as_str() else {
            self.error(at, "must be a string holding a jq expression");
            return;
        };
        if expr.len() > self.limits.max_expression_bytes {
            self.error(
                at,
                format!(
                    "jq expression is {} bytes, more than the limit of {}",
                    expr.len(),
                    self.limits.max_expression_bytes
                ),
            );
            return;
        }
        match JqProgram::compile_cached(expr) {
            Ok(program) => {
                self.programs.insert(at.to_owned(), program);
            }
            Err(err) => self.error(at, err.to_string()),
        }
    }

    /// Reports every key of `object` not in `allowed`.
    pub(crate) fn unknown_fields(&mut self, at: &str, object: &Map<String, Value>, allowed: &[&str]) {
        for key in object.keys() {
            if !allowed.contains(&key.as_str()) {
                self.error(pointer(at, key), format!("unknown field `{key}`; expected one of: {}", allowed.join(", ")));
            }
        }
    }

    pub(crate) fn positive_u64(&mut self, at: &str, value: &Value) -> Option<u64> {
        match value.as_u64() {
            Some(n) if n > 0 => Some(n),
            _ => {
                self.error(at, "must be a positive integer");
                None
            }
        }
    }
}
