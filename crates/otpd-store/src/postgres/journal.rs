//! The durable side of the Redis hot store in PostgreSQL: applies journal entries
//! (verification history, delivery jobs, events) idempotently, one transaction per entry.
//! The same changes as the SQLite version (`sqlite/journal.rs`); here, spoolers of several
//! nodes may apply entries of one verification at once (a takeover of a slow node's
//! entries), so an entry first takes a transaction-scoped advisory lock on each
//! verification it touches: entries of one verification apply one after the other, and a
//! delivery's `seq` is never computed twice.

use async_trait::async_trait;
use otpd_core::store::{
    JournalDelivery, JournalEntry, JournalEvent, JournalOp, JournalSink, StoreError, StoreResult,
    VerificationRecord,
};
use otpd_core::verification::Status;
use sqlx::{Postgres, Transaction};

use super::{PostgresStore, db, lock_key, ms};

/// The advisory-lock namespace of a verification's rows.
const LOCK: &str = "verification";

/// A state change or resend for a verification the journal has not created here yet: the
/// entry is retried later (its creation is in an entry another node is applying).
fn missing(id: &str) -> StoreError {
    StoreError::Unavailable(format!("journal: verification {id} not yet recorded").into())
}

/// Counts a send in the durable send log (the dashboard's statistics; send limits are
/// the hot store's).
async fn log_send(
    tx: &mut Transaction<'static, Postgres>,
    service_id: &str,
    to: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO sends (service_id, to_addr, at) VALUES ($1, $2, $3)")
        .bind(service_id)
        .bind(to)
        .bind(ms(at))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

async fn create(
    tx: &mut Transaction<'static, Postgres>,
    r: &VerificationRecord,
) -> StoreResult<()> {
    let options = (!r.message_options.is_empty())
        .then(|| serde_json::to_string(&r.message_options).unwrap_or_default());
    let done = sqlx::query(
        "INSERT INTO verifications (id, service_id, to_addr, channel, status, code_hash, sealed_code, \
         expires_at, created_at, updated_at, max_check_attempts, locale, metadata, entity, test, key_id, \
         message_options, country) VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10, $11, $12, \
         $13, $14, $15, $16, $17) ON CONFLICT (id) DO NOTHING",
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

async fn enqueue(tx: &mut Transaction<'static, Postgres>, d: &JournalDelivery) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO deliveries (id, verification_id, seq, channel, fallback, providers, status, test, \
         next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM deliveries WHERE verification_id = $2), \
         $3, $4, $5, 'queued', $6, $7, $7, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&d.id)
    .bind(&d.verification_id)
    .bind(d.channel.as_str())
    .bind(serde_json::to_string(&d.fallback).unwrap_or_else(|_| "[]".into()))
    .bind(serde_json::to_string(&d.providers).unwrap_or_else(|_| "[]".into()))
    .bind(d.test as i64)
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

/// Appends an event once (by its id), with the actor the entry carries.
async fn event(tx: &mut Transaction<'static, Postgres>, e: &JournalEvent) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO events (id, kind, verification_id, service_id, data, created_at, key_id, request_id, client_ip) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
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
    Ok(())
}

async fn resend(
    tx: &mut Transaction<'static, Postgres>,
    op: (&str, &otpd_core::channel::Channel, &Option<String>),
    message_options: &otpd_core::verification::MessageOptions,
    at: chrono::DateTime<chrono::Utc>,
) -> StoreResult<()> {
    let (id, channel, entity) = op;
    let options = (!message_options.is_empty())
        .then(|| serde_json::to_string(message_options).unwrap_or_default());
    let before: Option<(i64, String, String)> =
        sqlx::query_as("SELECT updated_at, service_id, to_addr FROM verifications WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?;
    let Some((updated_at, service_id, to)) = before else {
        return Err(missing(id));
    };
    // Applied for the first time (a replay finds the record updated since).
    if updated_at < ms(at) {
        log_send(tx, &service_id, &to, at).await?;
    }
    sqlx::query(
        "UPDATE verifications SET channel = $1, entity = COALESCE(entity, $2), \
         message_options = COALESCE($3, message_options), updated_at = GREATEST(updated_at, $4) \
         WHERE id = $5",
    )
    .bind(channel.as_str())
    .bind(entity)
    .bind(options)
    .bind(ms(at))
    .bind(id)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

async fn state(
    tx: &mut Transaction<'static, Postgres>,
    id: &str,
    status: Status,
    check_attempts: u32,
    at: chrono::DateTime<chrono::Utc>,
    events: &[JournalEvent],
) -> StoreResult<()> {
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM verifications WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    if exists.is_none() {
        return Err(missing(id));
    }
    // The same guard as SQLite's: a change applies once (attempts only rise), to a pending
    // verification, or to one the durable sweep expired before the hot store's change.
    let done = sqlx::query(
        "UPDATE verifications SET status = $1, check_attempts = GREATEST(check_attempts, $2), \
         updated_at = GREATEST(updated_at, $3), \
         sealed_code = CASE WHEN $4 THEN NULL ELSE sealed_code END \
         WHERE id = $5 AND (check_attempts < $2 OR status <> $1) \
         AND (status = 'pending' OR (status = 'expired' AND $3 < expires_at \
         AND $1 NOT IN ('expired', 'pending')))",
    )
    .bind(status.as_str())
    .bind(i64::from(check_attempts))
    .bind(ms(at))
    .bind(status != Status::Pending)
    .bind(id)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    if done.rows_affected() == 1 {
        for e in events {
            event(tx, e).await?;
        }
    }
    Ok(())
}

/// The verification an op is about (the lock it takes).
fn subject(op: &JournalOp) -> Option<&str> {
    match op {
        JournalOp::Create(r) => Some(&r.id),
        JournalOp::Resend { id, .. } | JournalOp::State { id, .. } => Some(id),
        JournalOp::Enqueue(d) => Some(&d.verification_id),
        JournalOp::Event(e) => e.verification_id.as_deref(),
    }
}

#[async_trait]
impl JournalSink for PostgresStore {
    async fn apply_journal(&self, entry: &JournalEntry) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        // Locks in a fixed order (sorted ids), so two entries never wait on each other.
        let mut ids: Vec<&str> = entry.ops.iter().filter_map(subject).collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            lock_key(&mut tx, LOCK, id).await?;
        }
        for op in &entry.ops {
            match op {
                JournalOp::Create(r) => create(&mut tx, r).await?,
                JournalOp::Resend {
                    id,
                    channel,
                    entity,
                    message_options,
                    at,
                } => resend(&mut tx, (id, channel, entity), message_options, *at).await?,
                JournalOp::State {
                    id,
                    status,
                    check_attempts,
                    at,
                    events,
                } => state(&mut tx, id, *status, *check_attempts, *at, events).await?,
                JournalOp::Enqueue(d) => enqueue(&mut tx, d).await?,
                JournalOp::Event(e) => event(&mut tx, e).await?,
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(())
    }
}
