//! Alert rules: when the operators must look. Pure state machines over counts kept in
//! one-minute buckets; the caller feeds observations and asks [`Monitor::evaluate`] with
//! the time, and gets the alerts that *changed* (fired or ended), each once.
//!
//! - **Delivery rate** per provider: the share of messages delivered, among those whose
//!   fate is known (delivered, failed, or no receipt in time), over `delivery_window`;
//!   fires below `delivery_rate_percent` with at least `delivery_min_volume` outcomes.
//! - **Conversion drop** per country: verifications approved / started over
//!   `conversion_window`, against the same ratio over the `conversion_baseline` before it;
//!   fires when it falls below `100 - conversion_drop_percent`% of the baseline, with at
//!   least `conversion_min_volume` starts in both.
//!
//! Budget thresholds (`budget.threshold`) and open circuits (`provider.circuit_opened`)
//! are alerts too; they are raised where they happen (the budget guard, the breaker).
//! Each process judges what it saw, like the circuit breakers.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::event::EventType;

/// Width of one counting bucket, in seconds.
const BUCKET_SECONDS: i64 = 60;

/// Thresholds and windows of the rules.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertPolicy {
    /// A provider delivering less than this share (percent) of its messages is alerted on.
    pub delivery_rate_percent: f64,
    /// The window of the delivery rate.
    pub delivery_window: Duration,
    /// Outcomes needed in the window before the rate is judged.
    pub delivery_min_volume: u64,
    /// A country whose conversion fell by at least this share (percent) of its baseline is
    /// alerted on.
    pub conversion_drop_percent: f64,
    /// The recent window of conversion.
    pub conversion_window: Duration,
    /// The baseline: this long before the recent window.
    pub conversion_baseline: Duration,
    /// Starts needed in the window (and in the baseline) before conversion is judged.
    pub conversion_min_volume: u64,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        AlertPolicy {
            delivery_rate_percent: 90.0,
            delivery_window: Duration::minutes(15),
            delivery_min_volume: 20,
            conversion_drop_percent: 50.0,
            conversion_window: Duration::hours(1),
            conversion_baseline: Duration::hours(24),
            conversion_min_volume: 20,
        }
    }
}

/// An alert that fired or ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Alert {
    /// A provider's delivery rate fell below the threshold.
    DeliveryRateLow(DeliveryRate),
    /// A provider's delivery rate is back at or above the threshold.
    DeliveryRateRecovered(DeliveryRate),
    /// A country's conversion fell well below its baseline.
    ConversionDrop(Conversion),
    /// A country's conversion is back above the alert line.
    ConversionRecovered(Conversion),
}

/// The figures of a delivery-rate alert.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryRate {
    /// The provider.
    pub provider: String,
    /// Delivered messages in the window.
    pub delivered: u64,
    /// Messages whose fate is known in the window.
    pub total: u64,
    /// The window.
    pub window: Duration,
    /// The threshold (percent).
    pub threshold_percent: f64,
}

/// The figures of a conversion alert.
#[derive(Clone, Debug, PartialEq)]
pub struct Conversion {
    /// ISO 3166 region of the numbers.
    pub country: String,
    /// Verifications started in the window.
    pub started: u64,
    /// Verifications approved in the window.
    pub approved: u64,
    /// The baseline's conversion (percent).
    pub baseline_percent: f64,
    /// The window.
    pub window: Duration,
    /// Below this conversion (percent) the alert fires.
    pub alert_below_percent: f64,
}

/// `part / whole` in percent, one decimal.
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 1000.0 / whole as f64).round() / 10.0
}

impl Alert {
    /// The event type this alert is recorded as.
    pub fn event_type(&self) -> EventType {
        match self {
            Alert::DeliveryRateLow(_) => EventType::AlertDeliveryRateLow,
            Alert::DeliveryRateRecovered(_) => EventType::AlertDeliveryRateRecovered,
            Alert::ConversionDrop(_) => EventType::AlertConversionDrop,
            Alert::ConversionRecovered(_) => EventType::AlertConversionRecovered,
        }
    }

    /// The event's data (figures only: no number, no id).
    pub fn data(&self) -> serde_json::Value {
        match self {
            Alert::DeliveryRateLow(d) | Alert::DeliveryRateRecovered(d) => json!({
                "provider": d.provider,
                "rate_percent": percent(d.delivered, d.total),
                "delivered": d.delivered,
                "total": d.total,
                "window_seconds": d.window.num_seconds(),
                "threshold_percent": d.threshold_percent,
            }),
            Alert::ConversionDrop(c) | Alert::ConversionRecovered(c) => json!({
                "country": c.country,
                "conversion_percent": percent(c.approved, c.started),
                "baseline_percent": c.baseline_percent,
                "alert_below_percent": c.alert_below_percent,
                "started": c.started,
                "approved": c.approved,
                "window_seconds": c.window.num_seconds(),
            }),
        }
    }
}

/// Counts of (good, total) per one-minute bucket, oldest first.
#[derive(Debug, Default)]
struct Series {
    buckets: VecDeque<(i64, u64, u64)>,
}

impl Series {
    fn bucket(t: DateTime<Utc>) -> i64 {
        t.timestamp().div_euclid(BUCKET_SECONDS)
    }

    fn add(&mut self, now: DateTime<Utc>, good: u64, total: u64) {
        let b = Self::bucket(now);
        match self.buckets.back_mut() {
            // Observations come in time order; a late one joins the newest bucket.
            Some((last, g, t)) if *last >= b => {
                *g += good;
                *t += total;
            }
            _ => self.buckets.push_back((b, good, total)),
        }
    }

    /// Sums over buckets that start in `[from, to)`.
    fn sum(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> (u64, u64) {
        let (from, to) = (Self::bucket(from), Self::bucket(to));
        self.buckets
            .iter()
            .filter(|(b, _, _)| *b >= from && *b < to)
            .fold((0, 0), |(g, t), (_, bg, bt)| (g + bg, t + bt))
    }

    /// Forgets buckets older than `horizon` before `now`.
    fn prune(&mut self, now: DateTime<Utc>, horizon: Duration) {
        let oldest = Self::bucket(now - horizon);
        while self.buckets.front().is_some_and(|(b, _, _)| *b < oldest) {
            self.buckets.pop_front();
        }
    }
}

/// The rules' memory: recent counts and which alerts are firing.
#[derive(Debug, Default)]
pub struct Monitor {
    policy: AlertPolicy,
    /// Per provider: (delivered, known outcomes).
    delivery: BTreeMap<String, Series>,
    /// Per country: (approved, started).
    conversion: BTreeMap<String, Series>,
    delivery_firing: BTreeSet<String>,
    conversion_firing: BTreeSet<String>,
}

impl Monitor {
    /// A monitor with these rules.
    pub fn new(policy: AlertPolicy) -> Self {
        Monitor {
            policy,
            ..Monitor::default()
        }
    }

    /// A message's fate with a provider became known: delivered, or not (failed, or no
    /// receipt in time).
    pub fn delivery_outcome(&mut self, provider: &str, delivered: bool, now: DateTime<Utc>) {
        self.delivery
            .entry(provider.to_string())
            .or_default()
            .add(now, u64::from(delivered), 1);
    }

    /// A verification to a number of `country` was started.
    pub fn verification_started(&mut self, country: &str, now: DateTime<Utc>) {
        self.conversion
            .entry(country.to_string())
            .or_default()
            .add(now, 0, 1);
    }

    /// A verification to a number of `country` was approved.
    pub fn verification_approved(&mut self, country: &str, now: DateTime<Utc>) {
        self.conversion
            .entry(country.to_string())
            .or_default()
            .add(now, 1, 0);
    }

    /// The alerts that fired or ended since the last call (each change reported once).
    pub fn evaluate(&mut self, now: DateTime<Utc>) -> Vec<Alert> {
        let mut changes = self.evaluate_delivery(now);
        changes.extend(self.evaluate_conversion(now));
        changes
    }

    fn evaluate_delivery(&mut self, now: DateTime<Utc>) -> Vec<Alert> {
        let p = &self.policy;
        let end = now + Duration::seconds(BUCKET_SECONDS);
        let mut changes = Vec::new();
        for (provider, series) in &mut self.delivery {
            series.prune(now, p.delivery_window);
            let (delivered, total) = series.sum(now - p.delivery_window, end);
            if total < p.delivery_min_volume {
                continue;
            }
            let rate = DeliveryRate {
                provider: provider.clone(),
                delivered,
                total,
                window: p.delivery_window,
                threshold_percent: p.delivery_rate_percent,
            };
            let low = (delivered as f64) * 100.0 < p.delivery_rate_percent * total as f64;
            match flip(&mut self.delivery_firing, provider, low) {
                Some(true) => changes.push(Alert::DeliveryRateLow(rate)),
                Some(false) => changes.push(Alert::DeliveryRateRecovered(rate)),
                None => {}
            }
        }
        changes
    }

    fn evaluate_conversion(&mut self, now: DateTime<Utc>) -> Vec<Alert> {
        let p = &self.policy;
        let end = now + Duration::seconds(BUCKET_SECONDS);
        let recent_from = now - p.conversion_window;
        let baseline_from = recent_from - p.conversion_baseline;
        let mut changes = Vec::new();
        for (country, series) in &mut self.conversion {
            series.prune(now, p.conversion_window + p.conversion_baseline);
            let (approved, started) = series.sum(recent_from, end);
            let (base_approved, base_started) = series.sum(baseline_from, recent_from);
            if started < p.conversion_min_volume
                || base_started < p.conversion_min_volume
                || base_approved == 0
            {
                continue;
            }
            let baseline = approved_share(base_approved, base_started);
            let line = baseline * (100.0 - p.conversion_drop_percent) / 100.0;
            let conversion = Conversion {
                country: country.clone(),
                started,
                approved,
                baseline_percent: percent(base_approved, base_started),
                window: p.conversion_window,
                alert_below_percent: (line * 10.0).round() / 10.0,
            };
            let dropped = approved_share(approved, started) < line;
            match flip(&mut self.conversion_firing, country, dropped) {
                Some(true) => changes.push(Alert::ConversionDrop(conversion)),
                Some(false) => changes.push(Alert::ConversionRecovered(conversion)),
                None => {}
            }
        }
        changes
    }
}

/// Records whether `key`'s condition holds now; returns `Some(true)` when the alert
/// starts firing, `Some(false)` when it ends, `None` when nothing changed.
fn flip(firing: &mut BTreeSet<String>, key: &str, bad: bool) -> Option<bool> {
    match (bad, firing.contains(key)) {
        (true, false) => {
            firing.insert(key.to_string());
            Some(true)
        }
        (false, true) => {
            firing.remove(key);
            Some(false)
        }
        _ => None,
    }
}

/// Approved per started, in percent (approvals of starts just before the window may
/// exceed them: capped at 100).
fn approved_share(approved: u64, started: u64) -> f64 {
    (approved as f64 * 100.0 / started as f64).min(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    fn policy() -> AlertPolicy {
        AlertPolicy {
            delivery_rate_percent: 90.0,
            delivery_window: Duration::minutes(10),
            delivery_min_volume: 10,
            conversion_drop_percent: 50.0,
            conversion_window: Duration::hours(1),
            conversion_baseline: Duration::hours(6),
            conversion_min_volume: 20,
        }
    }

    #[test]
    fn a_provider_below_ninety_percent_fires_once_then_recovers() {
        let mut m = Monitor::new(policy());
        let now = t0();
        // 8 of 10 delivered: 80%.
        for i in 0..10 {
            m.delivery_outcome("gw", i < 8, now + Duration::seconds(i));
        }
        let fired = m.evaluate(now + Duration::seconds(30));
        assert_eq!(fired.len(), 1);
        let Alert::DeliveryRateLow(rate) = &fired[0] else {
            panic!("{fired:?}");
        };
        assert_eq!((rate.delivered, rate.total), (8, 10));
        assert_eq!(fired[0].event_type(), EventType::AlertDeliveryRateLow);
        assert_eq!(fired[0].data()["rate_percent"], 80.0);
        // Still low: no second alert.
        assert!(m.evaluate(now + Duration::seconds(60)).is_empty());
        // The bad minutes leave the window; 20 good ones come in.
        let later = now + Duration::minutes(12);
        for i in 0..20 {
            m.delivery_outcome("gw", true, later + Duration::seconds(i));
        }
        let recovered = m.evaluate(later + Duration::seconds(30));
        assert!(
            matches!(&recovered[..], [Alert::DeliveryRateRecovered(r)] if r.delivered == 20),
            "{recovered:?}"
        );
        assert!(m.evaluate(later + Duration::seconds(40)).is_empty());
    }

    #[test]
    fn the_delivery_rate_needs_the_minimum_volume_and_counts_only_the_window() {
        let mut m = Monitor::new(policy());
        let now = t0();
        for i in 0..9 {
            m.delivery_outcome("gw", false, now + Duration::seconds(i));
        }
        assert!(m.evaluate(now + Duration::seconds(20)).is_empty(), "9 < 10");
        // Long after, the old failures no longer count.
        let later = now + Duration::minutes(30);
        for i in 0..10 {
            m.delivery_outcome("gw", true, later + Duration::seconds(i));
        }
        m.delivery_outcome("gw", false, later);
        assert!(
            m.evaluate(later + Duration::seconds(20)).is_empty(),
            "10/11 ≥ 90%"
        );
        // Exactly 90% is not below 90%.
        let mut m = Monitor::new(policy());
        for i in 0..10 {
            m.delivery_outcome("gw", i != 0, now);
        }
        assert!(m.evaluate(now).is_empty());
    }

    #[test]
    fn providers_are_judged_apart() {
        let mut m = Monitor::new(policy());
        let now = t0();
        for _ in 0..10 {
            m.delivery_outcome("good", true, now);
            m.delivery_outcome("bad", false, now);
        }
        let fired = m.evaluate(now);
        assert!(matches!(&fired[..], [Alert::DeliveryRateLow(r)] if r.provider == "bad"));
    }

    /// A day-like pattern: `starts` per hour in the country, `approved_percent` of them
    /// approved, for `hours` hours from `from`.
    fn traffic(m: &mut Monitor, from: DateTime<Utc>, hours: i64, starts: u64, approved: u64) {
        for h in 0..hours {
            let at = from + Duration::hours(h);
            for i in 0..starts {
                let t = at + Duration::seconds(i as i64);
                m.verification_started("GH", t);
                if i < approved {
                    m.verification_approved("GH", t + Duration::seconds(30));
                }
            }
        }
    }

    #[test]
    fn a_conversion_drop_against_the_baseline_fires_and_recovers() {
        let mut m = Monitor::new(policy());
        let start = t0();
        // Six hours at 80% conversion.
        traffic(&mut m, start, 6, 40, 32);
        let now = start + Duration::hours(6);
        assert!(m.evaluate(now).is_empty(), "steady traffic alerts nothing");
        // Then an hour at 20%: a pump, or a broken route.
        traffic(&mut m, now, 1, 40, 8);
        let now = now + Duration::hours(1);
        let fired = m.evaluate(now);
        let [Alert::ConversionDrop(c)] = &fired[..] else {
            panic!("{fired:?}");
        };
        assert_eq!((c.country.as_str(), c.started, c.approved), ("GH", 40, 8));
        assert_eq!(c.baseline_percent, 80.0);
        assert_eq!(c.alert_below_percent, 40.0);
        assert_eq!(fired[0].data()["conversion_percent"], 20.0);
        assert!(m.evaluate(now + Duration::seconds(30)).is_empty());
        // Back to normal for an hour.
        traffic(&mut m, now, 1, 40, 32);
        let now = now + Duration::hours(1);
        let back = m.evaluate(now);
        assert!(
            matches!(&back[..], [Alert::ConversionRecovered(c)] if c.approved == 32),
            "{back:?}"
        );
    }

    #[test]
    fn conversion_needs_volume_in_the_window_and_the_baseline() {
        let mut m = Monitor::new(policy());
        let start = t0();
        // No baseline at all: a new country alerts nothing.
        traffic(&mut m, start, 1, 40, 0);
        assert!(m.evaluate(start + Duration::hours(1)).is_empty());
        // A baseline, then too little recent traffic to judge.
        let mut m = Monitor::new(policy());
        traffic(&mut m, start, 6, 40, 32);
        let now = start + Duration::hours(6);
        traffic(&mut m, now, 1, 19, 0);
        assert!(m.evaluate(now + Duration::hours(1)).is_empty(), "19 < 20");
    }
}
