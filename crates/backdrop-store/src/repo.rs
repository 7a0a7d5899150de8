//! The task repository over SQL, written once for SQLite and PostgreSQL.
//!
//! [`SqlRepo`] holds every statement and transaction step of [`TaskRepo`]; the two
//! schemas share their column names and compatible types, and both databases take `$N`
//! placeholders and `TRUE`/`FALSE`. What differs is in each backend's [`Backend`]
//! implementation: the primary key column, how writers keep apart (one database lock or
//! row locks), the claim statement and the database clock. The backends' modules say
//! why their locking makes the shared steps safe across processes.

use crate::sql::{self, Get};
use crate::{
    ApiKey, Created, Delivery, DeliveryAttempt, Lease, LedgerEntry, NewKey, NewTask, OutboxEntry,
    StoreError, SubmitLimits, Task, TaskFilter, TaskProgress, TaskRepo, TaskResult,
};
use async_trait::async_trait;
use backdrop_core::{EngineName, ErrorCode, TaskState};
use sqlx::pool::PoolOptions;
use sqlx::{
    ColumnIndex, Connection, Database, Decode, Encode, Executor, IntoArguments, Pool, Transaction,
    Type,
};

/// What one database brings to the shared repository.
pub(crate) trait Backend: Database<Row: Get> {
    /// The auto-numbered 64-bit primary key column, as the schema's `{id}`.
    const ID_COLUMN: &'static str;
    /// Connections per process.
    const MAX_CONNECTIONS: u32;
    /// How writing transactions keep out of each other's way.
    const WRITES: Writes;
    /// An SQL expression for the database's clock, in milliseconds since the Unix epoch.
    const NOW_MS: &'static str;

    /// The statement that claims the oldest queued task whose engine is in `engines` (a
    /// list of placeholders), applying `set` (what [`claim_set`] makes) to it and
    /// returning its row.
    fn claim_statement(set: &str, engines: &str) -> String;

    /// The statement that takes `lock` until the transaction ends, where the database
    /// needs one beyond what [`Backend::WRITES`] takes.
    fn lock(lock: Lock) -> Option<&'static str>;
}

/// The schema, in order, for both databases: each script's placeholders are filled by
/// [`dialect`]. What a released version makes never changes; changes are new files.
/// (Version 1 was respelled once, to types and literals both databases read alike:
/// `BIGINT`, `DOUBLE PRECISION`, `FALSE`, which SQLite stores exactly as the `INTEGER`,
/// `REAL` and `0` it had; version 2 rebuilds the one index whose spelling matters.)
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (2, "expiry index", include_str!("../migrations/0002_expiry_index.sql")),
];

/// The condition of a task whose files are still there, as the results sweep's partial
/// index (`tasks_expiry`, migration 2) spells it: SQLite uses a partial index only for a
/// query that repeats its condition to the letter, so the sweep's statements use this.
pub(crate) const UNEXPIRED: &str = "result_expired = FALSE AND expires_at IS NOT NULL";

/// A schema script in `DB`'s dialect.
fn dialect<DB: Backend>(script: &str) -> String {
    script.replace("{id}", DB::ID_COLUMN)
}

/// How a database keeps writing transactions apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writes {
    /// A writing transaction holds the whole database's write lock from its start
    /// (`BEGIN IMMEDIATE`), so what it reads cannot change under it.
    DatabaseLock,
    /// A transaction locks the rows it reads before changing them (`FOR UPDATE`, and
    /// `SKIP LOCKED` in sweeps); writers on other rows go on.
    RowLocks,
}

impl Writes {
    /// The statement that begins a transaction which will write.
    fn begin(self) -> &'static str {
        match self {
            Writes::DatabaseLock => "BEGIN IMMEDIATE",
            Writes::RowLocks => "BEGIN",
        }
    }

    /// Whether statements lock the rows they read.
    fn row_locks(self) -> bool {
        self == Writes::RowLocks
    }
}

/// Locks a transaction takes on something other than rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// Held while migrating, so processes starting together apply the migrations one at
    /// a time (and the later ones find them applied).
    Migrations,
    /// Held by a submit for its engine's queue (the engine bound as `$1`), so two submits
    /// cannot both take the last place in it.
    Queue,
}

/// What a claim sets, with the worker bound as `$1`, the lease length in milliseconds as
/// `$2` (counted on the database's clock) and the time as `$3`.
fn claim_set<DB: Backend>() -> String {
    format!(
        "state = 'running', lease_owner = $1, lease_expires_at = {} + $2,
         attempts = attempts + 1, started_at = COALESCE(started_at, $3), updated_at = $3,
         progress_fraction = 0, progress_step = 0, progress_steps = 0",
        DB::NOW_MS
    )
}

/// Appended to a `SELECT` of rows the transaction is about to change.
fn for_update<DB: Backend>() -> &'static str {
    if DB::WRITES.row_locks() {
        " FOR UPDATE"
    } else {
        ""
    }
}

/// Appended to the `SELECT` of a sweep, so concurrent sweeps take different rows.
fn skip_locked<DB: Backend>() -> &'static str {
    if DB::WRITES.row_locks() {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    }
}

/// A Rust type the statements bind and read.
pub(crate) trait Scalar<DB: Database>:
    Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>
{
}

impl<DB: Database, T> Scalar<DB> for T where
    T: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>
{
}

/// The task repository over the database `DB` (see [`crate::sqlite::SqliteRepo`] and
/// [`crate::postgres::PgRepo`]).
#[derive(Debug)]
pub struct SqlRepo<DB: Database> {
    pub(crate) pool: Pool<DB>,
}

impl<DB: Database> Clone for SqlRepo<DB> {
    fn clone(&self) -> Self {
        SqlRepo { pool: self.pool.clone() }
    }
}

// The bounds say what the statements need of a driver (executors over a connection and
// over the pool, and the column types they bind and read); both sqlx drivers meet them.
// They name crate-private traits on purpose: this crate's two backends are the only
// databases the repository runs on.
#[allow(private_bounds)]
impl<DB> SqlRepo<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    i64: Scalar<DB>,
    f64: Scalar<DB>,
    bool: Scalar<DB>,
    String: Scalar<DB>,
    Option<i64>: Scalar<DB>,
    Option<f64>: Scalar<DB>,
    Option<String>: Scalar<DB>,
{
    /// Connects with `options` and brings the schema up to date.
    pub(crate) async fn connect(
        options: <DB::Connection as Connection>::Options,
    ) -> Result<Self, StoreError> {
        let pool =
            PoolOptions::new().max_connections(DB::MAX_CONNECTIONS).connect_with(options).await?;
        let repo = SqlRepo { pool };
        repo.migrate().await?;
        Ok(repo)
    }

    /// Applies the migrations the database does not have yet.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        if let Some(lock) = DB::lock(Lock::Migrations) {
            sqlx::query(lock).execute(&mut *tx).await?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS backdrop_schema (
                version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let current: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM backdrop_schema",
        )
        .fetch_one(&mut *tx)
        .await?;
        for &(version, description, script) in MIGRATIONS {
            if version <= current {
                continue;
            }
            let script = dialect::<DB>(script);
            // Through the connection: `RawSql::execute` makes the future not `Send`
            // (sqlx issue 3150).
            (&mut *tx).execute(sqlx::raw_sql(&script)).await?;
            sqlx::query(&format!(
                "INSERT INTO backdrop_schema (version, description, applied_at)
                 VALUES ($1, $2, {})",
                DB::NOW_MS
            ))
            .bind(version)
            .bind(description)
            .execute(&mut *tx)
            .await?;
        }
        if let Some((latest, _, _)) = MIGRATIONS.last() {
            if current > *latest {
                return Err(StoreError::Config(format!(
                    "the database has schema version {current}; this build knows up to {latest}"
                )));
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// A transaction that will write (see [`Backend::WRITES`]).
    async fn write(&self) -> Result<Transaction<'static, DB>, StoreError> {
        Ok(self.pool.begin_with(DB::WRITES.begin()).await?)
    }

    // --- statements shared by several methods; each runs inside the caller's transaction ---

    async fn task_where(
        conn: &mut DB::Connection,
        condition: &str,
        bind: &str,
    ) -> Result<Option<Task>, StoreError> {
        let row = sqlx::query(&format!("SELECT * FROM tasks WHERE {condition}"))
            .bind(bind)
            .fetch_optional(conn)
            .await?;
        row.as_ref().map(sql::task).transpose()
    }

    async fn by_idempotency_key(
        conn: &mut DB::Connection,
        key_id: i64,
        idempotency_key: &str,
    ) -> Result<Option<Task>, StoreError> {
        let row = sqlx::query("SELECT * FROM tasks WHERE key_id = $1 AND idempotency_key = $2")
            .bind(key_id)
            .bind(idempotency_key)
            .fetch_optional(conn)
            .await?;
        row.as_ref().map(sql::task).transpose()
    }

    /// Queues a callback for a state change if the task has a callback URL.
    async fn push_outbox(
        conn: &mut DB::Connection,
        task: &Task,
        state: TaskState,
        now: i64,
    ) -> Result<(), StoreError> {
        let Some(url) = &task.callback_url else { return Ok(()) };
        sqlx::query(
            "INSERT INTO outbox (task_uid, url, state, body, attempts, next_attempt_at, status, created_at)
             VALUES ($1, $2, $3, NULL, 0, $4, $5, $4)",
        )
        .bind(&task.uid)
        .bind(url)
        .bind(state.as_str())
        .bind(now)
        .bind(sql::PENDING)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn push_ledger(
        conn: &mut DB::Connection,
        key_id: i64,
        task_uid: Option<&str>,
        delta: i64,
        reason: &str,
        note: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ledger (key_id, task_uid, delta, reason, note, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key_id)
        .bind(task_uid.map(str::to_owned))
        .bind(delta)
        .bind(reason)
        .bind(note)
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Returns `amount` reserved credits to the task's key with a `refund` entry.
    async fn refund(
        conn: &mut DB::Connection,
        task: &Task,
        amount: i64,
        note: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        if amount <= 0 {
            return Ok(());
        }
        // Only metered keys ever reserve, so the balance is not NULL here; the guard keeps a
        // NULL (unmetered) balance from turning into a number.
        sqlx::query("UPDATE keys SET balance = balance + $1 WHERE id = $2 AND balance IS NOT NULL")
            .bind(amount)
            .bind(task.key_id)
            .execute(&mut *conn)
            .await?;
        Self::push_ledger(conn, task.key_id, Some(&task.uid), amount, sql::REFUND, note, now).await
    }

    /// Ends a task that did not succeed (`failed` or `canceled`): every reserved credit goes
    /// back, the lease is dropped, its files are due for deletion at once (it has no
    /// result to serve) and the change goes to the outbox.
    async fn end_unsuccessfully(
        conn: &mut DB::Connection,
        task: &Task,
        state: TaskState,
        code: ErrorCode,
        message: &str,
        now: i64,
    ) -> Result<Task, StoreError> {
        let row = sqlx::query(
            "UPDATE tasks SET state = $1, error_code = $2, error_message = $3, finished_at = $4,
                    updated_at = $4, expires_at = $4, lease_expires_at = NULL, credits_charged = 0
             WHERE id = $5 RETURNING *",
        )
        .bind(state.as_str())
        .bind(code.as_str())
        .bind(message)
        .bind(now)
        .bind(task.id)
        .fetch_one(&mut *conn)
        .await?;
        let ended = sql::task(&row)?;
        let note = format!("task {}: {code}", state.as_str());
        Self::refund(conn, &ended, task.credits_reserved, &note, now).await?;
        Self::push_outbox(conn, &ended, state, now).await?;
        Ok(ended)
    }

    /// The running task `uid` if `worker` holds its lease.
    async fn leased(
        conn: &mut DB::Connection,
        uid: &str,
        worker: &str,
    ) -> Result<Option<Task>, StoreError> {
        let text = format!(
            "SELECT * FROM tasks WHERE uid = $1 AND state = 'running' AND lease_owner = $2{}",
            for_update::<DB>()
        );
        let row = sqlx::query(&text).bind(uid).bind(worker).fetch_optional(conn).await?;
        row.as_ref().map(sql::task).transpose()
    }

    fn clamp_fraction(f: f64) -> f64 {
        if f.is_nan() {
            0.0
        } else {
            f.clamp(0.0, 1.0)
        }
    }
}

#[async_trait]
impl<DB> TaskRepo for SqlRepo<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    i64: Scalar<DB>,
    f64: Scalar<DB>,
    bool: Scalar<DB>,
    String: Scalar<DB>,
    Option<i64>: Scalar<DB>,
    Option<f64>: Scalar<DB>,
    Option<String>: Scalar<DB>,
{
    async fn create_task(
        &self,
        new: NewTask,
        limits: SubmitLimits,
        now: i64,
    ) -> Result<Created, StoreError> {
        let mut tx = self.write().await?;
        if let Some(lock) = DB::lock(Lock::Queue) {
            sqlx::query(lock).bind(new.engine.as_str()).execute(&mut *tx).await?;
        }
        // The key's row is read (and, where rows are locked, locked) before anything else
        // of the key, so its limit, balance and idempotency keys include every submit
        // that committed before.
        let text = format!("SELECT balance FROM keys WHERE id = $1{}", for_update::<DB>());
        let balance: Option<Option<i64>> =
            sqlx::query_scalar(&text).bind(new.key_id).fetch_optional(&mut *tx).await?;
        let Some(balance) = balance else { return Err(StoreError::NoSuchKey(new.key_id)) };
        if let Some(idem) = &new.idempotency_key {
            if let Some(task) = Self::by_idempotency_key(&mut tx, new.key_id, idem).await? {
                return Ok(Created { task, created: false });
            }
        }

        let queued: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE state = 'queued' AND engine = $1")
                .bind(new.engine.as_str())
                .fetch_one(&mut *tx)
                .await?;
        if queued as u64 >= limits.max_queued {
            return Err(StoreError::QueueFull { engine: new.engine, max: limits.max_queued });
        }
        let active: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM tasks
             WHERE key_id = $1 AND state IN ('queued', 'running')",
        )
        .bind(new.key_id)
        .fetch_one(&mut *tx)
        .await?;
        let n = new.payload.job.n();
        if active as u64 + u64::from(n) > limits.max_key_images {
            return Err(StoreError::ConcurrencyLimit {
                active: active as u64,
                max: limits.max_key_images,
            });
        }
        // Unmetered keys reserve nothing, so nothing can be given back to them later.
        let reserve = match balance {
            Some(balance) if balance < new.credits.max(0) => {
                return Err(StoreError::InsufficientCredits { needed: new.credits, balance });
            }
            Some(_) => new.credits.max(0),
            None => 0,
        };

        let inserted = sqlx::query(
            "INSERT INTO tasks (uid, key_id, engine, kind, n, payload, input_blob, reference_blob,
                idempotency_key, surface, surface_meta, callback_url, state, credits_reserved,
                created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'queued', $13, $14, $14)
             RETURNING *",
        )
        .bind(&new.uid)
        .bind(new.key_id)
        .bind(new.engine.as_str())
        .bind(new.payload.job.kind().to_string())
        .bind(i64::from(n))
        .bind(sql::json(&new.payload)?)
        .bind(&new.input_blob)
        .bind(&new.reference_blob)
        .bind(&new.idempotency_key)
        .bind(&new.surface)
        .bind(sql::json(new.surface_meta.as_json())?)
        .bind(&new.callback_url)
        .bind(reserve)
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let row = match inserted {
            Ok(row) => row,
            Err(e) if sql::is_unique_violation(&e) => {
                // Unreachable under the submit's locks, but a unique key is the last word on
                // duplicates, so a collision still answers with the stored task.
                drop(tx);
                if let Some(idem) = &new.idempotency_key {
                    if let Some(task) = self.task_by_idempotency_key(new.key_id, idem).await? {
                        return Ok(Created { task, created: false });
                    }
                }
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        let task = sql::task(&row)?;
        if reserve > 0 {
            sqlx::query("UPDATE keys SET balance = balance - $1 WHERE id = $2")
                .bind(reserve)
                .bind(new.key_id)
                .execute(&mut *tx)
                .await?;
            let note = format!("{n} image(s)");
            Self::push_ledger(
                &mut tx,
                new.key_id,
                Some(&task.uid),
                -reserve,
                sql::RESERVE,
                &note,
                now,
            )
            .await?;
        }
        Self::push_outbox(&mut tx, &task, TaskState::Queued, now).await?;
        tx.commit().await?;
        Ok(Created { task, created: true })
    }

    async fn task(&self, uid: &str) -> Result<Option<Task>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Self::task_where(&mut conn, "uid = $1", uid).await
    }

    async fn task_by_idempotency_key(
        &self,
        key_id: i64,
        idempotency_key: &str,
    ) -> Result<Option<Task>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Self::by_idempotency_key(&mut conn, key_id, idempotency_key).await
    }

    async fn task_by_id(&self, id: i64) -> Result<Option<Task>, StoreError> {
        let row = sqlx::query("SELECT * FROM tasks WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(sql::task).transpose()
    }

    async fn list_tasks(&self, key_id: i64, filter: &TaskFilter) -> Result<Vec<Task>, StoreError> {
        let mut text = String::from("SELECT * FROM tasks WHERE key_id = $1");
        let mut next = 2;
        let mut condition = |column: &str| {
            text.push_str(&format!(" AND {column} ${next}"));
            next += 1;
        };
        if filter.state.is_some() {
            condition("state =");
        }
        if filter.kind.is_some() {
            condition("kind =");
        }
        if filter.surface.is_some() {
            condition("surface =");
        }
        if filter.before.is_some() {
            condition("id <");
        }
        text.push_str(&format!(" ORDER BY id DESC LIMIT ${next} OFFSET ${}", next + 1));
        let mut query = sqlx::query(&text).bind(key_id);
        if let Some(state) = filter.state {
            query = query.bind(state.as_str());
        }
        if let Some(kind) = filter.kind {
            query = query.bind(kind.to_string());
        }
        if let Some(surface) = &filter.surface {
            query = query.bind(surface);
        }
        if let Some(before) = filter.before {
            query = query.bind(before);
        }
        let rows = query
            .bind(i64::from(filter.limit))
            .bind(i64::from(filter.offset))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sql::task).collect()
    }

    async fn queue_position(&self, uid: &str) -> Result<Option<u64>, StoreError> {
        // One statement, so the position is read from one snapshot.
        let position: Option<i64> = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM tasks o
                     WHERE o.state = 'queued' AND o.engine = t.engine AND o.id < t.id)
             FROM tasks t WHERE t.uid = $1 AND t.state = 'queued'",
        )
        .bind(uid)
        .fetch_optional(&self.pool)
        .await?;
        Ok(position.map(|p| p as u64))
    }

    async fn queue_depths(&self) -> Result<Vec<(EngineName, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT engine, COUNT(*) FROM tasks WHERE state = 'queued' GROUP BY engine ORDER BY engine",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(engine, count)| {
                let engine = engine.parse().map_err(StoreError::Corrupt)?;
                Ok((engine, count as u64))
            })
            .collect()
    }

    async fn claim(
        &self,
        worker: &str,
        engines: &[EngineName],
        lease_ms: i64,
        now: i64,
    ) -> Result<Option<Task>, StoreError> {
        if engines.is_empty() {
            return Ok(None);
        }
        let text = DB::claim_statement(&claim_set::<DB>(), &sql::placeholders(4, engines.len()));
        let mut tx = self.write().await?;
        let mut query = sqlx::query(&text).bind(worker).bind(lease_ms).bind(now);
        for engine in engines {
            query = query.bind(engine.as_str());
        }
        let Some(row) = query.fetch_optional(&mut *tx).await? else { return Ok(None) };
        let task = sql::task(&row)?;
        Self::push_outbox(&mut tx, &task, TaskState::Running, now).await?;
        tx.commit().await?;
        Ok(Some(task))
    }

    async fn heartbeat(
        &self,
        uid: &str,
        worker: &str,
        lease_ms: i64,
        progress: Option<TaskProgress>,
        now: i64,
    ) -> Result<Lease, StoreError> {
        let text = format!(
            "UPDATE tasks SET lease_expires_at = {} + $1, updated_at = $2,
                    progress_fraction = COALESCE($3, progress_fraction),
                    progress_step = COALESCE($4, progress_step),
                    progress_steps = COALESCE($5, progress_steps)
             WHERE uid = $6 AND state = 'running' AND lease_owner = $7
             RETURNING cancel_requested",
            DB::NOW_MS
        );
        let cancel_requested: Option<bool> = sqlx::query_scalar(&text)
            .bind(lease_ms)
            .bind(now)
            .bind(progress.map(|p| Self::clamp_fraction(p.fraction)))
            .bind(progress.map(|p| i64::from(p.step)))
            .bind(progress.map(|p| i64::from(p.steps)))
            .bind(uid)
            .bind(worker)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match cancel_requested {
            Some(cancel_requested) => Lease::Held { cancel_requested },
            None => Lease::Lost,
        })
    }

    async fn complete(
        &self,
        uid: &str,
        worker: &str,
        result: TaskResult,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let Some(task) = Self::leased(&mut tx, uid, worker).await? else { return Ok(false) };
        let made = result.images.len();
        let charged = sql::charge_for(task.credits_reserved, task.n(), made);
        let row = sqlx::query(
            "UPDATE tasks SET state = 'succeeded', result = $1, expires_at = $2, finished_at = $3,
                    updated_at = $3, lease_expires_at = NULL, credits_charged = $4,
                    progress_fraction = 1, progress_step = progress_steps
             WHERE id = $5 RETURNING *",
        )
        .bind(sql::json(&result)?)
        .bind(expires_at)
        .bind(now)
        .bind(charged)
        .bind(task.id)
        .fetch_one(&mut *tx)
        .await?;
        let done = sql::task(&row)?;
        if task.credits_reserved > 0 {
            // The reservation already took the credits from the balance: the charge entry
            // records what was kept (its delta is 0) and the refund returns the rest, so
            // the ledger's deltas always add up to the balance.
            let note = format!(
                "{charged} credit(s) for {} of {} image(s)",
                made.min(task.n() as usize),
                task.n()
            );
            Self::push_ledger(&mut tx, task.key_id, Some(uid), 0, sql::CHARGE, &note, now).await?;
            let back = task.credits_reserved - charged;
            Self::refund(&mut tx, &task, back, "images not made", now).await?;
        }
        Self::push_outbox(&mut tx, &done, TaskState::Succeeded, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn fail(
        &self,
        uid: &str,
        worker: &str,
        code: ErrorCode,
        message: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let Some(task) = Self::leased(&mut tx, uid, worker).await? else { return Ok(false) };
        Self::end_unsuccessfully(&mut tx, &task, sql::end_state(code), code, message, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn cancel(&self, uid: &str, now: i64) -> Result<Option<Task>, StoreError> {
        let mut tx = self.write().await?;
        let condition = format!("uid = $1{}", for_update::<DB>());
        let Some(task) = Self::task_where(&mut tx, &condition, uid).await? else {
            return Ok(None);
        };
        let task = match task.state {
            TaskState::Queued => {
                Self::end_unsuccessfully(
                    &mut tx,
                    &task,
                    TaskState::Canceled,
                    ErrorCode::Canceled,
                    "canceled by its owner before it started",
                    now,
                )
                .await?
            }
            TaskState::Running => {
                let row = sqlx::query(
                    "UPDATE tasks SET cancel_requested = TRUE, updated_at = $1 WHERE id = $2 RETURNING *",
                )
                .bind(now)
                .bind(task.id)
                .fetch_one(&mut *tx)
                .await?;
                sql::task(&row)?
            }
            _ => return Ok(Some(task)),
        };
        tx.commit().await?;
        Ok(Some(task))
    }

    async fn requeue_expired(&self, max_attempts: u32, now: i64) -> Result<(u64, u64), StoreError> {
        let mut tx = self.write().await?;
        let text = format!(
            "SELECT * FROM tasks WHERE state = 'running' AND lease_expires_at <= {}
             ORDER BY id{}",
            DB::NOW_MS,
            skip_locked::<DB>()
        );
        let rows = sqlx::query(&text).fetch_all(&mut *tx).await?;
        // Refunds below change key rows; where rows are locked, taking them all now, in id
        // order, keeps two sweeps that share keys from locking them in opposite orders.
        let mut keys = rows.iter().map(|row| row.i64("key_id")).collect::<Result<Vec<_>, _>>()?;
        keys.sort_unstable();
        keys.dedup();
        if !keys.is_empty() && DB::WRITES.row_locks() {
            let text = format!(
                "SELECT id FROM keys WHERE id IN ({}) ORDER BY id{}",
                sql::placeholders(1, keys.len()),
                for_update::<DB>()
            );
            let mut query = sqlx::query(&text);
            for key in &keys {
                query = query.bind(*key);
            }
            query.execute(&mut *tx).await?;
        }
        let (mut requeued, mut ended) = (0, 0);
        for row in &rows {
            let task = sql::task(row)?;
            if task.cancel_requested {
                // Its owner asked to cancel and the worker died before it could: honour
                // the cancel instead of running it again.
                let message = "canceled by its owner while it ran";
                Self::end_unsuccessfully(
                    &mut tx,
                    &task,
                    TaskState::Canceled,
                    ErrorCode::Canceled,
                    message,
                    now,
                )
                .await?;
                ended += 1;
            } else if task.attempts >= max_attempts {
                let message = format!(
                    "the worker stopped renewing its lease {} time(s); giving up",
                    task.attempts
                );
                let code = ErrorCode::RetriesExhausted;
                Self::end_unsuccessfully(&mut tx, &task, TaskState::Failed, code, &message, now)
                    .await?;
                ended += 1;
            } else {
                let row = sqlx::query(
                    "UPDATE tasks SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                            progress_fraction = 0, progress_step = 0, progress_steps = 0,
                            updated_at = $1
                     WHERE id = $2 RETURNING *",
                )
                .bind(now)
                .bind(task.id)
                .fetch_one(&mut *tx)
                .await?;
                Self::push_outbox(&mut tx, &sql::task(&row)?, TaskState::Queued, now).await?;
                requeued += 1;
            }
        }
        tx.commit().await?;
        Ok((requeued, ended))
    }

    async fn due_for_expiry(
        &self,
        now: i64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError> {
        let text = format!(
            "SELECT * FROM tasks WHERE {UNEXPIRED} AND expires_at <= $1 AND id > $2
             ORDER BY id LIMIT $3"
        );
        let rows = sqlx::query(&text)
            .bind(now)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sql::task).collect()
    }

    async fn mark_expired(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        let text = format!(
            "UPDATE tasks SET result_expired = TRUE, updated_at = $1
             WHERE id = $2 AND {UNEXPIRED} AND expires_at <= $1 RETURNING id"
        );
        let marked: Option<i64> =
            sqlx::query_scalar(&text).bind(now).bind(id).fetch_optional(&self.pool).await?;
        Ok(marked.is_some())
    }

    async fn create_key(&self, new: NewKey, now: i64) -> Result<ApiKey, StoreError> {
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "INSERT INTO keys (name, hash, prefix, balance, created_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING *",
        )
        .bind(&new.name)
        .bind(&new.hash)
        .bind(&new.prefix)
        .bind(new.balance)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let key = sql::key(&row)?;
        if let Some(balance) = new.balance.filter(|b| *b != 0) {
            Self::push_ledger(&mut tx, key.id, None, balance, sql::GRANT, "starting balance", now)
                .await?;
        }
        tx.commit().await?;
        Ok(key)
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let row = sqlx::query("SELECT * FROM keys WHERE hash = $1 AND revoked_at IS NULL")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(sql::key).transpose()
    }

    async fn key(&self, id: i64) -> Result<Option<ApiKey>, StoreError> {
        let row = sqlx::query("SELECT * FROM keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(sql::key).transpose()
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let rows = sqlx::query("SELECT * FROM keys ORDER BY id").fetch_all(&self.pool).await?;
        rows.iter().map(sql::key).collect()
    }

    async fn revoke_key(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        let revoked: Option<i64> = sqlx::query_scalar(
            "UPDATE keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 RETURNING id",
        )
        .bind(now)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(revoked.is_some())
    }

    async fn credit_key(
        &self,
        id: i64,
        amount: i64,
        note: &str,
        now: i64,
    ) -> Result<ApiKey, StoreError> {
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "UPDATE keys SET balance = COALESCE(balance, 0) + $1 WHERE id = $2 RETURNING *",
        )
        .bind(amount)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Err(StoreError::NoSuchKey(id)) };
        let key = sql::key(&row)?;
        Self::push_ledger(&mut tx, id, None, amount, sql::GRANT, note, now).await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn ledger(&self, key_id: i64) -> Result<Vec<LedgerEntry>, StoreError> {
        let rows = sqlx::query("SELECT * FROM ledger WHERE key_id = $1 ORDER BY id")
            .bind(key_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sql::ledger).collect()
    }

    async fn due_callbacks(
        &self,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut tx = self.write().await?;
        let text = format!(
            "UPDATE outbox SET next_attempt_at = $1
             WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= $2
                          ORDER BY id LIMIT $3{})
             RETURNING *",
            skip_locked::<DB>()
        );
        let rows = sqlx::query(&text)
            .bind(now + lease_ms)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut entries = rows.iter().map(sql::outbox).collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(|e| e.id);
        Ok(entries)
    }

    async fn record_delivery(
        &self,
        entry_id: i64,
        body: &str,
        attempt: DeliveryAttempt,
        next_attempt_at: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let number: Option<i64> = sqlx::query_scalar(
            "UPDATE outbox SET attempts = attempts + 1, body = $1, status = $2,
                    next_attempt_at = COALESCE($3, next_attempt_at)
             WHERE id = $4 RETURNING attempts",
        )
        .bind(body)
        .bind(sql::status_after(attempt.delivered, next_attempt_at))
        .bind(next_attempt_at)
        .bind(entry_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(number) = number else {
            return Err(StoreError::Database(format!("no outbox entry {entry_id}")));
        };
        sqlx::query(
            "INSERT INTO deliveries (entry_id, attempt, status, error, delivered, at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(entry_id)
        .bind(number)
        .bind(attempt.status.map(i64::from))
        .bind(&attempt.error)
        .bind(attempt.delivered)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn deliveries(&self, task_uid: &str) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.entry_id, d.attempt, d.status, d.error, d.delivered, d.at, o.state, o.url
             FROM deliveries d JOIN outbox o ON o.id = d.entry_id
             WHERE o.task_uid = $1 ORDER BY d.at, d.id",
        )
        .bind(task_uid)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(sql::delivery).collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::postgres::PgRepo;
    use crate::sqlite::SqliteRepo;

    /// Opening must work from a spawned task (a server opens its repository on the
    /// runtime), so its future must be `Send`; this fails to compile otherwise.
    #[allow(dead_code)]
    fn open_is_send() {
        fn send<T: Send + 'static>(_: T) {}
        send(SqliteRepo::open("sqlite://x.db"));
        send(PgRepo::open("postgres://localhost/x"));
        send(crate::open("sqlite://x.db"));
    }

    /// Every placeholder of the shared schema is one each backend fills.
    #[test]
    fn each_dialect_fills_every_placeholder() {
        for (_, _, script) in super::MIGRATIONS {
            for rendered in
                [super::dialect::<sqlx::Sqlite>(script), super::dialect::<sqlx::Postgres>(script)]
            {
                assert!(!rendered.contains('{'), "an unfilled placeholder:\n{rendered}");
            }
        }
        let (_, _, init) = super::MIGRATIONS[0];
        assert!(super::dialect::<sqlx::Postgres>(init).contains("GENERATED ALWAYS"));
        assert!(super::dialect::<sqlx::Sqlite>(init).contains("AUTOINCREMENT"));
    }
}
