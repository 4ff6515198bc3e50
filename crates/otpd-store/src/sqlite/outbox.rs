//! The delivery outbox in SQLite: jobs are `deliveries` rows in status `queued`, leased to a
//! worker with `lease_owner`/`lease_until`; a lease that runs out makes the job due again,
//! so a worker that dies mid-job leaves it to another.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::event::EventType;
use otpd_core::store::{
    AttemptResult, DeliveryJob, NextDelivery, OutboxStore, Receipt, StoreError, StoreResult,
};
use otpd_core::verification::{DeliveryStatus, Status};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::json;

use super::verifications::{end, enqueue, parse_channel};
use super::{SqlResult, SqliteStore, collect, ms, record_event, time};

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("delivery: {what}"))
}

/// Releases a job with a new state.
fn update_job(
    tx: &Connection,
    job: &DeliveryJob,
    status: DeliveryStatus,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> SqlResult<()> {
    tx.prepare_cached(
        "UPDATE deliveries SET status = ?, attempts = attempts + 1, error = ?, lease_owner = NULL, lease_until = NULL, updated_at = ? WHERE id = ?",
    )?
    .execute(params![status.as_str(), error, ms(now), job.id])?;
    Ok(())
}

/// Puts a job back in the queue, due at `at`: with the same provider (one more attempt
/// counted) or with the next provider of its chain (attempts start again).
fn requeue(
    tx: &Connection,
    job: &DeliveryJob,
    next_provider: bool,
    at: DateTime<Utc>,
    error: &str,
    now: DateTime<Utc>,
) -> SqlResult<()> {
    tx.prepare_cached(
        "UPDATE deliveries SET provider_index = provider_index + ?, \
         attempts = CASE WHEN ? THEN 0 ELSE attempts + 1 END, error = ?, next_attempt_at = ?, \
         lease_owner = NULL, lease_until = NULL, updated_at = ? WHERE id = ?",
    )?
    .execute(params![
        i64::from(next_provider),
        next_provider,
        error,
        ms(at),
        ms(now),
        job.id,
    ])?;
    Ok(())
}

/// The columns a [`DeliveryJob`] is made of (add a `WHERE`).
const JOB_SELECT: &str = "SELECT d.id, d.verification_id, d.channel, d.fallback, d.providers, d.provider_index, d.attempts, d.test, \
       v.service_id, v.to_addr, v.status, v.sealed_code, v.expires_at, v.locale, v.message_options \
     FROM deliveries d JOIN verifications v ON v.id = d.verification_id";

fn job_from_row(r: &Row<'_>, owner: &str) -> SqlResult<DeliveryJob> {
    let channel: String = r.get("channel")?;
    let fallback: String = r.get("fallback")?;
    let providers: String = r.get("providers")?;
    let status: String = r.get("status")?;
    let message_options: Option<String> = r.get("message_options")?;
    Ok(DeliveryJob {
        id: r.get("id")?,
        verification_id: r.get("verification_id")?,
        service_id: r.get("service_id")?,
        to: r.get("to_addr")?,
        channel: parse_channel(&channel)?,
        fallback: serde_json::from_str(&fallback).map_err(|_| corrupt("fallback"))?,
        providers: serde_json::from_str(&providers).map_err(|_| corrupt("providers"))?,
        provider_index: r.get::<_, i64>("provider_index")? as u32,
        attempts: r.get::<_, i64>("attempts")? as u32,
        test: r.get::<_, i64>("test")? != 0,
        verification_status: Status::parse(&status).ok_or_else(|| corrupt("status"))?,
        sealed_code: r.get("sealed_code")?,
        expires_at: time(r.get("expires_at")?),
        locale: r.get("locale")?,
        message_options: message_options
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|_| corrupt("message options"))?
            .unwrap_or_default(),
        lease_owner: owner.to_string(),
    })
}

/// Queues the follow-up delivery of a job (next provider or fallback channel) and points
/// the verification at its channel.
fn enqueue_next(
    tx: &Connection,
    job: &DeliveryJob,
    next: &NextDelivery,
    now: DateTime<Utc>,
) -> SqlResult<()> {
    enqueue(
        tx,
        &job.verification_id,
        next.channel,
        &next.fallback,
        &next.providers,
        job.test,
        now,
    )?;
    if next.channel != job.channel {
        tx.prepare_cached("UPDATE verifications SET channel = ?, updated_at = ? WHERE id = ?")?
            .execute(params![next.channel.as_str(), ms(now), job.verification_id])?;
    }
    Ok(())
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn claim(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> StoreResult<Option<DeliveryJob>> {
        let job = self
            .write(|tx| {
                let id: Option<String> = tx
                    .prepare_cached(
                        "UPDATE deliveries SET lease_owner = ?, lease_until = ? WHERE id = (\
                           SELECT id FROM deliveries WHERE status = 'queued' AND next_attempt_at <= ? \
                           AND (lease_until IS NULL OR lease_until <= ?) ORDER BY next_attempt_at, id LIMIT 1) \
                         RETURNING id",
                    )?
                    .query_row(params![owner, ms(now + lease), ms(now), ms(now)], |r| {
                        r.get(0)
                    })
                    .optional()?;
                let Some(id) = id else { return Ok(None) };
                // A job that cannot be read is still leased (committed) before its error
                // is returned, so the queue moves past it.
                let job = tx
                    .prepare_cached(&format!("{JOB_SELECT} WHERE d.id = ?"))?
                    .query_row([&id], |r| Ok(job_from_row(r, owner)))?;
                Ok(Some(job))
            })
            .await?;
        Ok(job.transpose()?)
    }

    async fn finish(
        &self,
        job: &DeliveryJob,
        result: AttemptResult,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<()> {
        self.write(|tx| {
            let vid = Some(job.verification_id.as_str());
            let sid = Some(job.service_id.as_str());
            let provider = job.current_provider().unwrap_or_default().to_string();
            let base = json!({"delivery_id": job.id, "channel": job.channel, "provider": provider});
            let with = |extra: serde_json::Value| {
                let mut d = base.clone();
                if let (Some(d), Some(e)) = (d.as_object_mut(), extra.as_object()) {
                    d.extend(e.clone());
                }
                d
            };
            match result {
                AttemptResult::Sent {
                    status,
                    provider_message_id,
                    receipt_deadline,
                } => {
                    update_job(tx, job, status, None, now)?;
                    let deadline = receipt_deadline
                        .filter(|_| status == DeliveryStatus::Sent)
                        .map(ms);
                    tx.prepare_cached(
                        "UPDATE deliveries SET provider_message_id = ?, receipt_deadline = ? WHERE id = ?",
                    )?
                    .execute(params![provider_message_id, deadline, job.id])?;
                    record_event(tx, EventType::DeliverySent, vid, sid, base.clone(), now, ctx)?;
                    if status == DeliveryStatus::Delivered {
                        record_event(tx, EventType::Delivered, vid, sid, base.clone(), now, ctx)?;
                    }
                }
                AttemptResult::Recorded {
                    message_id,
                    sealed_body,
                } => {
                    tx.prepare_cached(
                        "INSERT INTO messages (id, verification_id, delivery_id, channel, to_addr, sealed_body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    )?
                    .execute(params![
                        message_id,
                        job.verification_id,
                        job.id,
                        job.channel.as_str(),
                        job.to,
                        sealed_body,
                        ms(now),
                    ])?;
                    update_job(tx, job, DeliveryStatus::Sent, None, now)?;
                    record_event(
                        tx,
                        EventType::DeliverySent,
                        vid,
                        sid,
                        with(json!({"test": true})),
                        now,
                        ctx,
                    )?;
                }
                AttemptResult::Retry { at, error } => {
                    requeue(tx, job, false, at, &error, now)?;
                    let data = with(json!({"error": error, "final": false}));
                    record_event(tx, EventType::DeliveryFailed, vid, sid, data, now, ctx)?;
                }
                AttemptResult::NextProvider { error } => {
                    requeue(tx, job, true, now, &error, now)?;
                    let data = with(json!({"error": error, "final": false}));
                    record_event(tx, EventType::DeliveryFailed, vid, sid, data, now, ctx)?;
                }
                AttemptResult::Fail { error, next } => {
                    update_job(tx, job, DeliveryStatus::Failed, Some(&error), now)?;
                    record_event(
                        tx,
                        EventType::DeliveryFailed,
                        vid,
                        sid,
                        with(json!({"error": error, "final": true})),
                        now,
                        ctx,
                    )?;
                    let still_pending =
                        job.verification_status == Status::Pending && job.expires_at > now;
                    match next {
                        Some(next) if still_pending => {
                            enqueue_next(tx, job, &next, now)?;
                        }
                        _ => {
                            let others: i64 = tx
                                .prepare_cached(
                                    "SELECT COUNT(*) FROM deliveries WHERE verification_id = ? AND id <> ? AND status IN ('queued', 'sent', 'delivered')",
                                )?
                                .query_row(params![job.verification_id, job.id], |r| r.get(0))?;
                            if others == 0 && end(tx, &job.verification_id, Status::Failed, now)? {
                                record_event(
                                    tx,
                                    EventType::Failed,
                                    vid,
                                    sid,
                                    json!({"error": error}),
                                    now,
                                    ctx,
                                )?;
                            }
                        }
                    }
                }
                AttemptResult::Skip => {
                    tx.prepare_cached(
                        "UPDATE deliveries SET status = 'skipped', lease_owner = NULL, lease_until = NULL, updated_at = ? WHERE id = ?",
                    )?
                    .execute(params![ms(now), job.id])?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn apply_receipt(
        &self,
        receipt: &Receipt,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<bool> {
        self.write(|tx| {
            let (id, vid, sid, channel, status) = {
                let mut stmt = tx.prepare_cached(
                    "SELECT d.id, d.verification_id, d.channel, d.providers, d.provider_index, d.status, v.service_id \
                     FROM deliveries d JOIN verifications v ON v.id = d.verification_id \
                     WHERE (d.id = ? OR d.provider_message_id = ?) \
                     AND json_extract(d.providers, '$[' || d.provider_index || ']') = ? LIMIT 1",
                )?;
                // Only among the deliveries of the provider the receipt comes for.
                let mut rows = stmt.query(params![
                    receipt.message_id,
                    receipt.message_id,
                    receipt.provider
                ])?;
                let Some(r) = rows.next()? else {
                    return Ok(false);
                };
                let providers: String = r.get("providers")?;
                let providers: Vec<String> =
                    serde_json::from_str(&providers).map_err(|_| corrupt("providers"))?;
                let current = providers.get(r.get::<_, i64>("provider_index")? as usize);
                if current.map(String::as_str) != Some(receipt.provider.as_str()) {
                    return Ok(false);
                }
                let channel: String = r.get("channel")?;
                let status: String = r.get("status")?;
                (
                    r.get::<_, String>("id")?,
                    r.get::<_, String>("verification_id")?,
                    r.get::<_, String>("service_id")?,
                    parse_channel(&channel)?,
                    DeliveryStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
                )
            };
            // Receipts only move a message forward: a late "delivered" after "failed" is
            // believed (the provider knows best), a repeated receipt changes nothing.
            let (new_status, kind) = if receipt.delivered {
                (DeliveryStatus::Delivered, EventType::Delivered)
            } else {
                (DeliveryStatus::Failed, EventType::DeliveryFailed)
            };
            if status != new_status && status != DeliveryStatus::Delivered {
                // A failed receipt while otpd still waits for one ends the wait now: the
                // receipt sweep hands the code to the next provider or channel.
                tx.prepare_cached(
                    "UPDATE deliveries SET status = ?, error = ?, updated_at = ?, \
                     receipt_deadline = CASE WHEN ? AND receipt_deadline IS NOT NULL THEN ? ELSE NULL END \
                     WHERE id = ?",
                )?
                .execute(params![
                    new_status.as_str(),
                    receipt.error,
                    ms(now),
                    !receipt.delivered,
                    ms(now),
                    id,
                ])?;
                let data = json!({"delivery_id": id, "channel": channel, "provider": receipt.provider,
                                  "error": receipt.error, "receipt": true, "final": true});
                record_event(tx, kind, Some(&vid), Some(&sid), data, now, ctx)?;
            }
            Ok(true)
        })
        .await
    }

    async fn held_ussd(
        &self,
        provider: &str,
        to: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DeliveryJob>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "{JOB_SELECT} WHERE d.channel = 'ussd' AND d.status = 'sent' \
                 AND v.to_addr = ? AND v.status = 'pending' AND v.expires_at > ? \
                 AND json_extract(d.providers, '$[' || d.provider_index || ']') = ? \
                 ORDER BY d.created_at DESC LIMIT 1"
            ))?;
            Ok(collect(&mut stmt, params![to, ms(now), provider], |r| {
                job_from_row(r, "")
            })?
            .pop())
        })
        .await
    }

    async fn next_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let at: Option<i64> = self
            .read(|c| {
                Ok(c.prepare_cached(
                    "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, 0))) FROM deliveries WHERE status = 'queued'",
                )?
                .query_row([], |r| r.get(0))?)
            })
            .await?;
        Ok(at.map(time))
    }

    async fn overdue_receipts(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryJob>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "{JOB_SELECT} WHERE d.receipt_deadline IS NOT NULL AND d.receipt_deadline <= ? \
                 AND d.status IN ('sent', 'failed') ORDER BY d.receipt_deadline LIMIT ?"
            ))?;
            collect(&mut stmt, params![ms(now), i64::from(limit)], |r| {
                job_from_row(r, "")
            })
        })
        .await
    }

    async fn receipt_timeout(
        &self,
        job: &DeliveryJob,
        next: Option<NextDelivery>,
        error: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<bool> {
        self.write(|tx| {
            let taken = tx
                .prepare_cached(
                    "UPDATE deliveries SET receipt_deadline = NULL, error = COALESCE(error, ?), updated_at = ? \
                     WHERE id = ? AND receipt_deadline IS NOT NULL AND status IN ('sent', 'failed')",
                )?
                .execute(params![error, ms(now), job.id])?
                == 1;
            if !taken {
                return Ok(false);
            }
            let pending: bool = tx
                .prepare_cached(
                    "SELECT status = 'pending' AND expires_at > ? FROM verifications WHERE id = ?",
                )?
                .query_row(params![ms(now), job.verification_id], |r| r.get(0))
                .optional()?
                .unwrap_or(false);
            if let (true, Some(next)) = (pending, next.as_ref()) {
                let data = json!({"delivery_id": job.id, "channel": job.channel,
                                  "provider": job.current_provider().unwrap_or_default(),
                                  "error": error, "receipt_timeout": true, "final": false,
                                  "next_channel": next.channel,
                                  "next_provider": next.providers.first()});
                record_event(
                    tx,
                    EventType::DeliveryFailed,
                    Some(&job.verification_id),
                    Some(&job.service_id),
                    data,
                    now,
                    ctx,
                )?;
                enqueue_next(tx, job, next, now)?;
            }
            Ok(true)
        })
        .await
    }
}
