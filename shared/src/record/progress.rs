//! The progress archive (`execution_progress`): a finished execution's progress events, copied from its Redis
//! stream by the status pipeline in the same transaction that records the end, so Redis holds the progress of
//! executions in flight only. The API's event stream reads from here for whatever Redis no longer has.

use super::RecordError;
use crate::status::{StatusEntry, StatusEvent};
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, Transaction};
use std::cmp::Ordering;
use std::fmt;
use uuid::Uuid;

/// A stream entry id (`<ms>-<seq>`), ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EntryId {
    pub ms: i64,
    pub seq: i64,
}

impl EntryId {
    /// Parses `<ms>-<seq>`; None for anything else (or parts beyond `i64`, which `XADD *` never makes).
    pub fn parse(id: &str) -> Option<Self> {
        let (ms, seq) = id.split_once('-')?;
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some(Self { ms: ms.parse().ok()?, seq: seq.parse().ok()? })
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One archived progress entry: its stream id and the entry (the execution is the row's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedEntry {
    pub id: String,
    pub attempt: u32,
    pub seq: u64,
    pub at_ms: i64,
    pub event: StatusEvent,
}

impl ArchivedEntry {
    pub fn new(id: String, entry: StatusEntry) -> Self {
        Self { id, attempt: entry.attempt, seq: entry.seq, at_ms: entry.at_ms, event: entry.event }
    }

    /// The entry as read from the stream.
    pub fn entry(&self, execution: Uuid) -> StatusEntry {
        StatusEntry { execution, attempt: self.attempt, seq: self.seq, at_ms: self.at_ms, event: self.event.clone() }
    }
}

/// A contiguous run of one execution's progress stream, in stream order (never empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub execution: Uuid,
    pub first: EntryId,
    pub last: EntryId,
    pub entries: Vec<ArchivedEntry>,
}

impl Segment {
    /// A segment of `entries` (stream order, valid ids only); None when there is none.
    pub fn new(execution: Uuid, entries: Vec<ArchivedEntry>) -> Option<Self> {
        let first = EntryId::parse(&entries.first()?.id)?;
        let last = EntryId::parse(&entries.last()?.id)?;
        Some(Self { execution, first, last, entries })
    }
}

/// Writes `segments` in the caller's transaction (the one that records the executions' end). A segment that is
/// already archived is replaced when the new copy reaches further (a replayed `finished` event). Segments of
/// executions that no longer exist are skipped.
pub async fn archive(tx: &mut Transaction<'_, Postgres>, segments: &[Segment]) -> Result<(), RecordError> {
    if segments.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(segments.len());
    let (mut first_ms, mut first_seq, mut last_ms, mut last_seq) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut bodies = Vec::with_capacity(segments.len());
    for segment in segments {
        let body = rmp_serde::to_vec_named(&segment.entries)
            .map_err(|err| RecordError::Encode(format!("progress archive: {err}")))?;
        ids.push(segment.execution);
        first_ms.push(segment.first.ms);
        first_seq.push(segment.first.seq);
        last_ms.push(segment.last.ms);
        last_seq.push(segment.last.seq);
        bodies.push(body);
    }
    sqlx::query(
        "INSERT INTO execution_progress AS p (execution_id, first_ms, first_seq, last_ms, last_seq, entries)
         SELECT u.id, u.first_ms, u.first_seq, u.last_ms, u.last_seq, u.entries
         FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bytea[])
              AS u(id, first_ms, first_seq, last_ms, last_seq, entries)
         WHERE EXISTS (SELECT 1 FROM executions e WHERE e.id = u.id)
         ON CONFLICT (execution_id, first_ms, first_seq) DO UPDATE SET
            last_ms = EXCLUDED.last_ms, last_seq = EXCLUDED.last_seq, entries = EXCLUDED.entries,
            archived_at = now()
         WHERE (EXCLUDED.last_ms, EXCLUDED.last_seq) > (p.last_ms, p.last_seq)",
    )
    .bind(&ids)
    .bind(&first_ms)
    .bind(&first_seq)
    .bind(&last_ms)
    .bind(&last_seq)
    .bind(&bodies)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The archived entries of `execution` after `after`, in stream order, each once (segments may overlap).
pub async fn entries_after(
    db: &sqlx::PgPool,
    execution: Uuid,
    after: EntryId,
) -> Result<Vec<(EntryId, ArchivedEntry)>, RecordError> {
    let rows: Vec<(Vec<u8>,)> = sqlx::query_as(
        "SELECT entries FROM execution_progress
         WHERE execution_id = $1 AND (last_ms, last_seq) > ($2, $3)
         ORDER BY first_ms, first_seq",
    )
    .bind(execution)
    .bind(after.ms)
    .bind(after.seq)
    .fetch_all(db)
    .await?;
    let mut out: Vec<(EntryId, ArchivedEntry)> = Vec::new();
    let mut reached = after;
    for (body,) in rows {
        let entries: Vec<ArchivedEntry> = rmp_serde::from_slice(&body)
            .map_err(|err| RecordError::Encode(format!("progress archive of {execution}: {err}")))?;
        for entry in entries {
            let Some(id) = EntryId::parse(&entry.id) else { continue };
            if id.cmp(&reached) == Ordering::Greater {
                reached = id;
                out.push((id, entry));
            }
        }
    }
    Ok(out)
}

/// One execution's progress, whole: the entries still on its Redis stream (`live`, as `XRANGE` returns them; an
/// entry that does not parse is dropped, as the event stream drops it) and those of the archive, each once, in
/// stream order. Read Redis first and the archive second: an entry leaves Redis only once the archive holds it,
/// so in that order none is missed, whatever the status pipeline does in between.
pub fn merged(
    execution: Uuid,
    live: Vec<crate::protocol::streams::Entry>,
    archived: Vec<(EntryId, ArchivedEntry)>,
) -> Vec<(EntryId, StatusEntry)> {
    let mut entries = std::collections::BTreeMap::new();
    for (id, fields) in live {
        if let (Some(id), Ok(entry)) = (EntryId::parse(&id), StatusEntry::from_fields(&fields)) {
            entries.insert(id, entry);
        }
    }
    for (id, archived) in archived {
        entries.entry(id).or_insert_with(|| archived.entry(execution));
    }
    entries.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_order_as_redis_orders_them() {
        let id = |s| EntryId::parse(s).unwrap();
        assert!(id("1700000000000-10") > id("1700000000000-9"));
        assert!(id("1700000000001-0") > id("1700000000000-99"));
        assert_eq!(id("5-3").to_string(), "5-3");
        for bad in ["", "5", "-3", "5-", "a-1", "1-b", "1-2-3", "99999999999999999999-0"] {
            assert_eq!(EntryId::parse(bad), None, "{bad}");
        }
    }
}
