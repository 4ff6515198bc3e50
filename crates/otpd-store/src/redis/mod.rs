//! The Redis hot store: [`RedisHot`] wraps a durable store (SQLite or PostgreSQL) and
//! moves the hot path — verification state, send limits, lockouts, rate-limit counters,
//! idempotency records and the delivery queue's intake — into Redis, so that many otpd
//! nodes share them. Everything else (services, keys, events, delivery history, the
//! outbox the delivery worker claims from) stays in the durable store.
//!
//! ## Layout (every key under a configurable prefix, `otpd` by default)
//!
//! | key | type | what | TTL |
//! |---|---|---|---|
//! | `P:{h}:v:<ver id>` | string | a verification's state, packed (`scripts.rs`; no sealed code; `sn`: its recipient's send times; `dl`: the delivery just queued) | expiry + grace, or the send window if longer |
//! | `P:{h}:r:<svc>` | string | recipient index level: new entries go to the shards with that many hex digits (absent: 1) | a day after the last send |
//! | `P:{h}:r:<svc>:<hex>` | hash | recipient index shard: `to` → latest verification id, for the recipients whose SHA-256 (hex) starts with `<hex>` | longest of its entries |
//! | `P:{h}:lf:<svc>:<subject>` | zset | wrong-code times of a lockout subject | window |
//! | `P:{h}:lk:<svc>:<subject>` | string | end of a lock (ms) | the lock |
//! | `P:{h}:id:<digest>` | hash | idempotency record (request digest, id) | 24 h |
//! | `P:{h}:j` | stream | the journal (consumer group `spool`) | entries deleted once applied |
//! | `P:{r.<svc or key>}:<bucket>` | string | a GCRA arrival time (ms) | the arrival time |
//!
//! Memory per live verification is a benchmark target (at most 300 bytes): a verification
//! is one key, its id 16 bytes in the key name and the index, its state one packed string;
//! a recipient is a field of a shared index shard rather than a key of its own (a key
//! costs about 120 bytes before its value). A shard holds fields without TTLs of their
//! own: sends prune the entries whose verification has left Redis (`START_APPLY`).
//!
//! Every multi-step change is one Lua script (`scripts.rs`); every key one script touches
//! shares one hash tag, so the layout runs on Redis Cluster. Verification state is in one
//! tag (`{h}`): a check by id must find its verification, its recipient's lock and its
//! entity's lock in one script, and an id does not name its service; a Redis shard serves
//! far more checks per second than an otpd node, so the slot is not the bottleneck (ids
//! that carry their partition would spread it: future work). Rate buckets are tagged by
//! service (or API key), so they spread.
//!
//! ## Paths
//!
//! - **send** (`start`): one script checks the idempotency record, the recipient's lock
//!   and send limit, creates or resends, records the send, and appends a journal entry
//!   carrying the delivery job and events — invariant 3 in one atomic step. The
//!   [`Spooler`] applies journal entries to the durable store ([`JournalSink`]); the
//!   existing delivery worker claims the job there. A node that dies before applying its
//!   entries leaves them pending in the consumer group; another node's spooler takes them
//!   over (`XAUTOCLAIM`) after the lease.
//! - **check**: one script reads the verification and its subjects' locks, the caller's
//!   matcher compares the code, one script applies the decision only if the state is
//!   unchanged (pending, same attempt count) — exactly one winner among concurrent right
//!   codes, two round trips. A lost race re-reads.
//! - **reads**: Redis first, the durable history once the hot entry has expired; the
//!   delivery a send just queued shows from the hot state until the durable outbox has it,
//!   and an end the durable store wrote (`failed` by the worker, `expired` by the sweep)
//!   shows over a hot state still pending. Test-key sends live in the durable store only
//!   (their messages are recorded in its transaction); a check Redis does not know falls
//!   back to the durable store.
//! - **read barrier**: the journal is applied asynchronously, so every operation that
//!   reads or works on what the journal puts in the durable store first waits, up to a
//!   second ([`SETTLE_TIMEOUT`]), until the entries written before it have been applied
//!   by any node's spooler (waking the local one): the outbox (`claim`, `next_due`,
//!   `held_ussd`, `overdue_receipts`, `outbox_stats`), the webhook queue (`claim_webhook`,
//!   `next_webhook_due`, `webhook_stats`), events (`list_events`, `event_seq`, and
//!   `append_event`, which keeps the event log in the order things happened),
//!   deliveries, statistics, a resend's deliveries and the expiry sweep
//!   (`expire_due`). A send is thus claimable, and its events are queued for webhooks,
//!   as soon as `start` has answered, as with the SQL stores. The barrier costs one
//!   round trip when the journal is empty; past the timeout (a spooler behind or down)
//!   the operation goes ahead with what is there and the entries follow when applied
//!   (`outbox_stats` counts them as queued). When Redis does not answer, the workers'
//!   operations (claims, `next_due`, receipts, webhooks, the sweep, `append_event`) go
//!   ahead without the barrier: jobs already in the durable outbox are still delivered.
//!   The hot path (`start`, `check`) never waits.
//! - **clock**: verification times are the caller's `now`; rate-limit buckets use
//!   Redis's `TIME` ([`Clock::Server`], one clock for every node) unless configured with
//!   [`Clock::Caller`] (tests that move time by hand); their keys' TTLs are relative, so
//!   either clock keeps them exactly as long as needed.
//! - **delivery**: what the worker changes in the durable record (a fallback channel, a
//!   failed verification) is copied into the hot state after each attempt or receipt.
//! - **lockout**: sent codes count wrong codes in Redis; authenticator checks (durable)
//!   refuse while Redis holds a lock on their entity and count there too.
//!
//! Redis unreachable → `StoreError::Unavailable` (the API answers 503, never approves);
//! the connection manager reconnects by itself.
//!
//! [`JournalSink`]: otpd_core::store::JournalSink

mod delegate;
mod factors;
mod guards;
mod journal;
mod passkeys;
mod scripts;
mod verifications;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use otpd_core::lockout::LockoutPolicy;
use otpd_core::store::{Cause, ServiceStore, StoreError, StoreResult};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::lookups::Fresh;

pub use journal::Spooler;

/// How long a connection attempt may take before the request fails closed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a command may take before the request fails closed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a read of the durable history waits for the journal entries written before
/// it to be applied (read-your-writes for events, deliveries and statistics).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between two looks at the journal while settling.
const SETTLE_POLL: Duration = Duration::from_millis(5);
/// How long a service's name and lockout policy are cached (a changed policy applies
/// to checks after at most this long).
const SERVICE_CACHE: Duration = Duration::from_secs(5);

/// Which clock the rate-limit script uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Clock {
    /// Redis's `TIME`: every node counts on one clock, whatever their skew.
    #[default]
    Server,
    /// The `now` the caller passes (tests that move time by hand).
    Caller,
}

/// How to reach Redis and lay out the keys.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]` (never logged).
    pub url: String,
    /// Prefix of every key (several deployments, or tests, can share one Redis).
    pub prefix: String,
    /// Clock of the rate limits.
    pub clock: Clock,
}

impl RedisConfig {
    /// The default layout (`otpd` prefix, Redis's clock) for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            prefix: "otpd".into(),
            clock: Clock::Server,
        }
    }
}

/// Errors connecting to Redis.
#[derive(Debug, thiserror::Error)]
pub enum RedisOpenError {
    /// The URL is not a Redis URL.
    #[error("not a redis URL (expected redis://host:port)")]
    BadUrl,
    /// Redis did not answer.
    #[error("cannot reach redis: {0}")]
    Unreachable(String),
}

/// A durable store with Redis in front for the hot path (see the module docs).
pub struct RedisHot<D: ?Sized> {
    inner: Arc<Inner<D>>,
}

impl<D: ?Sized> Clone for RedisHot<D> {
    fn clone(&self) -> Self {
        RedisHot {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<D: ?Sized> {
    durable: Arc<D>,
    conn: ConnectionManager,
    /// `<prefix>:{h}:`, the start of every verification-state key.
    hot: String,
    prefix: String,
    clock: Clock,
    /// Services' names and lockout policies, answered for [`SERVICE_CACHE`].
    services: Fresh<String, ServiceInfo>,
    /// Wakes the local spooler when a script appended to the journal.
    wake: Arc<Notify>,
}

/// What the hot path needs of a service (by default: of a service that is gone).
#[derive(Clone, Debug, Default)]
struct ServiceInfo {
    name: String,
    lockout: LockoutPolicy,
}

/// A stream entry as `XRANGE` returns it: id, then field and value pairs.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

/// Maps a Redis error to the store's (no URL, no key, no argument is part of it).
pub(crate) fn rerr(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(Cause::doing("redis", e))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("redis: record: {what}"))
}

impl<D: ?Sized> RedisHot<D> {
    /// Connects to Redis (failing if it does not answer) and wraps `durable`.
    pub async fn connect(durable: Arc<D>, config: RedisConfig) -> Result<Self, RedisOpenError> {
        let client =
            redis::Client::open(config.url.as_str()).map_err(|_| RedisOpenError::BadUrl)?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(client, manager)
            .await
            .map_err(|e| RedisOpenError::Unreachable(e.to_string()))?;
        Ok(RedisHot {
            inner: Arc::new(Inner {
                durable,
                conn,
                hot: format!("{}:{{h}}:", config.prefix),
                prefix: config.prefix,
                clock: config.clock,
                services: Fresh::new(SERVICE_CACHE),
                wake: Arc::new(Notify::new()),
            }),
        })
    }

    /// The wrapped durable store.
    pub fn durable(&self) -> &Arc<D> {
        &self.inner.durable
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    /// Answers whether Redis does.
    pub async fn ping_redis(&self) -> StoreResult<()> {
        let mut conn = self.conn();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(rerr)
    }

    /// Waits until every journal entry written before this call has been applied to the
    /// durable store (by any node's spooler), at most [`SETTLE_TIMEOUT`]: a read of the
    /// durable history then sees the changes that came before it. Past the timeout (a
    /// spooler is behind or down) the read goes ahead with what is there.
    async fn settle(&self) -> StoreResult<()> {
        let mut conn = self.conn();
        let journal = self.journal_key();
        let last: Vec<StreamEntry> = redis::cmd("XREVRANGE")
            .arg(&journal)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(rerr)?;
        let Some((last, _)) = last.into_iter().next() else {
            return Ok(());
        };
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let first: Vec<StreamEntry> = redis::cmd("XRANGE")
                .arg(&journal)
                .arg("-")
                .arg(&last)
                .arg("COUNT")
                .arg(1)
                .query_async(&mut conn)
                .await
                .map_err(rerr)?;
            if first.is_empty() || Instant::now() >= deadline {
                return Ok(());
            }
            self.inner.wake.notify_one();
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }

    /// [`Self::settle`] for the durable store's own work (the delivery and webhook
    /// workers, the expiry sweep, events the worker appends): when Redis does not answer
    /// the work goes ahead with what the durable store has, so jobs already there are
    /// still delivered while Redis is down.
    async fn barrier(&self) {
        if let Err(e) = self.settle().await {
            tracing::debug!(error = %e, "read barrier skipped: redis unavailable");
        }
    }

    fn vkey(&self, id: &str) -> Vec<u8> {
        let mut key = format!("{}v:", self.inner.hot).into_bytes();
        key.extend(id_bytes(id));
        key
    }

    /// A service's recipient index: its level, and the start of its shards' names.
    fn index_key(&self, service_id: &str) -> String {
        format!("{}r:{service_id}", self.inner.hot)
    }

    fn lock_key(&self, service_id: &str, subject: &str) -> String {
        format!("{}lk:{service_id}:{subject}", self.inner.hot)
    }

    fn journal_key(&self) -> String {
        format!("{}j", self.inner.hot)
    }

    fn idem_key(&self, digest: &str) -> String {
        format!("{}id:{digest}", self.inner.hot)
    }

    /// A rate bucket's key, tagged by `tag` (its service or API key).
    fn bucket_key(&self, tag: &str, bucket: &str) -> String {
        format!("{}:{{r.{tag}}}:{bucket}", self.inner.prefix)
    }
}

impl<D: ServiceStore + ?Sized> RedisHot<D> {
    /// A service's name and lockout policy, cached for [`SERVICE_CACHE`] (a service that
    /// is gone is remembered too, with no name and the default policy).
    async fn service_info(&self, service_id: &str) -> StoreResult<ServiceInfo> {
        let load = || async {
            let found = self.inner.durable.find_service(service_id).await?;
            Ok(Some(found.map_or_else(ServiceInfo::default, |s| {
                ServiceInfo {
                    name: s.name,
                    lockout: s.settings.lockout,
                }
            })))
        };
        let info = self.inner.services.get_or_load(service_id, load).await?;
        Ok(info.unwrap_or_default())
    }
}

/// A script reply as a list of byte strings (numbers become their decimal text).
fn bulk_list(v: redis::Value) -> StoreResult<Vec<Vec<u8>>> {
    use redis::Value;
    fn one(v: Value) -> StoreResult<Vec<u8>> {
        match v {
            Value::BulkString(b) => Ok(b),
            Value::SimpleString(s) => Ok(s.into_bytes()),
            Value::Int(i) => Ok(i.to_string().into_bytes()),
            Value::Okay => Ok(b"OK".to_vec()),
            Value::Nil => Ok(Vec::new()),
            _ => Err(corrupt("script reply")),
        }
    }
    match v {
        Value::Array(items) | Value::Set(items) => items.into_iter().map(one).collect(),
        Value::Nil => Ok(Vec::new()),
        _ => Err(corrupt("script reply")),
    }
}

/// A verification id as key names and the recipient index hold it: its 16 bytes when it
/// has the usual shape (`ver_` + 32 lowercase hex), else its text (the Lua side's
/// `idtext` reads it back; no id of another shape is 16 bytes long).
fn id_bytes(id: &str) -> Vec<u8> {
    id.strip_prefix("ver_")
        .filter(|h| h.len() == 32 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .and_then(|h| hex::decode(h).ok())
        .unwrap_or_else(|| id.as_bytes().to_vec())
}

/// The id [`id_bytes`] made `b` from.
fn id_text(b: &[u8]) -> String {
    if b.len() == 16 {
        format!("ver_{}", hex::encode(b))
    } else {
        text(b).to_string()
    }
}

/// Levels of a recipient index: level `l` has 16^`l` shards, named by the first `l` hex
/// digits of the recipient's SHA-256 (a service's new entries move down a level when a
/// shard fills: 16 shards up to about 4,000 live verifications, 256 up to 65,000, 4,096
/// up to a million, then 65,536). A shard key costs about 170 bytes, a shard entry about
/// 32, and a shard past 512 entries leaves Redis's compact hash encoding.
const INDEX_LEVELS: usize = 4;

/// `to`'s digest as the index scripts use it: the first [`INDEX_LEVELS`] hex digits of its
/// SHA-256.
fn index_digest(to: &str) -> String {
    let mut d = hex::encode(Sha256::digest(to.as_bytes()));
    d.truncate(INDEX_LEVELS);
    d
}

/// `to`'s field in its index shard: `to` itself, or `#` and its SHA-256 (hex) when it is
/// longer than the 64 bytes a compact hash value may have (a long email address).
fn index_field(to: &str) -> String {
    if to.len() <= 64 {
        to.to_string()
    } else {
        format!("#{}", hex::encode(Sha256::digest(to.as_bytes())))
    }
}

/// Text of a reply item.
fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("")
}

/// A random member or nonce (unique per call).
fn nonce() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// `s` with the glob characters of `SCAN MATCH` escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl<D: ?Sized> RedisHot<D> {
    /// Every key matching `pattern` (SCAN: erasure is rare and may walk the keyspace).
    async fn scan(&self, pattern: &str) -> StoreResult<Vec<String>> {
        let mut conn = self.conn();
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(rerr)?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// Erasure in Redis: the recipient's index entries and latest verifications, its
    /// lockout and rate-limit keys. Returns how many keys and index entries were deleted.
    /// (Older, ended verifications of the recipient leave Redis by their TTL, at most the
    /// grace after their expiry or the send window after their last send.)
    async fn erase_hot(&self, to: &str) -> StoreResult<u64> {
        let digest = index_digest(to);
        let field = index_field(to);
        let to_raw = to;
        let to = glob_escape(to);
        let hot = glob_escape(&self.inner.hot);
        let prefix = glob_escape(&self.inner.prefix);
        let mut conn = self.conn();
        let mut removed = 0;
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let shards = self
            .scan(&format!("{hot}r:*:*"))
            .await?
            .into_iter()
            .filter(|k| {
                k.rsplit_once(':')
                    .is_some_and(|(_, d)| !d.is_empty() && digest.starts_with(d))
            });
        for idx in shards {
            let (id, n): (Option<Vec<u8>>, u64) = redis::pipe()
                .cmd("HGET")
                .arg(&idx)
                .arg(&field)
                .cmd("HDEL")
                .arg(&idx)
                .arg(&field)
                .query_async(&mut conn)
                .await
                .map_err(rerr)?;
            removed += n;
            keys.extend(id.map(|id| self.vkey(&id_text(&id))));
        }
        keys.extend(
            self.scan(&format!("{hot}l[fk]:*:to:{to}"))
                .await?
                .into_iter()
                .map(String::into_bytes),
        );
        keys.extend(
            self.scan(&format!("{prefix}:{{r.*}}:*:to:*:{to}"))
                .await?
                .into_iter()
                .map(String::into_bytes),
        );
        // The pumping logs' entries for the recipient (members end with `TAB to`).
        for log in self.scan(&format!("{prefix}:{{p.*}}:pumping:log")).await? {
            let members: Vec<String> = redis::cmd("ZRANGE")
                .arg(&log)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .map_err(rerr)?;
            let theirs: Vec<&String> = members
                .iter()
                .filter(|m| m.rsplit_once('\t').is_some_and(|(_, t)| t == to_raw))
                .collect();
            if !theirs.is_empty() {
                let n: u64 = redis::cmd("ZREM")
                    .arg(&log)
                    .arg(theirs)
                    .query_async(&mut conn)
                    .await
                    .map_err(rerr)?;
                removed += n;
            }
        }
        if keys.is_empty() {
            return Ok(removed);
        }
        let deleted: u64 = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .map_err(rerr)?;
        Ok(removed + deleted)
    }
}
