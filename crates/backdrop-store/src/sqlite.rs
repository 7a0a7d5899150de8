//! The embedded repository: SQLite, one file on the local disk.
//!
//! Several processes may open the same file (an API server and a separate worker, or a
//! server restarted while the old one is still exiting). The file runs in WAL mode so
//! readers never wait for the writer, and every method that writes takes SQLite's write
//! lock up front (`BEGIN IMMEDIATE`): a transaction therefore reads the state it is about
//! to change under the lock, which is what makes a claim exclusive across processes, and
//! it never has to upgrade a read lock to a write lock (the upgrade is what fails with
//! `SQLITE_BUSY` without waiting in WAL mode). Contention waits on `busy_timeout`.

use crate::repo::{Backend, Lock, SqlRepo, Writes};
use crate::StoreError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::Sqlite;
use std::str::FromStr;
use std::time::Duration;

/// How long a write waits for another connection or process to release the lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// SQLite-backed [`crate::TaskRepo`].
pub type SqliteRepo = SqlRepo<Sqlite>;

impl Backend for Sqlite {
    // An `INTEGER PRIMARY KEY` is the row id, 64-bit; AUTOINCREMENT never reuses one.
    const ID_COLUMN: &'static str = "INTEGER PRIMARY KEY AUTOINCREMENT";
    // One writer at a time anyway; the rest serve reads.
    const MAX_CONNECTIONS: u32 = 8;
    const WRITES: Writes = Writes::DatabaseLock;
    // `'now'` is kept in whole milliseconds, so rounding gives them back exactly.
    const NOW_MS: &'static str =
        "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)";

    fn claim_statement(set: &str, engines: &str) -> String {
        format!(
            "UPDATE tasks SET {set}
             WHERE id = (SELECT id FROM tasks WHERE state = 'queued' AND engine IN ({engines})
                         ORDER BY id LIMIT 1)
             RETURNING *"
        )
    }

    fn lock(_: Lock) -> Option<&'static str> {
        // Every writing transaction holds the write lock from its start.
        None
    }
}

impl SqlRepo<Sqlite> {
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
        SqlRepo::connect(options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskRepo;

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
        assert_eq!(versions, vec![1, 2], "each migration ran exactly once");
    }

    /// A database made before version 2 spelled the sweep's index condition with `0`;
    /// opening it rebuilds the index with the spelling the sweep's statements use, so
    /// SQLite can use it for them.
    #[tokio::test]
    async fn a_version_1_database_gets_the_expiry_index_its_sweep_spells() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("backdrop.db").display());
        let repo = SqliteRepo::open(&url).await.expect("opens");
        // One script on one connection, as a version-1 database has it.
        sqlx::raw_sql(
            "DROP INDEX tasks_expiry;
             CREATE INDEX tasks_expiry ON tasks (expires_at)
                 WHERE result_expired = 0 AND expires_at IS NOT NULL;
             DELETE FROM backdrop_schema WHERE version = 2;",
        )
        .execute(&repo.pool)
        .await
        .expect("makes it version 1");
        drop(repo);
        let repo = SqliteRepo::open(&url).await.expect("upgrades");
        let index: String =
            sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'tasks_expiry'")
                .fetch_one(&repo.pool)
                .await
                .expect("the index is there");
        assert!(index.contains(crate::repo::UNEXPIRED), "{index}");
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!(
            "EXPLAIN QUERY PLAN SELECT id FROM tasks WHERE {} AND expires_at <= 5",
            crate::repo::UNEXPIRED
        ))
        .fetch_all(&repo.pool)
        .await
        .expect("plans");
        assert!(plan.iter().any(|row| row.3.contains("tasks_expiry")), "{plan:?}");
    }
}
