-- Backdrop's task repository, for both databases. Times are milliseconds since the Unix
-- epoch. The types are spelled so both databases read them alike (SQLite takes BIGINT as
-- an integer and DOUBLE PRECISION as a real, and FALSE as 0); where the dialects really
-- differ the text has a placeholder in braces that each backend fills (src/repo.rs,
-- `Backend`): id, the auto-numbered primary key.
-- JSON values are stored as text; the columns a query filters on (engine, kind, state)
-- have their own columns.

CREATE TABLE keys (
    id          {id},
    name        TEXT    NOT NULL,
    hash        TEXT    NOT NULL UNIQUE,
    prefix      TEXT    NOT NULL,
    -- NULL: unmetered.
    balance     BIGINT,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE tasks (
    id                {id},
    uid               TEXT    NOT NULL UNIQUE,
    key_id            BIGINT NOT NULL REFERENCES keys (id),
    engine            TEXT    NOT NULL,
    kind              TEXT    NOT NULL,
    -- Images asked for (the per-key concurrency limit sums it).
    n                 BIGINT NOT NULL,
    payload           TEXT    NOT NULL,
    input_blob        TEXT    NOT NULL,
    reference_blob    TEXT,
    idempotency_key   TEXT,
    surface           TEXT    NOT NULL,
    surface_meta      TEXT    NOT NULL,
    callback_url      TEXT,
    state             TEXT    NOT NULL
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    progress_fraction DOUBLE PRECISION NOT NULL DEFAULT 0,
    progress_step     BIGINT NOT NULL DEFAULT 0,
    progress_steps    BIGINT NOT NULL DEFAULT 0,
    attempts          BIGINT NOT NULL DEFAULT 0,
    lease_owner       TEXT,
    lease_expires_at  BIGINT,
    cancel_requested  BOOLEAN NOT NULL DEFAULT FALSE,
    result            TEXT,
    error_code        TEXT,
    error_message     TEXT,
    credits_reserved  BIGINT NOT NULL DEFAULT 0,
    credits_charged   BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    started_at        BIGINT,
    finished_at       BIGINT,
    updated_at        BIGINT NOT NULL,
    expires_at        BIGINT,
    result_expired    BOOLEAN NOT NULL DEFAULT FALSE,
    -- NULLs are distinct, so tasks without an idempotency key never collide.
    UNIQUE (key_id, idempotency_key)
);

-- Claiming, queue positions and depths.
CREATE INDEX tasks_queue ON tasks (state, engine, id);
-- A key's listing and its in-flight images.
CREATE INDEX tasks_key ON tasks (key_id, id);
-- Lapsed leases.
CREATE INDEX tasks_lease ON tasks (state, lease_expires_at);
-- Results to sweep.
CREATE INDEX tasks_expiry ON tasks (expires_at) WHERE result_expired = FALSE AND expires_at IS NOT NULL;

CREATE TABLE ledger (
    id          {id},
    key_id      BIGINT NOT NULL REFERENCES keys (id),
    task_uid    TEXT,
    delta       BIGINT NOT NULL,
    reason      TEXT    NOT NULL CHECK (reason IN ('reserve', 'charge', 'refund', 'grant')),
    note        TEXT    NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX ledger_key ON ledger (key_id, id);

CREATE TABLE outbox (
    id               {id},
    task_uid         TEXT    NOT NULL REFERENCES tasks (uid),
    url              TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    body             TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    created_at       BIGINT NOT NULL
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at, id);
CREATE INDEX outbox_task ON outbox (task_uid, id);

CREATE TABLE deliveries (
    id         {id},
    entry_id   BIGINT NOT NULL REFERENCES outbox (id),
    attempt    BIGINT NOT NULL,
    status     BIGINT,
    error      TEXT,
    delivered  BOOLEAN NOT NULL,
    at         BIGINT NOT NULL
);
CREATE INDEX deliveries_entry ON deliveries (entry_id, id);
