//! Identifiers. Execution ids are UUIDv7, so they sort by creation time (the list endpoint's cursor relies on it).

use uuid::Uuid;

/// A new execution's id: a UUIDv7, so ids sort by creation time (the list endpoint's cursor relies on it). An
/// execution id is a plain [`Uuid`] everywhere (record, keys, queue message, Job labels); there is no newtype.
pub fn new_execution_id() -> Uuid {
    Uuid::now_v7()
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
        let a = new_execution_id();
        let b = new_execution_id();
        assert!(a < b);
        assert_eq!(a.get_version(), Some(uuid::Version::SortRand));
    }
}
