//! The sqlx forms of helpers already moved to rusqlite, for the modules not moved yet.
//! Transitional: deleted when the last module runs on `conn`.

use chrono::{DateTime, Utc};
use otpd_core::channel::Channel;
use otpd_core::ids::Kind;
use otpd_core::store::StoreResult;
use otpd_core::verification::Status;
use sqlx::{Sqlite, Transaction};

use super::{db, ms};

/// Ends a pending verification: new status, sealed code erased, queued jobs left to be
/// skipped by the worker.
pub(super) async fn end(
    tx: &mut Transaction<'static, Sqlite>,
    id: &str,
    status: Status,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE verifications SET status = ?, sealed_code = NULL, updated_at = ? WHERE id = ? AND status = 'pending'",
    )
    .bind(status.as_str())
    .bind(ms(now))
    .bind(id)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(done.rows_affected() == 1)
}

/// Inserts a queued delivery job.
pub(super) async fn enqueue(
    tx: &mut Transaction<'static, Sqlite>,
    verification_id: &str,
    channel: Channel,
    fallback: &[Channel],
    providers: &[String],
    test: bool,
    now: DateTime<Utc>,
) -> StoreResult<String> {
    let id = Kind::Delivery.new_id();
    sqlx::query(
        "INSERT INTO deliveries (id, verification_id, seq, channel, fallback, providers, status, test, next_attempt_at, created_at, updated_at) \
         VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM deliveries WHERE verification_id = ?), ?, ?, ?, 'queued', ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(verification_id)
    .bind(verification_id)
    .bind(channel.as_str())
    .bind(serde_json::to_string(fallback).expect("channels serialize"))
    .bind(serde_json::to_string(providers).expect("names serialize"))
    .bind(test as i64)
    .bind(ms(now))
    .bind(ms(now))
    .bind(ms(now))
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(id)
}
