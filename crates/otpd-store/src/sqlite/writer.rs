//! The single writer, with group commit.
//!
//! Each store call's statements run inside a savepoint of a transaction that several calls
//! share (a *batch*); the batch commits once, after the calls queued behind the first one
//! have joined it. A commit writes every page the batch changed once into the write-ahead
//! log, so under load the pages many calls touch (the same index pages, the event log's
//! tail) are written once per batch instead of once per call. Nothing is answered before
//! its batch has committed: a call that returns `Ok` is as durable as with a commit of its
//! own. A call that fails is rolled back to its savepoint alone; a batch whose commit fails
//! fails every call in it.

use std::collections::VecDeque;

use otpd_core::store::StoreError;
use rusqlite::Connection;

use super::SqlResult;

/// Failed batches remembered for the calls that still have to learn of it.
const FAILURES_KEPT: usize = 64;

/// The writer connection and its batch.
pub(crate) struct Writer {
    conn: Connection,
    /// The batch whose transaction is open, if one is.
    open: Option<u64>,
    /// The next batch's number.
    next: u64,
    /// Recent batches that did not commit, with SQLite's reason.
    failed: VecDeque<(u64, String)>,
}

impl Writer {
    /// The writer over `conn` (in autocommit mode).
    pub(crate) fn new(conn: Connection) -> Self {
        Writer {
            conn,
            open: None,
            next: 1,
            failed: VecDeque::new(),
        }
    }

    /// Runs `f` in a savepoint of the open batch (opening one with `BEGIN IMMEDIATE` if
    /// none is): on `Err` only `f`'s own changes are undone. Returns the batch `f` joined.
    pub(crate) fn run<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> SqlResult<T>,
    ) -> SqlResult<(u64, T)> {
        let batch = match self.open {
            Some(batch) => batch,
            None => {
                self.conn.execute_batch("BEGIN IMMEDIATE")?;
                let batch = self.next;
                self.next += 1;
                self.open = Some(batch);
                batch
            }
        };
        let savepoint = self.conn.savepoint()?;
        let out = f(&savepoint);
        let out = match out {
            Ok(out) => savepoint.commit().map(|()| out).map_err(Into::into),
            Err(e) => {
                drop(savepoint);
                Err(e)
            }
        };
        // An error SQLite answers by rolling back the whole transaction (a full disk, an
        // I/O error) ends the batch for every call in it.
        if self.conn.is_autocommit()
            && let Some(batch) = self.open.take()
        {
            self.fail(batch, "the transaction was rolled back".into());
        }
        out.map(|out| (batch, out))
    }

    /// Commits `batch` if it is still open; `Ok` once it has committed, whoever committed.
    pub(crate) fn settle(&mut self, batch: u64) -> SqlResult<()> {
        if self.open == Some(batch) {
            self.open = None;
            if let Err(e) = self.conn.execute_batch("COMMIT") {
                tracing::warn!(error = %e, "a batch of writes failed to commit");
                let _ = self.conn.execute_batch("ROLLBACK");
                self.fail(batch, e.to_string());
            }
        }
        match self.failed.iter().find(|(b, _)| *b == batch) {
            Some((_, why)) => {
                Err(StoreError::Unavailable(format!("commit failed: {why}").into()).into())
            }
            None => Ok(()),
        }
    }

    /// Commits the open batch, if any (before a statement that needs autocommit).
    pub(crate) fn settle_open(&mut self) -> SqlResult<&Connection> {
        if let Some(batch) = self.open {
            self.settle(batch)?;
        }
        Ok(&self.conn)
    }

    fn fail(&mut self, batch: u64, why: String) {
        if self.failed.len() == FAILURES_KEPT {
            self.failed.pop_front();
        }
        self.failed.push_back((batch, why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> Writer {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER UNIQUE)")
            .unwrap();
        Writer::new(conn)
    }

    fn rows(w: &Writer) -> Vec<i64> {
        let mut stmt = w.conn.prepare("SELECT x FROM t ORDER BY x").unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    fn insert(x: i64) -> impl FnOnce(&Connection) -> SqlResult<()> {
        move |c| {
            c.execute("INSERT INTO t (x) VALUES (?)", [x])?;
            Ok(())
        }
    }

    #[test]
    fn calls_share_a_batch_and_a_failing_call_undoes_only_itself() {
        let mut w = writer();
        let (a, ()) = w.run(insert(1)).unwrap();
        // Inserts 2, then fails on the duplicate 1: its 2 must go, the batch's 1 stay.
        let failed = w.run(|c| {
            insert(2)(c)?;
            insert(1)(c)
        });
        assert!(failed.is_err());
        let (b, ()) = w.run(insert(3)).unwrap();
        assert_eq!(a, b, "one batch");
        w.settle(a).unwrap();
        // Settling again (a later member of the same batch) is a no-op that succeeds.
        w.settle(b).unwrap();
        assert_eq!(rows(&w), [1, 3]);
        assert!(w.conn.is_autocommit());
        let (c, ()) = w.run(insert(4)).unwrap();
        assert_ne!(c, a, "a new batch after the commit");
        w.settle(c).unwrap();
        assert_eq!(rows(&w), [1, 3, 4]);
    }

    #[test]
    fn a_batch_that_cannot_commit_fails_every_call_in_it() {
        let mut w = writer();
        w.conn
            .execute_batch(
                "CREATE TABLE p (id INTEGER PRIMARY KEY); \
                 CREATE TABLE k (p INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED); \
                 PRAGMA foreign_keys = ON;",
            )
            .unwrap();
        let (a, ()) = w.run(insert(1)).unwrap();
        // A deferred foreign key is only checked at COMMIT: the whole batch fails there.
        let (b, ()) = w
            .run(|c| {
                c.execute("INSERT INTO k (p) VALUES (7)", [])?;
                Ok(())
            })
            .unwrap();
        assert!(w.settle(b).is_err());
        assert!(w.settle(a).is_err(), "every call of the batch learns of it");
        assert!(rows(&w).is_empty());
        let (c, ()) = w.run(insert(2)).unwrap();
        w.settle(c).unwrap();
        assert_eq!(rows(&w), [2]);
    }
}
