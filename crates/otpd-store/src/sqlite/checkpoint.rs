//! The WAL checkpointer: copies committed pages from the write-ahead log into the database
//! file on a thread of its own, so that a store call never pays for a checkpoint.
//!
//! Left to SQLite, the commit that grows the log past its threshold runs the checkpoint
//! itself: it writes the pages back and syncs the file while holding the single writer,
//! and every change behind it waits. Here the writer's automatic checkpoint is pushed far
//! out (a backstop only), and this thread runs a passive checkpoint every
//! [`INTERVAL`] on its own connection. A passive checkpoint blocks neither the writer nor
//! the readers; it copies what no reader still needs and leaves the rest for the next round.
//! On request (after an erasure) it also runs a truncating checkpoint, which empties the
//! log of older page images; the writer never waits for it.

use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::OpenError;

/// How often the log is checkpointed.
pub(crate) const INTERVAL: Duration = Duration::from_millis(200);

/// Pages in the log after which a commit checkpoints by itself (the backstop, should this
/// thread fall behind): about 40 MB of 4 KiB pages.
pub(crate) const BACKSTOP_PAGES: u32 = 10_000;

/// How long a truncating checkpoint waits for readers and the writer before giving up
/// until the next request.
const TRUNCATE_PATIENCE: Duration = Duration::from_secs(1);

/// The running checkpointer; stopped (and joined) when dropped.
pub(crate) struct Checkpointer {
    asks: Option<Mutex<Sender<()>>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `file` (its connection is opened here, so an
    /// error shows at once).
    pub(crate) fn start(file: &Path) -> Result<Self, OpenError> {
        let conn = Connection::open_with_flags(
            file,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(TRUNCATE_PATIENCE)?;
        let (asks, asked) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("otpd-sqlite-checkpoint".into())
            .spawn(move || {
                loop {
                    let mode = match asked.recv_timeout(INTERVAL) {
                        Ok(()) => "TRUNCATE",
                        Err(RecvTimeoutError::Timeout) => "PASSIVE",
                        Err(RecvTimeoutError::Disconnected) => return,
                    };
                    let sql = format!("PRAGMA wal_checkpoint({mode})");
                    if let Err(e) = conn.query_row(&sql, [], |_| Ok(())) {
                        tracing::debug!(error = %e, mode, "checkpoint deferred");
                    }
                }
            })
            .map_err(OpenError::Checkpointer)?;
        Ok(Checkpointer {
            asks: Some(Mutex::new(asks)),
            thread: Some(thread),
        })
    }

    /// Asks for a truncating checkpoint as soon as the thread can run it.
    pub(crate) fn truncate_soon(&self) {
        if let Some(asks) = &self.asks {
            let asks = asks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let _ = asks.send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.asks.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
