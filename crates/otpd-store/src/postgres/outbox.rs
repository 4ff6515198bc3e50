//! The delivery outbox in PostgreSQL: jobs are `deliveries` rows in status `queued`, claimed
//! with `FOR UPDATE SKIP LOCKED` (workers on many nodes never wait for nor take the same
//! row) and leased with `lease_owner`/`lease_until`; a lease that runs out makes the job
//! due again, so a worker (or node) that dies mid-job leaves it to another.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::channel::Channel;
use otpd_core::event::EventType;
use otpd_core::store::{
    AttemptResult, DeliveryJob, NextDelivery, OutboxStore, Receipt, StoreError, StoreResult,
};
use otpd_core::verification::{DeliveryStatus, Status};
use serde_json::json;
use sqlx::{Postgres, Row, Transaction};

use super::verifications::{end, enqueue, lock_verification, parse_channel};
use super::{PostgresStore, db, insert_event, ms, time};

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("delivery: {what}"))
}

/// Releases a job with a new state.
async fn update_job(
    tx: &mut Transaction<'static, Postgres>,
    job: &DeliveryJob,
    status: DeliveryStatus,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE deliveries SET status = $1, attempts = attempts + 1, error = $2, lease_owner = NULL, lease_until = NULL, updated_at = $3 WHERE id = $4",
    )
    .bind(status.as_str())
    .bind(error)
    .bind(ms(now))
    .bind(&job.id)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// Puts a job back in the queue, due at `at`: with the same provider (one more attempt
/// counted) or with the next provider of its chain (attempts start again).
async fn requeue(
    tx: &mut Transaction<'static, Postgres>,
    job: &DeliveryJob,
    next_provider: bool,
    at: DateTime<Utc>,
    error: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE deliveries SET provider_index = provider_index + $1, \
         attempts = CASE WHEN $2 THEN 0 ELSE attempts + 1 END, error = $3, next_attempt_at = $4, \
         lease_owner = NULL, lease_until = NULL, updated_at = $5 WHERE id = $6",
    )
    .bind(i64::from(next_provider))
    .bind(next_provider)
    .bind(error)
    .bind(ms(at))
    .bind(ms(now))
    .bind(&job.id)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// The columns a [`DeliveryJob`] is made of (add a `WHERE`).
const JOB_SELECT: &str = "SELECT d.id, d.verification_id, d.channel, d.fallback, d.providers, d.provider_index, d.attempts, d.test, \
       v.service_id, v.to_addr, v.status, v.sealed_code, v.expires_at, v.locale, v.message_options \
     FROM deliveries d JOIN verifications v ON v.id = d.verification_id";

fn job_from_row(r: &sqlx::postgres::PgRow, owner: &str) -> StoreResult<DeliveryJob> {
    Ok(DeliveryJob {
        id: r.get("id"),
        verification_id: r.get("verification_id"),
        service_id: r.get("service_id"),
        to: r.get("to_addr"),
        channel: parse_channel(r.get("channel"))?,
        fallback: serde_json::from_str(r.get::<&str, _>("fallback"))
            .map_err(|_| corrupt("fallback"))?,
        providers: serde_json::from_str(r.get::<&str, _>("providers"))
            .map_err(|_| corrupt("providers"))?,
        provider_index: r.get::<i64, _>("provider_index") as u32,
        attempts: r.get::<i64, _>("attempts") as u32,
        test: r.get::<i64, _>("test") != 0,
        verification_status: Status::parse(r.get("status")).ok_or_else(|| corrupt("status"))?,
        sealed_code: r.get("sealed_code"),
        expires_at: time(r.get("expires_at")),
        locale: r.get("locale"),
        message_options: r
            .get::<Option<&str>, _>("message_options")
            .map(serde_json::from_str)
            .transpose()
            .map_err(|_| corrupt("message options"))?
            .unwrap_or_default(),
        lease_owner: owner.to_string(),
    })
}

/// Queues the follow-up delivery of a job (next provider or fallback channel) and points
/// the verification at its channel.
async fn enqueue_next(
    tx: &mut Transaction<'static, Postgres>,
    job: &DeliveryJob,
    next: &NextDelivery,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    enqueue(
        tx,
        &job.verification_id,
        next.channel,
        &next.fallback,
        &next.providers,
        job.test,
        now,
    )
    .await?;
    if next.channel != job.channel {
        sqlx::query("UPDATE verifications SET channel = $1, updated_at = $2 WHERE id = $3")
            .bind(next.channel.as_str())
            .bind(ms(now))
            .bind(&job.verification_id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn claim(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> StoreResult<Option<DeliveryJob>> {
        let mut tx = self.write_tx().await?;
        let id: Option<String> = sqlx::query_scalar(
            "UPDATE deliveries SET lease_owner = $1, lease_until = $2 WHERE id = (\
               SELECT id FROM deliveries WHERE status = 'queued' AND next_attempt_at <= $3 \
               AND (lease_until IS NULL OR lease_until <= $4) ORDER BY next_attempt_at, id LIMIT 1 \
               FOR UPDATE SKIP LOCKED) \
             RETURNING id",
        )
        .bind(owner)
        .bind(ms(now + lease))
        .bind(ms(now))
        .bind(ms(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(id) = id else { return Ok(None) };
        let r = sqlx::query(&format!("{JOB_SELECT} WHERE d.id = $1"))
            .bind(&id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        job_from_row(&r, owner).map(Some)
    }

    async fn finish(
        &self,
        job: &DeliveryJob,
        result: AttemptResult,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
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
                update_job(&mut tx, job, status, None, now).await?;
                let deadline = receipt_deadline
                    .filter(|_| status == DeliveryStatus::Sent)
                    .map(ms);
                sqlx::query(
                    "UPDATE deliveries SET provider_message_id = $1, receipt_deadline = $2 WHERE id = $3",
                )
                .bind(provider_message_id)
                .bind(deadline)
                    .bind(&job.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                insert_event(
                    &mut tx,
                    EventType::DeliverySent,
                    vid,
                    sid,
                    base.clone(),
                    now,
                    ctx,
                )
                .await?;
                if status == DeliveryStatus::Delivered {
                    insert_event(
                        &mut tx,
                        EventType::Delivered,
                        vid,
                        sid,
                        base.clone(),
                        now,
                        ctx,
                    )
                    .await?;
                }
            }
            AttemptResult::Recorded {
                message_id,
                sealed_body,
            } => {
                sqlx::query(
                    "INSERT INTO messages (id, verification_id, delivery_id, channel, to_addr, sealed_body, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&message_id)
                .bind(&job.verification_id)
                .bind(&job.id)
                .bind(job.channel.as_str())
                .bind(&job.to)
                .bind(sealed_body)
                .bind(ms(now))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                update_job(&mut tx, job, DeliveryStatus::Sent, None, now).await?;
                insert_event(
                    &mut tx,
                    EventType::DeliverySent,
                    vid,
                    sid,
                    with(json!({"test": true})),
                    now,
                    ctx,
                )
                .await?;
            }
            AttemptResult::Retry { at, error } => {
                requeue(&mut tx, job, false, at, &error, now).await?;
                let data = with(json!({"error": error, "final": false}));
                insert_event(&mut tx, EventType::DeliveryFailed, vid, sid, data, now, ctx).await?;
            }
            AttemptResult::NextProvider { error } => {
                requeue(&mut tx, job, true, now, &error, now).await?;
                let data = with(json!({"error": error, "final": false}));
                insert_event(&mut tx, EventType::DeliveryFailed, vid, sid, data, now, ctx).await?;
            }
            AttemptResult::Fail { error, next } => {
                // Under the verification's row lock: two of its deliveries failing at once
                // on two nodes see each other's outcome, so the last one fails it.
                lock_verification(&mut tx, &job.verification_id).await?;
                update_job(&mut tx, job, DeliveryStatus::Failed, Some(&error), now).await?;
                insert_event(
                    &mut tx,
                    EventType::DeliveryFailed,
                    vid,
                    sid,
                    with(json!({"error": error, "final": true})),
                    now,
                    ctx,
                )
                .await?;
                let still_pending =
                    job.verification_status == Status::Pending && job.expires_at > now;
                match next {
                    Some(next) if still_pending => {
                        enqueue_next(&mut tx, job, &next, now).await?;
                    }
                    _ => {
                        let others: i64 = sqlx::query_scalar(
                            "SELECT COUNT(*) FROM deliveries WHERE verification_id = $1 AND id <> $2 AND status IN ('queued', 'sent', 'delivered')",
                        )
                        .bind(&job.verification_id)
                        .bind(&job.id)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db)?;
                        if others == 0
                            && end(&mut tx, &job.verification_id, Status::Failed, now).await?
                        {
                            insert_event(
                                &mut tx,
                                EventType::Failed,
                                vid,
                                sid,
                                json!({"error": error}),
                                now,
                                ctx,
                            )
                            .await?;
                        }
                    }
                }
            }
            AttemptResult::Skip => {
                sqlx::query(
                    "UPDATE deliveries SET status = 'skipped', lease_owner = NULL, lease_until = NULL, updated_at = $1 WHERE id = $2",
                )
                .bind(ms(now))
                .bind(&job.id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
        }
        tx.commit().await.map_err(db)
    }

    async fn apply_receipt(
        &self,
        receipt: &Receipt,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "SELECT d.id, d.verification_id, d.channel, d.providers, d.provider_index, d.status, v.service_id \
             FROM deliveries d JOIN verifications v ON v.id = d.verification_id \
             WHERE (d.id = $1 OR d.provider_message_id = $2) \
             AND (d.providers::jsonb ->> d.provider_index::int) = $3 LIMIT 1 FOR UPDATE OF d",
        )
        .bind(&receipt.message_id)
        .bind(&receipt.message_id)
        // Only among the deliveries of the provider the receipt comes for.
        .bind(&receipt.provider)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(r) = row else { return Ok(false) };
        let providers: Vec<String> = serde_json::from_str(r.get::<&str, _>("providers"))
            .map_err(|_| corrupt("providers"))?;
        let current = providers.get(r.get::<i64, _>("provider_index") as usize);
        if current.map(String::as_str) != Some(receipt.provider.as_str()) {
            return Ok(false);
        }
        let id: String = r.get("id");
        let vid: String = r.get("verification_id");
        let sid: String = r.get("service_id");
        let channel: Channel = parse_channel(r.get("channel"))?;
        let status = DeliveryStatus::parse(r.get("status")).ok_or_else(|| corrupt("status"))?;
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
            sqlx::query(
                "UPDATE deliveries SET status = $1, error = $2, updated_at = $3, \
                 receipt_deadline = CASE WHEN $4 AND receipt_deadline IS NOT NULL THEN $5 ELSE NULL END \
                 WHERE id = $6",
            )
                .bind(new_status.as_str())
                .bind(&receipt.error)
                .bind(ms(now))
                .bind(!receipt.delivered)
                .bind(ms(now))
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            let data = json!({"delivery_id": id, "channel": channel, "provider": receipt.provider,
                              "error": receipt.error, "receipt": true, "final": true});
            insert_event(&mut tx, kind, Some(&vid), Some(&sid), data, now, ctx).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn held_ussd(
        &self,
        provider: &str,
        to: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DeliveryJob>> {
        let row = sqlx::query(&format!(
            "{JOB_SELECT} WHERE d.channel = 'ussd' AND d.status = 'sent' \
             AND v.to_addr = $1 AND v.status = 'pending' AND v.expires_at > $2 \
             AND (d.providers::jsonb ->> d.provider_index::int) = $3 \
             ORDER BY d.created_at DESC LIMIT 1"
        ))
        .bind(to)
        .bind(ms(now))
        .bind(provider)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| job_from_row(&r, "")).transpose()
    }

    async fn next_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(GREATEST(next_attempt_at, COALESCE(lease_until, 0))) FROM deliveries WHERE status = 'queued'",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(at.map(time))
    }

    async fn overdue_receipts(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryJob>> {
        let rows = sqlx::query(&format!(
            "{JOB_SELECT} WHERE d.receipt_deadline IS NOT NULL AND d.receipt_deadline <= $1 \
             AND d.status IN ('sent', 'failed') ORDER BY d.receipt_deadline LIMIT $2"
        ))
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(|r| job_from_row(r, "")).collect()
    }

    async fn receipt_timeout(
        &self,
        job: &DeliveryJob,
        next: Option<NextDelivery>,
        error: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let taken = sqlx::query(
            "UPDATE deliveries SET receipt_deadline = NULL, error = COALESCE(error, $1), updated_at = $2 \
             WHERE id = $3 AND receipt_deadline IS NOT NULL AND status IN ('sent', 'failed')",
        )
        .bind(error)
        .bind(ms(now))
        .bind(&job.id)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            == 1;
        if !taken {
            return Ok(false);
        }
        let pending: bool = sqlx::query_scalar(
            "SELECT status = 'pending' AND expires_at > $1 FROM verifications WHERE id = $2",
        )
        .bind(ms(now))
        .bind(&job.verification_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        .unwrap_or(false);
        if let (true, Some(next)) = (pending, next.as_ref()) {
            let data = json!({"delivery_id": job.id, "channel": job.channel,
                              "provider": job.current_provider().unwrap_or_default(),
                              "error": error, "receipt_timeout": true, "final": false,
                              "next_channel": next.channel,
                              "next_provider": next.providers.first()});
            insert_event(
                &mut tx,
                EventType::DeliveryFailed,
                Some(&job.verification_id),
                Some(&job.service_id),
                data,
                now,
                ctx,
            )
            .await?;
            enqueue_next(&mut tx, job, next, now).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(true)
    }
}
