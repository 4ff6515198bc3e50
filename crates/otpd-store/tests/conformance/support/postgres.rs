//! A fresh PostgreSQL database per test: `CREATE DATABASE otpd_t_<random>` on the server
//! named by `OTPD_TEST_POSTGRES_URL` (default: the local test server,
//! `postgres://postgres@127.0.0.1:5432/test`), dropped (`WITH (FORCE)`) by the teardown.

use std::time::Duration;

use sqlx::{Connection, PgConnection};

/// The server the test databases are created on, unless `OTPD_TEST_POSTGRES_URL` says.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// How long to wait for the server before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A database made for one test.
pub struct TestDatabase {
    /// The URL of the new database (hand it to `PostgresStore::connect`).
    pub url: String,
    admin_url: String,
    name: String,
}

/// The admin URL: `OTPD_TEST_POSTGRES_URL` or [`DEFAULT_URL`].
fn admin_url() -> String {
    std::env::var("OTPD_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.into())
}

async fn connect(url: &str) -> Result<PgConnection, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

/// Creates an empty database for one test. The error says why the server could not be
/// used (without the URL, which may hold a password).
pub async fn fresh_database() -> Result<TestDatabase, String> {
    let admin_url = admin_url();
    let mut url = url::Url::parse(&admin_url).map_err(|e| format!("bad test URL: {e}"))?;
    let name = format!("otpd_t_{}", super::unique());
    let mut admin = connect(&admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
    let _ = admin.close().await;
    url.set_path(&name);
    Ok(TestDatabase {
        url: url.into(),
        admin_url,
        name,
    })
}

/// Whether a database of this name exists on the test server.
pub async fn database_exists(name: &str) -> Result<bool, String> {
    let mut admin = connect(&admin_url()).await?;
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
    let _ = admin.close().await;
    Ok(found.is_some())
}

impl TestDatabase {
    /// The database's name (`otpd_t_<random>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database, closing whatever connections the test left open.
    pub async fn drop_database(self) {
        match connect(&self.admin_url).await {
            Ok(mut admin) => {
                let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
                if let Err(e) = sqlx::query(&sql).execute(&mut admin).await {
                    eprintln!("could not drop test database {}: {e}", self.name);
                }
                let _ = admin.close().await;
            }
            Err(e) => eprintln!("could not drop test database {}: {e}", self.name),
        }
    }
}
