-- Which runner ran an attempt (`process`, `kubernetes`, `noop`), from its `dispatched` event: the latency
-- histograms are labelled with it, and an operator can tell the attempts of a mixed fleet apart.
ALTER TABLE attempts ADD COLUMN runner text;

-- The W3C trace context of the execution's submit span, so attempts re-enqueued from PostgreSQL (the
-- reconciler, a redrive) stay in the execution's trace. NULL when traces are off.
ALTER TABLE executions ADD COLUMN traceparent text;
