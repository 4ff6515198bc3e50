//! Rate limits with GCRA (the generic cell rate algorithm: a token bucket kept as one
//! "theoretical arrival time" per key), for sends and checks in separate namespaces, keyed
//! by recipient, end-user IP, API key and service.
//!
//! A limit of `count` per `period_seconds` allows a burst of `count` and then one request
//! every `period / count`; a refusal says exactly when the next request would pass, which
//! becomes the `Retry-After` header. The arithmetic is here, pure; a store keeps one
//! arrival time per key and applies [`take`] to several keys at once (all or none).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Action, GuardName, Mode, Refusal};
use crate::DomainError;

/// Longest period a limit may have (one day).
pub const MAX_PERIOD_SECONDS: u32 = 86_400;
/// Largest count a limit may have.
pub const MAX_COUNT: u32 = 1_000_000;

/// `count` requests per `period_seconds`, with bursts of up to `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Requests per period (and the largest burst).
    pub count: u32,
    /// The period, in seconds.
    pub period_seconds: u32,
}

impl Limit {
    /// `count` per `period_seconds`.
    pub const fn new(count: u32, period_seconds: u32) -> Self {
        Limit {
            count,
            period_seconds,
        }
    }

    fn period_ms(self) -> i64 {
        i64::from(self.period_seconds) * 1000
    }

    /// Time between two requests at the sustained rate, in milliseconds (at least 1).
    fn interval_ms(self) -> i64 {
        (self.period_ms() / i64::from(self.count.max(1))).max(1)
    }

    fn validate(self, what: &str) -> Result<Self, DomainError> {
        if (1..=MAX_COUNT).contains(&self.count)
            && (1..=MAX_PERIOD_SECONDS).contains(&self.period_seconds)
        {
            Ok(self)
        } else {
            Err(DomainError::InvalidRequest(format!(
                "rate limit {what}: count 1-{MAX_COUNT}, period_seconds 1-{MAX_PERIOD_SECONDS}"
            )))
        }
    }
}

/// One namespace's limits (sends or checks); a missing limit is not applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Per recipient (`to`).
    pub per_to: Option<Limit>,
    /// Per end-user IP (`client_ip`).
    pub per_ip: Option<Limit>,
    /// Per API key.
    pub per_key: Option<Limit>,
    /// Per service as a whole.
    pub per_service: Option<Limit>,
}

impl Limits {
    fn validate(self, ns: &str) -> Result<Self, DomainError> {
        let v = |l: Option<Limit>, k: &str| l.map(|l| l.validate(&format!("{ns}.{k}"))).transpose();
        Ok(Limits {
            per_to: v(self.per_to, "per_to")?,
            per_ip: v(self.per_ip, "per_ip")?,
            per_key: v(self.per_key, "per_key")?,
            per_service: v(self.per_service, "per_service")?,
        })
    }
}

/// A service's rate-limit guard. The per-`to` send limit is the service's `rate_limits`
/// (a sliding window kept in the send's own atomic step, `otpd_core::start`), in every
/// mode; `send.per_to` is refused here. These are the other keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitGuard {
    /// `off`, `shadow` or `enforce` (default).
    pub mode: Mode,
    /// Limits on sends.
    pub send: Limits,
    /// Limits on checks.
    pub check: Limits,
    /// Take the end user's IP from `X-Forwarded-For` when the body has no `client_ip`:
    /// read from the right, past the proxies the server trusts (`[http] trusted_proxies` /
    /// `trusted_proxy_hops`), never a client-written entry.
    pub trust_forwarded_for: bool,
}

/// Default sends per end-user IP: 20 an hour (room for an office behind one NAT).
pub const DEFAULT_SENDS_PER_IP: Limit = Limit::new(20, 3_600);
/// Default checks per end-user IP: 60 in 10 minutes.
pub const DEFAULT_CHECKS_PER_IP: Limit = Limit::new(60, 600);

impl Default for RateLimitGuard {
    fn default() -> Self {
        RateLimitGuard {
            mode: Mode::Enforce,
            send: Limits {
                per_ip: Some(DEFAULT_SENDS_PER_IP),
                ..Default::default()
            },
            // Per recipient, the lockout (wrong codes) and each verification's attempt
            // limit already bound guessing; right codes racing each other are not abuse.
            check: Limits {
                per_ip: Some(DEFAULT_CHECKS_PER_IP),
                ..Default::default()
            },
            trust_forwarded_for: false,
        }
    }
}

/// Who a request is from and for, as far as rate limits care.
#[derive(Clone, Debug, Default)]
pub struct Subject<'a> {
    /// The service id.
    pub service_id: &'a str,
    /// The normalized recipient, when known.
    pub to: Option<&'a str>,
    /// The end user's IP, when known.
    pub client_ip: Option<&'a str>,
    /// The API key id.
    pub key_id: Option<&'a str>,
}

/// One key's limit to take a token from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// `send:to:<service>:<to>`, `check:ip:<service>:<ip>`, `send:key:<key>`, …
    pub key: String,
    /// Its limit.
    pub limit: Limit,
}

impl RateLimitGuard {
    /// Checks the limits. A per-recipient send limit here is refused: that limit is the
    /// service's `rate_limits` (`sends_per_to` in `send_window_seconds`), kept in the
    /// send's own atomic step — one send limit per recipient, not two.
    pub fn validate(self) -> Result<Self, DomainError> {
        if self.send.per_to.is_some() {
            return Err(DomainError::InvalidRequest(
                "rate limit send.per_to: the per-recipient send limit is the service's \
                 rate_limits (sends_per_to, send_window_seconds); set it there"
                    .into(),
            ));
        }
        Ok(RateLimitGuard {
            send: self.send.validate("send")?,
            check: self.check.validate("check")?,
            ..self
        })
    }

    /// The buckets a request of `action` takes a token from (none when the guard is off).
    pub fn buckets(&self, action: Action, s: &Subject<'_>) -> Vec<Bucket> {
        if self.mode == Mode::Off {
            return Vec::new();
        }
        // Settings stored before the per-recipient send limit was one (the service's
        // `rate_limits`) may still name one here: it is not applied twice.
        let sends = Limits {
            per_to: None,
            ..self.send.clone()
        };
        let limits = match action {
            Action::Send => &sends,
            Action::Check => &self.check,
        };
        let ns = action.as_str();
        let svc = s.service_id;
        [
            (limits.per_to, s.to.map(|to| format!("{ns}:to:{svc}:{to}"))),
            (
                limits.per_ip,
                s.client_ip.map(|ip| format!("{ns}:ip:{svc}:{ip}")),
            ),
            (limits.per_key, s.key_id.map(|k| format!("{ns}:key:{k}"))),
            (limits.per_service, Some(format!("{ns}:service:{svc}"))),
        ]
        .into_iter()
        .filter_map(|(limit, key)| {
            Some(Bucket {
                key: key?,
                limit: limit?,
            })
        })
        .collect()
    }
}

/// GCRA for one key: `tat_ms` is the key's stored arrival time (none for a new key).
/// Returns the new arrival time to store, or the milliseconds until a request would pass.
pub fn gcra(tat_ms: Option<i64>, now_ms: i64, limit: Limit) -> Result<i64, i64> {
    let tat = tat_ms.unwrap_or(now_ms).max(now_ms);
    let new_tat = tat + limit.interval_ms();
    let allow_at = new_tat - limit.period_ms();
    if allow_at <= now_ms {
        Ok(new_tat)
    } else {
        Err(allow_at - now_ms)
    }
}

/// Whole seconds to wait for `ms` milliseconds, rounded up (a `Retry-After` value).
pub fn retry_after_secs(ms: i64) -> u64 {
    u64::try_from((ms + 999) / 1000).unwrap_or(0).max(1)
}

/// Takes one token from every bucket, or from none: `tats` are the buckets' stored
/// arrival times (same order). On success, the arrival times to store; on refusal, which
/// bucket refused and the longest wait among the refusing ones.
pub fn take(buckets: &[Bucket], tats: &[Option<i64>], now_ms: i64) -> Result<Vec<i64>, Refusal> {
    let mut next = Vec::with_capacity(buckets.len());
    let mut refused: Option<(&Bucket, i64)> = None;
    for (b, tat) in buckets.iter().zip(tats) {
        match gcra(*tat, now_ms, b.limit) {
            Ok(t) => next.push(t),
            Err(wait) if refused.is_none_or(|(_, w)| wait > w) => refused = Some((b, wait)),
            Err(_) => {}
        }
    }
    match refused {
        None => Ok(next),
        Some((b, wait)) => Err(Refusal {
            guard: GuardName::RateLimit,
            reason: format!(
                "more than {} per {} s by {}",
                b.limit.count,
                b.limit.period_seconds,
                describe(&b.key)
            ),
            retry_after_secs: Some(retry_after_secs(wait)),
        }),
    }
}

/// The kind of a bucket key without its value (`send per ip`), safe to show.
fn describe(key: &str) -> String {
    let mut parts = key.splitn(3, ':');
    let ns = parts.next().unwrap_or("");
    let by = parts.next().unwrap_or("");
    format!("{ns}s per {by}")
}

/// Arrival times in memory: the simulator's and the unit tests' state.
#[derive(Debug, Default)]
pub struct MemoryBuckets {
    tats: HashMap<String, i64>,
}

impl MemoryBuckets {
    /// [`take`] against this map.
    pub fn take(&mut self, buckets: &[Bucket], now_ms: i64) -> Result<(), Refusal> {
        let tats: Vec<Option<i64>> = buckets
            .iter()
            .map(|b| self.tats.get(&b.key).copied())
            .collect();
        let next = take(buckets, &tats, now_ms)?;
        for (b, t) in buckets.iter().zip(next) {
            self.tats.insert(b.key.clone(), t);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    #[test]
    fn gcra_allows_a_burst_then_one_per_interval_with_exact_waits() {
        let limit = Limit::new(5, 600);
        let mut tat = None;
        for i in 0..5 {
            tat = Some(gcra(tat, 0, limit).unwrap_or_else(|_| panic!("send {i}")));
        }
        // The 6th at once: a token comes back 120 s after the first.
        assert_eq!(gcra(tat, 0, limit), Err(120 * S));
        assert_eq!(gcra(tat, 119 * S, limit), Err(S));
        let t = gcra(tat, 120 * S, limit).unwrap();
        assert_eq!(gcra(Some(t), 120 * S, limit), Err(120 * S));
        // After a full idle period, the whole burst is back.
        let mut tat = Some(t);
        for _ in 0..5 {
            tat = Some(gcra(tat, 1_000 * S, limit).unwrap());
        }
        assert!(gcra(tat, 1_000 * S, limit).is_err());
    }

    #[test]
    fn the_per_recipient_send_limit_is_the_services_alone() {
        let named = RateLimitGuard {
            send: Limits {
                per_to: Some(Limit::new(3, 60)),
                ..Default::default()
            },
            ..Default::default()
        };
        let err = named.clone().validate().unwrap_err().to_string();
        assert!(err.contains("rate_limits (sends_per_to"), "{err}");
        // One stored before is not applied twice; checks keep their own per_to.
        let subject = Subject {
            service_id: "svc_1",
            to: Some("+14155550123"),
            ..Default::default()
        };
        assert!(named.buckets(Action::Send, &subject).is_empty());
        let checks = RateLimitGuard {
            check: Limits {
                per_to: Some(Limit::new(3, 60)),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(checks.clone().validate().unwrap(), checks);
        assert_eq!(checks.buckets(Action::Check, &subject).len(), 1);
    }

    #[test]
    fn take_is_all_or_nothing_and_reports_the_longest_wait() {
        let guard = RateLimitGuard {
            send: Limits {
                per_ip: Some(Limit::new(2, 60)),
                per_service: Some(Limit::new(3, 600)),
                ..Default::default()
            },
            ..Default::default()
        };
        let from = |ip| Subject {
            service_id: "svc_1",
            to: Some("+14155550123"),
            client_ip: Some(ip),
            key_id: Some("key_1"),
        };
        let mut mem = MemoryBuckets::default();
        let b = guard.buckets(Action::Send, &from("192.0.2.1"));
        assert_eq!(b.len(), 2, "per_to and per_key are not set: {b:?}");
        mem.take(&b, 0).unwrap();
        mem.take(&b, 0).unwrap();
        let r = mem.take(&b, 0).unwrap_err();
        assert_eq!(r.retry_after_secs, Some(30));
        assert_eq!(r.reason, "more than 2 per 60 s by sends per ip");
        // The refused request took nothing: another IP still has the service's third token.
        let other = guard.buckets(Action::Send, &from("192.0.2.2"));
        mem.take(&other, 0).unwrap();
        let r = mem.take(&other, 0).unwrap_err();
        assert_eq!(r.retry_after_secs, Some(200), "service: one per 200 s");
        // Checks are their own namespace.
        let checks = guard.buckets(Action::Check, &from("192.0.2.1"));
        assert!(checks.iter().all(|b| b.key.starts_with("check:")));
        mem.take(&checks, 0).unwrap();
    }

    #[test]
    fn off_takes_nothing_and_limits_are_validated() {
        let off = RateLimitGuard {
            mode: Mode::Off,
            ..Default::default()
        };
        let s = Subject {
            service_id: "svc_1",
            client_ip: Some("192.0.2.1"),
            ..Default::default()
        };
        assert!(off.buckets(Action::Send, &s).is_empty());
        let bad = RateLimitGuard {
            check: Limits {
                per_ip: Some(Limit::new(0, 60)),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(120_000), 120);
        assert_eq!(retry_after_secs(120_001), 121);
    }
}
