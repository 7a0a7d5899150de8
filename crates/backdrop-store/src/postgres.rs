//! The shared repository: PostgreSQL, for many API nodes and worker processes.
//!
//! Every method is one transaction at PostgreSQL's default isolation (read committed);
//! exclusivity comes from row locks rather than from retrying serialization failures:
//!
//! - claiming takes the oldest queued row with `FOR UPDATE SKIP LOCKED`, so concurrent
//!   workers each lock a different task and never wait on each other; sweeps of lapsed
//!   leases, expired results and due callbacks lock their rows the same way;
//! - a worker's `complete`/`fail` and an owner's `cancel` lock the task row first and
//!   re-read it, so the lease check and the change it guards see the same version;
//! - a submit holds a transaction-scoped advisory lock for its engine's queue and locks its
//!   key's row, so the queue limit, the key's concurrency limit, its balance and its
//!   idempotency keys are checked and changed by one submit at a time.
//!
//! Locks on key rows are always taken after task rows, and several key rows in id order,
//! so these transactions cannot deadlock one another.

use crate::repo::{Backend, Lock, SqlRepo, Writes};
use crate::StoreError;
use sqlx::postgres::PgConnectOptions;
use sqlx::Postgres;
use std::str::FromStr;

/// PostgreSQL-backed [`crate::TaskRepo`].
pub type PgRepo = SqlRepo<Postgres>;

impl Backend for Postgres {
    const ID_COLUMN: &'static str = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY";
    const MAX_CONNECTIONS: u32 = 16;
    const WRITES: Writes = Writes::RowLocks;
    const NOW_MS: &'static str = "FLOOR(EXTRACT(EPOCH FROM now()) * 1000)::BIGINT";

    fn claim_statement(set: &str, engines: &str) -> String {
        // Materialized, so the locking select runs once and the update sees only the row
        // it locked.
        format!(
            "WITH next AS MATERIALIZED (
                 SELECT id FROM tasks WHERE state = 'queued' AND engine IN ({engines})
                 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
             UPDATE tasks SET {set}
             FROM next WHERE tasks.id = next.id
             RETURNING tasks.*"
        )
    }

    fn lock(lock: Lock) -> Option<&'static str> {
        Some(match lock {
            // Any fixed number: "bdschema" in ASCII.
            Lock::Migrations => "SELECT pg_advisory_xact_lock(7089918584178437473)",
            Lock::Queue => "SELECT pg_advisory_xact_lock(hashtext('backdrop.queue.' || $1))",
        })
    }
}

impl SqlRepo<Postgres> {
    /// Connects to `postgres://...` (the database must exist; the tables are created in
    /// the connection's first `search_path` schema) and brings the schema up to date.
    pub async fn open(url: &str) -> Result<PgRepo, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(format!("bad PostgreSQL URL: {e}")))?;
        SqlRepo::connect(options).await
    }
}
