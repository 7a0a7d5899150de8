-- Backdrop's task repository, SQLite dialect. Times are milliseconds since the Unix epoch.
-- JSON values are stored as text; the columns a query filters on (engine, kind, state)
-- have their own columns.

CREATE TABLE keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    hash        TEXT    NOT NULL UNIQUE,
    prefix      TEXT    NOT NULL,
    -- NULL: unmetered.
    balance     INTEGER,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE tasks (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    uid               TEXT    NOT NULL UNIQUE,
    key_id            INTEGER NOT NULL REFERENCES keys (id),
    engine            TEXT    NOT NULL,
    kind              TEXT    NOT NULL,
    -- Images asked for (the per-key concurrency limit sums it).
    n                 INTEGER NOT NULL,
    payload           TEXT    NOT NULL,
    input_blob        TEXT    NOT NULL,
    reference_blob    TEXT,
    idempotency_key   TEXT,
    surface           TEXT    NOT NULL,
    surface_meta      TEXT    NOT NULL,
    callback_url      TEXT,
    state             TEXT    NOT NULL
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    progress_fraction REAL    NOT NULL DEFAULT 0,
    progress_step     INTEGER NOT NULL DEFAULT 0,
    progress_steps    INTEGER NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 0,
    lease_owner       TEXT,
    lease_expires_at  INTEGER,
    cancel_requested  BOOLEAN NOT NULL DEFAULT 0,
    result            TEXT,
    error_code        TEXT,
    error_message     TEXT,
    credits_reserved  INTEGER NOT NULL DEFAULT 0,
    credits_charged   INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    started_at        INTEGER,
    finished_at       INTEGER,
    updated_at        INTEGER NOT NULL,
    expires_at        INTEGER,
    result_expired    BOOLEAN NOT NULL DEFAULT 0,
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
CREATE INDEX tasks_expiry ON tasks (expires_at) WHERE result_expired = 0 AND expires_at IS NOT NULL;

CREATE TABLE ledger (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id      INTEGER NOT NULL REFERENCES keys (id),
    task_uid    TEXT,
    delta       INTEGER NOT NULL,
    reason      TEXT    NOT NULL CHECK (reason IN ('reserve', 'charge', 'refund', 'grant')),
    note        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX ledger_key ON ledger (key_id, id);

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    task_uid         TEXT    NOT NULL REFERENCES tasks (uid),
    url              TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    body             TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    created_at       INTEGER NOT NULL
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at, id);
CREATE INDEX outbox_task ON outbox (task_uid, id);

CREATE TABLE deliveries (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id   INTEGER NOT NULL REFERENCES outbox (id),
    attempt    INTEGER NOT NULL,
    status     INTEGER,
    error      TEXT,
    delivered  BOOLEAN NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX deliveries_entry ON deliveries (entry_id, id);
