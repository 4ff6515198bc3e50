//! Data lifecycle in PostgreSQL: the retention purge (old rows, in small batches so no
//! transaction holds row locks for long) and the erasure of one recipient's records.
//!
//! Events are append-only (triggers in the schema): the purge is the one path that deletes
//! them, by opening the retention gate, a transaction-local setting
//! (`set_config('otpd.retention_gate', 'open', true)`) no other session can see. Erasure
//! does not touch events: they hold recipients only masked.
//!
//! Deleted rows stay in the table files as dead tuples until (auto)vacuum reclaims them,
//! and in the write-ahead log until it is recycled: gone for every query at once, but an
//! operator who must scrub the disk too runs `VACUUM` on the tables afterwards.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::event::EventType;
use otpd_core::store::{
    PUMPING_LOG_KEEP_SECONDS, RetentionPolicy, RetentionStore, RowCounts, StoreResult,
};
use serde_json::json;
use sqlx::{Postgres, Transaction};

use super::{PostgresStore, db, insert_event, ms};

/// Rows deleted per transaction: small enough that no transaction holds many row locks
/// (or a long snapshot) at once.
const BATCH: i64 = 2_000;

/// A finished (or long expired) verification, created before `$1`; `$2` is now.
const OLD_VERIFICATION: &str = "created_at < $1 AND (status <> 'pending' OR expires_at < $2)";

/// Adds `n` rows of `table` to the counts (tables with nothing removed are left out).
fn count(counts: &mut RowCounts, table: &str, n: u64) {
    if n > 0 {
        *counts.entry(table.to_string()).or_default() += n;
    }
}

/// Runs one statement with integer parameters in a transaction; the rows it changed.
async fn exec(
    tx: &mut Transaction<'static, Postgres>,
    sql: &str,
    params: &[i64],
) -> StoreResult<u64> {
    let mut q = sqlx::query(sql);
    for p in params {
        q = q.bind(*p);
    }
    let done = q.execute(&mut **tx).await.map_err(db)?;
    Ok(done.rows_affected())
}

impl PostgresStore {
    /// Deletes `table`'s rows matching `condition` (with `$1` = `cutoff`), a batch per
    /// transaction. With `gate`, each batch opens the event log's retention gate.
    async fn delete_batched(
        &self,
        table: &str,
        condition: &str,
        cutoff: i64,
        gate: bool,
    ) -> StoreResult<u64> {
        let sql = format!(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE {condition} LIMIT {BATCH} FOR UPDATE SKIP LOCKED))"
        );
        let mut total = 0;
        loop {
            let mut tx = self.write_tx().await?;
            if gate {
                exec(
                    &mut tx,
                    "SELECT set_config('otpd.retention_gate', 'open', true)",
                    &[],
                )
                .await?;
            }
            let n = exec(&mut tx, &sql, &[cutoff]).await?;
            if gate {
                exec(
                    &mut tx,
                    "SELECT set_config('otpd.retention_gate', '', true)",
                    &[],
                )
                .await?;
            }
            tx.commit().await.map_err(db)?;
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
        // One batch of ids, read once and locked (a purge on another node skips them), for
        // each statement: children first, the rows last.
        let batch = format!(
            "SELECT id FROM verifications WHERE {OLD_VERIFICATION} ORDER BY created_at, id \
             LIMIT {BATCH} FOR UPDATE SKIP LOCKED"
        );
        loop {
            let mut tx = self.write_tx().await?;
            let ids: Vec<String> = sqlx::query_scalar(&batch)
                .bind(cutoff)
                .bind(now)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            let mut delete = async |table: &str, column: &str| -> StoreResult<u64> {
                let done = sqlx::query(&format!("DELETE FROM {table} WHERE {column} = ANY($1)"))
                    .bind(&ids)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                Ok(done.rows_affected())
            };
            for table in ["messages", "deliveries", "idempotency"] {
                count(counts, table, delete(table, "verification_id").await?);
            }
            let n = delete("verifications", "id").await?;
            tx.commit().await.map_err(db)?;
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
impl RetentionStore for PostgresStore {
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
                ("sends", "at < $1"),
                ("pumping_log", "at < $1"),
                ("lockout_failures", "at < $1"),
                ("lockouts", "locked_until < $1"),
                ("idempotency", "created_at < $1"),
            ] {
                let n = self.delete_batched(table, condition, c, false).await?;
                count(&mut counts, table, n);
            }
        }
        if let Some(c) = cutoff(now, policy.messages) {
            let n = self
                .delete_batched("messages", "created_at < $1", c, false)
                .await?;
            count(&mut counts, "messages", n);
            // Finished deliveries only: a queued one is still the outbox.
            let n = self
                .delete_batched(
                    "deliveries",
                    "updated_at < $1 AND status <> 'queued'",
                    c,
                    false,
                )
                .await?;
            count(&mut counts, "deliveries", n);
        }
        if let Some(c) = cutoff(now, policy.guard_decisions) {
            let n = self
                .delete_batched("guard_decisions", "created_at < $1", c, false)
                .await?;
            count(&mut counts, "guard_decisions", n);
        }
        if let Some(c) = cutoff(now, policy.api_requests) {
            let n = self
                .delete_batched(
                    "events",
                    "kind = 'api.request' AND created_at < $1",
                    c,
                    true,
                )
                .await?;
            count(&mut counts, "events", n);
        }
        if let Some(c) = cutoff(now, policy.events) {
            let n = self
                .delete_batched("events", "created_at < $1", c, true)
                .await?;
            count(&mut counts, "events", n);
        }
        // Rows that hold no information any more (a rate bucket whose time has passed, an
        // expired session): always removed, whatever the policy.
        let mut tx = self.write_tx().await?;
        exec(
            &mut tx,
            "DELETE FROM rate_buckets WHERE tat_ms < $1",
            &[now_ms],
        )
        .await?;
        exec(
            &mut tx,
            "DELETE FROM dashboard_sessions WHERE expires_at <= $1",
            &[now_ms],
        )
        .await?;
        exec(
            &mut tx,
            "DELETE FROM pumping_log WHERE at < $1",
            &[now_ms / 1000 - PUMPING_LOG_KEEP_SECONDS],
        )
        .await?;
        if !counts.is_empty() {
            insert_event(
                &mut tx,
                EventType::RetentionPurged,
                None,
                None,
                json!({ "deleted": counts }),
                now,
                ctx,
            )
            .await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(counts)
    }

    async fn erase_recipient(
        &self,
        to: &str,
        masked: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<RowCounts> {
        let mut counts = RowCounts::new();
        let subject = format!("to:{to}");
        let mut tx = self.write_tx().await?;
        let of_recipient = "(SELECT id FROM verifications WHERE to_addr = $1)";
        let statements: [(&str, String, &str); 10] = [
            ("messages", format!("DELETE FROM messages WHERE verification_id IN {of_recipient} OR to_addr = $1"), to),
            ("deliveries", format!("DELETE FROM deliveries WHERE verification_id IN {of_recipient}"), to),
            ("idempotency", format!("DELETE FROM idempotency WHERE verification_id IN {of_recipient}"), to),
            ("verifications", "DELETE FROM verifications WHERE to_addr = $1".into(), to),
            ("sends", "DELETE FROM sends WHERE to_addr = $1".into(), to),
            ("guard_decisions", "DELETE FROM guard_decisions WHERE recipient = $1".into(), to),
            ("pumping_log", "DELETE FROM pumping_log WHERE recipient = $1".into(), to),
            ("lockout_failures", "DELETE FROM lockout_failures WHERE subject = $1".into(), &subject),
            ("lockouts", "DELETE FROM lockouts WHERE subject = $1".into(), &subject),
            // Rate-limit keys end with the recipient: `<ns>:to:<service>:<to>`.
            (
                "rate_buckets",
                "DELETE FROM rate_buckets WHERE key LIKE '%:to:%' AND right(key, length($1) + 1) = ':' || $1".into(),
                to,
            ),
        ];
        for (table, sql, value) in &statements {
            let done = sqlx::query(sql)
                .bind(*value)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            count(&mut counts, table, done.rows_affected());
        }
        insert_event(
            &mut tx,
            EventType::ErasureCompleted,
            None,
            None,
            json!({ "to": masked, "deleted": counts }),
            now,
            ctx,
        )
        .await?;
        tx.commit().await.map_err(db)?;
        Ok(counts)
    }
}
