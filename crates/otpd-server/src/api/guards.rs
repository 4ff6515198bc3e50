//! Where the domain's guards meet a request: asks each guard under its service's mode,
//! turns an enforced refusal into the API error, and writes the decision record.
//!
//! The rules themselves live in `otpd_core::guards`; this file only gathers their inputs
//! (the parsed recipient, the end user's IP, the key) and their state (the store).

use std::net::IpAddr;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use otpd_core::apikey::Principal;
use otpd_core::channel::Channel;
use otpd_core::guards::budget::Money;
use otpd_core::guards::proof_of_work::{self, Rejection, Solution};
use otpd_core::guards::pumping::shared::SharedPumping;
use otpd_core::guards::rate::Subject;
use otpd_core::guards::{Action, Decision, DecisionRecord, GuardName, Mode, Refusal};
use otpd_core::recipient::Recipient;
use otpd_core::service::Service;
use otpd_core::store::{Spend, Store, StoreError};

use crate::config::{HttpConfig, TrustedProxies};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;

/// Parses the caller-given end-user IP (`client_ip`), else — when the service trusts its
/// proxy — the client's address from `X-Forwarded-For`, read from the right past the
/// trusted proxies (see [`forwarded_client`]). The IP found is also the request's audited
/// end-user IP (instead of the peer's address).
pub fn client_ip(
    given: Option<&str>,
    forwarded_for: Option<&str>,
    service: &Service,
    http: &HttpConfig,
) -> ApiResult<Option<String>> {
    let ip = resolve_client_ip(given, forwarded_for, service, http)?;
    if let Some(ip) = &ip {
        otpd_core::audit::set_client_ip(ip);
    }
    Ok(ip)
}

fn resolve_client_ip(
    given: Option<&str>,
    forwarded_for: Option<&str>,
    service: &Service,
    http: &HttpConfig,
) -> ApiResult<Option<String>> {
    if let Some(ip) = given {
        return ip
            .trim()
            .parse::<IpAddr>()
            .map(|ip| Some(ip.to_string()))
            .map_err(|_| ApiError::invalid("client_ip must be an IPv4 or IPv6 address"));
    }
    if service.settings.guards.rate_limits.trust_forwarded_for
        && let Some(header) = forwarded_for
    {
        return Ok(
            forwarded_client(header, &http.trusted_proxies, http.trusted_proxy_hops)
                .map(|ip| ip.to_string()),
        );
    }
    Ok(None)
}

/// The client's address in an `X-Forwarded-For` chain. Proxies append what they saw, so
/// only the right end is vouched for: with `proxies` configured, the rightmost address
/// outside them (the listener already dropped the header when the TCP peer is not one of
/// them); otherwise the entry `hops` places from the right (1: the address the one proxy
/// in front saw). Whatever a client wrote at the left is never taken over a proxy's
/// entry. `None` when the chain is shorter than the hops or the entry is not an address.
pub fn forwarded_client(header: &str, proxies: &TrustedProxies, hops: usize) -> Option<IpAddr> {
    let entries: Vec<&str> = header
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if proxies.is_empty() {
        let i = entries.len().checked_sub(hops.max(1))?;
        return parse_forwarded(entries[i]);
    }
    let mut client = None;
    for entry in entries.iter().rev() {
        let ip = parse_forwarded(entry)?;
        client = Some(ip);
        if !proxies.contains(ip) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` entry as an address (`[v6]:port` and `v4:port` forms tolerated).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    entry
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| a.ip().to_canonical())
}

/// The raw `X-Forwarded-For` header, if any.
pub fn forwarded_for(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The API error for an enforced refusal.
pub fn refusal_error(r: &Refusal) -> ApiError {
    match r.guard {
        GuardName::Geo => ApiError::new(ErrorCode::GeoBlocked, r.reason.clone()),
        GuardName::NumberType => ApiError::new(ErrorCode::NumberTypeBlocked, r.reason.clone()),
        GuardName::Budget => ApiError::new(ErrorCode::BudgetExceeded, r.reason.clone()),
        GuardName::Fraud => ApiError::new(ErrorCode::FraudBlocked, r.reason.clone()),
        GuardName::ProofOfWork => ApiError::new(ErrorCode::ProofOfWorkRequired, r.reason.clone()),
        GuardName::RateLimit | GuardName::Lockout => {
            ApiError::new(ErrorCode::RateLimited, r.reason.clone())
                .retry_after(r.retry_after_secs.unwrap_or(1))
        }
    }
}

/// Asks the stateless guards (geo, number type) about a send, under their modes.
pub fn static_send_decision(
    service: &Service,
    channel: Channel,
    recipient: &Recipient,
) -> Decision {
    let mut d = Decision::default();
    let g = &service.settings.guards;
    if let Recipient::Phone(p) = recipient {
        d.add(
            g.geo.mode,
            g.geo.check(
                p.e164(),
                p.region(),
                service.settings.allowed_countries.as_deref(),
            ),
        );
        d.add(
            g.number_type.mode,
            g.number_type.check(
                p.line_type(),
                channel,
                service.settings.skip_sms_to_landlines,
            ),
        );
    }
    d
}

/// The pumping guard, one detector per service for every node: its input is a log in the
/// store, replayed in order by each node (`otpd_core::guards::pumping::shared`), so nodes
/// decide as one and a restart decides as before; the rules are the domain's.
#[derive(Default)]
pub struct Pumping(SharedPumping);

impl Pumping {
    /// Asks the pumping guard about a send (into `decision`, under the mode; a weak
    /// suspicion is recorded as a shadow refusal).
    pub async fn check_send(
        &self,
        store: &dyn Store,
        service: &Service,
        decision: &mut Decision,
        recipient: &Recipient,
        now: DateTime<Utc>,
    ) {
        let guard = &service.settings.guards.pumping;
        let Recipient::Phone(p) = recipient else {
            return;
        };
        if guard.mode == Mode::Off {
            return;
        }
        let judged = self
            .0
            .check_send(
                store,
                &service.id,
                guard,
                p.e164(),
                p.region(),
                now.timestamp(),
            )
            .await;
        if let Some(e) = judged.degraded {
            tracing::warn!(error = %e, "pumping log unreachable: judged on this node's state");
        }
        decision.add(guard.mode, judged.verdict);
        if let Some(w) = judged.watch {
            decision.add(Mode::Shadow, Err(w));
        }
    }

    /// Counts a right code (conversion is what tells users from pumps).
    pub async fn approved(
        &self,
        store: &dyn Store,
        service: &Service,
        to: &str,
        now: DateTime<Utc>,
    ) {
        let guard = &service.settings.guards.pumping;
        if let Err(e) = self
            .0
            .approved(store, &service.id, guard, to, now.timestamp())
            .await
        {
            tracing::warn!(error = %e, "pumping log unreachable: approval counted on this node");
        }
    }
}

/// Takes the rate-limit tokens of a send or check (into `decision`, under the mode).
pub async fn rate_limit(
    state: &AppState,
    service: &Service,
    decision: &mut Decision,
    action: Action,
    subject: &Subject<'_>,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let guard = &service.settings.guards.rate_limits;
    let buckets = guard.buckets(action, subject);
    if buckets.is_empty() {
        return Ok(());
    }
    let verdict = state.store.take_tokens(&buckets, now).await?;
    decision.add(guard.mode, verdict);
    Ok(())
}

/// Asks the proof-of-work guard about a send (into `decision`, under the mode): when the
/// service wants a solved puzzle for this send, judges the presented one and spends it.
/// `spender` is a digest of the send's idempotency key, so its retry is not a replay.
pub async fn proof_of_work(
    state: &AppState,
    service: &Service,
    decision: &mut Decision,
    solution: Option<&Solution>,
    spender: Option<&str>,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let guard = &service.settings.guards.proof_of_work;
    if !guard.required(decision) {
        return Ok(());
    }
    let outcome = match solution {
        None => Err(Rejection::Missing),
        Some(s) => spend_solution(state, &service.id, s, spender, now).await?,
    };
    decision.add(guard.mode, outcome.map_err(Rejection::refusal));
    Ok(())
}

async fn spend_solution(
    state: &AppState,
    service_id: &str,
    solution: &Solution,
    spender: Option<&str>,
    now: DateTime<Utc>,
) -> ApiResult<Result<(), Rejection>> {
    let Some((id, _)) = solution.parts() else {
        return Ok(Err(Rejection::Invalid));
    };
    let stored = state.store.get_challenge(id).await?;
    if let Err(r) = proof_of_work::judge(solution, stored.as_ref(), service_id, now.timestamp()) {
        return Ok(Err(r));
    }
    Ok(match state.store.spend_challenge(id, spender, now).await? {
        Spend::Spent | Spend::Retried => Ok(()),
        Spend::AlreadySpent => Err(Rejection::Spent),
    })
}

/// Charges a send's price to the service's budget (into `decision`, under the mode).
/// Returns what was charged, to give back if the send does not happen.
pub async fn charge(
    state: &AppState,
    service: &Service,
    decision: &mut Decision,
    cost: Money,
    now: DateTime<Utc>,
) -> ApiResult<Money> {
    let guard = &service.settings.guards.budget;
    if guard.mode == Mode::Off || cost == Money(0) {
        return Ok(Money(0));
    }
    let verdict = state
        .store
        .charge_budget(&service.id, guard, cost, now)
        .await?;
    let charged = if verdict.is_err() && guard.mode == Mode::Enforce {
        Money(0)
    } else {
        cost
    };
    decision.add(guard.mode, verdict);
    Ok(charged)
}

/// Gives back a charge whose send did not happen (logged if that fails).
pub async fn refund(state: &AppState, service: &Service, charged: Money, now: DateTime<Utc>) {
    if charged == Money(0) {
        return;
    }
    if let Err(e) = state.store.refund_budget(&service.id, charged, now).await {
        tracing::warn!(error = %e, "could not refund a budget charge");
    }
}

/// The refusal a store error stands for, when it is a guard's (send limit, lockout).
pub fn store_refusal(e: &StoreError) -> Option<Refusal> {
    match e {
        StoreError::RateLimited { retry_after_secs } => Some(Refusal {
            guard: GuardName::RateLimit,
            reason: "too many codes sent to this recipient (rate_limits.sends_per_to)".into(),
            retry_after_secs: Some(*retry_after_secs),
        }),
        StoreError::Locked { retry_after_secs } => Some(Refusal {
            guard: GuardName::Lockout,
            reason: "too many wrong codes for this recipient".into(),
            retry_after_secs: Some(*retry_after_secs),
        }),
        _ => None,
    }
}

/// Who a decision is about.
pub struct Who<'a> {
    /// The service.
    pub service: &'a Service,
    /// The principal.
    pub principal: &'a Principal,
    /// The normalized recipient.
    pub to: &'a str,
    /// The end user's IP.
    pub client_ip: Option<&'a str>,
}

/// Writes the decision record of a send or check. A failure to record is logged, never
/// turned into a refusal of an otherwise decided request.
pub async fn record(
    state: &AppState,
    who: &Who<'_>,
    action: Action,
    decision: Decision,
    verification_id: Option<&str>,
    now: DateTime<Utc>,
) {
    if let Some(r) = &decision.blocked {
        state.telemetry.guard_refused(action, r.guard, false);
    }
    for r in &decision.shadow {
        state.telemetry.guard_refused(action, r.guard, true);
    }
    let record = DecisionRecord {
        service_id: who.service.id.clone(),
        action,
        to: who.to.to_string(),
        client_ip: who.client_ip.map(str::to_string),
        verification_id: verification_id.map(str::to_string),
        allowed: decision.blocked.is_none(),
        blocked: decision.blocked,
        shadow: decision.shadow,
    };
    if let Err(e) = state.store.record_decision(&record, now).await {
        tracing::warn!(error = %e, "could not record a guard decision");
    }
}

#[cfg(test)]
mod forwarded_tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::try_from(list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn the_rightmost_entry_wins_over_a_client_written_one() {
        let none = TrustedProxies::default();
        // nginx appended the real peer (198.51.100.7) to what the client sent.
        let header = "1.2.3.4, 198.51.100.7";
        assert_eq!(
            forwarded_client(header, &none, 1),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(
            forwarded_client("9.9.9.9, 1.1.1.1, 198.51.100.7, 10.0.0.2", &none, 2),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(forwarded_client("198.51.100.7", &none, 2), None);
        assert_eq!(forwarded_client("", &none, 1), None);
        assert_eq!(forwarded_client("garbage", &none, 1), None);
    }

    #[test]
    fn trusted_cidrs_are_skipped_from_the_right() {
        let p = proxies(&["10.0.0.0/8", "192.168.1.1"]);
        let header = "6.6.6.6, 203.0.113.9, 192.168.1.1, 10.1.2.3";
        assert_eq!(
            forwarded_client(header, &p, 1),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(
            forwarded_client("10.0.0.1, 10.0.0.2", &p, 1),
            Some("10.0.0.1".parse().unwrap()),
            "all trusted: the farthest one"
        );
        assert_eq!(
            forwarded_client("[2001:db8::1]:443, 10.0.0.1", &p, 1),
            Some("2001:db8::1".parse().unwrap())
        );
        assert!(p.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(TrustedProxies::try_from(vec!["10.0.0.0/33".to_string()]).is_err());
    }
}
