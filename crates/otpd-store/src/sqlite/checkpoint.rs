//! The WAL checkpointer: copies committed pages from the write-ahead log into the database
//! file, and starts the log over, on a thread of its own, so that a store call never waits
//! for a disk sync.
//!
//! Left to SQLite, the commit that grows the log past its threshold runs the checkpoint
//! itself: it writes the pages back and syncs both files while holding the single writer,
//! and every change behind it waits. Here the writer's automatic checkpoint is pushed far
//! out (a backstop only), and this thread runs a passive checkpoint every [`INTERVAL`] on
//! its own connection. A passive checkpoint blocks neither the writer nor the readers; it
//! copies what no reader still needs and leaves the rest for the next round.
//!
//! Under a steady stream of commits a passive checkpoint never catches up with the last
//! one, so the log never starts over by itself and grows. Once it holds [`RESTART_FRAMES`]
//! (or on request, after an erasure, to drop older page images) this thread restarts it:
//! it catches up and syncs the database file without the writer, then holds the writer
//! for a last small copy and makes the first commit of the new log itself (the commit
//! that syncs the new log's header). The writer waits for that short step once per
//! restart; on this machine's disk (see bench/RESULTS.md) a sync took 5–85 ms, which the
//! writer paid two or three times per log cycle before, several times a second under load.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::OpenError;
use super::writer::Writer;

/// How often the log is checkpointed.
pub(crate) const INTERVAL: Duration = Duration::from_millis(200);

/// Frames in the log after which this thread starts it over: 256 MiB of 4 KiB pages.
/// Under sustained writes that is one short wait of the writer every few seconds.
pub(crate) const RESTART_FRAMES: i64 = 65_536;

/// Pages in the log after which a commit checkpoints by itself (the backstop, should this
/// thread fall behind or stop).
pub(crate) const BACKSTOP_PAGES: u32 = 2 * RESTART_FRAMES as u32;

/// Passive rounds run before a restart to catch up without the writer.
const CATCH_UP_ROUNDS: usize = 4;

/// Frames left to copy below which catching up stops and the writer is taken.
const CAUGHT_UP_FRAMES: i64 = 256;

/// How long a restarting checkpoint waits for readers to leave the log.
const READER_PATIENCE: Duration = Duration::from_secs(1);

/// How long dropping the checkpointer waits for its thread to end.
const STOP_PATIENCE: Duration = Duration::from_secs(1);

/// The running checkpointer; stopped when dropped.
pub(crate) struct Checkpointer {
    asks: Option<Mutex<Sender<()>>>,
    thread: Option<JoinHandle<()>>,
}

/// What a checkpoint reported: whether it was kept from finishing, the frames in the log,
/// and how many of them are in the database file.
struct Progress {
    busy: bool,
    log: i64,
    copied: i64,
}

impl Checkpointer {
    /// Starts checkpointing the database at `file` (its connection is opened here, so an
    /// error shows at once); `writer` is taken for the last step of a restart.
    pub(crate) fn start(
        file: &Path,
        writer: Arc<tokio::sync::Mutex<Writer>>,
    ) -> Result<Self, OpenError> {
        let conn = Connection::open_with_flags(
            file,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(READER_PATIENCE)?;
        let (asks, asked) = mpsc::channel::<()>();
        let file = file.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("otpd-sqlite-checkpoint".into())
            .spawn(move || run(&conn, &file, &writer, &asked))
            .map_err(OpenError::Checkpointer)?;
        Ok(Checkpointer {
            asks: Some(Mutex::new(asks)),
            thread: Some(thread),
        })
    }

    /// Asks for the log to be emptied (truncated) as soon as the thread can.
    pub(crate) fn truncate_soon(&self) {
        if let Some(asks) = &self.asks {
            let asks = asks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let _ = asks.send(());
        }
    }
}

impl Drop for Checkpointer {
    /// Stops the thread and waits a moment for it. It is not joined beyond that: in the
    /// middle of a restart it may be waiting for the writer, held by a task of a runtime
    /// that this very drop may be blocking. It ends on its own once it has the writer.
    fn drop(&mut self) {
        drop(self.asks.take());
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + STOP_PATIENCE;
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// The thread: a passive checkpoint every [`INTERVAL`], a restart when the log is long or
/// one was asked for; ends when the checkpointer is dropped.
fn run(conn: &Connection, file: &Path, writer: &tokio::sync::Mutex<Writer>, asked: &Receiver<()>) {
    loop {
        let truncate = match asked.recv_timeout(INTERVAL) {
            Ok(()) => true,
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let long = match checkpoint(conn, "PASSIVE") {
            Ok(p) => p.log >= RESTART_FRAMES,
            Err(e) => {
                tracing::debug!(error = %e, "checkpoint deferred");
                false
            }
        };
        if truncate || long {
            restart(
                conn,
                file,
                writer,
                if truncate { "TRUNCATE" } else { "RESTART" },
            );
        }
    }
}

/// Starts the log over (`mode` RESTART keeps the file's size, TRUNCATE empties it).
fn restart(conn: &Connection, file: &Path, writer: &tokio::sync::Mutex<Writer>, mode: &str) {
    // Catch up without the writer, so that little is left to copy while it waits.
    for _ in 0..CATCH_UP_ROUNDS {
        match checkpoint(conn, "PASSIVE") {
            Ok(p) if p.log - p.copied > CAUGHT_UP_FRAMES => {}
            _ => break,
        }
    }
    // A passive checkpoint that has not caught up copies pages into the database file
    // without syncing it, so the file holds every page copied since the last restart,
    // unsynced, and the restarting checkpoint would sync them all while the writer waits
    // (65-85 ms measured, bench/RESULTS.md). Synced here, that checkpoint's sync only
    // covers its own last small copy.
    sync_database_file(file);
    let mut writer = writer.blocking_lock();
    // The open batch commits first (its callers learn of a failure from its settling).
    if writer.settle_open().is_err() {
        return;
    }
    match checkpoint(conn, mode) {
        // Every frame is in the database file and no reader needs the log: the next
        // commit starts it over and syncs its header. This one makes it, while the writer
        // is held here, rather than a store call.
        Ok(p) if !p.busy => {
            if let Err(e) = conn.execute("UPDATE wal_restarts SET count = count + 1", []) {
                tracing::debug!(error = %e, "log restart left to the next commit");
            }
        }
        Ok(_) => tracing::debug!(mode, "log restart deferred: a reader still needs the log"),
        Err(e) => tracing::debug!(error = %e, mode, "log restart deferred"),
    }
}

/// Flushes the database file to the disk (a sync through a descriptor of its own: it
/// changes nothing SQLite relies on, and needs no lock).
fn sync_database_file(file: &Path) {
    if let Err(e) = std::fs::File::open(file).and_then(|f| f.sync_data()) {
        tracing::debug!(error = %e, "database file not synced before a restart");
    }
}

fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<Progress> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok(Progress {
            busy: row.get::<_, i64>(0)? != 0,
            log: row.get(1)?,
            copied: row.get(2)?,
        })
    })
}
