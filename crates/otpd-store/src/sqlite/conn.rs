//! SQLite connections driven in place.
//!
//! sqlx runs each SQLite statement on its connection's worker thread and hands the
//! statement and its rows across threads: two thread switches per statement, which on the
//! single writer made every check and send a chain of hand-offs (see bench/RESULTS.md,
//! *Profiling and fixes*). The store's statements run instead on connections the store
//! owns (rusqlite), on the calling task's thread: no hand-off at all. One writer behind an
//! async mutex serializes every change (SQLite has one writer) and batches the commits
//! (`writer`); a few read-only connections serve reads in parallel under WAL. A store call is short (its statements
//! are prepared once per connection and cached), so it runs inline on the async runtime
//! like any other short computation.
//!
//! sqlx remains for the migrations (its migrator and bookkeeping), on a connection of its
//! own that is closed once they are applied.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use otpd_core::store::{Cause, StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags, Transaction};
use tokio::sync::Semaphore;

use super::checkpoint::{self, Checkpointer};
use super::writer::Writer;
use super::{OpenError, SqliteStore};

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
            Fail::Sql(e) => StoreError::Unavailable(Cause::of(e)),
            Fail::Store(e) => e,
        }
    }
}

/// The result of a store closure.
pub(crate) type SqlResult<T> = Result<T, Fail>;

/// The store's connections: the writer, and the idle readers.
pub(crate) struct Connections {
    writer: Arc<tokio::sync::Mutex<Writer>>,
    readers: Mutex<Vec<Connection>>,
    idle_readers: Semaphore,
    checkpointer: Checkpointer,
}

impl Connections {
    /// Opens the writer (creating the file, WAL journal) and `readers` read-only
    /// connections on `file`.
    pub(crate) fn open(file: &Path, readers: usize, busy: Duration) -> Result<Self, OpenError> {
        let writer = open_one(
            file,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            busy,
        )?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "wal_autocheckpoint", checkpoint::BACKSTOP_PAGES)?;
        // The savepoints of a batch (`writer`) keep the original of each page a call
        // changes again in a sub-journal, which past 64 KiB would spill to a temporary
        // file: created, written and deleted many times a second under load. In memory
        // it is bounded by the batch, like the rest of the writer's temporary data.
        writer.pragma_update(None, "temp_store", "MEMORY")?;
        let readers = (0..readers)
            .map(|_| open_one(file, OpenFlags::SQLITE_OPEN_READ_ONLY, busy))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let writer = Arc::new(tokio::sync::Mutex::new(Writer::new(writer)));
        Ok(Connections {
            checkpointer: Checkpointer::start(file, Arc::clone(&writer))?,
            writer,
            idle_readers: Semaphore::new(readers.len()),
            readers: Mutex::new(readers),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A reader taken from the idle ones, given back when dropped (also on a panic).
struct Lease<'a> {
    conns: &'a Connections,
    conn: Option<Connection>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.conns.idle().push(conn);
        }
    }
}

/// One connection with the store's settings.
fn open_one(file: &Path, flags: OpenFlags, busy: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(file, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(busy)?;
    // NORMAL under WAL: a commit survives a process crash (SIGKILL); only an OS crash or
    // power loss can lose the last commits.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted rows (spent codes, purged and erased records) are overwritten with zeros
    // wherever that costs no extra I/O; an erasure asks for full scrubbing.
    conn.pragma_update(None, "secure_delete", "FAST")?;
    // No memory map of the file: a connection unmaps the whole file at the start of every
    // read after another connection's commit, and maps it again; under load that was
    // hundreds of munmap/mmap pairs a second, and the other threads' page faults queued
    // behind them (bench/RESULTS.md, *Third pass*).
    conn.pragma_update(None, "mmap_size", 0)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

impl SqliteStore {
    /// Runs `f` as one atomic step on the writer: its statements are committed (with
    /// those of the calls batched with it, see `writer`) before this returns `Ok`, and
    /// undone if `f` returns `Err`. `f` runs on the calling thread and must not block on
    /// anything but SQLite.
    pub(crate) async fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> SqlResult<T> + Send,
    ) -> StoreResult<T> {
        let (out, settled) = self.write_in_batch(f).await?;
        match settled.await {
            Ok(Ok(())) => Ok(out),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(StoreError::Unavailable(Cause::doing(
                "commit interrupted",
                e,
            ))),
        }
    }

    /// [`write`](Self::write) without waiting for the commit: `f`'s changes are seen at
    /// once by every later call on the writer and commit with the batch they joined, so a
    /// crash (or a failed commit) in the next moments may forget them. Only for state
    /// whose loss is harmless, such as rate-limit arrival times; a call that also needs a
    /// durable write then waits for one commit instead of two.
    pub(crate) async fn write_lazily<T>(
        &self,
        f: impl FnOnce(&Connection) -> SqlResult<T> + Send,
    ) -> StoreResult<T> {
        let (out, settled) = self.write_in_batch(f).await?;
        drop(settled);
        Ok(out)
    }

    /// Runs `f` in the writer's open batch and starts the commit of that batch; the handle
    /// tells when it committed.
    async fn write_in_batch<T>(
        &self,
        f: impl FnOnce(&Connection) -> SqlResult<T> + Send,
    ) -> StoreResult<(T, tokio::task::JoinHandle<SqlResult<()>>)> {
        let (batch, out) = self.conns.writer.lock().await.run(f)?;
        // The commit lets the calls queued meanwhile join the batch first, and runs on a
        // task of its own: a caller that goes away cannot leave its batch open.
        let writer = Arc::clone(&self.conns.writer);
        let settled = tokio::spawn(async move {
            tokio::task::yield_now().await;
            writer.lock().await.settle(batch)
        });
        Ok((out, settled))
    }

    /// Copies what it can of the write-ahead log into the database file now (a passive
    /// checkpoint: it waits for no one).
    pub(crate) async fn checkpoint(&self) -> StoreResult<()> {
        let mut writer = self.conns.writer.lock().await;
        let conn = writer.settle_open()?;
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(|e| Fail::Sql(e).into())
    }

    /// Asks the checkpointer to empty the write-ahead log of older page images (after an
    /// erasure), without making the writer wait.
    pub(crate) fn truncate_log_soon(&self) {
        self.conns.checkpointer.truncate_soon();
    }

    /// Runs `f` on a reader connection (read-only).
    pub(crate) async fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> SqlResult<T> + Send,
    ) -> StoreResult<T> {
        let _permit = self
            .conns
            .idle_readers
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        let lease = Lease {
            conns: &self.conns,
            conn: self.conns.idle().pop(),
        };
        let conn = lease
            .conn
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("no idle reader".into()))?;
        Ok(f(conn)?)
    }

    /// Runs `f` in one read transaction (one snapshot for all of its statements).
    pub(crate) async fn read_tx<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> SqlResult<T> + Send,
    ) -> StoreResult<T> {
        self.read(|conn| {
            let tx = conn.unchecked_transaction()?;
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
