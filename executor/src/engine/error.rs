//! Why a node attempt failed. Every variant is retried when the node has a `retry` policy.

use super::store::StoreError;
use flow_like_shared::workflow::jq::JqError;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{field}: {source}")]
    Jq {
        field: &'static str,
        #[source]
        source: JqError,
    },
    #[error("jq evaluation was interrupted")]
    JqAborted,
    #[error("no compiled expression at {0}")]
    MissingProgram(String),
    #[error("attempt timed out after {0} ms")]
    Timeout(u64),
    #[error("invalid object key: {0}")]
    InvalidKey(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid http request: {0}")]
    HttpRequest(String),
    #[error("http request failed: {0}")]
    HttpTransport(#[source] reqwest::Error),
    #[error("http status {status}: {body}")]
    HttpStatus { status: u16, body: String },
    #[error("http response body exceeds {limit} bytes")]
    HttpTooLarge { limit: u64 },
    #[error("`over` must select an array, got {0}")]
    MapNotArray(&'static str),
    #[error("`over` selected {count} items, more than the limit of {limit}")]
    MapTooManyItems { count: usize, limit: usize },
    #[error("item {index}: {source}")]
    MapItem {
        index: usize,
        #[source]
        source: Box<NodeError>,
    },
    #[error("{0}")]
    Failed(String),
}
