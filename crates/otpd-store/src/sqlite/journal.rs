//! The durable side of the Redis hot store in SQLite: applies journal entries
//! (verification history, delivery jobs, events) idempotently, one transaction per entry.

use async_trait::async_trait;
use otpd_core::store::{
    JournalDelivery, JournalEntry, JournalEvent, JournalOp, JournalSink, StoreError, StoreResult,
    VerificationRecord,
};
use otpd_core::verification::Status;
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqlResult, SqliteStore, ms};

/// A state change or resend for a verification the journal has not created here yet: the
/// entry is retried later (its creation is in an entry another node is applying).
fn missing(id: &str) -> StoreError {
    StoreError::Unavailable(format!("journal: verification {id} not yet recorded").into())
}

/// Counts a send in the durable send log (the dashboard's statistics; send limits are
/// the hot store's).
fn log_send(
    tx: &Connection,
    service_id: &str,
    to: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> SqlResult<()> {
    tx.prepare_cached("INSERT INTO sends (service_id, to_addr, at) VALUES (?, ?, ?)")?
        .execute(params![service_id, to, ms(at)])?;
    Ok(())
}

/// Records a verification once (a replay finds it and changes nothing), with its send.
fn create(tx: &Connection, r: &VerificationRecord) -> SqlResult<()> {
    let options = (!r.message_options.is_empty())
        .then(|| serde_json::to_string(&r.message_options).unwrap_or_default());
    let done = tx
        .prepare_cached(
            "INSERT INTO verifications (id, service_id, to_addr, channel, status, code_hash, sealed_code, \
             expires_at, created_at, updated_at, max_check_attempts, locale, metadata, entity, test, key_id, \
             message_options, country) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![
            r.id,
            r.service_id,
            r.to,
            r.channel.as_str(),
            r.code_hash,
            r.sealed_code,
            ms(r.expires_at),
            ms(r.created_at),
            ms(r.created_at),
            i64::from(r.max_check_attempts),
            r.locale,
            r.metadata.as_ref().map(|m| m.to_string()),
            r.entity,
            r.test as i64,
            r.key_id,
            options,
            r.region,
        ])?;
    if done == 1 {
        log_send(tx, &r.service_id, &r.to, r.created_at)?;
    }
    Ok(())
}

/// Queues a delivery job once; one whose verification is not recorded yet is retried.
fn enqueue(tx: &Connection, d: &JournalDelivery) -> SqlResult<()> {
    let done = tx
        .prepare_cached(
            "INSERT INTO deliveries (id, verification_id, seq, channel, fallback, providers, status, test, \
             next_attempt_at, created_at, updated_at) \
             VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM deliveries WHERE verification_id = ?), \
             ?, ?, ?, 'queued', ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![
            d.id,
            d.verification_id,
            d.verification_id,
            d.channel.as_str(),
            serde_json::to_string(&d.fallback).unwrap_or_else(|_| "[]".into()),
            serde_json::to_string(&d.providers).unwrap_or_else(|_| "[]".into()),
            d.test as i64,
            ms(d.at),
            ms(d.at),
            ms(d.at),
        ]);
    match done {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
        {
            Err(StoreError::Unavailable("journal: delivery before its verification".into()).into())
        }
        done => {
            done?;
            Ok(())
        }
    }
}

/// Appends an event once (by its id), with the actor the entry carries.
fn event(tx: &Connection, e: &JournalEvent) -> SqlResult<()> {
    tx
        .prepare_cached(
            "INSERT INTO events (id, kind, verification_id, service_id, data, created_at, key_id, request_id, client_ip) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![
            e.id,
            e.kind.as_str(),
            e.verification_id,
            e.service_id,
            e.data.to_string(),
            ms(e.at),
            e.actor.key_id,
            e.actor.request_id,
            e.actor.client_ip,
        ])?;
    Ok(())
}

/// Applies every operation of `entry` inside the caller's transaction.
fn apply(tx: &Connection, entry: &JournalEntry) -> SqlResult<()> {
    for op in &entry.ops {
        match op {
            JournalOp::Create(r) => create(tx, r)?,
            JournalOp::Resend {
                id,
                channel,
                entity,
                message_options,
                at,
            } => {
                let options = (!message_options.is_empty())
                    .then(|| serde_json::to_string(message_options).unwrap_or_default());
                let before: Option<(i64, String, String)> = tx
                    .prepare_cached(
                        "SELECT updated_at, service_id, to_addr FROM verifications WHERE id = ?",
                    )?
                    .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?;
                let Some((updated_at, service_id, to)) = before else {
                    return Err(missing(id).into());
                };
                // Applied for the first time (a replay finds the record updated since).
                if updated_at < ms(*at) {
                    log_send(tx, &service_id, &to, *at)?;
                }
                tx.prepare_cached(
                    "UPDATE verifications SET channel = ?, entity = COALESCE(entity, ?), \
                     message_options = COALESCE(?, message_options), updated_at = MAX(updated_at, ?) \
                     WHERE id = ?",
                )?
                .execute(params![channel.as_str(), entity, options, ms(*at), id])?;
            }
            JournalOp::State {
                id,
                status,
                check_attempts,
                at,
                events,
            } => {
                let exists: Option<i64> = tx
                    .prepare_cached("SELECT 1 FROM verifications WHERE id = ?")?
                    .query_row([id], |r| r.get(0))
                    .optional()?;
                if exists.is_none() {
                    return Err(missing(id).into());
                }
                let ended = *status != Status::Pending;
                let done = tx
                    .prepare_cached(
                        "UPDATE verifications SET status = ?, check_attempts = MAX(check_attempts, ?), \
                         updated_at = MAX(updated_at, ?), \
                         sealed_code = CASE WHEN ? THEN NULL ELSE sealed_code END \
                         WHERE id = ? AND (check_attempts < ? OR status <> ?) \
                         AND (status = 'pending' OR (status = 'expired' AND ? < expires_at \
                         AND ? NOT IN ('expired', 'pending')))",
                    )?
                    .execute(params![
                        status.as_str(),
                        i64::from(*check_attempts),
                        ms(*at),
                        ended as i64,
                        id,
                        i64::from(*check_attempts),
                        status.as_str(),
                        ms(*at),
                        status.as_str(),
                    ])?;
                if done == 1 {
                    for e in events {
                        event(tx, e)?;
                    }
                }
            }
            JournalOp::Enqueue(d) => enqueue(tx, d)?,
            JournalOp::Event(e) => event(tx, e)?,
        }
    }
    Ok(())
}

#[async_trait]
impl JournalSink for SqliteStore {
    async fn apply_journal(&self, entry: &JournalEntry) -> StoreResult<()> {
        self.write(|tx| apply(tx, entry)).await
    }
}
