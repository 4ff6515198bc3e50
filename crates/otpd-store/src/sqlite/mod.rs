//! The embedded SQLite store.
//!
//! One writer connection serializes every change (SQLite allows one writer at a time; a
//! single connection avoids lock-upgrade failures), each store call one atomic step in a
//! group-committed transaction (`writer`); a few readers serve reads in parallel under WAL
//! (`conn`), and a thread of its own checkpoints the log (`checkpoint`). Statements run
//! with rusqlite on the calling thread; sqlx only applies the migrations.

mod challenges;
mod checkpoint;
mod conn;
mod events;
mod factor_challenges;
mod factors;
mod guards;
mod journal;
mod keys;
mod lockout;
mod outbox;
mod passkeys;
mod retention;
mod safe_list;
mod services;
mod sessions;
mod stats;
mod verifications;
mod webhooks;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::ids::Kind;
use otpd_core::store::{HealthStore, StoreResult};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use crate::lookups::Lookups;

pub(crate) use conn::{Query, SqlResult, collect};

/// Embedded migrations of the SQLite dialect.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a caller waits for the writer connection or a busy database before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Reader connections (reads run in parallel under WAL).
const READERS: usize = 4;

/// Errors opening the store.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL is not `sqlite://PATH`.
    #[error("not a sqlite URL: expected sqlite://PATH")]
    BadUrl,
    /// The directory could not be created.
    #[error("cannot create the database directory {path}: {source}")]
    Directory {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The database file could not be made private (mode 0600).
    #[error("cannot make the database file {path} private: {source}")]
    Private {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite refused.
    #[error("cannot open the database: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// SQLite refused (the store's own connections).
    #[error("cannot open the database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The checkpointer thread could not start.
    #[error("cannot start the checkpointer: {0}")]
    Checkpointer(std::io::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    conns: Arc<conn::Connections>,
    /// Keys and services as recently read (`crate::lookups`).
    lookups: Arc<Lookups>,
    /// How to connect sqlx for the migrations (its migrator keeps their bookkeeping).
    migrations: Arc<SqliteConnectOptions>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `sqlite://PATH`. Does not migrate.
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or(OpenError::BadUrl)?;
        let file = path.split('?').next().unwrap_or(path);
        if file.is_empty() {
            return Err(OpenError::BadUrl);
        }
        if file != ":memory:"
            && let Some(dir) = Path::new(file)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
        {
            crate::private_files::create_private_dir(dir).map_err(|source| {
                OpenError::Directory {
                    path: dir.display().to_string(),
                    source,
                }
            })?;
        }
        if file != ":memory:" && !path.contains("mode=memory") {
            crate::private_files::make_database_private(Path::new(file)).map_err(|source| {
                OpenError::Private {
                    path: file.to_string(),
                    source,
                }
            })?;
        }
        // The store's own connections carry its settings (`conn`); the migrations' sqlx
        // connection only keeps the journal mode the file has, and waits like they do.
        let conns = conn::Connections::open(Path::new(file), READERS, BUSY_TIMEOUT)?;
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        Ok(SqliteStore {
            conns: Arc::new(conns),
            lookups: Arc::default(),
            migrations: Arc::new(options),
        })
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), OpenError> {
        // A connection of its own, closed afterwards: nothing of sqlx stays open.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with((*self.migrations).clone())
            .await?;
        let applied = MIGRATOR.run(&pool).await;
        pool.close().await;
        applied?;
        Ok(())
    }

    /// Flushes the WAL into the database file (the connections themselves close when the
    /// last clone of the store is dropped).
    pub async fn close(&self) {
        if let Err(e) = self.checkpoint().await {
            tracing::warn!(error = %e, "WAL checkpoint at close failed");
        }
    }
}

#[async_trait]
impl HealthStore for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }
}

/// Unix milliseconds of a time.
pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The time of Unix milliseconds.
pub(crate) fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Appends an event inside a write transaction, with the actor of `ctx` (and counts it
/// there).
pub(crate) fn record_event(
    tx: &rusqlite::Connection,
    kind: otpd_core::event::EventType,
    verification_id: Option<&str>,
    service_id: Option<&str>,
    data: serde_json::Value,
    now: DateTime<Utc>,
    ctx: &WriteContext,
) -> SqlResult<()> {
    let actor = ctx.actor();
    tx.prepare_cached(
        "INSERT INTO events (id, kind, verification_id, service_id, data, created_at, key_id, request_id, client_ip) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(rusqlite::params![
        Kind::Event.new_id(),
        kind.as_str(),
        verification_id,
        service_id,
        data.to_string(),
        ms(now),
        actor.key_id,
        actor.request_id,
        actor.client_ip,
    ])?;
    ctx.note_event();
    Ok(())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod audit_tests;
