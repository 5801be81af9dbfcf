//! Everything the three flow-like services share: configuration groups, identifiers, the workflow document and
//! its validation, the Redis key space and queue protocol, S3 storage, status events and (with the `record`
//! feature) the PostgreSQL record.

pub mod config;
pub mod ids;
pub mod keys;
pub mod leases;
pub mod limits;
pub mod quantity;
pub mod queue;
pub mod queue_ops;
#[cfg(feature = "record")]
pub mod record;
pub mod redis_client;
pub mod spec;
pub mod status;
pub mod storage;
pub mod telemetry;
pub mod trace;
pub mod workflow;
