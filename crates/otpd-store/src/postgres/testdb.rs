//! A fresh PostgreSQL database per test: created from the server named by
//! `OTPD_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`), migrated,
//! and dropped (`WITH (FORCE)`) when the handle goes. When the server cannot be reached the
//! test is skipped with a message, unless `OTPD_REQUIRE_STORES=1` makes that a failure.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::PostgresStore;

/// The server tests run against unless `OTPD_TEST_POSTGRES_URL` names another.
pub(crate) const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The admin URL (a database that exists, used to create and drop test databases).
pub(crate) fn admin_url() -> String {
    std::env::var("OTPD_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// Whether unreachable stores fail the test instead of skipping it.
pub(crate) fn required() -> bool {
    std::env::var("OTPD_REQUIRE_STORES").is_ok_and(|v| v == "1")
}

/// The URL of database `name` on the admin URL's server.
pub(crate) fn url_of(name: &str) -> String {
    let mut url = url::Url::parse(&admin_url()).expect("OTPD_TEST_POSTGRES_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.into()
}

/// A migrated database of its own, dropped on drop.
pub(crate) struct TestDb {
    /// The store on it.
    pub(crate) store: PostgresStore,
    /// Its URL (to open more pools, e.g. a second "node").
    pub(crate) url: String,
    /// Its name.
    pub(crate) name: String,
}

/// Creates a fresh migrated database, or `None` (after saying so) when PostgreSQL is
/// unreachable.
pub(crate) async fn fresh() -> Option<TestDb> {
    let db = fresh_empty().await?;
    db.store.migrate().await.expect("migrate");
    Some(db)
}

/// Creates a fresh database without migrating it.
pub(crate) async fn fresh_empty() -> Option<TestDb> {
    let name = format!("otpd_t_{}", uuid_like());
    let mut admin = match PgConnection::connect(&admin_url()).await {
        Ok(c) => c,
        Err(e) => {
            assert!(
                !required(),
                "PostgreSQL unreachable at OTPD_TEST_POSTGRES_URL and OTPD_REQUIRE_STORES=1: {e}"
            );
            eprintln!("skipped: PostgreSQL unreachable ({e}); set OTPD_TEST_POSTGRES_URL");
            return None;
        }
    };
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create the test database");
    let _ = admin.close().await;
    let url = url_of(&name);
    let store = PostgresStore::connect(&url).await.expect("connect");
    Some(TestDb { store, url, name })
}

/// 16 random hex digits (the database name's suffix).
fn uuid_like() -> String {
    use rand::RngCore;
    format!("{:016x}", rand::thread_rng().next_u64())
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: do the async work on a thread of its own.
        // `WITH (FORCE)` ends the pool's connections (the pool is not closed from here: its
        // connections belong to the test's runtime, which is blocked in this drop).
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}
