-- The progress events of finished executions. When the status pipeline applies an execution's `finished` event,
-- it copies the execution's progress stream (`{prefix}:status:<id>`) here, in the same transaction as the state
-- change, and then deletes the stream from Redis: Redis keeps only the progress of executions in flight, and a
-- Server-Sent Events client that connects (or resumes with Last-Event-ID) after the end reads from here.
--
-- One row per archived segment of the stream, named by its first entry id (`first_ms`-`first_seq`). A replay of
-- the same `finished` event archives the same segment again (a superset: the stream was not trimmed yet) and
-- replaces the row when it reaches further; a redrive that finishes later archives a new segment.
CREATE TABLE execution_progress (
    execution_id uuid NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    first_ms     bigint NOT NULL,
    first_seq    bigint NOT NULL,
    last_ms      bigint NOT NULL,
    last_seq     bigint NOT NULL,
    -- MessagePack: [{id, attempt, seq, at_ms, event}, ...] in stream order (record::progress::ArchivedEntry).
    entries      bytea NOT NULL,
    archived_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (execution_id, first_ms, first_seq)
);
