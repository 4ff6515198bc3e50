//! One hand-off per transaction.
//!
//! sqlx runs each SQLite statement on its connection's worker thread and hands the
//! statement and its rows across threads: two thread switches per statement, which on the
//! single writer made every check and send a chain of hand-offs (see bench/RESULTS.md,
//! *Profiling and fixes*). Here a store call takes a connection from sqlx's pool, locks its
//! handle out of the worker thread once (`lock_handle`), and runs all of its statements
//! with rusqlite on that same SQLite handle, on the calling thread: one hand-off per
//! transaction, whatever its length.
//!
//! rusqlite links the same `libsqlite3-sys` as sqlx, so both drive one SQLite library.
//! Prepared statements are cached per connection handle, across calls; the pools never
//! close a connection on their own (no idle timeout, no lifetime), and the cache is
//! emptied before a pool closes, because SQLite refuses to close a handle that still has
//! statements.

use std::collections::HashMap;
use std::sync::Mutex;

use otpd_core::store::{StoreError, StoreResult};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use sqlx::SqlitePool;

use super::{SqliteStore, db};

/// Statements kept prepared per connection.
const STATEMENT_CACHE: usize = 128;

/// An error inside a store closure: SQLite's, or the store's own answer (a lock, a
/// conflict, a corrupt record).
#[derive(Debug)]
pub(crate) enum Fail {
    /// SQLite failed.
    Sql(rusqlite::Error),
    /// The store's own error.
    Store(StoreError),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Sql(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<Fail> for StoreError {
    /// SQLite's messages name no bound value, so no secret can leak through here.
    fn from(f: Fail) -> Self {
        match f {
            Fail::Sql(e) => StoreError::Unavailable(e.to_string()),
            Fail::Store(e) => e,
        }
    }
}

/// The result of a store closure.
pub(crate) type SqlResult<T> = Result<T, Fail>;

/// rusqlite connections over the handles sqlx opened, keyed by handle, each with its cache
/// of prepared statements.
#[derive(Default)]
pub(crate) struct Handles(Mutex<HashMap<usize, Connection>>);

impl Handles {
    /// Runs `f` on the rusqlite connection of `handle` (made on first use).
    fn with<T>(
        &self,
        handle: *mut rusqlite::ffi::sqlite3,
        f: impl FnOnce(&mut Connection) -> SqlResult<T>,
    ) -> SqlResult<T> {
        let key = handle as usize;
        let cached = self.lock().remove(&key);
        let mut conn = match cached {
            Some(conn) => conn,
            None => {
                // SAFETY: the handle is open and locked out of sqlx's worker thread for
                // as long as the caller holds it; the connection does not own it (it never
                // closes it), and it is dropped, finalizing its statements, before the
                // pool closes the handle (`clear`).
                let conn = unsafe { Connection::from_handle(handle) }?;
                conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                conn
            }
        };
        let out = f(&mut conn);
        self.lock().insert(key, conn);
        out
    }

    /// Finalizes every cached statement (before the pools close their handles).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Connection>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Handles {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Runs `f` on a connection of `pool`, in one hand-off from sqlx's worker thread.
async fn on_handle<T>(
    pool: &SqlitePool,
    handles: &Handles,
    f: impl FnOnce(&mut Connection) -> SqlResult<T> + Send,
) -> StoreResult<T> {
    let mut pooled = pool.acquire().await.map_err(db)?;
    let mut locked = pooled.lock_handle().await.map_err(db)?;
    let handle = locked.as_raw_handle().as_ptr();
    Ok(handles.with(handle, f)?)
}

impl SqliteStore {
    /// Runs `f` as one transaction on the writer connection (`BEGIN IMMEDIATE`, committed
    /// when `f` returns `Ok`, rolled back otherwise), with all of its statements in one
    /// hand-off. `f` runs on the calling thread and must not block on anything but SQLite.
    pub(crate) async fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> SqlResult<T> + Send,
    ) -> StoreResult<T> {
        on_handle(&self.writer, &self.handles, |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    /// Runs `f` on a reader connection (read-only; a read snapshot when `f` opens a
    /// transaction), in one hand-off.
    pub(crate) async fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> SqlResult<T> + Send,
    ) -> StoreResult<T> {
        on_handle(&self.reader, &self.handles, |conn| f(conn)).await
    }

    /// Runs `f` in one read transaction on a reader connection (one snapshot for all of
    /// its statements).
    pub(crate) async fn read_tx<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> SqlResult<T> + Send,
    ) -> StoreResult<T> {
        on_handle(&self.reader, &self.handles, |conn| {
            let tx = conn.transaction()?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }
}

/// A statement assembled at run time (filters that may or may not apply), with its bound
/// values in order.
#[derive(Default)]
pub(crate) struct Query {
    sql: String,
    values: Vec<rusqlite::types::Value>,
}

impl Query {
    /// Starts a statement.
    pub(crate) fn new(sql: impl Into<String>) -> Self {
        Query {
            sql: sql.into(),
            values: Vec::new(),
        }
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(crate) fn bind(&mut self, value: impl Into<rusqlite::types::Value>) -> &mut Self {
        self.sql.push('?');
        self.values.push(value.into());
        self
    }

    /// Runs the query and maps each row with `f`.
    pub(crate) fn fetch<T>(
        &self,
        conn: &Connection,
        f: impl FnMut(&rusqlite::Row<'_>) -> SqlResult<T>,
    ) -> SqlResult<Vec<T>> {
        let mut stmt = conn.prepare_cached(&self.sql)?;
        collect(&mut stmt, rusqlite::params_from_iter(&self.values), f)
    }
}

/// Runs a prepared statement and maps each row with `f` (which may fail with the store's
/// own error, unlike rusqlite's `query_map`).
pub(crate) fn collect<T>(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
    mut f: impl FnMut(&rusqlite::Row<'_>) -> SqlResult<T>,
) -> SqlResult<Vec<T>> {
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(f(row)?);
    }
    Ok(out)
}
