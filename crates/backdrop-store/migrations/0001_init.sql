-- Backdrop's task repository, for both databases. Times are milliseconds since the Unix
-- epoch. Where the dialects differ the text has a placeholder in braces that each backend
-- fills (src/repo.rs, `Backend`): id, the auto-numbered primary key; int, a 64-bit
-- integer; real, a double; false, the boolean false.
-- JSON values are stored as text; the columns a query filters on (engine, kind, state)
-- have their own columns.

CREATE TABLE keys (
    id          {id},
    name        TEXT    NOT NULL,
    hash        TEXT    NOT NULL UNIQUE,
    prefix      TEXT    NOT NULL,
    -- NULL: unmetered.
    balance     {int},
    created_at  {int} NOT NULL,
    revoked_at  {int}
);

CREATE TABLE tasks (
    id                {id},
    uid               TEXT    NOT NULL UNIQUE,
    key_id            {int} NOT NULL REFERENCES keys (id),
    engine            TEXT    NOT NULL,
    kind              TEXT    NOT NULL,
    -- Images asked for (the per-key concurrency limit sums it).
    n                 {int} NOT NULL,
    payload           TEXT    NOT NULL,
    input_blob        TEXT    NOT NULL,
    reference_blob    TEXT,
    idempotency_key   TEXT,
    surface           TEXT    NOT NULL,
    surface_meta      TEXT    NOT NULL,
    callback_url      TEXT,
    state             TEXT    NOT NULL
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    progress_fraction {real} NOT NULL DEFAULT 0,
    progress_step     {int} NOT NULL DEFAULT 0,
    progress_steps    {int} NOT NULL DEFAULT 0,
    attempts          {int} NOT NULL DEFAULT 0,
    lease_owner       TEXT,
    lease_expires_at  {int},
    cancel_requested  BOOLEAN NOT NULL DEFAULT {false},
    result            TEXT,
    error_code        TEXT,
    error_message     TEXT,
    credits_reserved  {int} NOT NULL DEFAULT 0,
    credits_charged   {int} NOT NULL DEFAULT 0,
    created_at        {int} NOT NULL,
    started_at        {int},
    finished_at       {int},
    updated_at        {int} NOT NULL,
    expires_at        {int},
    result_expired    BOOLEAN NOT NULL DEFAULT {false},
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
CREATE INDEX tasks_expiry ON tasks (expires_at) WHERE result_expired = {false} AND expires_at IS NOT NULL;

CREATE TABLE ledger (
    id          {id},
    key_id      {int} NOT NULL REFERENCES keys (id),
    task_uid    TEXT,
    delta       {int} NOT NULL,
    reason      TEXT    NOT NULL CHECK (reason IN ('reserve', 'charge', 'refund', 'grant')),
    note        TEXT    NOT NULL,
    created_at  {int} NOT NULL
);
CREATE INDEX ledger_key ON ledger (key_id, id);

CREATE TABLE outbox (
    id               {id},
    task_uid         TEXT    NOT NULL REFERENCES tasks (uid),
    url              TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    body             TEXT,
    attempts         {int} NOT NULL DEFAULT 0,
    next_attempt_at  {int} NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    created_at       {int} NOT NULL
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at, id);
CREATE INDEX outbox_task ON outbox (task_uid, id);

CREATE TABLE deliveries (
    id         {id},
    entry_id   {int} NOT NULL REFERENCES outbox (id),
    attempt    {int} NOT NULL,
    status     {int},
    error      TEXT,
    delivered  BOOLEAN NOT NULL,
    at         {int} NOT NULL
);
CREATE INDEX deliveries_entry ON deliveries (entry_id, id);
