//! The task repository against a real PostgreSQL server: the conformance suite, and
//! claims racing from two repositories on one database.
//!
//! Runs when `BACKDROP_TEST_POSTGRES_URL` names a database the user may create schemas
//! in (`eval "$(tools/postgres)"` starts a local server and sets it; `tools/test` does
//! both). Every case gets a schema of its own, dropped afterwards, so runs and parallel
//! tests never see each other's rows. Without the variable the tests pass, saying they
//! were skipped.

mod common;

use backdrop_store::postgres::PgRepo;
use backdrop_store::{conformance, TaskRepo};
use common::{check_each_once, drain_from_two, queue_tasks};
use futures::FutureExt;
use sqlx::postgres::PgPool;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

const URL_VAR: &str = "BACKDROP_TEST_POSTGRES_URL";

fn server_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            println!("skipped: {URL_VAR} not set");
            eprintln!("skipped: {URL_VAR} not set");
            None
        }
    }
}

/// Schemas made for one test, dropped together at its end.
struct Schemas {
    url: String,
    admin: PgPool,
    made: Vec<String>,
}

impl Schemas {
    async fn connect(url: String) -> Schemas {
        let admin = PgPool::connect(&url).await.expect("connects to the test server");
        Schemas { url, admin, made: Vec::new() }
    }

    /// A new empty schema and a URL whose connections work in it.
    async fn fresh(&mut self) -> String {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "bdtest_{}_{nanos}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&self.admin)
            .await
            .expect("creates a schema");
        self.made.push(name.clone());
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options[search_path]={name}", self.url)
    }

    async fn drop_all(&self) {
        for name in &self.made {
            if let Err(e) =
                sqlx::query(&format!("DROP SCHEMA {name} CASCADE")).execute(&self.admin).await
            {
                eprintln!("could not drop schema {name}: {e}");
            }
        }
    }

    /// Runs `test`, then drops the schemas whether it passed or not.
    async fn around(&self, test: impl std::future::Future<Output = ()>) {
        let outcome = AssertUnwindSafe(test).catch_unwind().await;
        self.drop_all().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_conformance() {
    let Some(url) = server_url() else { return };
    let mut schemas = Schemas::connect(url).await;
    // Make the schemas first (the factory cannot borrow `schemas` while `around` does).
    let mut urls = Vec::new();
    for _ in conformance::cases() {
        urls.push(schemas.fresh().await);
    }
    let mut urls = urls.into_iter();
    schemas
        .around(conformance::run_all(|| {
            let url = urls.next().expect("a schema per case");
            async move {
                Arc::new(PgRepo::open(&url).await.expect("opens a fresh schema"))
                    as Arc<dyn TaskRepo>
            }
        }))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_repos_process_each_task_once() {
    let Some(url) = server_url() else { return };
    let mut schemas = Schemas::connect(url).await;
    let url = schemas.fresh().await;
    schemas
        .around(async {
            // Two independent pools, as two worker processes would have.
            let first: Arc<dyn TaskRepo> = Arc::new(PgRepo::open(&url).await.expect("opens"));
            let second: Arc<dyn TaskRepo> = Arc::new(PgRepo::open(&url).await.expect("opens"));
            queue_tasks(&*first).await;
            let claims = drain_from_two(first.clone(), second).await;
            check_each_once(&*first, &claims).await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrations_are_idempotent_and_race_free() {
    let Some(url) = server_url() else { return };
    let mut schemas = Schemas::connect(url).await;
    let url = schemas.fresh().await;
    schemas
        .around(async {
            // Several processes starting at once against an empty schema.
            let opens: Vec<_> = (0..4)
                .map(|_| {
                    let url = url.clone();
                    tokio::spawn(async move { PgRepo::open(&url).await })
                })
                .collect();
            for open in opens {
                open.await.expect("joins").expect("every concurrent open succeeds");
            }
            let repo = PgRepo::open(&url).await.expect("reopens");
            repo.ping().await.expect("answers");
        })
        .await;
}
