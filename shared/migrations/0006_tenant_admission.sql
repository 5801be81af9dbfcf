-- Per-tenant admission settings set through the admin API (`PUT /api/v1/tenants/{tenant}/limits`).
--
-- The fair-share weight: when tenants compete for slots, admissions split in proportion to their weights; NULL
-- is weight 1. The dispatchers read it from Redis (`{prefix}:limits`, field `weight:<tenant>`).
--
-- Submit rate limits (`PUT /api/v1/tenants/{tenant}/limits`); NULL falls
-- back to the API's defaults (API_SUBMIT_RATE, API_SUBMIT_BURST). The API enforces them in Redis (the tenant's
-- bucket, `{prefix}:submit-rate:<tenant>`); the reconciler restores the Redis copy of these overrides from here.
ALTER TABLE tenants
    ADD COLUMN weight       double precision CHECK (weight > 0),
    ADD COLUMN submit_rate  double precision CHECK (submit_rate > 0),
    ADD COLUMN submit_burst integer CHECK (submit_burst > 0);

-- What is paused (`POST /api/v1/tenants/{tenant}/pause`, `.../workflows/{name}/pause`): the whole tenant
-- (`workflow = '*'`) or one of its workflows. Admission takes nothing paused (Redis: `{prefix}:paused:<tenant>`);
-- the reconciler restores the Redis copy from here.
CREATE TABLE paused (
    tenant    text NOT NULL,
    workflow  text NOT NULL,
    paused_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, workflow)
);
