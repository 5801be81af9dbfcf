-- The durable record: tenants, API keys, workflows, executions and their attempts, idempotency keys.

CREATE TABLE tenants (
    name                  text PRIMARY KEY,
    -- Concurrency overrides set through the admin API; NULL falls back to the dispatcher's defaults.
    concurrency_limit     integer CHECK (concurrency_limit >= 0),
    workflow_limit        integer CHECK (workflow_limit >= 0),
    created_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    tenant        text NOT NULL REFERENCES tenants (name),
    -- Public lookup part of the key; the secret part is stored only as its SHA-256.
    prefix        text NOT NULL UNIQUE,
    secret_sha256 bytea NOT NULL,
    is_admin      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

CREATE TABLE workflows (
    tenant         text NOT NULL REFERENCES tenants (name),
    name           text NOT NULL,
    latest_version integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, name)
);

CREATE TABLE workflow_versions (
    tenant     text NOT NULL,
    name       text NOT NULL,
    version    integer NOT NULL CHECK (version >= 1),
    document   jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, name, version),
    FOREIGN KEY (tenant, name) REFERENCES workflows (tenant, name)
);

CREATE TABLE executions (
    -- UUIDv7: ordered by creation, so it is also the list cursor.
    id               uuid PRIMARY KEY,
    tenant           text NOT NULL REFERENCES tenants (name),
    workflow_name    text NOT NULL,
    -- Set when submitted by reference to a registered version.
    workflow_version integer,
    -- The workflow snapshot this execution runs (inline or copied from the version).
    workflow         jsonb NOT NULL,
    -- The input, inline when small; otherwise input_key names the object in the meta bucket.
    input            jsonb,
    input_key        text,
    priority         smallint NOT NULL DEFAULT 5,
    labels           jsonb NOT NULL DEFAULT '{}'::jsonb,
    status           text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    error            text,
    result_key       text,
    queued_at        timestamptz NOT NULL DEFAULT now(),
    claimed_at       timestamptz,
    dispatched_at    timestamptz,
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((input IS NULL) <> (input_key IS NULL))
);

CREATE INDEX executions_by_tenant ON executions (tenant, id DESC);
CREATE INDEX executions_by_tenant_status ON executions (tenant, status, id DESC);
CREATE INDEX executions_by_tenant_workflow ON executions (tenant, workflow_name, id DESC);
-- The reconciler scans executions that should be in the queue.
CREATE INDEX executions_waiting ON executions (queued_at) WHERE status = 'queued';

CREATE TABLE attempts (
    execution_id uuid NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    attempt      integer NOT NULL CHECK (attempt >= 1),
    status       text NOT NULL,
    dispatcher   text,
    runner_ref   text,
    error        text,
    exit_code    integer,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    PRIMARY KEY (execution_id, attempt)
);

CREATE TABLE idempotency_keys (
    tenant        text NOT NULL,
    key           text NOT NULL,
    -- SHA-256 of the canonical request body: the same key with another body is refused.
    request_sha256 bytea NOT NULL,
    execution_id  uuid NOT NULL REFERENCES executions (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, key)
);
