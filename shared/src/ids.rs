//! Identifiers. Execution ids are UUIDv7, so they sort by creation time (the list endpoint's cursor relies on it).

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// One submitted workflow execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExecutionId(pub Uuid);

impl ExecutionId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for ExecutionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for ExecutionId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// A tenant's name: 1 to 63 characters of `[a-z0-9-]`, starting with a letter or digit. The same alphabet as a
/// Kubernetes label value and a Redis key segment, so it can appear in both unescaped.
pub fn valid_tenant_name(name: &str) -> bool {
    valid_slug(name, 63)
}

/// A workflow's registered name: like a tenant name, plus `.` and `_`, up to 128 characters.
pub fn valid_workflow_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_'))
}

fn valid_slug(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names() {
        assert!(valid_tenant_name("acme"));
        assert!(valid_tenant_name("acme-2"));
        assert!(!valid_tenant_name(""));
        assert!(!valid_tenant_name("-acme"));
        assert!(!valid_tenant_name("Acme"));
        assert!(!valid_tenant_name("a:b"));
        assert!(!valid_tenant_name(&"a".repeat(64)));
    }

    #[test]
    fn execution_ids_sort_by_creation() {
        let a = ExecutionId::new();
        let b = ExecutionId::new();
        assert!(a < b);
        assert_eq!(a.to_string().parse::<ExecutionId>().unwrap(), a);
    }
}
