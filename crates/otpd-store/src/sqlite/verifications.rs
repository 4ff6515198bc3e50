//! Verifications in SQLite: start (create or resend), check, cancel and expiry, each one
//! transaction on the single writer connection.

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
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::json;

use super::{Query, SqlResult, SqliteStore, collect, lockout, ms, record_event, time};

const COLUMNS: &str = "v.id, v.service_id, s.name AS service_name, v.to_addr, v.channel, v.status, \
    v.code_hash, v.expires_at, v.created_at, v.updated_at, v.max_check_attempts, v.check_attempts, \
    v.locale, v.metadata, v.entity, v.test";

pub(super) fn corrupt(what: &str) -> StoreError {
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

fn row_to_verification(row: &Row<'_>) -> SqlResult<Verification> {
    let channel: String = row.get("channel")?;
    let status: String = row.get("status")?;
    let metadata: Option<String> = row.get("metadata")?;
    Ok(Verification {
        id: row.get("id")?,
        service_id: row.get("service_id")?,
        service_name: row.get("service_name")?,
        to: row.get("to_addr")?,
        channel: parse_channel(&channel)?,
        status: Status::parse(&status).ok_or_else(|| corrupt("status"))?,
        code_hash: row.get("code_hash")?,
        expires_at: time(row.get("expires_at")?),
        created_at: time(row.get("created_at")?),
        updated_at: time(row.get("updated_at")?),
        max_check_attempts: row.get::<_, i64>("max_check_attempts")? as u32,
        check_attempts: row.get::<_, i64>("check_attempts")? as u32,
        locale: row.get("locale")?,
        metadata: metadata.and_then(|m| serde_json::from_str(&m).ok()),
        entity: row.get("entity")?,
        test: row.get::<_, i64>("test")? != 0,
        deliveries: Vec::new(),
    })
}

/// Loads a verification and its deliveries (inside a transaction when the caller needs
/// one snapshot).
pub(super) fn load(conn: &Connection, id: &str) -> SqlResult<Option<Verification>> {
    let mut v = {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM verifications v JOIN services s ON s.id = v.service_id WHERE v.id = ?"
        ))?;
        let mut rows = stmt.query([id])?;
        match rows.next()? {
            Some(row) => row_to_verification(row)?,
            None => return Ok(None),
        }
    };
    let mut stmt = conn.prepare_cached(
        "SELECT id, channel, providers, provider_index, status, attempts, error, created_at, updated_at \
         FROM deliveries WHERE verification_id = ? ORDER BY seq",
    )?;
    v.deliveries = collect(&mut stmt, [id], row_to_delivery)?;
    Ok(Some(v))
}

/// A delivery from a row with `id, channel, providers, provider_index, status, attempts,
/// error, created_at, updated_at`.
fn row_to_delivery(r: &Row<'_>) -> SqlResult<Delivery> {
    let providers: String = r.get("providers")?;
    let providers: Vec<String> =
        serde_json::from_str(&providers).map_err(|_| corrupt("providers"))?;
    let index = r.get::<_, i64>("provider_index")? as usize;
    let provider = providers
        .get(index)
        .or(providers.last())
        .cloned()
        .unwrap_or_default();
    let channel: String = r.get("channel")?;
    let status: String = r.get("status")?;
    Ok(Delivery {
        id: r.get("id")?,
        channel: parse_channel(&channel)?,
        provider,
        status: DeliveryStatus::parse(&status).ok_or_else(|| corrupt("delivery status"))?,
        attempts: r.get::<_, i64>("attempts")? as u32,
        error: r.get("error")?,
        created_at: time(r.get("created_at")?),
        updated_at: time(r.get("updated_at")?),
    })
}

/// The columns of a delivery listing (deliveries `d` joined with verifications `v`).
const DELIVERY_COLUMNS: &str = "d.id, d.channel, d.providers, d.provider_index, d.status, d.attempts, \
    d.error, d.updated_at, d.created_at, d.verification_id, v.service_id, v.to_addr, \
    v.status AS v_status, v.expires_at AS v_expires_at";

fn row_to_delivery_record(r: &Row<'_>) -> SqlResult<DeliveryRecord> {
    let status: String = r.get("v_status")?;
    Ok(DeliveryRecord {
        delivery: row_to_delivery(r)?,
        verification_id: r.get("verification_id")?,
        service_id: r.get("service_id")?,
        to: r.get("to_addr")?,
        verification_status: Status::parse(&status).ok_or_else(|| corrupt("status"))?,
        verification_expires_at: time(r.get("v_expires_at")?),
    })
}

/// The stored form of message overrides (NULL when there are none).
fn message_options_json(req: &StartRequest) -> Option<String> {
    (!req.message_options.is_empty())
        .then(|| serde_json::to_string(&req.message_options).expect("message options serialize"))
}

/// Ends a pending verification: new status, sealed code erased, queued jobs left to be
/// skipped by the worker.
pub(super) fn end(
    tx: &Connection,
    id: &str,
    status: Status,
    now: DateTime<Utc>,
) -> SqlResult<bool> {
    let done = tx
        .prepare_cached(
            "UPDATE verifications SET status = ?, sealed_code = NULL, updated_at = ? WHERE id = ? AND status = 'pending'",
        )?
        .execute(params![status.as_str(), ms(now), id])?;
    Ok(done == 1)
}

/// Counts a check's attempt on a pending verification that has had exactly `attempts`, and
/// moves it to `status` (its code spent unless it stays pending). Whether it was so.
///
/// A wrong code that leaves the verification pending does not name `status` in the update:
/// SQLite rewrites the entries of every index whose columns or `WHERE` an update names,
/// and the two partial indexes on pending verifications are keyed on it. Naming it would
/// delete and insert again two index entries per wrong code, each on a page of its own in
/// a large store, for the same values.
fn count_attempt(
    tx: &Connection,
    id: &str,
    attempts: u32,
    status: Status,
    now: DateTime<Utc>,
) -> SqlResult<bool> {
    let attempts = i64::from(attempts);
    let done = if status == Status::Pending {
        tx.prepare_cached(
            "UPDATE verifications SET check_attempts = check_attempts + 1, updated_at = ? \
             WHERE id = ? AND status = 'pending' AND check_attempts = ?",
        )?
        .execute(params![ms(now), id, attempts])?
    } else {
        tx.prepare_cached(
            "UPDATE verifications SET status = ?, check_attempts = check_attempts + 1, updated_at = ?, \
             sealed_code = NULL WHERE id = ? AND status = 'pending' AND check_attempts = ?",
        )?
        .execute(params![status.as_str(), ms(now), id, attempts])?
    };
    Ok(done == 1)
}

/// Ends a pending verification as expired, with its event. Whether it was pending.
fn expire(
    tx: &Connection,
    id: &str,
    service_id: &str,
    now: DateTime<Utc>,
    ctx: &WriteContext,
) -> SqlResult<bool> {
    let ended = end(tx, id, Status::Expired, now)?;
    if ended {
        record_event(
            tx,
            EventType::Expired,
            Some(id),
            Some(service_id),
            json!({}),
            now,
            ctx,
        )?;
    }
    Ok(ended)
}

/// Inserts a queued delivery job.
pub(super) fn enqueue(
    tx: &Connection,
    verification_id: &str,
    channel: Channel,
    fallback: &[Channel],
    providers: &[String],
    test: bool,
    now: DateTime<Utc>,
) -> SqlResult<String> {
    let id = Kind::Delivery.new_id();
    tx.prepare_cached(
        "INSERT INTO deliveries (id, verification_id, seq, channel, fallback, providers, status, test, next_attempt_at, created_at, updated_at) \
         VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM deliveries WHERE verification_id = ?), ?, ?, ?, 'queued', ?, ?, ?, ?)",
    )?
    .execute(params![
        id,
        verification_id,
        verification_id,
        channel.as_str(),
        serde_json::to_string(fallback).expect("channels serialize"),
        serde_json::to_string(providers).expect("names serialize"),
        test as i64,
        ms(now),
        ms(now),
        ms(now),
    ])?;
    Ok(id)
}

/// Records a test-mode message instead of queueing a delivery: a `sent` delivery by the
/// `test` provider, the sealed message, and the event.
fn record_test_message(
    tx: &Connection,
    verification_id: &str,
    req: &StartRequest,
    render: TestRecorder<'_>,
    now: DateTime<Utc>,
    ctx: &WriteContext,
) -> SqlResult<()> {
    let (sealed, expires_at): (Vec<u8>, i64) = tx
        .prepare_cached("SELECT sealed_code, expires_at FROM verifications WHERE id = ?")?
        .query_row([verification_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let send = TestSend {
        verification_id,
        sealed_code: &sealed,
        expires_at: time(expires_at),
    };
    let (message_id, sealed_body) =
        render(&send).ok_or_else(|| corrupt("sealed code of a test verification"))?;
    let delivery_id = Kind::Delivery.new_id();
    tx.prepare_cached(
        "INSERT INTO deliveries (id, verification_id, seq, channel, fallback, providers, status, attempts, test, next_attempt_at, created_at, updated_at) \
         VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM deliveries WHERE verification_id = ?), ?, '[]', '[\"test\"]', 'sent', 1, 1, ?, ?, ?)",
    )?
    .execute(params![
        delivery_id,
        verification_id,
        verification_id,
        req.channel.as_str(),
        ms(now),
        ms(now),
        ms(now),
    ])?;
    tx.prepare_cached(
        "INSERT INTO messages (id, verification_id, delivery_id, channel, to_addr, sealed_body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        message_id,
        verification_id,
        delivery_id,
        req.channel.as_str(),
        req.to,
        sealed_body,
        ms(now),
    ])?;
    let data = json!({"delivery_id": delivery_id, "channel": req.channel, "provider": "test", "test": true});
    record_event(
        tx,
        EventType::DeliverySent,
        Some(verification_id),
        Some(&req.service_id),
        data,
        now,
        ctx,
    )
}

/// The work of [`VerificationStore::start`] inside a caller's transaction: idempotency,
/// lockout, send limit, create or resend, the delivery job (or the recorded test message),
/// events. The caller commits (or rolls back on an error).
fn start_in(
    tx: &Connection,
    req: StartRequest,
    record: Option<TestRecorder<'_>>,
    now: DateTime<Utc>,
    ctx: &WriteContext,
) -> SqlResult<StartOutcome> {
    let state = load_start_state(tx, &req, now)?;
    let plan = match decide_start(&state, req.test, req.send_limit, now)? {
        StartDecision::Replay(id) => {
            let v = load(tx, &id)?.ok_or_else(|| corrupt("idempotent verification"))?;
            return Ok(StartOutcome::Replayed(v));
        }
        StartDecision::Proceed(plan) => plan,
    };
    if let Some(stale) = &plan.expire {
        expire(tx, stale, &req.service_id, now, ctx)?;
    }
    let existing = match plan.action {
        SendAction::Create => None,
        SendAction::Resend(id) => Some(id),
    };

    let masked = mask_recipient(&req.to);
    let (id, created) = match existing {
        Some(id) => {
            tx.prepare_cached(
                "UPDATE verifications SET channel = ?, entity = COALESCE(entity, ?), updated_at = ?, \
                 message_options = COALESCE(?, message_options) WHERE id = ?",
            )?
            .execute(params![
                req.channel.as_str(),
                req.entity,
                ms(now),
                message_options_json(&req),
                id,
            ])?;
            record_event(
                tx,
                EventType::Resent,
                Some(&id),
                Some(&req.service_id),
                json!({"channel": req.channel, "to": masked}),
                now,
                ctx,
            )?;
            (id, false)
        }
        None => {
            tx.prepare_cached(
                "INSERT INTO verifications (id, service_id, to_addr, channel, status, code_hash, sealed_code, expires_at, created_at, updated_at, max_check_attempts, locale, metadata, entity, test, key_id, message_options, country) \
                 VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![
                req.new_id,
                req.service_id,
                req.to,
                req.channel.as_str(),
                req.code_hash,
                req.sealed_code,
                ms(now + req.ttl),
                ms(now),
                ms(now),
                i64::from(req.max_check_attempts),
                req.locale,
                req.metadata.as_ref().map(|m| m.to_string()),
                req.entity,
                req.test as i64,
                req.key_id,
                message_options_json(&req),
                req.region,
            ])?;
            record_event(
                tx,
                EventType::Created,
                Some(&req.new_id),
                Some(&req.service_id),
                json!({"channel": req.channel, "to": masked, "test": req.test}),
                now,
                ctx,
            )?;
            (req.new_id.clone(), true)
        }
    };

    tx.prepare_cached("INSERT INTO sends (service_id, to_addr, test, at) VALUES (?, ?, ?, ?)")?
        .execute(params![req.service_id, req.to, req.test, ms(now)])?;

    match (req.deliver, record) {
        (false, _) => {}
        (true, Some(render)) if req.test => record_test_message(tx, &id, &req, render, now, ctx)?,
        (true, _) => {
            enqueue(
                tx,
                &id,
                req.channel,
                &req.fallback,
                &req.providers,
                req.test,
                now,
            )?;
        }
    }

    if let Some(idem) = &req.idempotency {
        tx.prepare_cached(
            "INSERT INTO idempotency (key_id, idem_key, request_hash, verification_id, created_at) VALUES (?, ?, ?, ?, ?)",
        )?
        .execute(params![idem.key_id, idem.key, idem.request_hash, id, ms(now)])?;
    }

    let v = load(tx, &id)?.ok_or_else(|| corrupt("new verification"))?;
    Ok(if created {
        StartOutcome::Created(v)
    } else {
        StartOutcome::Resent(v)
    })
}

/// What the rules of a start ([`decide_start`]) decide on, read inside the transaction:
/// the idempotency record, the recipient's pending verification, its subjects' locks and
/// its recent sends.
fn load_start_state(
    tx: &Connection,
    req: &StartRequest,
    now: DateTime<Utc>,
) -> SqlResult<StartState> {
    let mut state = StartState::default();
    if let Some(idem) = &req.idempotency {
        let prior: Option<(Vec<u8>, String, bool)> = tx
            .prepare_cached(
                "SELECT i.request_hash, i.verification_id, v.test FROM idempotency i \
                 JOIN verifications v ON v.id = i.verification_id WHERE i.key_id = ? AND i.idem_key = ?",
            )?
            .query_row(params![idem.key_id, idem.key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        state.prior = prior.map(|(hash, verification_id, test)| PriorRequest {
            same_request: hash == idem.request_hash,
            test,
            verification_id,
        });
        if state.prior.is_some() {
            return Ok(state);
        }
    }
    state.pending = tx
        .prepare_cached(
            "SELECT id, entity, expires_at FROM verifications WHERE service_id = ? AND to_addr = ? AND test = ? AND status = 'pending'",
        )?
        .query_row(params![req.service_id, req.to, req.test], |r| {
            Ok(PendingVerification {
                id: r.get(0)?,
                entity: r.get(1)?,
                expires_at: time(r.get(2)?),
            })
        })
        .optional()?;
    let subjects = lock_subjects(&req.to, req.entity.as_deref(), state.pending.as_ref());
    state.locked_until = lockout::locked_until(tx, &req.service_id, &subjects, now)?;
    let (count, oldest): (i64, Option<i64>) = tx
        .prepare_cached(
            "SELECT COUNT(*), MIN(at) FROM sends WHERE service_id = ? AND to_addr = ? AND test = ? AND at > ?",
        )?
        .query_row(
            params![req.service_id, req.to, req.test, ms(req.send_limit.window_start(now))],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
    state.recent_sends = RecentSends {
        count: u32::try_from(count).unwrap_or(u32::MAX),
        oldest: oldest.map(time),
    };
    Ok(state)
}

/// The work of [`VerificationStore::check`] inside the caller's transaction: find the
/// verification, refuse a locked subject, decide, compare-and-set the attempt, count the
/// failure or clear it, and the events.
fn check_in(
    tx: &Connection,
    target: &CheckTarget,
    policy: &LockoutPolicy,
    matcher: CodeMatcher<'_>,
    now: DateTime<Utc>,
    ctx: &WriteContext,
) -> SqlResult<CheckOutcome> {
    let id = match target {
        CheckTarget::Id(id) => id.clone(),
        CheckTarget::To {
            service_id,
            to,
            test,
        } => {
            let latest: Option<String> = tx
                .prepare_cached(
                    "SELECT id FROM verifications WHERE service_id = ? AND to_addr = ? AND test = ? ORDER BY created_at DESC, id DESC LIMIT 1",
                )?
                .query_row(params![service_id, to, test], |r| r.get(0))
                .optional()?;
            match latest {
                Some(id) => id,
                None => return Ok(CheckOutcome::NotFound),
            }
        }
    };
    let Some(mut v) = load(tx, &id)? else {
        return Ok(CheckOutcome::NotFound);
    };
    // The lock refuses only checks that would compare a code: a verification that is
    // already over keeps answering with its own state.
    let subjects = subjects_of(&v);
    if v.open_for_checks(now) {
        lockout::ensure_unlocked(tx, &v.service_id, &subjects, now)?;
    }
    let decision = decide_check(&v, matcher(&v), now);
    let effects = decision.effects(&v);
    if let Some(status) = effects.attempt {
        // Compare-and-set on the state that was decided on: status and attempt count.
        if !count_attempt(tx, &id, v.check_attempts, status, now)? {
            return Err(StoreError::Raced("verification changed during check".into()).into());
        }
        // What a fresh read now returns (the row is not read again).
        v.status = status;
        v.check_attempts += 1;
        v.updated_at = time(ms(now));
    } else if effects.expire {
        if !end(tx, &id, Status::Expired, now)? {
            return Ok(CheckOutcome::Decided {
                decision,
                verification: Box::new(v),
            });
        }
        v.status = Status::Expired;
        v.updated_at = time(ms(now));
    }
    match effects.lockout {
        LockoutEffect::Keep => {}
        LockoutEffect::Clear => lockout::clear(tx, &v.service_id, &subjects)?,
        LockoutEffect::CountFailure => {
            lockout::record_failures(tx, &v.service_id, &subjects, policy, now, ctx)?
        }
    }
    let data = effects.event_data(v.check_attempts);
    for &kind in effects.events {
        record_event(
            tx,
            kind,
            Some(&id),
            Some(&v.service_id),
            data.clone(),
            now,
            ctx,
        )?;
    }
    Ok(CheckOutcome::Decided {
        decision,
        verification: Box::new(v),
    })
}

impl SqliteStore {
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
        self.write(move |tx| {
            reqs.into_iter()
                .map(|req| start_in(tx, req, None, now, &ctx))
                .collect()
        })
        .await
    }
}

#[async_trait]
impl VerificationStore for SqliteStore {
    async fn start(
        &self,
        req: StartRequest,
        record: Option<TestRecorder<'_>>,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<StartOutcome> {
        self.write(move |tx| start_in(tx, req, record, now, ctx))
            .await
    }

    async fn get_verification(&self, id: &str) -> StoreResult<Option<Verification>> {
        self.read_tx(|tx| load(tx, id)).await
    }

    async fn check(
        &self,
        target: CheckTarget,
        lockout: &LockoutPolicy,
        matcher: CodeMatcher<'_>,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<CheckOutcome> {
        self.write(|tx| check_in(tx, &target, lockout, matcher, now, ctx))
            .await
    }

    async fn cancel(
        &self,
        id: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<Option<Verification>> {
        self.write(|tx| {
            let Some(v) = load(tx, id)? else {
                return Ok(None);
            };
            if v.status_at(now) == Status::Pending && end(tx, id, Status::Canceled, now)? {
                record_event(
                    tx,
                    EventType::Canceled,
                    Some(id),
                    Some(&v.service_id),
                    json!({}),
                    now,
                    ctx,
                )?;
            }
            load(tx, id)
        })
        .await
    }

    async fn approve(
        &self,
        id: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<Option<Verification>> {
        self.write(|tx| {
            let Some(v) = load(tx, id)? else {
                return Ok(None);
            };
            if v.status_at(now) == Status::Pending && end(tx, id, Status::Approved, now)? {
                record_event(
                    tx,
                    EventType::Approved,
                    Some(id),
                    Some(&v.service_id),
                    json!({"out_of_band": true, "check_attempts": v.check_attempts}),
                    now,
                    ctx,
                )?;
            } else if v.status == Status::Pending && now >= v.expires_at {
                expire(tx, id, &v.service_id, now, ctx)?;
            }
            load(tx, id)
        })
        .await
    }

    async fn latest_verification(
        &self,
        service_id: &str,
        to: &str,
        test: bool,
    ) -> StoreResult<Option<Verification>> {
        self.read_tx(|tx| {
            let id: Option<String> = tx
                .prepare_cached(
                    "SELECT id FROM verifications WHERE service_id = ? AND to_addr = ? AND test = ? ORDER BY created_at DESC, id DESC LIMIT 1",
                )?
                .query_row(params![service_id, to, test], |r| r.get(0))
                .optional()?;
            match id {
                Some(id) => load(tx, &id),
                None => Ok(None),
            }
        })
        .await
    }

    async fn list_deliveries(&self, f: &DeliveryFilter) -> StoreResult<Vec<DeliveryRecord>> {
        let mut q = Query::new(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN verifications v ON v.id = d.verification_id WHERE 1 = 1"
        ));
        if let Some(s) = &f.service_id {
            q.push(" AND v.service_id = ").bind(s.clone());
        }
        if let Some(v) = &f.verification_id {
            q.push(" AND d.verification_id = ").bind(v.clone());
        }
        if let Some(c) = f.channel {
            q.push(" AND d.channel = ").bind(c.as_str().to_owned());
        }
        if let Some(to) = &f.to {
            q.push(" AND v.to_addr = ").bind(to.clone());
        }
        if let Some(t) = f.created_after {
            q.push(" AND d.created_at >= ").bind(ms(t));
        }
        if let Some(t) = f.created_before {
            q.push(" AND d.created_at <= ").bind(ms(t));
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
            .bind(i64::from(f.limit))
            .push(" OFFSET ")
            .bind(i64::try_from(f.offset).unwrap_or(i64::MAX));
        self.read(|c| q.fetch(c, row_to_delivery_record)).await
    }

    async fn get_delivery(&self, id: &str) -> StoreResult<Option<DeliveryRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN verifications v ON v.id = d.verification_id WHERE d.id = ?"
            ))?;
            Ok(collect(&mut stmt, [id], row_to_delivery_record)?.pop())
        })
        .await
    }

    async fn expire_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        ctx: &WriteContext,
    ) -> StoreResult<u64> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT id, service_id FROM verifications WHERE status = 'pending' AND expires_at <= ? LIMIT ?",
            )?;
            let due: Vec<(String, String)> =
                collect(&mut stmt, params![ms(now), i64::from(limit)], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            for (id, service_id) in &due {
                expire(tx, id, service_id, now, ctx)?;
            }
            lockout::sweep(tx, now)?;
            // The send log only matters within the longest window (24 h).
            let longest = chrono::Duration::seconds(i64::from(otpd_core::service::MAX_TTL_SECONDS));
            tx.prepare_cached("DELETE FROM sends WHERE at < ?")?
                .execute([ms(now - longest)])?;
            Ok(due.len() as u64)
        })
        .await
    }

    async fn recorded_messages(&self, verification_id: &str) -> StoreResult<Vec<RecordedMessage>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, delivery_id, channel, to_addr, sealed_body, created_at FROM messages WHERE verification_id = ? ORDER BY created_at, id",
            )?;
            collect(&mut stmt, [verification_id], |r| {
                let channel: String = r.get("channel")?;
                Ok(RecordedMessage {
                    id: r.get("id")?,
                    delivery_id: r.get("delivery_id")?,
                    channel: parse_channel(&channel)?,
                    to: r.get("to_addr")?,
                    sealed_body: r.get("sealed_body")?,
                    created_at: time(r.get("created_at")?),
                })
            })
        })
        .await
    }
}
