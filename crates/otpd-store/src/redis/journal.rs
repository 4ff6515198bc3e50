//! The journal: a Redis stream the hot-path scripts append to in the same atomic step as
//! their state change, and the [`Spooler`] that applies its entries to the durable store
//! (delivery jobs into the outbox, events, verification history) and then deletes them.
//!
//! Each node runs one spooler, a consumer of the group `spool`. An entry read by a node
//! that dies before acknowledging it stays pending; once it has been idle longer than the
//! lease, any spooler takes it over (`XAUTOCLAIM`). Applying is idempotent (ids are fixed
//! in the entry, event ids derive from the entry's id), so an entry applied twice changes
//! nothing. An entry that fails to apply (e.g. a state change whose verification another
//! node is still creating) stays pending and is retried after the lease.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use otpd_core::audit::Actor;
use otpd_core::channel::Channel;
use otpd_core::event::EventType;
use otpd_core::lockout::Subject;
use otpd_core::mask::mask_recipient;
use otpd_core::store::{
    JournalDelivery, JournalEntry, JournalEvent, JournalOp, JournalSink, Store, StoreError,
    StoreResult, VerificationRecord,
};
use otpd_core::verification::{CheckDecision, Status};
use redis::Value;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::scripts::CLEAR_QUEUED;
use super::{RedisHot, corrupt, rerr};

/// The consumer group of every node's spooler.
pub(super) const GROUP: &str = "spool";
/// Entries read per round trip.
const BATCH: usize = 64;
/// How long an idle spooler waits before looking again (a local send wakes it at once).
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How long a spooler waits after Redis or the durable store failed.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// An entry still failing this long after it was written is dropped (with an error in the
/// log): every code it could deliver has expired by then (the longest lifetime is a day),
/// and a record it names may be gone for good (a deleted service).
const MAX_ENTRY_AGE_MS: i64 = 2 * 86_400_000;
/// Default lease: an entry idle this long in a consumer's pending list is taken over.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// What a send's journal entry carries besides the script's own fields.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct StartPayload {
    /// The new verification (used when the script created it).
    pub record: VerificationRecord,
    /// The delivery job's id, when a message is to be delivered.
    pub delivery: Option<String>,
    /// Fallback channels of the job.
    pub fallback: Vec<Channel>,
    /// Provider chain of the job.
    pub providers: Vec<String>,
    /// Who asked.
    pub actor: Actor,
}

/// An entry's fields.
type Fields = HashMap<String, Vec<u8>>;

fn field<'a>(f: &'a Fields, k: &str) -> &'a str {
    f.get(k)
        .and_then(|v| std::str::from_utf8(v).ok())
        .unwrap_or("")
}

/// A fixed event id for the `n`th event of journal entry `entry_id`.
fn event_id(entry_id: &str, n: usize) -> String {
    let d = Sha256::new()
        .chain_update(entry_id.as_bytes())
        .chain_update(b"/")
        .chain_update(n.to_string().as_bytes())
        .finalize();
    format!("evt_{}", &hex::encode(d)[..32])
}

/// Builds the durable changes of one journal entry.
pub(super) fn entry_ops(entry_id: &str, f: &Fields) -> StoreResult<JournalEntry> {
    let at = field(f, "at")
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(|| corrupt("journal time"))?;
    let vid = field(f, "vid").to_string();
    let mut n = 0;
    let mut ev = |kind: EventType,
                  verification: Option<&str>,
                  service: &str,
                  data: serde_json::Value,
                  actor: &Actor| {
        n += 1;
        JournalEvent {
            id: event_id(entry_id, n),
            kind,
            verification_id: verification.map(str::to_string),
            service_id: Some(service.to_string()),
            data,
            at,
            actor: actor.clone(),
        }
    };
    let mut ops = Vec::new();
    match field(f, "k") {
        kind @ ("created" | "resent") => {
            let p: StartPayload =
                serde_json::from_slice(f.get("p").map(Vec::as_slice).unwrap_or(b""))
                    .map_err(|_| corrupt("journal payload"))?;
            let svc = p.record.service_id.clone();
            let masked = mask_recipient(&p.record.to);
            let stale = field(f, "stale");
            if !stale.is_empty() {
                let e = ev(EventType::Expired, Some(stale), &svc, json!({}), &p.actor);
                ops.push(JournalOp::State {
                    id: stale.to_string(),
                    status: Status::Expired,
                    check_attempts: 0,
                    at,
                    events: vec![e],
                });
            }
            let channel = p.record.channel;
            if kind == "created" {
                let e = ev(
                    EventType::Created,
                    Some(&vid),
                    &svc,
                    json!({"channel": channel, "to": masked, "test": p.record.test}),
                    &p.actor,
                );
                ops.push(JournalOp::Create(Box::new(p.record.clone())));
                ops.push(JournalOp::Event(e));
            } else {
                let e = ev(
                    EventType::Resent,
                    Some(&vid),
                    &svc,
                    json!({"channel": channel, "to": masked}),
                    &p.actor,
                );
                ops.push(JournalOp::Resend {
                    id: vid.clone(),
                    channel,
                    entity: p.record.entity.clone(),
                    message_options: p.record.message_options.clone(),
                    at,
                });
                ops.push(JournalOp::Event(e));
            }
            if let Some(id) = p.delivery {
                ops.push(JournalOp::Enqueue(JournalDelivery {
                    id,
                    verification_id: vid.clone(),
                    channel,
                    fallback: p.fallback,
                    providers: p.providers,
                    test: p.record.test,
                    at,
                }));
            }
        }
        kind @ ("check" | "end") => {
            let actor: Actor =
                serde_json::from_slice(f.get("actor").map(Vec::as_slice).unwrap_or(b"{}"))
                    .unwrap_or_default();
            let svc = field(f, "svc").to_string();
            let status = Status::parse(field(f, "st")).ok_or_else(|| corrupt("journal status"))?;
            let attempts: u32 = field(f, "a").parse().unwrap_or(0);
            let v = Some(vid.as_str());
            let check = (kind == "check")
                .then(|| CheckDecision::effects_of_journal_name(field(f, "d")))
                .flatten();
            let events = match (check, kind, status) {
                // A check's events are the core's rule for its decision.
                (Some(effects), _, _) => {
                    let data = effects.event_data(attempts);
                    effects
                        .events
                        .iter()
                        .map(|&kind| ev(kind, v, &svc, data.clone(), &actor))
                        .collect()
                }
                (None, _, Status::Expired) => {
                    vec![ev(EventType::Expired, v, &svc, json!({}), &actor)]
                }
                (None, "end", Status::Canceled) => {
                    vec![ev(EventType::Canceled, v, &svc, json!({}), &actor)]
                }
                (None, "end", Status::Approved) => vec![ev(
                    EventType::Approved,
                    v,
                    &svc,
                    json!({"out_of_band": true, "check_attempts": attempts}),
                    &actor,
                )],
                _ => return Err(corrupt("journal decision")),
            };
            ops.push(JournalOp::State {
                id: vid.clone(),
                status,
                check_attempts: attempts,
                at,
                events,
            });
            let to = field(f, "t").to_string();
            let entity = field(f, "en").to_string();
            for (lk, subject) in [("lt", Subject::To(to)), ("le", Subject::Entity(entity))] {
                let Some((until, failures)) = field(f, lk).split_once('|') else {
                    continue;
                };
                let until = until
                    .parse::<i64>()
                    .ok()
                    .and_then(DateTime::<Utc>::from_timestamp_millis)
                    .ok_or_else(|| corrupt("journal lock"))?;
                let failures: u64 = failures.parse().unwrap_or(0);
                let e = ev(
                    EventType::Blocked,
                    None,
                    &svc,
                    json!({
                        "reason": "lockout",
                        "subject": subject.display(),
                        "failures": failures,
                        "locked_until": until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    }),
                    &actor,
                );
                ops.push(JournalOp::Event(e));
            }
        }
        _ => return Err(corrupt("journal kind")),
    }
    Ok(JournalEntry { ops })
}

/// Entries from an `XREADGROUP` or `XAUTOCLAIM` reply: `(id, fields)`.
fn parse_entries(v: &Value, out: &mut Vec<(String, Fields)>) {
    let Value::Array(items) = v else { return };
    for item in items {
        if let Value::Array(pair) = item
            && let [Value::BulkString(id), Value::Array(kv)] = pair.as_slice()
        {
            let mut f = Fields::new();
            for chunk in kv.chunks(2) {
                if let [Value::BulkString(k), Value::BulkString(v)] = chunk {
                    f.insert(String::from_utf8_lossy(k).into_owned(), v.clone());
                }
            }
            out.push((String::from_utf8_lossy(id).into_owned(), f));
        }
    }
}

/// Applies the journal to the durable store (see the module docs). One per node.
pub struct Spooler<D: ?Sized> {
    hot: RedisHot<D>,
    consumer: String,
    lease: Duration,
    group_ready: AtomicBool,
}

impl<D: Store + JournalSink + ?Sized + 'static> Spooler<D> {
    /// A spooler named `consumer` (unique per node, e.g. the worker's lease owner).
    pub fn new(hot: RedisHot<D>, consumer: impl Into<String>) -> Self {
        Spooler {
            hot,
            consumer: consumer.into(),
            lease: DEFAULT_LEASE,
            group_ready: AtomicBool::new(false),
        }
    }

    /// Sets how long an unacknowledged entry waits before another spooler takes it.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    async fn ensure_group(&self) -> StoreResult<()> {
        if self.group_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut conn = self.hot.conn();
        let made: redis::RedisResult<Value> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.hot.journal_key())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match made {
            Ok(_) => {}
            Err(e) if e.to_string().contains("BUSYGROUP") => {}
            Err(e) => return Err(rerr(e)),
        }
        self.group_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Reads entries: those idle past the lease in any consumer's pending list (taken
    /// over), then new ones. They are this consumer's until acknowledged.
    pub(super) async fn read(&self) -> StoreResult<Vec<(String, Fields)>> {
        self.ensure_group().await?;
        let mut conn = self.hot.conn();
        let journal = self.hot.journal_key();
        let mut out = Vec::new();
        let claimed: Value = redis::cmd("XAUTOCLAIM")
            .arg(&journal)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(self.lease.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(BATCH)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.lost_group(e))?;
        if let Value::Array(parts) = &claimed
            && let Some(entries) = parts.get(1)
        {
            parse_entries(entries, &mut out);
        }
        let fresh: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(BATCH)
            .arg("STREAMS")
            .arg(&journal)
            .arg(">")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.lost_group(e))?;
        if let Value::Array(streams) = &fresh {
            for s in streams {
                if let Value::Array(pair) = s
                    && let Some(entries) = pair.get(1)
                {
                    parse_entries(entries, &mut out);
                }
            }
        }
        Ok(out)
    }

    /// A `NOGROUP` error means Redis lost the group (a restart without persistence):
    /// create it again next time.
    fn lost_group(&self, e: redis::RedisError) -> StoreError {
        if e.to_string().contains("NOGROUP") {
            self.group_ready.store(false, Ordering::Relaxed);
        }
        rerr(e)
    }

    /// Applies one entry and, when done, acknowledges and deletes it. False when it
    /// stays pending (to be retried after the lease).
    async fn apply(&self, id: &str, fields: &Fields) -> StoreResult<bool> {
        let mut queued = None;
        match entry_ops(id, fields) {
            Ok(entry) => {
                queued = entry.ops.iter().find_map(|op| match op {
                    JournalOp::Enqueue(d) => Some((d.verification_id.clone(), d.id.clone())),
                    _ => None,
                });
                if let Err(e) = self.hot.durable().apply_journal(&entry).await {
                    let written = id
                        .split('-')
                        .next()
                        .and_then(|ms| ms.parse::<i64>().ok())
                        .unwrap_or(i64::MAX);
                    if Utc::now().timestamp_millis() - written < MAX_ENTRY_AGE_MS {
                        tracing::warn!(entry = id, error = %e, "journal entry not applied yet");
                        return Ok(false);
                    }
                    tracing::error!(entry = id, error = %e, "journal entry given up on");
                }
            }
            // An entry no version of this code can read would block nothing: drop it loudly.
            Err(e) => tracing::error!(entry = id, error = %e, "unreadable journal entry dropped"),
        }
        let mut conn = self.hot.conn();
        let journal = self.hot.journal_key();
        if let Some((vid, delivery)) = &queued {
            CLEAR_QUEUED
                .key(self.hot.vkey(vid))
                .arg(delivery)
                .invoke_async::<i64>(&mut conn)
                .await
                .map_err(rerr)?;
        }
        redis::pipe()
            .cmd("XACK")
            .arg(&journal)
            .arg(GROUP)
            .arg(id)
            .ignore()
            .cmd("XDEL")
            .arg(&journal)
            .arg(id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(rerr)?;
        Ok(true)
    }

    /// One pass: reads (taking over stale entries) and applies. Returns how many entries
    /// were applied.
    pub async fn spool_once(&self) -> StoreResult<usize> {
        let entries = self.read().await?;
        let mut applied = 0;
        for (id, fields) in &entries {
            if self.apply(id, fields).await? {
                applied += 1;
            }
        }
        Ok(applied)
    }

    /// Runs until `shutdown` completes: applies entries as they come (woken by local
    /// sends, polling for the other nodes').
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let wake = self.hot.inner.wake.clone();
        loop {
            let pause = match self.spool_once().await {
                Ok(n) if n >= BATCH => Duration::ZERO,
                Ok(_) => IDLE_POLL,
                Err(e) => {
                    tracing::warn!(error = %e, "journal spooler: store unavailable");
                    ERROR_BACKOFF
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
        // Whatever is left is applied before leaving, if the stores answer.
        let _ = self.spool_once().await;
    }
}
