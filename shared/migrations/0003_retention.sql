-- Retention: the pruner finds finished executions by age, and remembers which ones already lost their objects
-- (the row outlives them when RETENTION_OBJECTS_DAYS is shorter than RETENTION_EXECUTIONS_DAYS).
ALTER TABLE executions ADD COLUMN objects_pruned_at timestamptz;

-- A redrive clears finished_at, so only finished executions are in this index.
CREATE INDEX executions_finished ON executions (finished_at) WHERE finished_at IS NOT NULL;
