//! The submit path's batcher: group commit for submissions without an Idempotency-Key.
//!
//! [`super::submit`] hands such an execution to [`Submitter::submit`] and waits for its outcome. One collector
//! task takes whatever is waiting (at most [`MAX_BATCH`]) as soon as one of [`MAX_IN_FLIGHT`] batch slots is
//! free, so a lone submission goes out at once and batches only grow while the previous ones are still being
//! written (natural batching: no timer, no added idle latency). Each batch is
//!
//! 1. one multi-row autocommit `INSERT` (all rows committed together, or none),
//! 2. one Redis pipeline of the enqueue script, one call per committed row, each with its own outcome,
//! 3. for the rows whose enqueue failed, one `DELETE` that withdraws them,
//!
//! and then every member is answered. The guarantees are those of a single submission: the answer is 202 only
//! after the row is committed, and then its message is on the stream; a failed enqueue withdraws the row and the
//! client gets 503; if the withdrawal fails too, the row stays and the reconciler queues it later (202). A batch
//! insert refused for a reason other than the database being unavailable (one row PostgreSQL will not take
//! spoils the statement) is retried row by row, so each member gets its own answer.

use chrono::{DateTime, Utc};
use flow_like_shared::protocol::keys::Keys;
use flow_like_shared::protocol::{self, QueueBody, QueueError, QueueMessage};
use flow_like_shared::record::RecordError;
use flow_like_shared::record::batch;
use flow_like_shared::record::executions::NewExecution;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Most submissions in one batch (one INSERT statement, one Redis pipeline).
pub const MAX_BATCH: usize = 128;
/// Batches being written at once: two let one batch's INSERT overlap another's Redis pipeline, while keeping
/// batches large (each extra slot splits the waiting submissions into more, smaller statements).
pub const MAX_IN_FLIGHT: usize = 2;
/// Submissions waiting for a batch; a full queue makes handlers wait (back pressure), it refuses nothing.
const QUEUE_CAPACITY: usize = 16 * 1024;

/// One execution to commit and queue.
#[derive(Debug)]
pub struct Submission {
    pub row: NewExecution,
    /// The queue priority (the row's `priority`, as the queue protocol spells it).
    pub priority: u8,
    /// The labels for the queue entry's body (the row carries them as JSON).
    pub labels: BTreeMap<String, String>,
}

/// A submission that was committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub queued_at: DateTime<Utc>,
    /// The enqueue failed and so did the withdrawal: the row stays and the reconciler queues it later.
    pub deferred: bool,
}

/// Why a submission was not accepted. Nothing of it is left behind (except what the reconciler will finish).
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the insert failed")]
    Database(#[source] RecordError),
    #[error("the enqueue failed; the execution was withdrawn")]
    Queue(#[source] QueueError),
    #[error("the submission batcher stopped")]
    Stopped,
}

struct Job {
    submission: Submission,
    reply: oneshot::Sender<Result<Committed, SubmitError>>,
}

struct Backends {
    db: PgPool,
    redis: ConnectionManager,
    keys: Keys,
}

/// The handle submissions go through. The batcher task starts with the first submission (inside the runtime)
/// and ends when the last handle is dropped.
pub struct Submitter {
    backends: Arc<Backends>,
    queue: OnceLock<mpsc::Sender<Job>>,
}

impl Submitter {
    pub fn new(db: PgPool, redis: ConnectionManager, keys: Keys) -> Self {
        Self { backends: Arc::new(Backends { db, redis, keys }), queue: OnceLock::new() }
    }

    /// Commits and queues one execution as part of the next batch; returns once that batch is done.
    pub async fn submit(&self, submission: Submission) -> Result<Committed, SubmitError> {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            tokio::spawn(collect(rx, self.backends.clone()));
            tx
        });
        let (reply, answer) = oneshot::channel();
        queue.send(Job { submission, reply }).await.map_err(|_| SubmitError::Stopped)?;
        // A dropped reply means the batch task panicked.
        answer.await.unwrap_or(Err(SubmitError::Stopped))
    }
}

/// Takes what is waiting whenever a batch slot is free and writes it as one batch.
async fn collect(mut rx: mpsc::Receiver<Job>, backends: Arc<Backends>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        if rx.recv_many(&mut jobs, MAX_BATCH).await == 0 {
            return; // every Submitter is gone
        }
        let backends = backends.clone();
        tokio::spawn(async move {
            write_batch(&backends, jobs).await;
            drop(slot);
        });
    }
}

/// Commits, queues and answers one batch.
async fn write_batch(backends: &Backends, jobs: Vec<Job>) {
    let n = jobs.len();
    let mut rows = Vec::with_capacity(n);
    let mut rest = Vec::with_capacity(n);
    for Job { submission, reply } in jobs {
        rows.push(submission.row);
        rest.push((submission.priority, submission.labels, reply));
    }

    let inserted = insert(&backends.db, &rows).await;

    // The committed rows become queue messages; the others are answered now.
    let mut messages = Vec::with_capacity(n);
    let mut waiting = Vec::with_capacity(n);
    for ((row, (priority, labels, reply)), inserted) in rows.into_iter().zip(rest).zip(inserted) {
        match inserted {
            Ok(queued_at) => {
                messages.push(first_attempt(row, priority, labels, queued_at));
                waiting.push((queued_at, reply));
            }
            Err(err) => {
                let _ = reply.send(Err(SubmitError::Database(err)));
            }
        }
    }
    if messages.is_empty() {
        return;
    }

    let mut redis = backends.redis.clone();
    let enqueued: Vec<Result<(), QueueError>> =
        match protocol::enqueue_many(&mut redis, &backends.keys, &messages).await {
            Ok(results) => results.into_iter().map(|r| r.map(drop)).collect(),
            Err(err) => messages.iter().map(|_| Err(copy_queue_error(&err))).collect(),
        };

    // Committed but not queued: take them back so the clients' retries do not run them twice.
    let failed: Vec<uuid::Uuid> =
        messages.iter().zip(&enqueued).filter(|(_, r)| r.is_err()).map(|(m, _)| m.execution_id).collect();
    let withdrawn = match batch::withdraw_many(&backends.db, &failed).await {
        Ok(_) => true,
        Err(err) => {
            // They stay committed; the reconciler will queue them. The clients' 202 is true.
            tracing::warn!(executions = failed.len(), cause = %err, "enqueue deferred to the reconciler");
            false
        }
    };
    for ((message, (queued_at, reply)), enqueued) in messages.iter().zip(waiting).zip(enqueued) {
        let answer = match enqueued {
            Ok(()) => Ok(Committed { queued_at, deferred: false }),
            Err(err) if withdrawn => Err(SubmitError::Queue(err)),
            Err(err) => {
                tracing::warn!(execution_id = %message.execution_id, cause = %err, "enqueue deferred to the reconciler");
                Ok(Committed { queued_at, deferred: true })
            }
        };
        let _ = reply.send(answer);
    }
}

/// The queue message of a committed row's first attempt (also the single enqueue of an idempotent submission).
pub fn first_attempt(
    row: NewExecution,
    priority: u8,
    labels: BTreeMap<String, String>,
    queued_at: DateTime<Utc>,
) -> QueueMessage {
    QueueMessage {
        execution_id: row.id,
        tenant: row.tenant,
        workflow: row.workflow_name,
        priority,
        attempt: 1,
        queued_at_ms: queued_at.timestamp_millis(),
        body: QueueBody { workflow_version: row.workflow_version, labels, traceparent: row.traceparent },
    }
}

/// One INSERT for the batch; each row's commit time or error, in the order of `rows`.
async fn insert(db: &PgPool, rows: &[NewExecution]) -> Vec<Result<DateTime<Utc>, RecordError>> {
    match batch::insert_many(db, rows).await {
        Ok(times) => times.into_iter().map(Ok).collect(),
        Err(err @ RecordError::Unavailable(_)) => {
            let cause = error_chain(&err);
            tracing::warn!(rows = rows.len(), cause = %cause, "batch insert failed: the database is unavailable");
            let mut errors: Vec<_> = (1..rows.len()).map(|_| Err(unavailable(&cause))).collect();
            errors.insert(0, Err(err));
            errors
        }
        Err(err) if rows.len() == 1 => vec![Err(err)],
        Err(err) => {
            // One row PostgreSQL refuses spoils the statement: each row on its own gets its own answer.
            tracing::debug!(rows = rows.len(), cause = %error_chain(&err), "batch insert refused; inserting row by row");
            futures::future::join_all(
                rows.chunks(1).map(|row| async move { batch::insert_many(db, row).await.map(|times| times[0]) }),
            )
            .await
        }
    }
}

/// The batch's "database unavailable" for one more member (sqlx errors cannot be cloned).
fn unavailable(cause: &str) -> RecordError {
    RecordError::Unavailable(sqlx::Error::Io(std::io::Error::other(cause.to_string())))
}

fn copy_queue_error(err: &QueueError) -> QueueError {
    match err {
        QueueError::Unavailable(e) => QueueError::Unavailable(e.clone()),
        QueueError::Command(e) => QueueError::Command(e.clone()),
        QueueError::Malformed(m) => QueueError::Malformed(m.clone()),
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
