//! The rules several routes share: what a workflow name and a stream entry id are, how large a page may be, and
//! when a dispatcher counts as alive. One place, so that every route (and `waiting`) refuses and answers alike.

use crate::error::ApiError;
use std::time::Duration;

/// What a workflow name is, for refusals.
pub const WORKFLOW_NAME_RULE: &str =
    "a workflow name is 1-128 characters of a-z, 0-9, '-', '.', '_', starting with a letter or digit";

/// A dispatcher counts as alive when its heartbeat is this recent.
pub const DISPATCHER_ALIVE_WITHIN: Duration = Duration::from_secs(15);

/// Page size of a list when the client asks for none.
pub const DEFAULT_PAGE: u16 = 50;
/// Largest page a list returns.
pub const MAX_PAGE: u16 = 500;

/// The page size a list request asks for (default [`DEFAULT_PAGE`]), refused (400) outside 1..=[`MAX_PAGE`].
/// Generic over the integer type the route's query declares, so that what the query parser accepts stays the same.
pub fn page_limit<T: From<u16> + PartialOrd>(limit: Option<T>) -> Result<T, ApiError> {
    let limit = limit.unwrap_or_else(|| T::from(DEFAULT_PAGE));
    if limit < T::from(1) || limit > T::from(MAX_PAGE) {
        return Err(ApiError::Malformed(format!("limit must be between 1 and {MAX_PAGE}")));
    }
    Ok(limit)
}

/// A Redis stream entry id as the API takes one (event ids, dead-letter entries and cursors): exactly
/// `ENTRY_ID_PATTERN`, `ms-seq` with both parts present and at most 19 digits each, so that every id the
/// document's pattern allows also fits a u64.
pub fn is_entry_id(id: &str) -> bool {
    id.split_once('-').is_some_and(|(ms, seq)| {
        [ms, seq].iter().all(|part| (1..=19).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit()))
    })
}

pub fn parse_status(status: &str) -> Result<flow_like_shared::record::ExecutionStatus, ApiError> {
    flow_like_shared::record::ExecutionStatus::parse(status)
        .ok_or_else(|| ApiError::Malformed(format!("unknown status {status:?}")))
}

/// A cursor this API issued: an execution id.
pub fn parse_cursor(cursor: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(cursor).map_err(|_| ApiError::Malformed("cursor is not one this API issued".into()))
}

pub fn check_workflow(workflow: String) -> Result<String, ApiError> {
    if flow_like_shared::ids::valid_workflow_name(&workflow) {
        Ok(workflow)
    } else {
        Err(ApiError::Malformed(format!("workflow: {WORKFLOW_NAME_RULE}")))
    }
}

/// A tenant named in a query (`tenant=`): refused (400) unless it is a tenant name.
pub fn check_tenant_query(tenant: Option<&str>) -> Result<(), ApiError> {
    match tenant {
        Some(t) if !flow_like_shared::ids::valid_tenant_name(t) => {
            Err(ApiError::Malformed("query parameter `tenant`: not a tenant name".into()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_limits_default_and_stay_in_range() {
        assert_eq!(page_limit::<i64>(None).unwrap(), 50);
        assert_eq!(page_limit::<usize>(Some(500)).unwrap(), 500);
        assert!(page_limit::<i64>(Some(0)).is_err());
        assert!(page_limit::<i64>(Some(-1)).is_err());
        assert!(page_limit::<usize>(Some(501)).is_err());
    }

    #[test]
    fn entry_ids_have_two_bounded_parts() {
        assert!(is_entry_id("1700000000000-0"));
        assert!(!is_entry_id("1700000000000"));
        assert!(!is_entry_id("-0"));
        assert!(!is_entry_id("1-01234567890123456789"));
        assert!(!is_entry_id("1-a"));
    }
}
