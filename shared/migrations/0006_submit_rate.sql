-- Per-tenant submit rate limits set through the admin API (`PUT /api/v1/tenants/{tenant}/limits`); NULL falls
-- back to the API's defaults (API_SUBMIT_RATE, API_SUBMIT_BURST). The API enforces them in Redis (the tenant's
-- bucket, `{prefix}:submit-rate:<tenant>`); the reconciler restores the Redis copy of these overrides from here.
ALTER TABLE tenants
    ADD COLUMN submit_rate  double precision CHECK (submit_rate > 0),
    ADD COLUMN submit_burst integer CHECK (submit_burst > 0);
