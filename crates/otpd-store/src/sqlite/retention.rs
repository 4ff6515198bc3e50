//! Data lifecycle in SQLite: the retention purge (old rows, in small batches so the single
//! writer is never held for long) and the erasure of one recipient's records.
//!
//! Events are append-only (triggers in migration 0007): the purge is the one path that
//! deletes them, by opening the `retention_gate` inside its own transaction. Erasure does
//! not touch events: they hold recipients only masked.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::event::EventType;
use otpd_core::store::{
    PUMPING_LOG_KEEP_SECONDS, RetentionPolicy, RetentionStore, RowCounts, StoreResult,
};
use rusqlite::Connection;
use serde_json::json;

use super::{SqlResult, SqliteStore, collect, ms, record_event};

/// Rows deleted per transaction: small enough that sends and checks waiting for the
/// writer are delayed by milliseconds, not seconds.
const BATCH: i64 = 2_000;

/// A finished (or long expired) verification, created before `?1`; `?2` is now.
const OLD_VERIFICATION: &str = "created_at < ?1 AND (status <> 'pending' OR expires_at < ?2)";

/// Adds `n` rows of `table` to the counts (tables with nothing removed are left out).
fn count(counts: &mut RowCounts, table: &str, n: u64) {
    if n > 0 {
        *counts.entry(table.to_string()).or_default() += n;
    }
}

/// Runs one statement with integer parameters in a transaction; the rows it changed.
fn exec(tx: &Connection, sql: &str, params: &[i64]) -> SqlResult<u64> {
    let done = tx
        .prepare_cached(sql)?
        .execute(rusqlite::params_from_iter(params))?;
    Ok(done as u64)
}

/// Sets a pragma of the connection. `PRAGMA secure_delete = ...` answers with the new
/// value, a row that `execute` would refuse: the row is read and ignored.
fn pragma(tx: &Connection, sql: &str) -> SqlResult<()> {
    let mut stmt = tx.prepare_cached(sql)?;
    collect(&mut stmt, [], |_| Ok(()))?;
    Ok(())
}

impl SqliteStore {
    /// Deletes `table`'s rows matching `condition` (with `?1` = `cutoff`), a batch per
    /// transaction. With `gate`, each batch opens the event log's retention gate.
    async fn delete_batched(
        &self,
        table: &str,
        condition: &str,
        cutoff: i64,
        gate: bool,
    ) -> StoreResult<u64> {
        let sql = format!(
            "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {condition} LIMIT {BATCH})"
        );
        let mut total = 0;
        loop {
            let n = self
                .write(|tx| {
                    if gate {
                        exec(tx, "UPDATE retention_gate SET open = 1 WHERE id = 1", &[])?;
                    }
                    let n = exec(tx, &sql, &[cutoff])?;
                    if gate {
                        exec(tx, "UPDATE retention_gate SET open = 0 WHERE id = 1", &[])?;
                    }
                    Ok(n)
                })
                .await?;
            total += n;
            if n < BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// Deletes old finished verifications with everything hanging off them, a batch per
    /// transaction; counts the cascaded rows too.
    async fn purge_verifications(
        &self,
        cutoff: i64,
        now: i64,
        counts: &mut RowCounts,
    ) -> StoreResult<()> {
        // The same batch of ids for each statement: children first, the rows last.
        let batch = format!(
            "SELECT id FROM verifications WHERE {OLD_VERIFICATION} ORDER BY rowid LIMIT {BATCH}"
        );
        let of_batch =
            |table: &str, column: &str| format!("DELETE FROM {table} WHERE {column} IN ({batch})");
        loop {
            let (messages, deliveries, idempotency, n) = self
                .write(|tx| {
                    let messages =
                        exec(tx, &of_batch("messages", "verification_id"), &[cutoff, now])?;
                    let deliveries = exec(
                        tx,
                        &of_batch("deliveries", "verification_id"),
                        &[cutoff, now],
                    )?;
                    let idempotency = exec(
                        tx,
                        &of_batch("idempotency", "verification_id"),
                        &[cutoff, now],
                    )?;
                    let n = exec(tx, &of_batch("verifications", "id"), &[cutoff, now])?;
                    Ok((messages, deliveries, idempotency, n))
                })
                .await?;
            count(counts, "messages", messages);
            count(counts, "deliveries", deliveries);
            count(counts, "idempotency", idempotency);
            count(counts, "verifications", n);
            if n < BATCH as u64 {
                return Ok(());
            }
        }
    }
}

/// The cutoff time of a retention period, in Unix ms.
fn cutoff(now: DateTime<Utc>, keep: Option<Duration>) -> Option<i64> {
    keep.map(|d| ms(now - d))
}

#[async_trait]
impl RetentionStore for SqliteStore {
    async fn purge(
        &self,
        policy: &RetentionPolicy,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<RowCounts> {
        let mut counts = RowCounts::new();
        let now_ms = ms(now);
        if let Some(c) = cutoff(now, policy.verifications) {
            self.purge_verifications(c, now_ms, &mut counts).await?;
            // The logs that hold recipients beside the verifications themselves.
            for (table, condition) in [
                ("sends", "at < ?1"),
                ("pumping_log", "at < ?1"),
                ("lockout_failures", "at < ?1"),
                ("lockouts", "locked_until < ?1"),
                ("idempotency", "created_at < ?1"),
            ] {
                let n = self.delete_batched(table, condition, c, false).await?;
                count(&mut counts, table, n);
            }
        }
        if let Some(c) = cutoff(now, policy.messages) {
            let n = self
                .delete_batched("messages", "created_at < ?1", c, false)
                .await?;
            count(&mut counts, "messages", n);
            // Finished deliveries only: a queued one is still the outbox.
            let n = self
                .delete_batched(
                    "deliveries",
                    "updated_at < ?1 AND status <> 'queued'",
                    c,
                    false,
                )
                .await?;
            count(&mut counts, "deliveries", n);
        }
        if let Some(c) = cutoff(now, policy.guard_decisions) {
            let n = self
                .delete_batched("guard_decisions", "created_at < ?1", c, false)
                .await?;
            count(&mut counts, "guard_decisions", n);
        }
        if let Some(c) = cutoff(now, policy.api_requests) {
            let n = self
                .delete_batched(
                    "events",
                    "kind = 'api.request' AND created_at < ?1",
                    c,
                    true,
                )
                .await?;
            count(&mut counts, "events", n);
        }
        if let Some(c) = cutoff(now, policy.events) {
            let n = self
                .delete_batched("events", "created_at < ?1", c, true)
                .await?;
            count(&mut counts, "events", n);
        }
        // Rows that hold no information any more (a rate bucket whose time has passed, an
        // expired session): always removed, whatever the policy.
        self.write(|tx| {
            exec(tx, "DELETE FROM rate_buckets WHERE tat_ms < ?1", &[now_ms])?;
            exec(
                tx,
                "DELETE FROM pumping_log WHERE at < ?1",
                &[now_ms / 1000 - PUMPING_LOG_KEEP_SECONDS],
            )?;
            exec(
                tx,
                "DELETE FROM dashboard_sessions WHERE expires_at <= ?1",
                &[now_ms],
            )?;
            if !counts.is_empty() {
                record_event(
                    tx,
                    EventType::RetentionPurged,
                    None,
                    None,
                    json!({ "deleted": counts }),
                    now,
                    ctx,
                )?;
            }
            Ok(())
        })
        .await?;
        Ok(counts)
    }

    async fn erase_recipient(
        &self,
        to: &str,
        masked: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<RowCounts> {
        let subject = format!("to:{to}");
        let counts = self
            .write(|tx| {
                let mut counts = RowCounts::new();
                // Overwrite the deleted content itself (not only unlink it), freed pages
                // included.
                pragma(tx, "PRAGMA secure_delete = ON")?;
                let of_recipient = "(SELECT id FROM verifications WHERE to_addr = ?1)";
                let statements: [(&str, String, &str); 10] = [
                    ("messages", format!("DELETE FROM messages WHERE verification_id IN {of_recipient} OR to_addr = ?1"), to),
                    ("deliveries", format!("DELETE FROM deliveries WHERE verification_id IN {of_recipient}"), to),
                    ("idempotency", format!("DELETE FROM idempotency WHERE verification_id IN {of_recipient}"), to),
                    ("verifications", "DELETE FROM verifications WHERE to_addr = ?1".into(), to),
                    ("sends", "DELETE FROM sends WHERE to_addr = ?1".into(), to),
                    ("guard_decisions", "DELETE FROM guard_decisions WHERE recipient = ?1".into(), to),
                    ("pumping_log", "DELETE FROM pumping_log WHERE recipient = ?1".into(), to),
                    ("lockout_failures", "DELETE FROM lockout_failures WHERE subject = ?1".into(), &subject),
                    ("lockouts", "DELETE FROM lockouts WHERE subject = ?1".into(), &subject),
                    // Rate-limit keys end with the recipient: `<ns>:to:<service>:<to>`.
                    (
                        "rate_buckets",
                        "DELETE FROM rate_buckets WHERE key LIKE '%:to:%' AND substr(key, -length(?1) - 1) = ':' || ?1".into(),
                        to,
                    ),
                ];
                for (table, sql, value) in &statements {
                    let done = tx.prepare_cached(sql)?.execute([value])?;
                    count(&mut counts, table, done as u64);
                }
                record_event(
                    tx,
                    EventType::ErasureCompleted,
                    None,
                    None,
                    json!({ "to": masked, "deleted": counts }),
                    now,
                    ctx,
                )?;
                pragma(tx, "PRAGMA secure_delete = FAST")?;
                Ok(counts)
            })
            .await?;
        // Copy the zeroed pages into the database file and empty the write-ahead log,
        // which still holds older page images: on the checkpointer's thread, best effort
        // (a reader holding an old snapshot defers it to a later checkpoint).
        self.truncate_log_soon();
        Ok(counts)
    }
}
