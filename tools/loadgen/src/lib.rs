//! The load generator behind `flow-like-loadgen` and `scripts/bench.sh` (figures in docs/benchmarks.md):
//! - `submit` ([`submit`], [`pgbench`]): `POST /api/v1/executions` from many concurrent clients against a running
//!   API, latencies summarized, beside PostgreSQL's single-row INSERT rate measured with pgbench on the same machine
//!   as the ceiling the API's rate is compared against;
//! - `read` ([`read`]): `GET /api/v1/executions/{id}` (waiting reason and queue position computed on read) of
//!   random queued executions while many are queued;
//! - the pipeline modes ([`pipeline`]): dispatcher overhead, queue-to-dispatch latency, dispatcher memory, executor
//!   start-up and end to end, each on a fresh database, key prefix and buckets of the test service pool;
//! - Job creation through the Kubernetes runner ([`kube`], [`kube_dispatch`]) against the Kubernetes API simulator.
//!
//! It builds on `flow-like-test-services` (the servers), `flow-like-test-harness` (the API and dispatchers) and
//! `flow-like-kube-sim`, never on the integration-test crate.

pub mod cli;
pub mod cpu;
pub mod kube;
pub mod kube_dispatch;
pub mod pgbench;
pub mod pipeline;
pub mod read;
pub mod redis_stats;
pub mod report;
pub mod stats;
pub mod submit;

/// Why a benchmark run could not produce figures (individual non-202 answers are counted, not errors).
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("building the HTTP client failed")]
    HttpClient(#[source] reqwest::Error),
    #[error("creating an API key for tenant {tenant:?} failed")]
    CreateKey {
        tenant: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("creating an API key was refused with HTTP {status}: {body}")]
    CreateKeyRefused { status: u16, body: String },
    #[error("the warm-up had {failed} of {total} submissions fail (first answer: {first})")]
    WarmupFailed { failed: u64, total: u64, first: String },
    #[error("listing the queued executions failed")]
    List {
        #[source]
        source: reqwest::Error,
    },
    #[error("tenant {tenant:?} has no queued execution to read (submit some first: --queue)")]
    NothingQueued { tenant: String },
    #[error("no pgbench found in PATH or /usr/lib/postgresql/*/bin (install postgresql-contrib)")]
    PgbenchMissing,
    #[error("preparing the pgbench table failed")]
    PgbenchSetup(#[source] sqlx::Error),
    #[error("writing the pgbench script failed")]
    PgbenchScript(#[source] std::io::Error),
    #[error("running pgbench failed")]
    PgbenchSpawn(#[source] std::io::Error),
    #[error("pgbench exited with {status}: {stderr}")]
    PgbenchFailed { status: std::process::ExitStatus, stderr: String },
    #[error("pgbench printed no tps figure: {output}")]
    PgbenchOutput { output: String },
}
