//! What the SQL repository's steps share: reading stored rows back into records, the
//! credit arithmetic of a finished task, and small helpers for building statements.
//!
//! Both schemas use the same column names and compatible types (64-bit integers, text for
//! JSON, booleans), so a row of either database decodes through the same code.

use crate::{
    ApiKey, Delivery, LedgerEntry, OutboxEntry, StoreError, SurfaceMeta, Task, TaskProgress,
    TaskResult,
};
use backdrop_core::{EngineName, ErrorCode, TaskPayload, TaskState};
use sqlx::Row;

/// The ledger reasons the schema accepts.
pub(crate) const RESERVE: &str = "reserve";
pub(crate) const CHARGE: &str = "charge";
pub(crate) const REFUND: &str = "refund";
pub(crate) const GRANT: &str = "grant";

/// Outbox entry statuses.
pub(crate) const PENDING: &str = "pending";
pub(crate) const DELIVERED: &str = "delivered";
pub(crate) const FAILED: &str = "failed";

/// Typed column access over either backend's row type, with decode errors mapped to
/// [`StoreError::Corrupt`] naming the column.
pub(crate) trait Get {
    fn i64(&self, col: &str) -> Result<i64, StoreError>;
    fn opt_i64(&self, col: &str) -> Result<Option<i64>, StoreError>;
    fn f64(&self, col: &str) -> Result<f64, StoreError>;
    fn bool(&self, col: &str) -> Result<bool, StoreError>;
    fn string(&self, col: &str) -> Result<String, StoreError>;
    fn opt_string(&self, col: &str) -> Result<Option<String>, StoreError>;
}

fn corrupt(col: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("column {col}: {e}"))
}

macro_rules! impl_get {
    ($row:ty) => {
        impl Get for $row {
            fn i64(&self, col: &str) -> Result<i64, StoreError> {
                self.try_get(col).map_err(|e| corrupt(col, e))
            }
            fn opt_i64(&self, col: &str) -> Result<Option<i64>, StoreError> {
                self.try_get(col).map_err(|e| corrupt(col, e))
            }
            fn f64(&self, col: &str) -> Result<f64, StoreError> {
                self.try_get(col).map_err(|e| corrupt(col, e))
            }
            fn bool(&self, col: &str) -> Result<bool, StoreError> {
                self.try_get(col).map_err(|e| corrupt(col, e))
            }
            fn string(&self, col: &str) -> Result<String, StoreError> {
                self.try_get(col).map_err(|e| corrupt(col, e))
            }
            fn opt_string(&self, col: &str) -> Result<Option<String>, StoreError> {
                self.try_get(col).map_err(|e| corrupt(col, e))
            }
        }
    };
}

impl_get!(sqlx::sqlite::SqliteRow);
impl_get!(sqlx::postgres::PgRow);

fn u32_of(row: &impl Get, col: &str) -> Result<u32, StoreError> {
    let v = row.i64(col)?;
    u32::try_from(v).map_err(|_| corrupt(col, format!("{v} is not a u32")))
}

fn state_of(row: &impl Get, col: &str) -> Result<TaskState, StoreError> {
    row.string(col)?.parse().map_err(|e| corrupt(col, e))
}

/// A `tasks` row.
pub(crate) fn task(row: &impl Get) -> Result<Task, StoreError> {
    let payload: TaskPayload =
        serde_json::from_str(&row.string("payload")?).map_err(|e| corrupt("payload", e))?;
    let engine: EngineName = row.string("engine")?.parse().map_err(|e| corrupt("engine", e))?;
    let surface_meta = SurfaceMeta::from_json(
        serde_json::from_str(&row.string("surface_meta")?)
            .map_err(|e| corrupt("surface_meta", e))?,
    );
    let result = match row.opt_string("result")? {
        Some(text) => {
            Some(serde_json::from_str::<TaskResult>(&text).map_err(|e| corrupt("result", e))?)
        }
        None => None,
    };
    Ok(Task {
        id: row.i64("id")?,
        uid: row.string("uid")?,
        key_id: row.i64("key_id")?,
        engine,
        payload,
        input_blob: row.string("input_blob")?,
        reference_blob: row.opt_string("reference_blob")?,
        idempotency_key: row.opt_string("idempotency_key")?,
        surface: row.string("surface")?,
        surface_meta,
        callback_url: row.opt_string("callback_url")?,
        state: state_of(row, "state")?,
        progress: TaskProgress {
            fraction: row.f64("progress_fraction")?,
            step: u32_of(row, "progress_step")?,
            steps: u32_of(row, "progress_steps")?,
        },
        attempts: u32_of(row, "attempts")?,
        lease_owner: row.opt_string("lease_owner")?,
        lease_expires_at: row.opt_i64("lease_expires_at")?,
        cancel_requested: row.bool("cancel_requested")?,
        result,
        // A code this version does not know (written by a newer one) reads as `internal`
        // rather than making the whole task unreadable.
        error_code: row
            .opt_string("error_code")?
            .map(|text| ErrorCode::parse(&text).unwrap_or(ErrorCode::Internal)),
        error_message: row.opt_string("error_message")?,
        credits_reserved: row.i64("credits_reserved")?,
        credits_charged: row.i64("credits_charged")?,
        created_at: row.i64("created_at")?,
        started_at: row.opt_i64("started_at")?,
        finished_at: row.opt_i64("finished_at")?,
        updated_at: row.i64("updated_at")?,
        expires_at: row.opt_i64("expires_at")?,
        result_expired: row.bool("result_expired")?,
    })
}

/// A `keys` row.
pub(crate) fn key(row: &impl Get) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        id: row.i64("id")?,
        name: row.string("name")?,
        hash: row.string("hash")?,
        prefix: row.string("prefix")?,
        balance: row.opt_i64("balance")?,
        created_at: row.i64("created_at")?,
        revoked_at: row.opt_i64("revoked_at")?,
    })
}

/// A `ledger` row.
pub(crate) fn ledger(row: &impl Get) -> Result<LedgerEntry, StoreError> {
    Ok(LedgerEntry {
        id: row.i64("id")?,
        key_id: row.i64("key_id")?,
        task_uid: row.opt_string("task_uid")?,
        delta: row.i64("delta")?,
        reason: row.string("reason")?,
        note: row.string("note")?,
        created_at: row.i64("created_at")?,
    })
}

/// An `outbox` row.
pub(crate) fn outbox(row: &impl Get) -> Result<OutboxEntry, StoreError> {
    Ok(OutboxEntry {
        id: row.i64("id")?,
        task_uid: row.string("task_uid")?,
        url: row.string("url")?,
        state: state_of(row, "state")?,
        body: row.opt_string("body")?,
        attempts: u32_of(row, "attempts")?,
        created_at: row.i64("created_at")?,
    })
}

/// A `deliveries` row joined with its outbox entry's `state` and `url`.
pub(crate) fn delivery(row: &impl Get) -> Result<Delivery, StoreError> {
    let status = match row.opt_i64("status")? {
        Some(v) => {
            Some(u16::try_from(v).map_err(|_| corrupt("status", format!("{v} is not a u16")))?)
        }
        None => None,
    };
    Ok(Delivery {
        entry_id: row.i64("entry_id")?,
        state: state_of(row, "state")?,
        url: row.string("url")?,
        attempt: u32_of(row, "attempt")?,
        status,
        error: row.opt_string("error")?,
        delivered: row.bool("delivered")?,
        at: row.i64("at")?,
    })
}

/// JSON text of a value the schema stores as text.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("cannot encode: {e}")))
}

/// The credits a succeeded task is charged: all it reserved when every image was made,
/// otherwise the share of the images made, rounded down so the customer never pays for
/// part of an image that did not come.
pub(crate) fn charge_for(reserved: i64, n: u32, made: usize) -> i64 {
    let n = i64::from(n.max(1));
    let made = i64::try_from(made).unwrap_or(i64::MAX).min(n);
    if made >= n {
        reserved
    } else {
        reserved * made / n
    }
}

/// `$from, $from+1, ...` for `count` parameters (both backends accept `$N`).
pub(crate) fn placeholders(from: usize, count: usize) -> String {
    (from..from + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// A `delivered`/`pending`/`failed` outbox status after one attempt.
pub(crate) fn status_after(delivered: bool, next_attempt_at: Option<i64>) -> &'static str {
    match (delivered, next_attempt_at) {
        (true, _) => DELIVERED,
        (false, Some(_)) => PENDING,
        (false, None) => FAILED,
    }
}

/// The state a task ends in when its worker reports `code`.
pub(crate) fn end_state(code: ErrorCode) -> TaskState {
    if code == ErrorCode::Canceled {
        TaskState::Canceled
    } else {
        TaskState::Failed
    }
}

/// Whether a database error is a unique-constraint violation (an idempotency race).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charge_is_the_share_of_images_made() {
        assert_eq!(charge_for(10, 4, 4), 10);
        assert_eq!(charge_for(10, 4, 5), 10);
        assert_eq!(charge_for(10, 4, 2), 5);
        assert_eq!(charge_for(10, 4, 1), 2);
        assert_eq!(charge_for(10, 4, 0), 0);
        assert_eq!(charge_for(0, 1, 1), 0);
        assert_eq!(charge_for(3, 0, 0), 0);
    }

    #[test]
    fn placeholders_number_from_the_given_index() {
        assert_eq!(placeholders(3, 2), "$3, $4");
        assert_eq!(placeholders(1, 0), "");
    }
}
