//! The WAL checkpointer: copies committed pages from the write-ahead log into the database
//! file on a thread of its own, so that a store call never pays for a checkpoint.
//!
//! Left to SQLite, the commit that grows the log past its threshold runs the checkpoint
//! itself: it writes the pages back and syncs the file while holding the single writer,
//! and every change behind it waits. Here the writer's automatic checkpoint is pushed far
//! out (a backstop only), and this thread runs a passive checkpoint every
//! [`INTERVAL`] on its own connection. A passive checkpoint blocks neither the writer nor
//! the readers; it copies what no reader still needs and leaves the rest for the next round.

use std::path::Path;
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

/// The running checkpointer; stopped (and joined) when dropped.
pub(crate) struct Checkpointer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `file` (its connection is opened here, so an
    /// error shows at once).
    pub(crate) fn start(file: &Path, busy: Duration) -> Result<Self, OpenError> {
        let conn = Connection::open_with_flags(
            file,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(busy)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("otpd-sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::debug!(error = %e, "passive checkpoint skipped");
                    }
                }
            })
            .map_err(OpenError::Checkpointer)?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
