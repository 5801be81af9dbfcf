-- The status pipeline's state machine orders states by (attempt, rank); terminal states never change again.
CREATE FUNCTION flowlike_status_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE status
        WHEN 'queued' THEN 0
        WHEN 'dispatched' THEN 2
        WHEN 'running' THEN 3
        ELSE 9  -- succeeded, failed, timed_out, cancelled (and a failed attempt in the attempts table)
    END
$$;

-- The reconciler looks for executions in flight whose lease Redis no longer has.
CREATE INDEX executions_in_flight ON executions (updated_at) WHERE status IN ('dispatched', 'running');
