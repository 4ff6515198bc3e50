//! Verifications in Redis: start (one script with the journal entry), check (read, match,
//! compare-and-set), cancel and approve; reads merge the hot state with the durable
//! record's deliveries, and fall back to the durable store once the hot entry is gone.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::ids::Kind;
use otpd_core::lockout::{LockoutPolicy, Subject, retry_after_secs};
use otpd_core::start::{
    PendingVerification, PriorRequest, RecentSends, SendAction, StartDecision, StartState,
    decide_start,
};
use otpd_core::store::{
    CheckOutcome, CheckTarget, CodeMatcher, DeliveryFilter, DeliveryRecord, JournalSink,
    RecordedMessage, StartOutcome, StartRequest, Store, StoreError, StoreResult, TestRecorder,
    VerificationRecord, VerificationStore,
};
use otpd_core::verification::{
    Delivery, DeliveryStatus, LockoutEffect, Status, Verification, decide_check,
};
use sha2::{Digest, Sha256};

use super::journal::StartPayload;
use super::scripts::{APPLY_CHECK, END, READ, START_APPLY, START_READ, SYNC};
use super::{RedisHot, bulk_list, corrupt, id_text, index_digest, index_field, nonce, rerr, text};

/// How long a verification's hot state outlives its expiry: checks just after it still
/// find it (and answer `expired`); later reads go to the durable history.
const GRACE_MS: i64 = 10 * 60 * 1000;
/// How long an idempotency record is kept (a client retries within minutes).
const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;
/// Lost compare-and-set races a check re-reads after before it gives up (each lost race
/// means another check changed the verification, so few are ever needed).
const MAX_RACES: usize = 16;

/// The fields of a new verification (the `START_APPLY` script packs them into one string).
fn fields_of(req: &StartRequest, now: DateTime<Utc>) -> Vec<(&'static str, Vec<u8>)> {
    let mut f = vec![
        ("s", req.service_id.as_bytes().to_vec()),
        ("t", req.to.as_bytes().to_vec()),
        ("c", req.channel.as_str().as_bytes().to_vec()),
        ("st", b"pending".to_vec()),
        ("h", req.code_hash.clone()),
        (
            "e",
            (now + req.ttl).timestamp_millis().to_string().into_bytes(),
        ),
        ("ca", now.timestamp_millis().to_string().into_bytes()),
        ("u", now.timestamp_millis().to_string().into_bytes()),
        ("m", req.max_check_attempts.to_string().into_bytes()),
        ("a", b"0".to_vec()),
        ("l", req.locale.as_bytes().to_vec()),
    ];
    if let Some(m) = &req.metadata {
        f.push(("md", m.to_string().into_bytes()));
    }
    if let Some(e) = &req.entity {
        f.push(("en", e.as_bytes().to_vec()));
    }
    // Test-key verifications live in the durable store only (`start`).
    f
}

/// The keys and index names of one start.
struct StartKeys {
    index: String,
    lock_to: String,
    lock_users: String,
    idempotency: String,
    field: String,
    digest: String,
}

/// What `START_READ` found: the state a start is decided on, and what `START_APPLY`
/// compares before it applies the decision.
struct StartRead {
    state: StartState,
    /// The latest verification's raw id in the index (empty: none).
    latest: Vec<u8>,
    /// Its stored value as read (empty: none): `START_APPLY` applies only on this.
    latest_value: Vec<u8>,
    /// The recipient's sends inside the window (ms), oldest first.
    sends_in_window: Vec<i64>,
}

fn time(ms: &[u8]) -> StoreResult<DateTime<Utc>> {
    text(ms)
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(|| corrupt("time"))
}

/// A verification from its state's `field, value, …` list (as the scripts return it) (deliveries: only the one a send
/// queued that the durable outbox may not have yet).
fn parse(id: &str, kv: &[Vec<u8>], service_name: String) -> StoreResult<Verification> {
    let mut get = std::collections::HashMap::new();
    for pair in kv.chunks(2) {
        if let [k, v] = pair {
            get.insert(text(k), v.as_slice());
        }
    }
    let field = |k: &str| get.get(k).copied().ok_or_else(|| corrupt(k));
    let num = |k: &str| -> StoreResult<u32> { text(field(k)?).parse().map_err(|_| corrupt(k)) };
    Ok(Verification {
        id: id.to_string(),
        service_id: text(field("s")?).to_string(),
        service_name,
        to: text(field("t")?).to_string(),
        channel: text(field("c")?).parse().map_err(|_| corrupt("channel"))?,
        status: Status::parse(text(field("st")?)).ok_or_else(|| corrupt("status"))?,
        code_hash: field("h")?.to_vec(),
        expires_at: time(field("e")?)?,
        created_at: time(field("ca")?)?,
        updated_at: time(field("u")?)?,
        max_check_attempts: num("m")?,
        check_attempts: num("a")?,
        locale: text(field("l")?).to_string(),
        metadata: get.get("md").and_then(|m| serde_json::from_slice(m).ok()),
        entity: get.get("en").map(|e| text(e).to_string()),
        test: get.contains_key("x"),
        deliveries: get
            .get("dl")
            .and_then(|dl| queued(text(dl)))
            .into_iter()
            .collect(),
    })
}

/// The queued delivery a send recorded in the hot state (`id channel provider ms`), shown
/// until the durable outbox has it.
fn queued(dl: &str) -> Option<Delivery> {
    let mut parts = dl.splitn(4, ' ');
    let id = parts.next()?.to_string();
    let channel = parts.next()?.parse().ok()?;
    let provider = parts.next()?.to_string();
    let at = parts
        .next()?
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)?;
    Some(Delivery {
        id,
        channel,
        provider,
        status: DeliveryStatus::Queued,
        attempts: 0,
        error: None,
        created_at: at,
        updated_at: at,
    })
}

/// The hot state with what only the durable record has: its deliveries (plus the one just
/// queued, until the durable outbox has it), and an end the durable store wrote while the
/// hot state still says pending (`failed` by the delivery worker, `expired` by the
/// expiry sweep).
fn merge(mut hot: Verification, durable: Option<Verification>) -> Verification {
    if let Some(d) = durable {
        let pending: Vec<Delivery> = std::mem::take(&mut hot.deliveries);
        hot.deliveries = d.deliveries;
        for q in pending {
            if !hot.deliveries.iter().any(|d| d.id == q.id) {
                hot.deliveries.push(q);
            }
        }
        if hot.status == Status::Pending && matches!(d.status, Status::Failed | Status::Expired) {
            hot.status = d.status;
            hot.updated_at = d.updated_at;
        }
    }
    hot
}

/// The name of an idempotency record: a digest of the caller's key and idempotency key.
fn idempotency_digest(key_id: &str, key: &str) -> String {
    hex::encode(
        Sha256::new()
            .chain_update(key_id.as_bytes())
            .chain_update(b"\n")
            .chain_update(key.as_bytes())
            .finalize(),
    )
}

/// What applying a check decision came to.
enum Applied {
    /// Decided and applied (or refused with the state's own answer).
    Done(CheckOutcome),
    /// The verification changed since it was read: read it again and decide again.
    Again,
}

impl<D: Store + JournalSink + ?Sized + 'static> RedisHot<D> {
    /// The hot state of a verification, if Redis still has it (one round trip).
    async fn hot(&self, id: &str) -> StoreResult<Option<Verification>> {
        let mut conn = self.conn();
        let reply = bulk_list(
            READ.key(self.vkey(id))
                .arg(&self.inner.hot)
                .arg("id")
                .arg(id)
                .invoke_async(&mut conn)
                .await
                .map_err(rerr)?,
        )?;
        let [_, _, _, kv @ ..] = reply.as_slice() else {
            return Ok(None);
        };
        let svc = kv
            .chunks(2)
            .find(|p| p.first().is_some_and(|k| k == b"s"))
            .and_then(|p| p.get(1))
            .map(|s| text(s).to_string())
            .unwrap_or_default();
        let name = self.service_info(&svc).await?.name;
        parse(id, kv, name).map(Some)
    }

    /// Decides a check on `v` (its subjects' latest lock end `lock`, when known; its
    /// service's lockout `policy`) and applies the decision with the compare-and-set
    /// script: [`Applied::Again`] when the verification changed (or left Redis) since `v`
    /// was read.
    async fn decide_and_apply(
        &self,
        mut v: Verification,
        lock: Option<DateTime<Utc>>,
        policy: &LockoutPolicy,
        matcher: CodeMatcher<'_>,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<Applied> {
        let id = v.id.clone();
        let lock = lock.filter(|until| *until > now);
        if v.open_for_checks(now)
            && let Some(until) = lock
        {
            return Err(StoreError::Locked {
                retry_after_secs: retry_after_secs(until, now),
            });
        }
        let decision = decide_check(&v, matcher(&v), now);
        let effects = decision.effects(&v);
        let (Some(op), true) = (decision.journal_name(), effects.changes()) else {
            return Ok(Applied::Done(CheckOutcome::Decided {
                decision,
                verification: Box::new(v),
            }));
        };
        let (change, status) = match effects.attempt {
            Some(status) => ("attempt", status),
            None => ("expire", Status::Expired),
        };
        let lockout = match effects.lockout {
            LockoutEffect::Keep => "keep",
            LockoutEffect::Clear => "clear",
            LockoutEffect::CountFailure => "count",
        };
        let reply = bulk_list(
            APPLY_CHECK
                .key(self.vkey(&id))
                .key(self.journal_key())
                .arg(&self.inner.hot)
                .arg(v.check_attempts)
                .arg(op)
                .arg(now.timestamp_millis())
                .arg(nonce())
                .arg(policy.max_failures)
                .arg(u64::from(policy.window_seconds) * 1000)
                .arg(u64::from(policy.duration_seconds) * 1000)
                .arg(actor_json(ctx))
                .arg(&id)
                .arg(change)
                .arg(status.as_str())
                .arg(lockout)
                .invoke_async(&mut self.conn())
                .await
                .map_err(rerr)?,
        )?;
        match reply.first().map(|k| text(k)) {
            Some("ok") => {
                self.inner.wake.notify_one();
                ctx.note_event();
                let status = reply.get(1).map(|s| text(s)).unwrap_or("");
                v.status = Status::parse(status).ok_or_else(|| corrupt("status"))?;
                v.check_attempts = reply
                    .get(2)
                    .and_then(|a| text(a).parse().ok())
                    .ok_or_else(|| corrupt("attempts"))?;
                // Redis keeps milliseconds: the reply is what a fresh read returns.
                v.updated_at =
                    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
                Ok(Applied::Done(CheckOutcome::Decided {
                    decision,
                    verification: Box::new(v),
                }))
            }
            Some("locked") => {
                let until = time(reply.get(1).map(Vec::as_slice).unwrap_or(b""))?;
                Err(StoreError::Locked {
                    retry_after_secs: retry_after_secs(until, now),
                })
            }
            // Another check changed it (or it just left Redis): decide again.
            Some("changed") | Some("gone") => Ok(Applied::Again),
            _ => Err(corrupt("check reply")),
        }
    }

    /// The hot state merged with the durable record; the durable record alone when the
    /// hot state is gone.
    async fn merged(&self, id: &str) -> StoreResult<Option<Verification>> {
        let (hot, durable) = tokio::join!(self.hot(id), self.inner.durable.get_verification(id));
        Ok(match hot? {
            Some(h) => Some(merge(h, durable?)),
            None => durable?,
        })
    }

    /// Reads what a start is decided on (`START_READ`): the state for
    /// [`decide_start`], and what `START_APPLY` compares before it applies.
    async fn read_start(
        &self,
        req: &StartRequest,
        keys: &StartKeys,
        now: DateTime<Utc>,
    ) -> StoreResult<StartRead> {
        let mut conn = self.conn();
        let reply = bulk_list(
            START_READ
                .key(&keys.index)
                .key(&keys.lock_to)
                .key(&keys.idempotency)
                .arg(&self.inner.hot)
                .arg(&keys.field)
                .arg(&keys.digest)
                .arg(&keys.lock_users)
                .arg(req.entity.as_deref().unwrap_or(""))
                .invoke_async(&mut conn)
                .await
                .map_err(rerr)?,
        )?;
        let [
            idem_digest,
            idem_id,
            latest,
            lock_to,
            lock_user,
            lock_latest_user,
            status,
            expires,
            entity,
            send_log,
            stored,
        ] = reply.as_slice()
        else {
            return Err(corrupt("start read reply"));
        };
        let mut state = StartState::default();
        if let Some(idem) = req.idempotency.as_ref().filter(|_| !idem_digest.is_empty()) {
            state.prior = Some(PriorRequest {
                same_request: text(idem_digest) == hex::encode(&idem.request_hash),
                // Only live sends reach Redis (test keys' go to the durable store).
                test: false,
                verification_id: text(idem_id).to_string(),
            });
        }
        let raw_latest = latest.clone();
        let latest_id = if raw_latest.is_empty() {
            String::new()
        } else {
            id_text(&raw_latest)
        };
        if text(status) == Status::Pending.as_str() {
            state.pending = Some(PendingVerification {
                id: latest_id,
                entity: (!entity.is_empty()).then(|| text(entity).to_string()),
                expires_at: time(expires)?,
            });
        }
        // The subjects of `lock_subjects`: the recipient, the named user, the pending one's.
        let mut locks = vec![lock_to.as_slice()];
        if req.entity.is_some() {
            locks.push(lock_user.as_slice());
        }
        if state.pending.as_ref().is_some_and(|p| p.entity.is_some()) {
            locks.push(lock_latest_user.as_slice());
        }
        for lock in locks.into_iter().filter(|l| !l.is_empty()) {
            let until = time(lock)?;
            if until > now {
                state.locked_until = state.locked_until.max(Some(until));
            }
        }
        let window_start = req.send_limit.window_start(now).timestamp_millis();
        let mut sends_in_window = Vec::new();
        for at in text(send_log).split(',').filter(|s| !s.is_empty()) {
            let at: i64 = at.parse().map_err(|_| corrupt("send log"))?;
            if at > window_start {
                sends_in_window.push(at);
            }
        }
        state.recent_sends = RecentSends {
            count: u32::try_from(sends_in_window.len()).unwrap_or(u32::MAX),
            oldest: sends_in_window
                .iter()
                .min()
                .and_then(|ms| DateTime::from_timestamp_millis(*ms)),
        };
        Ok(StartRead {
            state,
            latest: raw_latest,
            latest_value: stored.clone(),
            sends_in_window,
        })
    }
}

/// The actor of `ctx` as the scripts write it into the journal.
fn actor_json(ctx: &WriteContext) -> String {
    serde_json::to_string(&ctx.actor()).unwrap_or_else(|_| "{}".into())
}

#[async_trait]
impl<D: Store + JournalSink + ?Sized + 'static> VerificationStore for RedisHot<D> {
    async fn start(
        &self,
        req: StartRequest,
        record: Option<TestRecorder<'_>>,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<StartOutcome> {
        // Test keys: their messages are recorded in the durable store's own transaction.
        if req.test {
            return self.inner.durable.start(req, record, now, ctx).await;
        }
        let service = self.service_info(&req.service_id).await?;
        let delivery_id = req.deliver.then(|| Kind::Delivery.new_id());
        let payload = StartPayload {
            record: VerificationRecord {
                id: req.new_id.clone(),
                service_id: req.service_id.clone(),
                to: req.to.clone(),
                channel: req.channel,
                code_hash: req.code_hash.clone(),
                sealed_code: req.sealed_code.clone(),
                expires_at: now + req.ttl,
                created_at: now,
                max_check_attempts: req.max_check_attempts,
                locale: req.locale.clone(),
                metadata: req.metadata.clone(),
                entity: req.entity.clone(),
                region: req.region.clone(),
                test: req.test,
                key_id: req.key_id.clone(),
                message_options: req.message_options.clone(),
            },
            delivery: delivery_id.clone(),
            fallback: req.fallback.clone(),
            providers: req.providers.clone(),
            actor: ctx.actor(),
        };
        let payload = serde_json::to_string(&payload).map_err(|_| corrupt("payload"))?;
        let keys = StartKeys {
            index: self.index_key(&req.service_id),
            lock_to: self.lock_key(&req.service_id, &Subject::To(req.to.clone()).key()),
            lock_users: self.lock_key(&req.service_id, &Subject::Entity(String::new()).key()),
            idempotency: match &req.idempotency {
                Some(i) => self.idem_key(&idempotency_digest(&i.key_id, &i.key)),
                None => self.idem_key("-"),
            },
            field: index_field(&req.to),
            digest: index_digest(&req.to),
        };
        let mut raced = 0;
        let reply = loop {
            let read = self.read_start(&req, &keys, now).await?;
            let plan = match decide_start(&read.state, req.test, req.send_limit, now)? {
                StartDecision::Replay(id) => {
                    let v = self
                        .merged(&id)
                        .await?
                        .ok_or_else(|| corrupt("idempotent verification"))?;
                    return Ok(StartOutcome::Replayed(v));
                }
                StartDecision::Proceed(plan) => plan,
            };
            let now_ms = now.timestamp_millis();
            let mut sends = read.sends_in_window;
            sends.push(now_ms);
            let sends = sends
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let mut inv = START_APPLY.prepare_invoke();
            inv.key(&keys.index)
                .key(&keys.lock_to)
                .key(self.vkey(&req.new_id))
                .key(self.journal_key())
                .key(&keys.idempotency)
                .arg(&self.inner.hot)
                .arg(now_ms)
                .arg(&read.latest)
                .arg(&read.latest_value)
                .arg(match plan.action {
                    SendAction::Create => "create",
                    SendAction::Resend(_) => "resend",
                })
                .arg(if plan.expire.is_some() { "1" } else { "0" })
                .arg(sends)
                .arg(req.send_limit.window.num_milliseconds().max(1))
                .arg((now + req.ttl).timestamp_millis())
                .arg(GRACE_MS)
                .arg(&payload)
                .arg(match &req.idempotency {
                    Some(i) => hex::encode(&i.request_hash),
                    None => String::new(),
                })
                .arg(IDEMPOTENCY_TTL_MS)
                .arg(req.channel.as_str())
                .arg(req.entity.as_deref().unwrap_or(""))
                .arg(&req.new_id)
                .arg(match &delivery_id {
                    Some(id) => format!(
                        "{id} {} {} {now_ms}",
                        req.channel.as_str(),
                        req.providers.first().map(String::as_str).unwrap_or("")
                    ),
                    None => String::new(),
                })
                .arg(&keys.field)
                .arg(&keys.digest)
                .arg(&keys.lock_users);
            for (k, v) in fields_of(&req, now) {
                inv.arg(k).arg(v);
            }
            let mut conn = self.conn();
            let reply = bulk_list(inv.invoke_async(&mut conn).await.map_err(rerr)?)?;
            if reply.first().map(|k| text(k)) != Some("raced") {
                break reply;
            }
            // Another send, check or lock changed what was decided on: decide again.
            raced += 1;
            if raced >= MAX_RACES {
                return Err(StoreError::Raced(
                    "the recipient's verification kept changing during a send".into(),
                ));
            }
        };
        let kind = reply.first().map(|k| text(k)).unwrap_or("");
        let arg = |i: usize| reply.get(i).map(|x| text(x)).unwrap_or("");
        if !matches!(kind, "created" | "resent") {
            return Err(corrupt("start reply"));
        }
        self.inner.wake.notify_one();
        ctx.note_event();
        let id = arg(1).to_string();
        let v = parse(&id, reply.get(2..).unwrap_or(&[]), service.name)?;
        if kind == "created" {
            Ok(StartOutcome::Created(v))
        } else {
            // The earlier sends' deliveries are in the durable record once the journal has
            // been applied (a resend lists every delivery).
            self.settle().await?;
            let durable = self.inner.durable.get_verification(&id).await?;
            Ok(StartOutcome::Resent(merge(v, durable)))
        }
    }

    async fn get_verification(&self, id: &str) -> StoreResult<Option<Verification>> {
        self.merged(id).await
    }

    async fn check(
        &self,
        target: CheckTarget,
        policy: &LockoutPolicy,
        matcher: CodeMatcher<'_>,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<CheckOutcome> {
        let (read_key, mode, name, digest) = match &target {
            CheckTarget::Id(id) => (self.vkey(id), "id", id.clone(), String::new()),
            // Test keys' verifications live in the durable store only (see `start`).
            CheckTarget::To { test: true, .. } => {
                return self
                    .inner
                    .durable
                    .check(target, policy, matcher, now, ctx)
                    .await;
            }
            CheckTarget::To { service_id, to, .. } => (
                self.index_key(service_id).into_bytes(),
                "to",
                index_field(to),
                index_digest(to),
            ),
        };
        for _ in 0..MAX_RACES {
            let mut conn = self.conn();
            let reply = bulk_list(
                READ.key(&read_key)
                    .arg(&self.inner.hot)
                    .arg(mode)
                    .arg(&name)
                    .arg(&digest)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(rerr)?,
            )?;
            let [id, lock_to, lock_entity, kv @ ..] = reply.as_slice() else {
                // Not in Redis: a test-key verification, or one whose hot state is gone.
                return self
                    .inner
                    .durable
                    .check(target, policy, matcher, now, ctx)
                    .await;
            };
            let id = text(id).to_string();
            let service_id = kv
                .chunks(2)
                .find(|p| p.first().is_some_and(|k| k == b"s"))
                .and_then(|p| p.get(1))
                .map(|s| text(s).to_string())
                .unwrap_or_default();
            let (service, durable) = tokio::join!(
                self.service_info(&service_id),
                self.inner.durable.get_verification(&id)
            );
            let service = service?;
            let v = merge(parse(&id, kv, service.name)?, durable?);
            let lock = [lock_to, lock_entity]
                .into_iter()
                .filter_map(|l| text(l).parse::<i64>().ok())
                .filter_map(DateTime::from_timestamp_millis)
                .max();
            match self
                .decide_and_apply(v, lock, policy, matcher, now, ctx)
                .await?
            {
                Applied::Done(outcome) => return Ok(outcome),
                Applied::Again => continue,
            }
        }
        Err(StoreError::Raced(
            "verification changed during check".into(),
        ))
    }

    async fn check_seen(
        &self,
        seen: &Verification,
        policy: &LockoutPolicy,
        matcher: CodeMatcher<'_>,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<CheckOutcome> {
        // Decided on the state the caller just read; the compare-and-set script refuses it
        // if anything changed meanwhile (and checks the locks), and only then is the
        // verification read again.
        match self
            .decide_and_apply(seen.clone(), None, policy, matcher, now, ctx)
            .await?
        {
            Applied::Done(outcome) => Ok(outcome),
            Applied::Again => {
                self.check(CheckTarget::Id(seen.id.clone()), policy, matcher, now, ctx)
                    .await
            }
        }
    }

    async fn cancel(
        &self,
        id: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<Option<Verification>> {
        self.end(id, Status::Canceled, now, ctx).await
    }

    async fn approve(
        &self,
        id: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<Option<Verification>> {
        self.end(id, Status::Approved, now, ctx).await
    }

    async fn latest_verification(
        &self,
        service_id: &str,
        to: &str,
        test: bool,
    ) -> StoreResult<Option<Verification>> {
        if test {
            // Test keys' verifications live in the durable store only (see `start`).
            return self
                .inner
                .durable
                .latest_verification(service_id, to, true)
                .await;
        }
        let mut conn = self.conn();
        let reply = bulk_list(
            READ.key(self.index_key(service_id))
                .arg(&self.inner.hot)
                .arg("to")
                .arg(index_field(to))
                .arg(index_digest(to))
                .invoke_async(&mut conn)
                .await
                .map_err(rerr)?,
        )?;
        if let Some(id) = reply.first()
            && let Some(v) = self.merged(text(id)).await?
        {
            return Ok(Some(v));
        }
        self.inner
            .durable
            .latest_verification(service_id, to, false)
            .await
    }

    async fn list_deliveries(&self, filter: &DeliveryFilter) -> StoreResult<Vec<DeliveryRecord>> {
        self.settle().await?;
        self.inner.durable.list_deliveries(filter).await
    }

    async fn get_delivery(&self, id: &str) -> StoreResult<Option<DeliveryRecord>> {
        self.settle().await?;
        self.inner.durable.get_delivery(id).await
    }

    async fn expire_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        ctx: &WriteContext,
    ) -> StoreResult<u64> {
        // Redis forgets by TTL; the durable sweep ends the records and erases sealed codes
        // (after the read barrier: the records of earlier sends are there to end).
        self.barrier().await;
        self.inner.durable.expire_due(now, limit, ctx).await
    }

    async fn recorded_messages(&self, verification_id: &str) -> StoreResult<Vec<RecordedMessage>> {
        self.inner.durable.recorded_messages(verification_id).await
    }
}

impl<D: Store + JournalSink + ?Sized + 'static> RedisHot<D> {
    /// After the delivery worker changed a verification's durable record: its channel and
    /// a `failed` status into the hot state ([`SYNC`]).
    pub(super) async fn sync_from_durable(&self, id: &str) -> StoreResult<()> {
        let Some(d) = self.inner.durable.get_verification(id).await? else {
            return Ok(());
        };
        if d.status != Status::Pending && d.status != Status::Failed {
            return Ok(());
        }
        let mut conn = self.conn();
        SYNC.key(self.vkey(id))
            .arg(d.status.as_str())
            .arg(d.channel.as_str())
            .invoke_async::<i64>(&mut conn)
            .await
            .map_err(rerr)?;
        Ok(())
    }

    /// Cancel or out-of-band approval: one script; the durable store's own when Redis no
    /// longer has the verification.
    async fn end(
        &self,
        id: &str,
        status: Status,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<Option<Verification>> {
        let mut conn = self.conn();
        let reply = bulk_list(
            END.key(self.vkey(id))
                .key(self.journal_key())
                .arg(now.timestamp_millis())
                .arg(status.as_str())
                .arg(actor_json(ctx))
                .arg(id)
                .invoke_async(&mut conn)
                .await
                .map_err(rerr)?,
        )?;
        let [changed, reply @ ..] = reply.as_slice() else {
            return Err(corrupt("end reply"));
        };
        if reply.is_empty() {
            return match status {
                Status::Approved => self.inner.durable.approve(id, now, ctx).await,
                _ => self.inner.durable.cancel(id, now, ctx).await,
            };
        }
        if changed == b"1" {
            // Its event is in the journal: the request wrote one (no `api.request` needed).
            ctx.note_event();
            self.inner.wake.notify_one();
        }
        let svc = reply
            .chunks(2)
            .find(|p| p.first().is_some_and(|k| k == b"s"))
            .and_then(|p| p.get(1))
            .map(|s| text(s).to_string())
            .unwrap_or_default();
        let name = self.service_info(&svc).await?.name;
        let hot = parse(id, reply, name)?;
        let durable = self.inner.durable.get_verification(id).await?;
        Ok(Some(merge(hot, durable)))
    }
}
