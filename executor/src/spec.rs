//! Loading the attempt's spec from the meta bucket: the workflow snapshot (validated again here, since the
//! executor trusts nothing it did not check) and the input, inline or from its own meta-bucket object.

use flow_like_shared::spec::AttemptSpec;
use flow_like_shared::storage::{Storage, StorageError, layout};
use flow_like_shared::workflow::{Limits, ValidatedWorkflow, ValidationErrors, validate};
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("reading {key} from the meta bucket failed")]
    Read {
        key: String,
        #[source]
        source: StorageError,
    },
    #[error("{key} does not exist in the meta bucket")]
    Missing { key: String },
    #[error("{key} is not valid JSON of the expected shape")]
    Malformed {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the spec is for execution {found}, not {expected}")]
    WrongExecution { expected: Uuid, found: Uuid },
    #[error("the spec is for tenant `{found}`, not `{expected}`")]
    WrongTenant { expected: String, found: String },
    #[error(transparent)]
    InvalidWorkflow(#[from] ValidationErrors),
}

impl SpecError {
    /// Whether another attempt would fail the same way (the spec itself is wrong), as opposed to a storage
    /// problem another attempt may not meet.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Self::Read { .. } | Self::Missing { .. })
    }
}

/// A spec ready to run.
#[derive(Debug)]
pub struct LoadedSpec {
    pub workflow_name: String,
    pub workflow: ValidatedWorkflow,
    pub input: Value,
}

/// Reads, checks and validates the spec of `execution`, which must belong to `tenant`.
pub async fn load(storage: &Storage, execution: Uuid, tenant: &str) -> Result<LoadedSpec, SpecError> {
    let key = layout::spec(execution);
    let spec: AttemptSpec = read_json(storage, &key).await?;
    if spec.execution_id != execution {
        return Err(SpecError::WrongExecution { expected: execution, found: spec.execution_id });
    }
    if spec.tenant != tenant {
        return Err(SpecError::WrongTenant { expected: tenant.to_owned(), found: spec.tenant });
    }
    let workflow = validate(&spec.workflow, &Limits::default())?;
    let input = match &spec.input_key {
        Some(input_key) => read_json(storage, input_key).await?,
        None => spec.input.unwrap_or(Value::Null),
    };
    Ok(LoadedSpec { workflow_name: spec.workflow_name, workflow, input })
}

async fn read_json<T: serde::de::DeserializeOwned>(storage: &Storage, key: &str) -> Result<T, SpecError> {
    let bytes = storage
        .get(&storage.meta_bucket, key)
        .await
        .map_err(|source| SpecError::Read { key: key.to_owned(), source })?
        .ok_or_else(|| SpecError::Missing { key: key.to_owned() })?;
    serde_json::from_slice(&bytes).map_err(|source| SpecError::Malformed { key: key.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_problems_are_not_permanent_but_bad_specs_are() {
        assert!(!SpecError::Missing { key: "k".into() }.is_permanent());
        let bad_json = serde_json::from_str::<Value>("{").unwrap_err();
        assert!(SpecError::Malformed { key: "k".into(), source: bad_json }.is_permanent());
        assert!(SpecError::WrongTenant { expected: "a".into(), found: "b".into() }.is_permanent());
    }
}
