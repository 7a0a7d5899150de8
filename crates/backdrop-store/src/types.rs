//! The records the repository stores and returns.

use backdrop_core::{EngineName, ErrorCode, JobKind, TaskPayload, TaskState};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A task to persist.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    /// Public id (unique; the server makes a random one).
    pub uid: String,
    /// Owner.
    pub key_id: i64,
    /// The engine that will run it (resolved at submit; workers claim by engine).
    pub engine: EngineName,
    /// The job and its output options.
    pub payload: TaskPayload,
    /// Blob key of the input image.
    pub input_blob: String,
    /// Blob key of a reference image, if any.
    pub reference_blob: Option<String>,
    /// Idempotency key or vendor client task id, unique per key.
    pub idempotency_key: Option<String>,
    /// Which API surface created it (`native`, `cutout`, `picwish`, `picpik`, `kling`).
    pub surface: String,
    /// Surface-specific fields (never read by the core).
    pub surface_meta: SurfaceMeta,
    /// Where state changes are POSTed.
    pub callback_url: Option<String>,
    /// Credits to reserve.
    pub credits: i64,
}

/// The fields a vendor surface keeps with its tasks (an external task id, the prompt
/// it echoes, the response shape asked for), stored as one JSON object and never read by
/// the core. Each surface writes and reads its own typed struct through [`SurfaceMeta::new`]
/// and [`SurfaceMeta::read`]; the JSON stays inside this type.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SurfaceMeta(serde_json::Value);

impl SurfaceMeta {
    /// The stored form of a surface's fields.
    pub fn new<T: Serialize>(fields: &T) -> Self {
        SurfaceMeta(serde_json::to_value(fields).unwrap_or_default())
    }

    /// The surface's fields. A task stored without them (or by another surface, or by a
    /// version whose fields have since changed) reads as `T::default()` field by field
    /// where the type allows it.
    pub fn read<T: DeserializeOwned + Default>(&self) -> T {
        T::deserialize(&self.0).unwrap_or_default()
    }

    /// The stored JSON (`null` when the surface keeps nothing).
    pub fn as_json(&self) -> &serde_json::Value {
        &self.0
    }

    /// Fields as read back from the database.
    pub fn from_json(value: serde_json::Value) -> Self {
        SurfaceMeta(value)
    }
}

/// Limits checked atomically with the insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitLimits {
    /// Most queued tasks per engine.
    pub max_queued: u64,
    /// Most images (sum of `n`) a key may have queued or running.
    pub max_key_images: u64,
}

/// The answer to a create.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// The task (new, or the one stored earlier under the same idempotency key).
    pub task: Task,
    /// Whether it was created by this call.
    pub created: bool,
}

/// A stored task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Numeric id (ascending with submission).
    pub id: i64,
    /// Public id.
    pub uid: String,
    /// Owner.
    pub key_id: i64,
    /// The engine that runs it.
    pub engine: EngineName,
    /// The job and its output options.
    pub payload: TaskPayload,
    /// Input blob key.
    pub input_blob: String,
    /// Reference blob key.
    pub reference_blob: Option<String>,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Surface that created it.
    pub surface: String,
    /// Surface-specific fields.
    pub surface_meta: SurfaceMeta,
    /// Callback URL.
    pub callback_url: Option<String>,
    /// State.
    pub state: TaskState,
    /// Progress while running (and 1.0 once succeeded).
    pub progress: TaskProgress,
    /// Times claimed.
    pub attempts: u32,
    /// Worker holding the lease.
    pub lease_owner: Option<String>,
    /// When the lease lapses, by the database's clock.
    pub lease_expires_at: Option<i64>,
    /// Set when a cancel arrived while running.
    pub cancel_requested: bool,
    /// Result once succeeded.
    pub result: Option<TaskResult>,
    /// Error code once failed or canceled.
    pub error_code: Option<ErrorCode>,
    /// Error message once failed.
    pub error_message: Option<String>,
    /// Credits reserved at submit.
    pub credits_reserved: i64,
    /// Credits charged at the end.
    pub credits_charged: i64,
    /// Submitted at.
    pub created_at: i64,
    /// First claimed at.
    pub started_at: Option<i64>,
    /// Ended at.
    pub finished_at: Option<i64>,
    /// Last change.
    pub updated_at: i64,
    /// When the task's files (input, reference, results) are deleted: set when it ends,
    /// to the results' lifetime on success and to the end itself otherwise.
    pub expires_at: Option<i64>,
    /// Whether the task's files were deleted.
    pub result_expired: bool,
}

impl Task {
    /// Which job.
    pub fn kind(&self) -> JobKind {
        self.payload.job.kind()
    }

    /// How many images.
    pub fn n(&self) -> u32 {
        self.payload.job.n()
    }
}

/// Progress of a running task.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct TaskProgress {
    /// Fraction done, 0..=1.
    pub fraction: f64,
    /// Current step (1-based once one finished).
    pub step: u32,
    /// Steps in all.
    pub steps: u32,
}

/// What a succeeded task made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// The engine that ran.
    pub engine: String,
    /// Seed of the first image.
    pub seed: u64,
    /// Width of the results.
    pub width: u32,
    /// Height of the results.
    pub height: u32,
    /// One per image.
    pub images: Vec<ResultImage>,
    /// Engine notes (e.g. the scene picked and why).
    pub notes: Vec<(String, String)>,
    /// Milliseconds the engine ran.
    pub engine_ms: f64,
}

/// One result image's blobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultImage {
    /// 1-based index.
    pub index: u32,
    /// Seed of this image.
    pub seed: u64,
    /// Blob key of the clean image.
    pub blob: String,
    /// Blob key of the preview.
    pub preview_blob: Option<String>,
    /// Blob key of the watermarked variant.
    pub watermarked_blob: Option<String>,
}

/// Filter and page of a task listing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFilter {
    /// Only this state.
    pub state: Option<TaskState>,
    /// Only this job.
    pub kind: Option<JobKind>,
    /// Only this surface.
    pub surface: Option<String>,
    /// Only tasks with `id` below this (the cursor of the previous page).
    pub before: Option<i64>,
    /// Page size (the caller caps it).
    pub limit: u32,
    /// Skip this many (for surfaces that page by number).
    pub offset: u32,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Still held; `cancel_requested` tells the worker to stop.
    Held {
        /// A cancel arrived.
        cancel_requested: bool,
    },
    /// Not held any more: the worker must drop its work.
    Lost,
}

/// A key to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// A label.
    pub name: String,
    /// Hex SHA-256 of the plaintext.
    pub hash: String,
    /// The first characters of the plaintext, to recognise it in listings.
    pub prefix: String,
    /// Starting balance; `None` for unmetered.
    pub balance: Option<i64>,
}

/// A stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Id.
    pub id: i64,
    /// Label.
    pub name: String,
    /// Hex SHA-256 of the plaintext.
    pub hash: String,
    /// First characters of the plaintext.
    pub prefix: String,
    /// Balance; `None` for unmetered.
    pub balance: Option<i64>,
    /// Created at.
    pub created_at: i64,
    /// Revoked at.
    pub revoked_at: Option<i64>,
}

/// A credit movement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Id.
    pub id: i64,
    /// Key.
    pub key_id: i64,
    /// Task, if the movement belongs to one.
    pub task_uid: Option<String>,
    /// Change of balance (negative = spent or reserved).
    pub delta: i64,
    /// `reserve`, `charge`, `refund` or `grant`.
    pub reason: String,
    /// Free text.
    pub note: String,
    /// When.
    pub created_at: i64,
}

/// A callback to deliver: one state change of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// Id.
    pub id: i64,
    /// The task's public id.
    pub task_uid: String,
    /// Where to POST.
    pub url: String,
    /// The state the task entered.
    pub state: TaskState,
    /// The body, once rendered by the first attempt (retries resend it).
    pub body: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// When the change happened.
    pub created_at: i64,
}

/// One delivery attempt's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// HTTP status, if a response came.
    pub status: Option<u16>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// Whether it counts as delivered (2xx).
    pub delivered: bool,
}

/// A line of the delivery log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Outbox entry.
    pub entry_id: i64,
    /// The state change delivered.
    pub state: TaskState,
    /// URL.
    pub url: String,
    /// 1-based attempt number.
    pub attempt: u32,
    /// HTTP status.
    pub status: Option<u16>,
    /// Error text.
    pub error: Option<String>,
    /// Delivered by this attempt.
    pub delivered: bool,
    /// When.
    pub at: i64,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The engine's queue is full.
    #[error("the {engine} queue is full ({max} tasks waiting); retry later")]
    QueueFull {
        /// Engine.
        engine: EngineName,
        /// The limit.
        max: u64,
    },
    /// Too many images in flight for this key.
    #[error("this key has {active} images queued or running; the limit is {max}")]
    ConcurrencyLimit {
        /// Images in flight before this submit.
        active: u64,
        /// The limit.
        max: u64,
    },
    /// Not enough credits.
    #[error("this task costs {needed} credits; the balance is {balance}")]
    InsufficientCredits {
        /// Price.
        needed: i64,
        /// Balance.
        balance: i64,
    },
    /// No such key.
    #[error("no key with id {0}")]
    NoSuchKey(i64),
    /// Bad configuration.
    #[error("{0}")]
    Config(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(String),
    /// A stored value could not be read back.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The blob store failed.
    #[error("blob store error: {0}")]
    Blob(String),
    /// No such blob.
    #[error("no such blob: {0}")]
    BlobNotFound(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}
