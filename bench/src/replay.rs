//! The replayer: every send of a trace goes through the guards the server uses, in the
//! server's order (parse, geo, number type, rate limits, pumping), with the trace's clock;
//! approvals come back `verify_after` seconds later, and only for sends that went out.
//!
//! [`replay`] keeps the guards' state in this process (one node, as the guard code sees
//! it); [`replay_shared`] runs N nodes over one store, as a deployment does: rate limits
//! taken from the store, and each node a `SharedPumping` replica of the store's pumping
//! log (the server's code), sends spread round-robin, approvals arriving at another node,
//! and optionally every node restarted (its memory dropped) in the middle of the trace.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use otpd_core::channel::Channel;
use otpd_core::guards::pumping::shared::SharedPumping;
use otpd_core::guards::pumping::{PumpingGuard, PumpingState};
use otpd_core::guards::rate::{MemoryBuckets, Subject};
use otpd_core::guards::{Action, GuardSettings, Mode};
use otpd_core::recipient::{LineType, PhoneNumber};
use otpd_core::start::{RecentSends, SendLimit};
use otpd_core::store::Store;
use serde::Serialize;

use crate::TraceEvent;

/// The per-recipient send limit of a service by default (5 per 10 minutes), which the
/// store keeps in its send step (`otpd_core::start`); the replays keep it in [`SendLog`].
fn send_limit() -> SendLimit {
    otpd_core::service::RateLimits::default().send_limit()
}

/// Each recipient's sends, judged by the one per-recipient send limit
/// (`otpd_core::start::SendLimit`, the rule every store applies in its send step).
#[derive(Default)]
struct SendLog {
    sends: HashMap<String, Vec<i64>>,
}

impl SendLog {
    /// Whether a send to `to` at `now_ms` is within the limit (and records it if so).
    fn admit(&mut self, to: &str, now_ms: i64) -> bool {
        let limit = send_limit();
        let now = at(now_ms);
        let start = limit.window_start(now).timestamp_millis() - EPOCH_MS;
        let log = self.sends.entry(to.to_string()).or_default();
        log.retain(|t| *t > start);
        let recent = RecentSends {
            count: u32::try_from(log.len()).unwrap_or(u32::MAX),
            oldest: log.first().map(|t| at(*t)),
        };
        let admitted = limit.admit(recent, now).is_ok();
        if admitted {
            log.push(now_ms);
        }
        admitted
    }
}

/// Allowed and blocked counts.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Counts {
    /// Sends that went out.
    pub allowed: u64,
    /// Sends a guard refused.
    pub blocked: u64,
}

impl Counts {
    fn add(&mut self, blocked: bool) {
        if blocked {
            self.blocked += 1;
        } else {
            self.allowed += 1;
        }
    }

    /// Share blocked, in percent.
    pub fn blocked_percent(&self) -> f64 {
        let total = self.allowed + self.blocked;
        if total == 0 {
            0.0
        } else {
            self.blocked as f64 * 100.0 / total as f64
        }
    }
}

/// Refusals of one guard, by label.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Blocks {
    /// Attack sends it refused.
    pub attack: u64,
    /// Legitimate sends it refused.
    pub legit: u64,
}

/// Spend with and without the guards.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Spend {
    /// What the allowed sends cost.
    pub with_guards: f64,
    /// What every send would have cost.
    pub without_guards: f64,
}

/// The replay's result.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Attack sends.
    pub attack: Counts,
    /// Legitimate sends.
    pub legit: Counts,
    /// Spend.
    pub spend: Spend,
    /// Blocks by guard (all labels), for tuning.
    #[serde(skip)]
    pub by_guard: BTreeMap<String, Blocks>,
    /// Counts by scenario, for the report.
    #[serde(skip)]
    pub by_scenario: BTreeMap<String, Counts>,
}

/// The price of one SMS: premium ranges cost the sender dearly (that is the pump's
/// income); the rest is a plain per-country rate.
fn price(to: &str, line: Option<LineType>) -> f64 {
    match line {
        Some(LineType::PremiumRate | LineType::SharedCost) => 1.00,
        _ if to.starts_with("+1") => 0.0079,
        _ if to.starts_with("+44") => 0.040,
        _ if to.starts_with("+998") => 0.28,
        _ if to.starts_with("+234") || to.starts_with("+233") => 0.20,
        _ => 0.06,
    }
}

/// The guards as a service would configure them for this: defaults, with pumping
/// detection enforced.
pub fn settings() -> GuardSettings {
    GuardSettings {
        pumping: PumpingGuard {
            mode: Mode::Enforce,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Replays a trace (sorted by `t`).
pub fn replay(trace: &[TraceEvent], guards: &GuardSettings) -> Summary {
    let mut summary = Summary::default();
    let mut buckets = MemoryBuckets::default();
    let mut sends = SendLog::default();
    let mut pumping = PumpingState::default();
    // Approvals due: (time in ms, trace index).
    let mut due: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
    for (i, e) in trace.iter().enumerate() {
        let now_ms = (e.t * 1000.0) as i64;
        while let Some(Reverse((at, j))) = due.peek().copied() {
            if at > now_ms {
                break;
            }
            due.pop();
            pumping.record_approval(&guards.pumping, &trace[j].to, at / 1000);
        }
        let parsed = PhoneNumber::parse(&e.to, None).ok();
        let cost = price(&e.to, parsed.as_ref().map(PhoneNumber::line_type));
        summary.spend.without_guards += cost;
        let blocked_by = decide(
            guards,
            &mut buckets,
            &mut sends,
            &mut pumping,
            e,
            parsed.as_ref(),
            now_ms,
        );
        if blocked_by.is_none()
            && e.label == "attack"
            && std::env::var_os("PUMPING_DEBUG").is_some()
        {
            eprintln!("attack allowed at {:.0}: {} {:?}", e.t, e.to, e.scenario);
        }
        score(&mut summary, e, i, now_ms, cost, blocked_by, &mut due);
    }
    summary
}

/// Which guard refuses a send, if any (under enforce).
fn decide(
    g: &GuardSettings,
    buckets: &mut MemoryBuckets,
    sends: &mut SendLog,
    pumping: &mut PumpingState,
    e: &TraceEvent,
    parsed: Option<&PhoneNumber>,
    now_ms: i64,
) -> Option<String> {
    let Some(p) = parsed else {
        return Some("invalid_number".into());
    };
    if g.geo.mode == Mode::Enforce && g.geo.check(p.e164(), p.region(), None).is_err() {
        return Some("geo".into());
    }
    if g.number_type.mode == Mode::Enforce
        && g.number_type
            .check(p.line_type(), Channel::Sms, false)
            .is_err()
    {
        return Some("number_type".into());
    }
    let subject = Subject {
        service_id: "svc_sim",
        to: Some(p.e164()),
        client_ip: Some(&e.client_ip),
        key_id: Some("key_sim"),
    };
    let b = g.rate_limits.buckets(Action::Send, &subject);
    if g.rate_limits.mode == Mode::Enforce && buckets.take(&b, now_ms).is_err() {
        return Some("rate_limit".into());
    }
    if !sends.admit(p.e164(), now_ms) {
        return Some("rate_limit".into());
    }
    if let Err(r) = pumping.check_send(&g.pumping, p.e164(), p.region(), now_ms / 1000)
        && g.pumping.mode == Mode::Enforce
    {
        if std::env::var_os("PUMPING_DEBUG").is_some() {
            eprintln!("{} blocked at {:.0}: {} {}", e.label, e.t, e.to, r.reason);
        }
        return Some("fraud".into());
    }
    None
}

/// How a shared replay runs.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// Nodes sharing the store.
    pub nodes: usize,
    /// Restart every node (drop its memory) once this share of the trace has been sent.
    pub restart_at: Option<f64>,
    /// The service the sends are for (its own rate-limit keys and pumping log).
    pub service_id: String,
}

/// Where the trace's clock starts, as wall time.
const EPOCH_MS: i64 = 1_700_000_000_000;

/// The trace's clock as wall time (the store keeps times).
fn at(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(EPOCH_MS + ms).unwrap_or_default()
}

/// Replays a trace (sorted by `t`) through `cluster.nodes` nodes sharing `store`.
pub async fn replay_shared(
    trace: &[TraceEvent],
    guards: &GuardSettings,
    store: &dyn Store,
    cluster: &Cluster,
) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    let nodes = cluster.nodes.max(1);
    let mut pumps: Vec<SharedPumping> = (0..nodes).map(|_| SharedPumping::default()).collect();
    let restart = cluster
        .restart_at
        .map(|share| (share * trace.len() as f64) as usize);
    let svc = cluster.service_id.as_str();
    let mut sends = SendLog::default();
    // Approvals due: (time in ms, trace index).
    let mut due: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
    for (i, e) in trace.iter().enumerate() {
        if restart == Some(i) {
            pumps = (0..nodes).map(|_| SharedPumping::default()).collect();
        }
        let now_ms = (e.t * 1000.0) as i64;
        while let Some(Reverse((due_ms, j))) = due.peek().copied() {
            if due_ms > now_ms {
                break;
            }
            due.pop();
            // The code is typed on another node than the one that sent it.
            let node = &pumps[(j + 1) % nodes];
            let when = at(due_ms).timestamp();
            node.approved(store, svc, &guards.pumping, &trace[j].to, when)
                .await?;
        }
        let parsed = PhoneNumber::parse(&e.to, None).ok();
        let cost = price(&e.to, parsed.as_ref().map(PhoneNumber::line_type));
        summary.spend.without_guards += cost;
        let blocked_by = match parsed.as_ref() {
            None => Some("invalid_number".to_string()),
            Some(p) => {
                let node = &pumps[i % nodes];
                decide_shared(guards, store, node, &mut sends, svc, e, p, now_ms).await?
            }
        };
        score(&mut summary, e, i, now_ms, cost, blocked_by, &mut due);
    }
    Ok(summary)
}

/// [`decide`] with the state in the store, for one node.
#[allow(clippy::too_many_arguments)]
async fn decide_shared(
    g: &GuardSettings,
    store: &dyn Store,
    pumping: &SharedPumping,
    sends: &mut SendLog,
    svc: &str,
    e: &TraceEvent,
    p: &PhoneNumber,
    now_ms: i64,
) -> anyhow::Result<Option<String>> {
    if g.geo.mode == Mode::Enforce && g.geo.check(p.e164(), p.region(), None).is_err() {
        return Ok(Some("geo".into()));
    }
    if g.number_type.mode == Mode::Enforce
        && g.number_type
            .check(p.line_type(), Channel::Sms, false)
            .is_err()
    {
        return Ok(Some("number_type".into()));
    }
    let subject = Subject {
        service_id: svc,
        to: Some(p.e164()),
        client_ip: Some(&e.client_ip),
        key_id: Some("key_sim"),
    };
    let b = g.rate_limits.buckets(Action::Send, &subject);
    if g.rate_limits.mode == Mode::Enforce && store.take_tokens(&b, at(now_ms)).await?.is_err() {
        return Ok(Some("rate_limit".into()));
    }
    // The store's send step keeps this limit for every node at once.
    if !sends.admit(p.e164(), now_ms) {
        return Ok(Some("rate_limit".into()));
    }
    let judged = pumping
        .check_send(
            store,
            svc,
            &g.pumping,
            p.e164(),
            p.region(),
            at(now_ms).timestamp(),
        )
        .await;
    if let Some(err) = judged.degraded {
        anyhow::bail!("the store failed: {err}");
    }
    if judged.verdict.is_err() && g.pumping.mode == Mode::Enforce {
        return Ok(Some("fraud".into()));
    }
    Ok(None)
}

/// Counts one send's outcome (and queues its approval when it went out).
fn score(
    summary: &mut Summary,
    e: &TraceEvent,
    i: usize,
    now_ms: i64,
    cost: f64,
    blocked_by: Option<String>,
    due: &mut BinaryHeap<Reverse<(i64, usize)>>,
) {
    let blocked = blocked_by.is_some();
    if let Some(g) = blocked_by {
        let blocks = summary.by_guard.entry(g).or_default();
        if e.label == "attack" {
            blocks.attack += 1;
        } else {
            blocks.legit += 1;
        }
    } else {
        summary.spend.with_guards += cost;
        if let Some(after) = e.verify_after {
            due.push(Reverse((now_ms + (after * 1000.0) as i64, i)));
        }
    }
    let counts = if e.label == "attack" {
        &mut summary.attack
    } else {
        &mut summary.legit
    };
    counts.add(blocked);
    let scenario = e.scenario.clone().unwrap_or_else(|| e.label.clone());
    summary
        .by_scenario
        .entry(scenario)
        .or_default()
        .add(blocked);
}
