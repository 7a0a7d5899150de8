//! The embedded repository: SQLite, one file on the local disk.
//!
//! Several processes may open the same file (an API server and a separate worker, or a
//! server restarted while the old one is still exiting). The file runs in WAL mode so
//! readers never wait for the writer, and every method that writes takes SQLite's write
//! lock up front (`BEGIN IMMEDIATE`): a transaction therefore reads the state it is about
//! to change under the lock, which is what makes a claim exclusive across processes, and
//! it never has to upgrade a read lock to a write lock (the upgrade is what fails with
//! `SQLITE_BUSY` without waiting in WAL mode). Contention waits on `busy_timeout`.

use crate::sql;
use crate::{
    ApiKey, Created, Delivery, DeliveryAttempt, Lease, LedgerEntry, NewKey, NewTask, OutboxEntry,
    StoreError, SubmitLimits, Task, TaskFilter, TaskProgress, TaskRepo, TaskResult,
};
use async_trait::async_trait;
use backdrop_core::{EngineName, TaskState};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Executor, Sqlite, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// How long a write waits for another connection or process to release the lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections per process: one writer at a time anyway, the rest serve reads.
const MAX_CONNECTIONS: u32 = 8;

/// The schema, in order. A version once released is never edited; changes are new files.
const MIGRATIONS: &[(i64, &str, &str)] =
    &[(1, "init", include_str!("../migrations/sqlite/0001_init.sql"))];

/// SQLite-backed [`crate::TaskRepo`].
#[derive(Debug, Clone)]
pub struct SqliteRepo {
    pool: SqlitePool,
}

impl SqliteRepo {
    /// Opens `sqlite://PATH` (the file and its folder are created if missing; any other
    /// `sqlx` SQLite URL works too) and brings its schema up to date.
    pub async fn open(url: &str) -> Result<SqliteRepo, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(format!("bad SQLite URL '{url}': {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable in WAL mode except for the last transactions before a power
            // loss; a crash of the process loses nothing.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let file = options.get_filename();
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !file.as_os_str().is_empty() && file.to_str() != Some(":memory:") {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Config(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
        }
        let pool =
            SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS).connect_with(options).await?;
        let repo = SqliteRepo { pool };
        repo.migrate().await?;
        Ok(repo)
    }

    /// Applies the migrations this file does not have yet, under the write lock so two
    /// processes starting together do not both apply them.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS backdrop_schema (
                version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let current: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM backdrop_schema")
                .fetch_one(&mut *tx)
                .await?;
        for &(version, description, script) in MIGRATIONS {
            if version <= current {
                continue;
            }
            // Through the connection: `RawSql::execute` makes the future not `Send`
            // (sqlx issue 3150).
            (&mut *tx).execute(sqlx::raw_sql(script)).await?;
            sqlx::query(
                "INSERT INTO backdrop_schema (version, description, applied_at)
                 VALUES ($1, $2, CAST(strftime('%s', 'now') AS INTEGER) * 1000)",
            )
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

    /// A transaction holding the database's write lock from its first statement.
    async fn write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

// --- statements shared by several methods; each runs inside the caller's transaction ---

async fn task_where(
    conn: &mut SqliteConnection,
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
    conn: &mut SqliteConnection,
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
    conn: &mut SqliteConnection,
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
    conn: &mut SqliteConnection,
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
    .bind(task_uid)
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
    conn: &mut SqliteConnection,
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
    push_ledger(conn, task.key_id, Some(&task.uid), amount, sql::REFUND, note, now).await
}

/// Ends a task that did not succeed (`failed` or `canceled`): every reserved credit goes
/// back, the lease is dropped and the change goes to the outbox.
async fn end_unsuccessfully(
    conn: &mut SqliteConnection,
    task: &Task,
    state: TaskState,
    code: &str,
    message: &str,
    now: i64,
) -> Result<Task, StoreError> {
    let row = sqlx::query(
        "UPDATE tasks SET state = $1, error_code = $2, error_message = $3, finished_at = $4,
                updated_at = $4, lease_expires_at = NULL, credits_charged = 0
         WHERE id = $5 RETURNING *",
    )
    .bind(state.as_str())
    .bind(code)
    .bind(message)
    .bind(now)
    .bind(task.id)
    .fetch_one(&mut *conn)
    .await?;
    let ended = sql::task(&row)?;
    let note = format!("task {}: {code}", state.as_str());
    refund(conn, &ended, task.credits_reserved, &note, now).await?;
    push_outbox(conn, &ended, state, now).await?;
    Ok(ended)
}

/// The running task `uid` if `worker` holds its lease.
async fn leased(
    conn: &mut SqliteConnection,
    uid: &str,
    worker: &str,
) -> Result<Option<Task>, StoreError> {
    let row = sqlx::query(
        "SELECT * FROM tasks WHERE uid = $1 AND state = 'running' AND lease_owner = $2",
    )
    .bind(uid)
    .bind(worker)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(sql::task).transpose()
}

fn clamp_fraction(f: f64) -> f64 {
    if f.is_nan() {
        0.0
    } else {
        f.clamp(0.0, 1.0)
    }
}

#[async_trait]
impl TaskRepo for SqliteRepo {
    async fn create_task(
        &self,
        new: NewTask,
        limits: SubmitLimits,
        now: i64,
    ) -> Result<Created, StoreError> {
        let mut tx = self.write().await?;
        if let Some(idem) = &new.idempotency_key {
            if let Some(task) = by_idempotency_key(&mut tx, new.key_id, idem).await? {
                return Ok(Created { task, created: false });
            }
        }
        let balance: Option<Option<i64>> =
            sqlx::query_scalar("SELECT balance FROM keys WHERE id = $1")
                .bind(new.key_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(balance) = balance else { return Err(StoreError::NoSuchKey(new.key_id)) };

        let queued: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE state = 'queued' AND engine = $1")
                .bind(new.engine.as_str())
                .fetch_one(&mut *tx)
                .await?;
        if queued as u64 >= limits.max_queued {
            return Err(StoreError::QueueFull { engine: new.engine, max: limits.max_queued });
        }
        let active: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(n), 0) FROM tasks
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
        .bind(sql::json(&new.surface_meta)?)
        .bind(&new.callback_url)
        .bind(reserve)
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let row = match inserted {
            Ok(row) => row,
            Err(e) if sql::is_unique_violation(&e) => {
                // Unreachable under the write lock, but a unique key is the last word on
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
            push_ledger(&mut tx, new.key_id, Some(&task.uid), -reserve, sql::RESERVE, &note, now)
                .await?;
        }
        push_outbox(&mut tx, &task, TaskState::Queued, now).await?;
        tx.commit().await?;
        Ok(Created { task, created: true })
    }

    async fn task(&self, uid: &str) -> Result<Option<Task>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        task_where(&mut conn, "uid = $1", uid).await
    }

    async fn task_by_idempotency_key(
        &self,
        key_id: i64,
        idempotency_key: &str,
    ) -> Result<Option<Task>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        by_idempotency_key(&mut conn, key_id, idempotency_key).await
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
        let text = format!(
            "UPDATE tasks SET state = 'running', lease_owner = $1, lease_expires_at = $2,
                    attempts = attempts + 1, started_at = COALESCE(started_at, $3), updated_at = $3,
                    progress_fraction = 0, progress_step = 0, progress_steps = 0
             WHERE id = (SELECT id FROM tasks WHERE state = 'queued' AND engine IN ({})
                         ORDER BY id LIMIT 1)
             RETURNING *",
            sql::placeholders(4, engines.len())
        );
        let mut tx = self.write().await?;
        let mut query = sqlx::query(&text).bind(worker).bind(now + lease_ms).bind(now);
        for engine in engines {
            query = query.bind(engine.as_str());
        }
        let Some(row) = query.fetch_optional(&mut *tx).await? else { return Ok(None) };
        let task = sql::task(&row)?;
        push_outbox(&mut tx, &task, TaskState::Running, now).await?;
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
        let cancel_requested: Option<bool> = sqlx::query_scalar(
            "UPDATE tasks SET lease_expires_at = $1, updated_at = $2,
                    progress_fraction = COALESCE($3, progress_fraction),
                    progress_step = COALESCE($4, progress_step),
                    progress_steps = COALESCE($5, progress_steps)
             WHERE uid = $6 AND state = 'running' AND lease_owner = $7
             RETURNING cancel_requested",
        )
        .bind(now + lease_ms)
        .bind(now)
        .bind(progress.map(|p| clamp_fraction(p.fraction)))
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
        let Some(task) = leased(&mut tx, uid, worker).await? else { return Ok(false) };
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
            push_ledger(&mut tx, task.key_id, Some(uid), 0, sql::CHARGE, &note, now).await?;
            let back = task.credits_reserved - charged;
            refund(&mut tx, &task, back, "images not made", now).await?;
        }
        push_outbox(&mut tx, &done, TaskState::Succeeded, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn fail(
        &self,
        uid: &str,
        worker: &str,
        code: &str,
        message: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let Some(task) = leased(&mut tx, uid, worker).await? else { return Ok(false) };
        end_unsuccessfully(&mut tx, &task, sql::end_state(code), code, message, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn cancel(&self, uid: &str, now: i64) -> Result<Option<Task>, StoreError> {
        let mut tx = self.write().await?;
        let Some(task) = task_where(&mut tx, "uid = $1", uid).await? else { return Ok(None) };
        let task = match task.state {
            TaskState::Queued => {
                end_unsuccessfully(
                    &mut tx,
                    &task,
                    TaskState::Canceled,
                    sql::CANCELED_CODE,
                    "canceled by its owner before it started",
                    now,
                )
                .await?
            }
            TaskState::Running => {
                let row = sqlx::query(
                    "UPDATE tasks SET cancel_requested = 1, updated_at = $1 WHERE id = $2 RETURNING *",
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
        let rows = sqlx::query(
            "SELECT * FROM tasks WHERE state = 'running' AND lease_expires_at <= $1 ORDER BY id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let (mut requeued, mut ended) = (0, 0);
        for row in &rows {
            let task = sql::task(row)?;
            if task.cancel_requested {
                // Its owner asked to cancel and the worker died before it could: honour
                // the cancel instead of running it again.
                let message = "canceled by its owner while it ran";
                end_unsuccessfully(&mut tx, &task, TaskState::Canceled, "canceled", message, now)
                    .await?;
                ended += 1;
            } else if task.attempts >= max_attempts {
                let message = format!(
                    "the worker stopped renewing its lease {} time(s); giving up",
                    task.attempts
                );
                let code = sql::RETRIES_EXHAUSTED;
                end_unsuccessfully(&mut tx, &task, TaskState::Failed, code, &message, now).await?;
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
                push_outbox(&mut tx, &sql::task(&row)?, TaskState::Queued, now).await?;
                requeued += 1;
            }
        }
        tx.commit().await?;
        Ok((requeued, ended))
    }

    async fn expire_results(&self, now: i64, limit: u32) -> Result<Vec<Task>, StoreError> {
        let mut tx = self.write().await?;
        let rows = sqlx::query(
            "UPDATE tasks SET result_expired = 1, updated_at = $1
             WHERE id IN (SELECT id FROM tasks
                          WHERE result_expired = 0 AND expires_at IS NOT NULL AND expires_at <= $1
                          ORDER BY expires_at, id LIMIT $2)
             RETURNING *",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut tasks = rows.iter().map(sql::task).collect::<Result<Vec<_>, _>>()?;
        tasks.sort_by_key(|t| t.id);
        Ok(tasks)
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
            push_ledger(&mut tx, key.id, None, balance, sql::GRANT, "starting balance", now)
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
        let done =
            sqlx::query("UPDATE keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
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
        push_ledger(&mut tx, id, None, amount, sql::GRANT, note, now).await?;
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
        let rows = sqlx::query(
            "UPDATE outbox SET next_attempt_at = $1
             WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= $2
                          ORDER BY id LIMIT $3)
             RETURNING *",
        )
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
    use super::*;

    /// Opening must work from a spawned task (a server opens its repository on the
    /// runtime), so its future must be `Send`; this fails to compile otherwise.
    #[allow(dead_code)]
    fn open_is_send() {
        fn send<T: Send + 'static>(_: T) {}
        send(SqliteRepo::open("sqlite://x.db"));
        send(crate::open("sqlite://x.db"));
    }

    #[tokio::test]
    async fn open_creates_the_file_and_its_folder_and_reopens() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested/folder/backdrop.db");
        let url = format!("sqlite://{}", path.display());
        let repo = SqliteRepo::open(&url).await.expect("opens");
        repo.ping().await.expect("answers");
        assert!(path.exists());
        drop(repo);
        let again = SqliteRepo::open(&url).await.expect("reopens an existing file");
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&again.pool)
            .await
            .expect("reads the journal mode");
        assert_eq!(mode, "wal");
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM backdrop_schema")
            .fetch_all(&again.pool)
            .await
            .expect("reads the schema versions");
        assert_eq!(versions, vec![1], "the migration ran exactly once");
    }
}
