//! The durable side of the Redis hot store in SQLite: applies journal entries
//! (verification history, delivery jobs, events) idempotently, one transaction per entry.

use async_trait::async_trait;
use otpd_core::store::{
    JournalDelivery, JournalEntry, JournalEvent, JournalOp, JournalSink, StoreError, StoreResult,
    VerificationRecord,
};
use otpd_core::verification::Status;
use sqlx::{Sqlite, Transaction};

use super::{SqliteStore, db, ms};

/// A state change or resend for a verification the journal has not created here yet: the
/// entry is retried later (its creation is in an entry another node is applying).
fn missing(id: &str) -> StoreError {
    StoreError::Unavailable(format!("journal: verification {id} not yet recorded"))
}

/// Counts a send in the durable send log (the dashboard's statistics; send limits are
/// the hot store's).
async fn log_send(
    tx: &mut Transaction<'static, Sqlite>,
    service_id: &str,
    to: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO sends (service_id, to_addr, at) VALUES (?, ?, ?)")
        .bind(service_id)
        .bind(to)
        .bind(ms(at))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

async fn create(tx: &mut Transaction<'static, Sqlite>, r: &VerificationRecord) -> StoreResult<()> {
    let options = (!r.message_options.is_empty())
        .then(|| serde_json::to_string(&r.message_options).unwrap_or_default());
    let done = sqlx::query(
        "INSERT INTO verifications (id, service_id, to_addr, channel, status, code_hash, sealed_code, \
         expires_at, created_at, updated_at, max_check_attempts, locale, metadata, entity, test, key_id, \
         message_options, country) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&r.id)
    .bind(&r.service_id)
    .bind(&r.to)
    .bind(r.channel.as_str())
    .bind(&r.code_hash)
    .bind(&r.sealed_code)
    .bind(ms(r.expires_at))
    .bind(ms(r.created_at))
    .bind(ms(r.created_at))
    .bind(i64::from(r.max_check_attempts))
    .bind(&r.locale)
    .bind(r.metadata.as_ref().map(|m| m.to_string()))
    .bind(&r.entity)
    .bind(r.test as i64)
    .bind(&r.key_id)
    .bind(options)
    .bind(&r.region)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    if done.rows_affected() == 1 {
        log_send(tx, &r.service_id, &r.to, r.created_at).await?;
    }
    Ok(())
}

async fn enqueue(tx: &mut Transaction<'static, Sqlite>, d: &JournalDelivery) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO deliveries (id, verification_id, seq, channel, fallback, providers, status, test, \
         next_attempt_at, created_at, updated_at) \
         VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM deliveries WHERE verification_id = ?), \
         ?, ?, ?, 'queued', ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&d.id)
    .bind(&d.verification_id)
    .bind(&d.verification_id)
    .bind(d.channel.as_str())
    .bind(serde_json::to_string(&d.fallback).unwrap_or_else(|_| "[]".into()))
    .bind(serde_json::to_string(&d.providers).unwrap_or_else(|_| "[]".into()))
    .bind(d.test as i64)
    .bind(ms(d.at))
    .bind(ms(d.at))
    .bind(ms(d.at))
    .execute(&mut **tx)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            StoreError::Unavailable("journal: delivery before its verification".into())
        }
        _ => db(e),
    })?;
    Ok(())
}

async fn event(tx: &mut Transaction<'static, Sqlite>, e: &JournalEvent) -> StoreResult<()> {
    let done = sqlx::query(
        "INSERT INTO events (id, kind, verification_id, service_id, data, created_at, key_id, request_id, client_ip) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&e.id)
    .bind(e.kind.as_str())
    .bind(&e.verification_id)
    .bind(&e.service_id)
    .bind(e.data.to_string())
    .bind(ms(e.at))
    .bind(&e.actor.key_id)
    .bind(&e.actor.request_id)
    .bind(&e.actor.client_ip)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    if done.rows_affected() == 1 {
        otpd_core::audit::note_event();
    }
    Ok(())
}

#[async_trait]
impl JournalSink for SqliteStore {
    async fn apply_journal(&self, entry: &JournalEntry) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        for op in &entry.ops {
            match op {
                JournalOp::Create(r) => create(&mut tx, r).await?,
                JournalOp::Resend {
                    id,
                    channel,
                    entity,
                    message_options,
                    at,
                } => {
                    let options = (!message_options.is_empty())
                        .then(|| serde_json::to_string(message_options).unwrap_or_default());
                    let before: Option<(i64, String, String)> = sqlx::query_as(
                        "SELECT updated_at, service_id, to_addr FROM verifications WHERE id = ?",
                    )
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
                    let Some((updated_at, service_id, to)) = before else {
                        return Err(missing(id));
                    };
                    // Applied for the first time (a replay finds the record updated since).
                    if updated_at < ms(*at) {
                        log_send(&mut tx, &service_id, &to, *at).await?;
                    }
                    sqlx::query(
                        "UPDATE verifications SET channel = ?, entity = COALESCE(entity, ?), \
                         message_options = COALESCE(?, message_options), updated_at = MAX(updated_at, ?) \
                         WHERE id = ?",
                    )
                    .bind(channel.as_str())
                    .bind(entity)
                    .bind(options)
                    .bind(ms(*at))
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                }
                JournalOp::State {
                    id,
                    status,
                    check_attempts,
                    at,
                    events,
                } => {
                    let exists: Option<i64> =
                        sqlx::query_scalar("SELECT 1 FROM verifications WHERE id = ?")
                            .bind(id)
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(db)?;
                    if exists.is_none() {
                        return Err(missing(id));
                    }
                    let ended = *status != Status::Pending;
                    let done = sqlx::query(
                        "UPDATE verifications SET status = ?, check_attempts = MAX(check_attempts, ?), \
                         updated_at = MAX(updated_at, ?), \
                         sealed_code = CASE WHEN ? THEN NULL ELSE sealed_code END \
                         WHERE id = ? AND (check_attempts < ? OR status <> ?) \
                         AND (status = 'pending' OR (status = 'expired' AND ? < expires_at \
                         AND ? NOT IN ('expired', 'pending')))",
                    )
                    .bind(status.as_str())
                    .bind(i64::from(*check_attempts))
                    .bind(ms(*at))
                    .bind(ended)
                    .bind(id)
                    .bind(i64::from(*check_attempts))
                    .bind(status.as_str())
                    .bind(ms(*at))
                    .bind(status.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                    if done.rows_affected() == 1 {
                        for e in events {
                            event(&mut tx, e).await?;
                        }
                    }
                }
                JournalOp::Enqueue(d) => enqueue(&mut tx, d).await?,
                JournalOp::Event(e) => event(&mut tx, e).await?,
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(())
    }
}
