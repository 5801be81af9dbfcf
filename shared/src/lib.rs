//! Everything the three flow-like services share: configuration groups, identifiers, the workflow document and
//! its validation, the Redis key space and queue protocol, S3 storage, status events and (with the `record`
//! feature) the PostgreSQL record.

pub mod config;
pub mod ids;
pub mod kube_validation;
pub mod lifecycle;
pub mod protocol;
pub mod quantity;
#[cfg(feature = "record")]
pub mod record;
pub mod spec;
pub mod status;
pub mod storage;
pub mod telemetry;
pub mod trace;
pub mod workflow;
