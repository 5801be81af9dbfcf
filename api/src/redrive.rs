//! Redriving one dead letter, for `POST /dead-letters/{entry_id}/redrive` and the redrive by filter.
//!
//! A redrive is PostgreSQL first: the execution goes from `failed` back to `queued` with `attempts + 1` (the
//! one documented exception to "a finished execution never changes", taken on an operator's explicit
//! decision). Then the attempt is enqueued and the dead-letter entry deleted. If the enqueue fails after the
//! update the answer is 503, and nothing is lost: the dispatchers' reconciler re-enqueues `queued` executions
//! that Redis does not know. A second redrive of the same entry then answers 409 (the execution is no longer
//! `failed`); the leftover entry can be deleted with `XDEL`.

use crate::error::ApiError;
use crate::state::AppState;
use crate::views::ExecutionView;
use flow_like_shared::protocol;
use flow_like_shared::protocol::dead_letter::DeadLetter;
use flow_like_shared::record::WaitingExecution;
use flow_like_shared::record::operator::{self, Redrive};

/// Redrives one dead letter: its `failed` execution back to `queued` in PostgreSQL, the attempt enqueued, the
/// entry deleted. A letter whose execution is not failed (or not in the record) is a 409, and nothing changes.
pub async fn redrive_letter(state: &AppState, letter: &DeadLetter) -> Result<ExecutionView, ApiError> {
    let entry_id = &letter.entry_id;
    let Some(execution) = letter.execution() else {
        return Err(ApiError::Conflict(format!(
            "dead letter {entry_id} names no execution (id {:?}); delete it with XDEL",
            letter.execution_id
        )));
    };
    let record = match operator::redrive(&state.db, execution).await? {
        Redrive::Requeued(record) => record,
        Redrive::NotFailed(status) => {
            return Err(ApiError::Conflict(format!(
                "execution {execution} is {}, not failed: only a failed execution can be redriven",
                status.as_str()
            )));
        }
        Redrive::NotFound => {
            return Err(ApiError::Conflict(format!("execution {execution} of this dead letter is not in the record")));
        }
    };
    tracing::info!(execution_id = %execution, entry = %entry_id, attempt = record.attempts, "dead letter redriven");
    let columns = WaitingExecution::from(record.as_ref());
    let message = columns.queue_message(columns.attempt());
    let mut redis = state.redis.clone();
    // The record says queued now; the reconciler enqueues it if this fails, so the client may just look later.
    protocol::enqueue(&mut redis, &state.keys, &message).await.map_err(ApiError::QueueUnavailable)?;
    if let Err(err) = protocol::dead_letter::delete_dead_letter(&mut redis, &state.keys, entry_id).await {
        tracing::warn!(entry = %entry_id, cause = %err, "redriven, but the dead letter could not be deleted");
    }
    Ok(ExecutionView::from(*record))
}
