//! Verifications in PostgreSQL: start (create or resend), check, cancel and expiry, each one
//! transaction; a start holds the recipient's advisory lock, a check the verification's
//! row lock (see the module doc of `postgres`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::channel::Channel;
use otpd_core::event::EventType;
use otpd_core::ids::Kind;
use otpd_core::lockout::{LockoutPolicy, Subject};
use otpd_core::mask::mask_recipient;
use otpd_core::start::{
    PendingVerification, PriorRequest, RecentSends, SendAction, StartDecision, StartState,
    decide_start, lock_subjects,
};
use otpd_core::store::{
    CheckOutcome, CheckTarget, CodeMatcher, DeliveryFilter, DeliveryRecord, RecordedMessage,
    StartOutcome, StartRequest, StoreError, StoreResult, TestRecorder, TestSend, VerificationStore,
};
use otpd_core::verification::{
    Delivery, DeliveryStatus, LockoutEffect, Status, Verification, decide_check,
};
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row, Transaction};

use super::{PostgresStore, db, insert_event, lock_key, lockout, ms, time};

/// Locks a verification's row for the rest of the transaction (concurrent checks, cancels
/// and deliveries of it queue here); false if there is none.
pub(super) async fn lock_verification(
    tx: &mut Transaction<'static, Postgres>,
    id: &str,
) -> StoreResult<bool> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM verifications WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?;
    Ok(found.is_some())
}

const COLUMNS: &str = "v.id, v.service_id, s.name AS service_name, v.to_addr, v.channel, v.status, \
    v.code_hash, v.expires_at, v.created_at, v.updated_at, v.max_check_attempts, v.check_attempts, \
    v.locale, v.metadata, v.entity, v.test";

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("record: {what}"))
}

pub(super) fn parse_channel(s: &str) -> StoreResult<Channel> {
    s.parse().map_err(|_| corrupt("channel"))
}

/// Whose lockout a verification's checks count toward: its recipient, and its entity.
fn subjects_of(v: &Verification) -> Vec<Subject> {
    let mut subjects = vec![Subject::To(v.to.clone())];
    subjects.extend(v.entity.clone().map(Subject::Entity));
    subjects
}

fn row_to_verification(row: &PgRow) -> StoreResult<Verification> {
    let channel: String = row.get("channel");
    let status: String = row.get("status");
    let metadata: Option<String> = row.get("metadata");
    Ok(Verification {
        id: row.get("id"),
        service_id: row.get("service_id"),
        service_name: row.get("service_name"),
        to: row.get("to_addr"),
        channel: parse_channel(&channel)?,
        status: Status::parse(&status).ok_or_else(|| corrupt("status"))?,
        code_hash: row.get("code_hash"),
        expires_at: time(row.get("expires_at")),
        created_at: time(row.get("created_at")),
        updated_at: time(row.get("updated_at")),
        max_check_attempts: row.get::<i64, _>("max_check_attempts") as u32,
        check_attempts: row.get::<i64, _>("check_attempts") as u32,
        locale: row.get("locale"),
        metadata: metadata.and_then(|m| serde_json::from_str(&m).ok()),
        entity: row.get("entity"),
        test: row.get::<i64, _>("test") != 0,
        deliveries: Vec::new(),
    })
}

/// Loads a verification and its deliveries on one connection.
pub(super) async fn load(conn: &mut PgConnection, id: &str) -> StoreResult<Option<Verification>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM verifications v JOIN services s ON s.id = v.service_id WHERE v.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    let Some(row) = row else { return Ok(None) };
    let mut v = row_to_verification(&row)?;
    let rows = sqlx::query(
        "SELECT id, channel, providers, provider_index, status, attempts, error, created_at, updated_at \
         FROM deliveries WHERE verification_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    for r in rows {
        v.deliveries.push(row_to_delivery(&r)?);
    }
    Ok(Some(v))
}

/// A delivery from a row with `id, channel, providers, provider_index, status, attempts,
/// error, created_at, updated_at`.
fn row_to_delivery(r: &PgRow) -> StoreResult<Delivery> {
    let providers: Vec<String> =
        serde_json::from_str(r.get::<&str, _>("providers")).map_err(|_| corrupt("providers"))?;
    let index = r.get::<i64, _>("provider_index") as usize;
    let provider = providers
        .get(index)
        .or(providers.last())
        .cloned()
        .unwrap_or_default();
    Ok(Delivery {
        id: r.get("id"),
        channel: parse_channel(r.get("channel"))?,
        provider,
        status: DeliveryStatus::parse(r.get("status")).ok_or_else(|| corrupt("delivery status"))?,
        attempts: r.get::<i64, _>("attempts") as u32,
        error: r.get("error"),
        created_at: time(r.get("created_at")),
        updated_at: time(r.get("updated_at")),
    })
}

/// The columns of a delivery listing (deliveries `d` joined with verifications `v`).
const DELIVERY_COLUMNS: &str = "d.id, d.channel, d.providers, d.provider_index, d.status, d.attempts, \
    d.error, d.updated_at, d.created_at, d.verification_id, v.service_id, v.to_addr, \
    v.status AS v_status, v.expires_at AS v_expires_at";

fn row_to_delivery_record(r: &PgRow) -> StoreResult<DeliveryRecord> {
    Ok(DeliveryRecord {
        delivery: row_to_delivery(r)?,
        verification_id: r.get("verification_id"),
        service_id: r.get("service_id"),
        to: r.get("to_addr"),
        verification_status: Status::parse(r.get("v_status")).ok_or_else(|| corrupt("status"))?,
        verification_expires_at: time(r.get("v_expires_at")),
    })
}

/// The stored form of message overrides (NULL when there are none).
fn message_options_json(req: &StartRequest) -> Option<String> {
    (!req.message_options.is_empty())
        .then(|| serde_json::to_string(&req.message_options).expect("message options serialize"))
}

/// Ends a pending verification: new status, sealed code erased, queued jobs left to be
/// skipped by the worker.
pub(super) async fn end(
    tx: &mut Transaction<'static, Postgres>,
    id: &str,
    status: Status,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE verifications SET status = $1, sealed_code = NULL, updated_at = $2 WHERE id = $3 AND status = 'pending'",
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
    tx: &mut Transaction<'static, Postgres>,
    verification_id: &str,
    channel: Channel,
    fallback: &[Channel],
    providers: &[String],
    test: bool,
    now: DateTime<Utc>,
) -> StoreResult<String> {
    let id = Kind::Delivery.new_id();
    // The next `seq` of this verification is computed under its row lock.
    lock_verification(tx, verification_id).await?;
    sqlx::query(
        "INSERT INTO deliveries (id, verification_id, seq, channel, fallback, providers, status, test, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM deliveries WHERE verification_id = $3), $4, $5, $6, 'queued', $7, $8, $9, $10)",
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

/// Records a test-mode message instead of queueing a delivery: a `sent` delivery by the
/// `test` provider, the sealed message, and the event.
async fn record_test_message(
    tx: &mut Transaction<'static, Postgres>,
    verification_id: &str,
    req: &StartRequest,
    render: TestRecorder<'_>,
    now: DateTime<Utc>,
    ctx: &WriteContext,
) -> StoreResult<()> {
    let row = sqlx::query("SELECT sealed_code, expires_at FROM verifications WHERE id = $1")
        .bind(verification_id)
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?;
    let sealed: Vec<u8> = row.get("sealed_code");
    let send = TestSend {
        verification_id,
        sealed_code: &sealed,
        expires_at: time(row.get("expires_at")),
    };
    let (message_id, sealed_body) =
        render(&send).ok_or_else(|| corrupt("sealed code of a test verification"))?;
    let delivery_id = Kind::Delivery.new_id();
    lock_verification(tx, verification_id).await?;
    sqlx::query(
        "INSERT INTO deliveries (id, verification_id, seq, channel, fallback, providers, status, attempts, test, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM deliveries WHERE verification_id = $3), $4, '[]', '[\"test\"]', 'sent', 1, 1, $5, $6, $7)",
    )
    .bind(&delivery_id)
    .bind(verification_id)
    .bind(verification_id)
    .bind(req.channel.as_str())
    .bind(ms(now))
    .bind(ms(now))
    .bind(ms(now))
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    sqlx::query(
        "INSERT INTO messages (id, verification_id, delivery_id, channel, to_addr, sealed_body, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&message_id)
    .bind(verification_id)
    .bind(&delivery_id)
    .bind(req.channel.as_str())
    .bind(&req.to)
    .bind(sealed_body)
    .bind(ms(now))
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    let data = json!({"delivery_id": delivery_id, "channel": req.channel, "provider": "test", "test": true});
    insert_event(
        tx,
        EventType::DeliverySent,
        Some(verification_id),
        Some(&req.service_id),
        data,
        now,
        ctx,
    )
    .await
}

/// The work of [`VerificationStore::start`] inside a caller's transaction: idempotency,
/// lockout, send limit, create or resend, the delivery job (or the recorded test message),
/// events. The caller commits (or drops the transaction to roll back on an error).
/// What the rules of a start ([`decide_start`]) decide on, read inside the transaction
/// (under the recipient's advisory lock): the idempotency record, the recipient's pending
/// verification, its subjects' locks and its recent sends.
async fn load_start_state(
    tx: &mut Transaction<'static, Postgres>,
    req: &StartRequest,
    now: DateTime<Utc>,
) -> StoreResult<StartState> {
    let mut state = StartState::default();
    if let Some(idem) = &req.idempotency {
        let prior: Option<(Vec<u8>, String, i64)> = sqlx::query_as(
            "SELECT i.request_hash, i.verification_id, v.test FROM idempotency i \
             JOIN verifications v ON v.id = i.verification_id WHERE i.key_id = $1 AND i.idem_key = $2",
        )
        .bind(&idem.key_id)
        .bind(&idem.key)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
        state.prior = prior.map(|(hash, verification_id, test)| PriorRequest {
            same_request: hash == idem.request_hash,
            test: test != 0,
            verification_id,
        });
        if state.prior.is_some() {
            return Ok(state);
        }
    }
    let pending: Option<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT id, entity, expires_at FROM verifications WHERE service_id = $1 AND to_addr = $2 AND test = $3 AND status = 'pending'",
    )
    .bind(&req.service_id)
    .bind(&req.to)
    .bind(req.test as i64)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    state.pending = pending.map(|(id, entity, expires_at)| PendingVerification {
        id,
        entity,
        expires_at: time(expires_at),
    });
    let subjects = lock_subjects(&req.to, req.entity.as_deref(), state.pending.as_ref());
    state.locked_until = lockout::locked_until(tx, &req.service_id, &subjects, now).await?;
    let (count, oldest): (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(at) FROM sends WHERE service_id = $1 AND to_addr = $2 AND test = $3 AND at > $4",
    )
    .bind(&req.service_id)
    .bind(&req.to)
    .bind(req.test as i64)
    .bind(ms(req.send_limit.window_start(now)))
    .fetch_one(&mut **tx)
    .await
    .map_err(db)?;
    state.recent_sends = RecentSends {
        count: u32::try_from(count).unwrap_or(u32::MAX),
        oldest: oldest.map(time),
    };
    Ok(state)
}

async fn start_in(
    tx: &mut Transaction<'static, Postgres>,
    req: StartRequest,
    record: Option<TestRecorder<'_>>,
    now: DateTime<Utc>,
    ctx: &WriteContext,
) -> StoreResult<StartOutcome> {
    // Concurrent starts with one idempotency key, then for one recipient, run one after
    // the other (the lock order every transaction keeps: idempotency key, recipient).
    if let Some(idem) = &req.idempotency {
        lock_key(tx, "idempotency", &format!("{}\n{}", idem.key_id, idem.key)).await?;
    }
    lock_key(tx, "recipient", &format!("{}\n{}", req.service_id, req.to)).await?;
    let state = load_start_state(tx, &req, now).await?;
    let plan = match decide_start(&state, req.test, req.send_limit, now)? {
        StartDecision::Replay(id) => {
            let v = load(tx, &id)
                .await?
                .ok_or_else(|| corrupt("idempotent verification"))?;
            return Ok(StartOutcome::Replayed(v));
        }
        StartDecision::Proceed(plan) => plan,
    };
    if let Some(stale) = &plan.expire
        && end(tx, stale, Status::Expired, now).await?
    {
        insert_event(
            tx,
            EventType::Expired,
            Some(stale),
            Some(&req.service_id),
            json!({}),
            now,
            ctx,
        )
        .await?;
    }
    let existing = match plan.action {
        SendAction::Create => None,
        SendAction::Resend(id) => Some(id),
    };

    let masked = mask_recipient(&req.to);
    let (id, created) = match existing {
        Some(id) => {
            sqlx::query(
                "UPDATE verifications SET channel = $1, entity = COALESCE(entity, $2), updated_at = $3, \
                 message_options = COALESCE($4, message_options) WHERE id = $5",
            )
            .bind(req.channel.as_str())
            .bind(&req.entity)
            .bind(ms(now))
            .bind(message_options_json(&req))
            .bind(&id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
            insert_event(
                tx,
                EventType::Resent,
                Some(&id),
                Some(&req.service_id),
                json!({"channel": req.channel, "to": masked}),
                now,
                ctx,
            )
            .await?;
            (id, false)
        }
        None => {
            sqlx::query(
                "INSERT INTO verifications (id, service_id, to_addr, channel, status, code_hash, sealed_code, expires_at, created_at, updated_at, max_check_attempts, locale, metadata, entity, test, key_id, message_options, country) \
                 VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
            )
            .bind(&req.new_id)
            .bind(&req.service_id)
            .bind(&req.to)
            .bind(req.channel.as_str())
            .bind(&req.code_hash)
            .bind(&req.sealed_code)
            .bind(ms(now + req.ttl))
            .bind(ms(now))
            .bind(ms(now))
            .bind(i64::from(req.max_check_attempts))
            .bind(&req.locale)
            .bind(req.metadata.as_ref().map(|m| m.to_string()))
            .bind(&req.entity)
            .bind(req.test as i64)
            .bind(&req.key_id)
            .bind(message_options_json(&req))
            .bind(&req.region)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
            insert_event(
                tx,
                EventType::Created,
                Some(&req.new_id),
                Some(&req.service_id),
                json!({"channel": req.channel, "to": masked, "test": req.test}),
                now,
                ctx,
            )
            .await?;
            (req.new_id.clone(), true)
        }
    };

    sqlx::query("INSERT INTO sends (service_id, to_addr, test, at) VALUES ($1, $2, $3, $4)")
        .bind(&req.service_id)
        .bind(&req.to)
        .bind(req.test as i64)
        .bind(ms(now))
        .execute(&mut **tx)
        .await
        .map_err(db)?;

    match (req.deliver, record) {
        (false, _) => {}
        (true, Some(render)) if req.test => {
            record_test_message(tx, &id, &req, render, now, ctx).await?
        }
        (true, _) => {
            enqueue(
                tx,
                &id,
                req.channel,
                &req.fallback,
                &req.providers,
                req.test,
                now,
            )
            .await?;
        }
    }

    if let Some(idem) = &req.idempotency {
        sqlx::query(
            "INSERT INTO idempotency (key_id, idem_key, request_hash, verification_id, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&idem.key_id)
        .bind(&idem.key)
        .bind(&idem.request_hash)
        .bind(&id)
        .bind(ms(now))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }

    let v = load(tx, &id)
        .await?
        .ok_or_else(|| corrupt("new verification"))?;
    Ok(if created {
        StartOutcome::Created(v)
    } else {
        StartOutcome::Resent(v)
    })
}

impl PostgresStore {
    /// Bulk loading: several [`VerificationStore::start`] calls, the same work each, in one
    /// transaction (one commit instead of one per send). All or nothing: the first error
    /// rolls the whole batch back. Used to seed large stores (the benchmarks); the API
    /// always starts one verification per transaction.
    pub async fn start_many(
        &self,
        reqs: Vec<StartRequest>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<StartOutcome>> {
        let ctx = WriteContext::system();
        let mut tx = self.write_tx().await?;
        let mut outcomes = Vec::with_capacity(reqs.len());
        for req in reqs {
            outcomes.push(start_in(&mut tx, req, None, now, &ctx).await?);
        }
        tx.commit().await.map_err(db)?;
        Ok(outcomes)
    }
}

#[async_trait]
impl VerificationStore for PostgresStore {
    async fn start(
        &self,
        req: StartRequest,
        record: Option<TestRecorder<'_>>,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<StartOutcome> {
        let mut tx = self.write_tx().await?;
        let outcome = start_in(&mut tx, req, record, now, ctx).await?;
        tx.commit().await.map_err(db)?;
        Ok(outcome)
    }

    async fn get_verification(&self, id: &str) -> StoreResult<Option<Verification>> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        load(&mut conn, id).await
    }

    async fn check(
        &self,
        target: CheckTarget,
        policy: &LockoutPolicy,
        matcher: CodeMatcher<'_>,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<CheckOutcome> {
        let mut tx = self.write_tx().await?;
        let id: Option<String> = match &target {
            CheckTarget::Id(id) => sqlx::query_scalar("SELECT id FROM verifications WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?,
            CheckTarget::To {
                service_id,
                to,
                test,
            } => sqlx::query_scalar(
                "SELECT id FROM verifications WHERE service_id = $1 AND to_addr = $2 AND test = $3 ORDER BY created_at DESC, id DESC LIMIT 1 FOR UPDATE",
            )
            .bind(service_id)
            .bind(to)
            .bind(*test as i64)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?,
        };
        let Some(id) = id else {
            return Ok(CheckOutcome::NotFound);
        };
        let v = load(&mut tx, &id)
            .await?
            .ok_or_else(|| corrupt("verification"))?;
        // The lock refuses only checks that would compare a code: a verification that is
        // already over keeps answering with its own state.
        let subjects = subjects_of(&v);
        if v.open_for_checks(now) {
            lockout::lock_subjects(&mut tx, &v.service_id, &subjects).await?;
            lockout::ensure_unlocked(&mut tx, &v.service_id, &subjects, now).await?;
        }
        let decision = decide_check(&v, matcher(&v), now);
        let effects = decision.effects(&v);
        let mut attempts_after = v.check_attempts;
        if let Some(status) = effects.attempt {
            // Compare-and-set on the state that was decided on: status and attempt count.
            let done = sqlx::query(
                "UPDATE verifications SET status = $1, check_attempts = check_attempts + 1, updated_at = $2, \
                 sealed_code = CASE WHEN $3 = 'pending' THEN sealed_code ELSE NULL END \
                 WHERE id = $4 AND status = 'pending' AND check_attempts = $5",
            )
            .bind(status.as_str())
            .bind(ms(now))
            .bind(status.as_str())
            .bind(&id)
            .bind(i64::from(v.check_attempts))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Raced(
                    "verification changed during check".into(),
                ));
            }
            attempts_after += 1;
        }
        let changed = effects.attempt.is_some()
            || (effects.expire && end(&mut tx, &id, Status::Expired, now).await?);
        if changed {
            match effects.lockout {
                LockoutEffect::Keep => {}
                LockoutEffect::Clear => lockout::clear(&mut tx, &v.service_id, &subjects).await?,
                LockoutEffect::CountFailure => {
                    lockout::record_failures(&mut tx, &v.service_id, &subjects, policy, now, ctx)
                        .await?
                }
            }
            let data = effects.event_data(attempts_after);
            for &kind in effects.events {
                insert_event(
                    &mut tx,
                    kind,
                    Some(&id),
                    Some(v.service_id.as_str()),
                    data.clone(),
                    now,
                    ctx,
                )
                .await?;
            }
        }
        let verification = load(&mut tx, &id)
            .await?
            .ok_or_else(|| corrupt("verification"))?;
        tx.commit().await.map_err(db)?;
        Ok(CheckOutcome::Decided {
            decision,
            verification: Box::new(verification),
        })
    }

    async fn cancel(
        &self,
        id: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<Option<Verification>> {
        let mut tx = self.write_tx().await?;
        lock_verification(&mut tx, id).await?;
        let Some(v) = load(&mut tx, id).await? else {
            return Ok(None);
        };
        if v.status_at(now) == Status::Pending && end(&mut tx, id, Status::Canceled, now).await? {
            insert_event(
                &mut tx,
                EventType::Canceled,
                Some(id),
                Some(&v.service_id),
                json!({}),
                now,
                ctx,
            )
            .await?;
        }
        let v = load(&mut tx, id).await?;
        tx.commit().await.map_err(db)?;
        Ok(v)
    }

    async fn approve(
        &self,
        id: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<Option<Verification>> {
        let mut tx = self.write_tx().await?;
        lock_verification(&mut tx, id).await?;
        let Some(v) = load(&mut tx, id).await? else {
            return Ok(None);
        };
        if v.status_at(now) == Status::Pending && end(&mut tx, id, Status::Approved, now).await? {
            insert_event(
                &mut tx,
                EventType::Approved,
                Some(id),
                Some(&v.service_id),
                json!({"out_of_band": true, "check_attempts": v.check_attempts}),
                now,
                ctx,
            )
            .await?;
        } else if v.status == Status::Pending
            && now >= v.expires_at
            && end(&mut tx, id, Status::Expired, now).await?
        {
            insert_event(
                &mut tx,
                EventType::Expired,
                Some(id),
                Some(&v.service_id),
                json!({}),
                now,
                ctx,
            )
            .await?;
        }
        let v = load(&mut tx, id).await?;
        tx.commit().await.map_err(db)?;
        Ok(v)
    }

    async fn latest_verification(
        &self,
        service_id: &str,
        to: &str,
        test: bool,
    ) -> StoreResult<Option<Verification>> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM verifications WHERE service_id = $1 AND to_addr = $2 AND test = $3 ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(service_id)
        .bind(to)
        .bind(test as i64)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
        match id {
            Some(id) => load(&mut conn, &id).await,
            None => Ok(None),
        }
    }

    async fn list_deliveries(&self, f: &DeliveryFilter) -> StoreResult<Vec<DeliveryRecord>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN verifications v ON v.id = d.verification_id WHERE 1 = 1"
        ));
        if let Some(s) = &f.service_id {
            q.push(" AND v.service_id = ").push_bind(s.clone());
        }
        if let Some(v) = &f.verification_id {
            q.push(" AND d.verification_id = ").push_bind(v.clone());
        }
        if let Some(c) = f.channel {
            q.push(" AND d.channel = ").push_bind(c.as_str());
        }
        if let Some(to) = &f.to {
            q.push(" AND v.to_addr = ").push_bind(to.clone());
        }
        if let Some(t) = f.created_after {
            q.push(" AND d.created_at >= ").push_bind(ms(t));
        }
        if let Some(t) = f.created_before {
            q.push(" AND d.created_at <= ").push_bind(ms(t));
        }
        match f.converted {
            Some(true) => {
                q.push(" AND v.status = 'approved'");
            }
            Some(false) => {
                q.push(" AND v.status <> 'approved'");
            }
            None => {}
        }
        q.push(" ORDER BY d.created_at DESC, d.id DESC LIMIT ")
            .push_bind(i64::from(f.limit))
            .push(" OFFSET ")
            .push_bind(i64::try_from(f.offset).unwrap_or(i64::MAX));
        let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(row_to_delivery_record).collect()
    }

    async fn get_delivery(&self, id: &str) -> StoreResult<Option<DeliveryRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN verifications v ON v.id = d.verification_id WHERE d.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(row_to_delivery_record).transpose()
    }

    async fn expire_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        ctx: &WriteContext,
    ) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        let due: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, service_id FROM verifications WHERE status = 'pending' AND expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        for (id, service_id) in &due {
            if end(&mut tx, id, Status::Expired, now).await? {
                insert_event(
                    &mut tx,
                    EventType::Expired,
                    Some(id),
                    Some(service_id),
                    json!({}),
                    now,
                    ctx,
                )
                .await?;
            }
        }
        lockout::sweep(&mut tx, now).await?;
        // The send log only matters within the longest window (24 h).
        sqlx::query("DELETE FROM sends WHERE at < $1")
            .bind(ms(now
                - chrono::Duration::seconds(i64::from(
                    otpd_core::service::MAX_TTL_SECONDS,
                ))))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(due.len() as u64)
    }

    async fn recorded_messages(&self, verification_id: &str) -> StoreResult<Vec<RecordedMessage>> {
        let rows = sqlx::query(
            "SELECT id, delivery_id, channel, to_addr, sealed_body, created_at FROM messages WHERE verification_id = $1 ORDER BY created_at, id",
        )
        .bind(verification_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(RecordedMessage {
                    id: r.get("id"),
                    delivery_id: r.get("delivery_id"),
                    channel: parse_channel(r.get("channel"))?,
                    to: r.get("to_addr"),
                    sealed_body: r.get("sealed_body"),
                    created_at: time(r.get("created_at")),
                })
            })
            .collect()
    }
}
