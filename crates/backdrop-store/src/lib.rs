//! Backdrop's persistence.
//!
//! - [`TaskRepo`]: tasks, API keys, the credit ledger and the callback outbox, behind one
//!   trait implemented once over SQL ([`SqlRepo`]) for two databases:
//!   [`sqlite::SqliteRepo`] (the embedded default) and [`postgres::PgRepo`] (many API
//!   nodes and workers; claiming with `FOR UPDATE SKIP LOCKED`). One conformance suite
//!   ([`conformance`]) runs against both.
//! - [`blob`]: result and input images in a [`blob::BlobStore`] (local disk or any
//!   S3-compatible store), and the HMAC-signed, expiring URLs they are served at.
//!
//! All times are milliseconds since the Unix epoch, passed in by the caller so tests can
//! move the clock; except lease expiries, which the database's own clock sets and checks,
//! so nodes whose clocks disagree still agree on when a lease lapses.

#![deny(missing_docs)]

pub mod blob;
pub mod conformance;
pub mod postgres;
mod repo;
mod sql;
pub mod sqlite;
mod types;

pub use repo::SqlRepo;
pub use types::*;

use async_trait::async_trait;
use backdrop_core::{EngineName, ErrorCode, TaskState};

/// Tasks, keys, credits and callbacks. Every method is one transaction.
#[async_trait]
pub trait TaskRepo: Send + Sync {
    // --- tasks ---

    /// Persists a new task and reserves its credits, in one transaction.
    ///
    /// - A task with the same `(key_id, idempotency_key)` already stored is returned
    ///   instead (`created == false`); nothing is reserved again.
    /// - `limits.max_queued` counts queued tasks of the same engine; at the limit the
    ///   submit fails with [`StoreError::QueueFull`].
    /// - `limits.max_key_images` counts `n` of the key's queued and running tasks; over it,
    ///   [`StoreError::ConcurrencyLimit`].
    /// - A key with a balance below `new.credits` gets [`StoreError::InsufficientCredits`];
    ///   otherwise the balance drops by `new.credits` and a `reserve` ledger entry is
    ///   written. Keys with no balance (unmetered) are never refused.
    /// - The `queued` state change is put in the callback outbox if the task has a
    ///   callback URL.
    async fn create_task(
        &self,
        new: NewTask,
        limits: SubmitLimits,
        now: i64,
    ) -> Result<Created, StoreError>;

    /// A task by its public id.
    async fn task(&self, uid: &str) -> Result<Option<Task>, StoreError>;

    /// A task by a key's idempotency key (or a vendor's client task id stored as such).
    async fn task_by_idempotency_key(
        &self,
        key_id: i64,
        idempotency_key: &str,
    ) -> Result<Option<Task>, StoreError>;

    /// A task by its numeric id (for surfaces with numeric task ids).
    async fn task_by_id(&self, id: i64) -> Result<Option<Task>, StoreError>;

    /// One page of a key's tasks, newest first: those with `id < filter.before` when set.
    async fn list_tasks(&self, key_id: i64, filter: &TaskFilter) -> Result<Vec<Task>, StoreError>;

    /// How many queued tasks of the same engine were submitted before this one (0 = next);
    /// `None` unless the task is queued.
    async fn queue_position(&self, uid: &str) -> Result<Option<u64>, StoreError>;

    /// Number of queued tasks per engine.
    async fn queue_depths(&self) -> Result<Vec<(EngineName, u64)>, StoreError>;

    /// Claims the oldest queued task whose engine is in `engines`: state `running`, lease
    /// held by `worker` for `lease_ms` by the database's clock, `attempts + 1`,
    /// `started_at` set on the first claim. Safe across processes: two workers never claim the same task. The `running`
    /// state change goes to the outbox.
    async fn claim(
        &self,
        worker: &str,
        engines: &[EngineName],
        lease_ms: i64,
        now: i64,
    ) -> Result<Option<Task>, StoreError>;

    /// Renews the lease for `lease_ms` from now by the database's clock, and records
    /// progress. [`Lease::Lost`] when the worker no longer
    /// holds it (lapsed and reclaimed, or the task ended).
    async fn heartbeat(
        &self,
        uid: &str,
        worker: &str,
        lease_ms: i64,
        progress: Option<TaskProgress>,
        now: i64,
    ) -> Result<Lease, StoreError>;

    /// Ends a running task as `succeeded` if `worker` still holds its lease (else `false`
    /// and nothing changes). Charges the credits of the images made, gives back the rest
    /// (ledger `charge` and `refund`), stores the result, sets `expires_at`, and puts the
    /// state change in the outbox.
    async fn complete(
        &self,
        uid: &str,
        worker: &str,
        result: TaskResult,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Ends a running task as `failed` (or `canceled` when `code` is `canceled`) if
    /// `worker` holds its lease; gives back every reserved credit. A task that did not
    /// succeed has nothing to download, so its `expires_at` is `now`: its input, reference
    /// and any partial results go at the next sweep. Every other way a task fails or is
    /// canceled does the same.
    async fn fail(
        &self,
        uid: &str,
        worker: &str,
        code: ErrorCode,
        message: &str,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Cancels: a queued task becomes `canceled` at once (credits given back); a running
    /// one is marked `cancel_requested` and its worker stops at the next step. Terminal
    /// tasks are returned unchanged.
    async fn cancel(&self, uid: &str, now: i64) -> Result<Option<Task>, StoreError>;

    /// Running tasks whose lease lapsed by the database's clock go back to `queued`, or to `failed` with code
    /// `retries_exhausted` once `attempts >= max_attempts` (credits given back). Returns
    /// `(requeued, failed)`.
    async fn requeue_expired(&self, max_attempts: u32, now: i64) -> Result<(u64, u64), StoreError>;

    /// Ended tasks whose files are due for deletion: `expires_at <= now` and not yet
    /// marked expired, with `id > after`, in id order, at most `limit`. Nothing changes:
    /// the caller deletes the files, then [`TaskRepo::mark_expired`] records it, so files
    /// whose deletion failed are offered again.
    async fn due_for_expiry(
        &self,
        now: i64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError>;

    /// Records that the files of task `id` were deleted (`result_expired`), if its
    /// `expires_at` passed; `false` when it is not due or was marked already.
    async fn mark_expired(&self, id: i64, now: i64) -> Result<bool, StoreError>;

    // --- keys and credits ---

    /// Stores a key (its hash only).
    async fn create_key(&self, new: NewKey, now: i64) -> Result<ApiKey, StoreError>;

    /// An active (not revoked) key by the hash of its plaintext.
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError>;

    /// A key by id, revoked or not.
    async fn key(&self, id: i64) -> Result<Option<ApiKey>, StoreError>;

    /// Every key, oldest first.
    async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError>;

    /// Revokes a key; `false` if there is no such key.
    async fn revoke_key(&self, id: i64, now: i64) -> Result<bool, StoreError>;

    /// Adds `amount` credits (negative to take away) with a `grant` ledger entry. An
    /// unmetered key becomes metered with a balance of `amount`.
    async fn credit_key(
        &self,
        id: i64,
        amount: i64,
        note: &str,
        now: i64,
    ) -> Result<ApiKey, StoreError>;

    /// A key's ledger, oldest first.
    async fn ledger(&self, key_id: i64) -> Result<Vec<LedgerEntry>, StoreError>;

    // --- callbacks ---

    /// Up to `limit` outbox entries due at `now`, claimed for `lease_ms` (their
    /// `next_attempt_at` moves forward so another node does not send them meanwhile).
    async fn due_callbacks(
        &self,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Records one delivery attempt: stores `body` on the entry (so retries send the same
    /// bytes), appends to the delivery log, and either marks the entry delivered, schedules
    /// it for `next_attempt_at`, or marks it failed when `next_attempt_at` is `None` and
    /// the attempt failed.
    async fn record_delivery(
        &self,
        entry_id: i64,
        body: &str,
        attempt: DeliveryAttempt,
        next_attempt_at: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError>;

    /// The delivery log of a task's callbacks, oldest first.
    async fn deliveries(&self, task_uid: &str) -> Result<Vec<Delivery>, StoreError>;

    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Opens the repository for a database URL: `sqlite://PATH` (created if missing) or
/// `postgres://...`; runs the migrations.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn TaskRepo>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(sqlite::SqliteRepo::open(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(std::sync::Arc::new(postgres::PgRepo::open(url).await?))
    } else {
        Err(StoreError::Config(format!(
            "unsupported database URL '{url}': use sqlite://PATH or postgres://..."
        )))
    }
}

/// Whether a state may be filtered on (every state may).
pub fn is_state(s: &str) -> bool {
    s.parse::<TaskState>().is_ok()
}
