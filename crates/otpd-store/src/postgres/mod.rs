//! The PostgreSQL store: what many stateless otpd nodes share.
//!
//! # Concurrency
//!
//! Every store call that changes more than one row is one transaction at PostgreSQL's
//! default isolation, READ COMMITTED, made safe by locks taken inside it rather than by
//! reading and then writing in the application:
//!
//! - **row locks** (`SELECT … FOR UPDATE`) on the verification a check, cancel, approval
//!   or delivery works on: concurrent checks of one code queue behind each other, and the
//!   second sees the first one's result (a code is spent once, invariant 2);
//! - **conditional updates** (`UPDATE … WHERE status = 'pending' AND check_attempts = $n`,
//!   `… WHERE last_used_step < $n`, `… WHERE spent_at IS NULL`) as the compare-and-set;
//! - **`FOR UPDATE SKIP LOCKED`** with a lease (`lease_owner`, `lease_until`) to claim
//!   outbox and webhook jobs: two workers never take the same job, and a job whose worker
//!   died is due again once its lease runs out (invariant 3);
//! - **transaction-scoped advisory locks** (`pg_advisory_xact_lock`) on keys that have no
//!   row to lock yet: a recipient's send log and pending verification (`start`), an
//!   idempotency key, a lockout subject, a rate-limit bucket. They are released at commit
//!   or rollback and taken in a fixed order (idempotency key, recipient, lockout subjects;
//!   rate buckets sorted by key) so transactions do not deadlock each other (invariant 4).
//!
//! SERIALIZABLE was not chosen: under 100 concurrent checks of one code most transactions
//! would fail with serialization errors and need retries, where a row lock simply queues
//! them. A deadlock or serialization failure PostgreSQL still reports is a store error
//! (`Unavailable`, a 503): nothing is half-written, the client may retry.
//!
//! # Connections and failure
//!
//! One bounded [`PgPool`] (default [`DEFAULT_POOL_SIZE`] connections, `?pool_max=N` in the
//! URL) with an acquire timeout and a per-statement timeout. Every connection or I/O error
//! is `StoreError::Unavailable`, which the server turns into a 503 (fail closed,
//! invariant 7); sqlx opens new connections as they are needed, so the store recovers by
//! itself when PostgreSQL comes back. The URL's password is never logged or shown.
//!
//! # Erasure
//!
//! `erase_recipient` deletes the rows in one transaction. PostgreSQL keeps deleted row
//! versions (dead tuples) in the table files until (auto)vacuum reclaims the space, and in
//! the WAL and its archives until they are recycled; the rows are gone for every query at
//! once, but an operator who must scrub the disk too runs `VACUUM` on the tables.

mod challenges;
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

use otpd_core::audit::WriteContext;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::ids::Kind;
use otpd_core::store::{Cause, HealthStore, StoreError, StoreResult};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::lookups::Lookups;

/// Embedded migrations of the PostgreSQL dialect.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per node unless the URL says otherwise (`?pool_max=N`): enough for the
/// HTTP handlers and the workers of one node, small enough that a few nodes stay well
/// under PostgreSQL's default `max_connections` (100).
pub const DEFAULT_POOL_SIZE: u32 = 10;
/// How long a caller waits for a pooled connection before failing closed (a 503 beats a
/// request hanging while PostgreSQL is down).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest a statement may run (a lock wait included) before PostgreSQL cancels it.
/// Overridable with `?statement_timeout_ms=N`.
const STATEMENT_TIMEOUT_MS: u64 = 5_000;
/// Idle connections are closed after this long (new ones are opened on demand).
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Errors opening the store.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL is not `postgres://…` or `postgresql://…`, or a pool setting is invalid.
    #[error("not a usable PostgreSQL URL: {0}")]
    BadUrl(&'static str),
    /// PostgreSQL refused or could not be reached (the message holds no password).
    #[error("cannot connect to PostgreSQL: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Pool settings read from the URL's query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PoolSettings {
    max: u32,
    statement_timeout_ms: u64,
    acquire_timeout: Duration,
}

/// Splits otpd's own pool settings off the URL; the rest goes to sqlx.
fn split_url(url: &str) -> Result<(String, PoolSettings), OpenError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(OpenError::BadUrl("expected postgres://…"));
    }
    let mut parsed = url::Url::parse(url).map_err(|_| OpenError::BadUrl("malformed URL"))?;
    let mut settings = PoolSettings {
        max: DEFAULT_POOL_SIZE,
        statement_timeout_ms: STATEMENT_TIMEOUT_MS,
        acquire_timeout: ACQUIRE_TIMEOUT,
    };
    let mut kept = Vec::new();
    for (k, v) in parsed.query_pairs() {
        match k.as_ref() {
            "pool_max" => {
                settings.max = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(OpenError::BadUrl("pool_max must be a positive integer"))?
            }
            "statement_timeout_ms" => {
                settings.statement_timeout_ms = v
                    .parse()
                    .map_err(|_| OpenError::BadUrl("statement_timeout_ms must be an integer"))?
            }
            "acquire_timeout_ms" => {
                settings.acquire_timeout = Duration::from_millis(
                    v.parse()
                        .map_err(|_| OpenError::BadUrl("acquire_timeout_ms must be an integer"))?,
                )
            }
            _ => kept.push((k.into_owned(), v.into_owned())),
        }
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((parsed.into(), settings))
}

/// The PostgreSQL store (cheap to clone: a handle on one pool).
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Keys and services as recently read (`crate::lookups`).
    lookups: Arc<Lookups>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `postgres://…` (or `postgresql://…`), opening one connection to check
    /// that PostgreSQL answers. Does not migrate.
    pub async fn connect(url: &str) -> Result<Self, OpenError> {
        let (url, settings) = split_url(url)?;
        let options = PgConnectOptions::from_str(&url)?
            .application_name("otpd")
            .options([(
                "statement_timeout",
                format!("{}ms", settings.statement_timeout_ms),
            )]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max)
            .acquire_timeout(settings.acquire_timeout)
            .idle_timeout(IDLE_TIMEOUT)
            // A connection that died with its server is found out before it is handed out.
            .test_before_acquire(true)
            .connect_with(options)
            .await?;
        Ok(PostgresStore {
            pool,
            lookups: Arc::default(),
        })
    }

    /// Applies pending migrations. Safe to run from several nodes at once: sqlx holds a
    /// PostgreSQL advisory lock (per database) while it migrates, so the others wait and
    /// then find nothing left to do.
    pub async fn migrate(&self) -> Result<(), OpenError> {
        // On a connection of its own without the statement timeout: waiting for another
        // node's migration (the advisory lock) or building an index on a large table may
        // take longer than any request should. Detached: it is closed, never pooled.
        let mut conn = self.pool.acquire().await?.detach();
        sqlx::query("SET statement_timeout = 0")
            .execute(&mut conn)
            .await?;
        let result = MIGRATOR.run_direct(&mut conn).await;
        let _ = sqlx::Connection::close(conn).await;
        result?;
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The pool (for tests and tools that need raw SQL).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn write_tx(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(db)
    }
}

#[async_trait]
impl HealthStore for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(db)
    }
}

/// Maps a database error to the store's error (statement text and bound values are not
/// part of sqlx's error messages, and connection errors carry no URL, so no secret can
/// leak through here).
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(Cause::of(e))
}

/// Unix milliseconds of a time.
pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The time of Unix milliseconds.
pub(crate) fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Takes a transaction-scoped advisory lock on `key` (released at commit or rollback).
/// `key` is hashed to 64 bits; the namespace prefix keeps different kinds of keys apart.
pub(crate) async fn lock_key(
    tx: &mut Transaction<'static, Postgres>,
    namespace: &str,
    key: &str,
) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(10) || $2, 0))")
        .bind(namespace)
        .bind(key)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

/// Appends an event inside a transaction, with the actor of `ctx` (and counts it there).
pub(crate) async fn insert_event(
    tx: &mut Transaction<'static, Postgres>,
    kind: otpd_core::event::EventType,
    verification_id: Option<&str>,
    service_id: Option<&str>,
    data: serde_json::Value,
    now: DateTime<Utc>,
    ctx: &WriteContext,
) -> StoreResult<()> {
    let actor = ctx.actor();
    sqlx::query(
        "INSERT INTO events (id, kind, verification_id, service_id, data, created_at, key_id, request_id, client_ip) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(Kind::Event.new_id())
    .bind(kind.as_str())
    .bind(verification_id)
    .bind(service_id)
    .bind(data.to_string())
    .bind(ms(now))
    .bind(actor.key_id)
    .bind(actor.request_id)
    .bind(actor.client_ip)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    ctx.note_event();
    Ok(())
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn own_settings_are_split_off_the_url() {
        let (url, s) = split_url(
            "postgres://u:p@h:5432/db?pool_max=3&sslmode=disable&statement_timeout_ms=100",
        )
        .unwrap();
        assert_eq!(url, "postgres://u:p@h:5432/db?sslmode=disable");
        assert_eq!(s.max, 3);
        assert_eq!(s.statement_timeout_ms, 100);
        let (url, s) = split_url("postgresql://h/db").unwrap();
        assert_eq!(url, "postgresql://h/db");
        assert_eq!(s.max, DEFAULT_POOL_SIZE);
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for bad in [
            "sqlite://x.db",
            "postgres://h/db?pool_max=0",
            "postgres://h/db?pool_max=x",
        ] {
            let e = split_url(bad).unwrap_err().to_string();
            assert!(!e.contains("h/db"), "{e}");
        }
    }
}

#[cfg(test)]
pub(crate) mod testdb;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod audit_tests;

#[cfg(test)]
mod pg_tests;
