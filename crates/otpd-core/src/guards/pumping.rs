//! SMS-pumping detection without any third-party feed: what otpd itself sees of sends and
//! approvals is enough to tell a real user (who types the code) from a pump (which never
//! does).
//!
//! Kept per service, in sliding windows of one-minute buckets:
//! - sends (distinct numbers) and approvals per country and per number prefix at several
//!   lengths; approvals are counted against the minute of their send, and sends younger
//!   than [`PumpingGuard::maturity_seconds`] are left out of conversion (their user may
//!   still be typing);
//! - a learned baseline conversion per country over the last 24 hours of allowed sends
//!   (with a prior, so a new country starts at a plausible rate).
//!
//! Rules (each refusal is `fraud_blocked`; a refused key stays refused for
//! `block_seconds`, prolonged while attempts come at a pump's pace):
//! 1. a prefix (or whole country) with at least `min_distinct` matured numbers whose
//!    conversion is below `conversion_ratio_percent` of its country's baseline;
//! 2. a country whose last hour is `spike_percent` of its average hour (or more) is
//!    throttled: rule 1 then needs only two matured numbers;
//! 3. a run of `sequential_count` other numbers within `sequential_distance` of this one
//!    in the last `sequential_window_seconds` (pumps walk number ranges);
//! 4. a walk along a national number range: more distinct numbers near this one (at the
//!    national significant number's level, adaptive to the numbering plan) than the
//!    range's and the country's history make plausible, unless they convert like real
//!    users; refused on strong evidence, recorded on weaker, and held where the walk
//!    goes (`range_mode`, see [`ranges`](self::ranges));
//! 5. a burst over countries new to the service, pooled: the sends to all of them
//!    judged as one against the service's rare countries, held while the burst goes on
//!    (`range_mode` too, see [`new_countries`](self::new_countries)).
//!
//! The numbers and prefixes of the safe list are never refused by this guard. The state
//! ([`PumpingState`]) is a pure function of the sends and approvals it was shown, in
//! order: the server logs them in the store and every node replays the log
//! ([`shared::SharedPumping`]); the simulator in `bench/` drives the very same code with
//! its own clock.

mod new_countries;
mod ranges;
pub mod shared;

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::geo::prefix;
use super::{GuardName, Mode, Refusal, Verdict};
use crate::DomainError;
use new_countries::{NewCountries, RARE_SENDS};
use ranges::{CountryRanges, RangeVerdict};
pub use ranges::{National, national};

/// Bucket width of the short windows, in seconds.
const BUCKET_SECONDS: i64 = 60;
/// Width of the baseline buckets (one hour) and how many are kept (a day).
const BASELINE_BUCKET_SECONDS: i64 = 3_600;
const BASELINE_BUCKETS: usize = 24;
/// The prior baseline conversion (per mille) and its weight in sends: a country without
/// history is assumed to convert like a typical one.
const PRIOR_CONVERSION_PERMILLE: u64 = 850;
const PRIOR_WEIGHT: u64 = 20;
/// Country volume below which a spike is not called (a handful of sends is no spike).
const MIN_SPIKE_SENDS: u64 = 10;
/// A low conversion must also be this unlikely for real users converting at the
/// baseline (binomial tail), so that a few unlucky users never condemn a prefix.
const MAX_CHANCE: f64 = 2e-3;
/// [`MAX_CHANCE`] for prefixes shorter than [`NARROW_PREFIX_KEY`].
const WIDE_PREFIX_CHANCE: f64 = 2e-6;
/// Length of a key (`p:+` and 7 digits) from which a prefix is narrow enough that a
/// refusal may be prolonged by further attempts without hurting a region's real users.
const NARROW_PREFIX_KEY: usize = 10;
/// How long a country is new to the service after its first send (rule 5 pools the
/// sends to new countries) ...
const NEW_COUNTRY_SECONDS: i64 = 3_600;
/// ... when that is this long after the service's first send (the countries a service
/// starts with are its own, not new).
const NEW_COUNTRY_AFTER_SECONDS: i64 = 900;
/// A refused key's refusal is prolonged by an attempt this soon after the previous one (a
/// pump's pace); real users' occasional attempts let it lapse.
const PROLONG_GAP_SECONDS: i64 = 120;
/// Age before a send counts in conversion while its country spikes: most real users type
/// their code within a minute, and a pump must not get minutes of free sends.
const SPIKE_MATURITY_SECONDS: u32 = 60;

/// A service's pumping rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PumpingGuard {
    /// `off`, `shadow` (default: learn and record before enforcing) or `enforce`.
    pub mode: Mode,
    /// E.164 numbers never refused by this guard.
    pub safe_numbers: Vec<String>,
    /// Prefixes never refused by this guard.
    pub safe_prefixes: Vec<String>,
    /// Prefix lengths (digits after `+`) watched, besides the country.
    pub prefix_lengths: Vec<u8>,
    /// The conversion window, in seconds.
    pub window_seconds: u32,
    /// Age before a send counts in conversion, in seconds.
    pub maturity_seconds: u32,
    /// Matured distinct numbers before a prefix's conversion is judged.
    pub min_distinct: u32,
    /// Matured distinct numbers before a whole country's conversion is judged.
    pub min_distinct_country: u32,
    /// A prefix converting below this percentage of its country's baseline is refused.
    pub conversion_ratio_percent: u32,
    /// A country's last hour at this percentage of its average hour is a spike.
    pub spike_percent: u32,
    /// How long a refused prefix or country stays refused, in seconds.
    pub block_seconds: u32,
    /// Numbers within this distance count as a run.
    pub sequential_distance: u32,
    /// Other numbers in a run before this one is refused.
    pub sequential_count: u32,
    /// The run window, in seconds.
    pub sequential_window_seconds: u32,
    /// The range-walk rule (4) and the new-country pool (5): `enforce` (default) refuses
    /// under strong evidence as the guard's mode allows and records weaker evidence only;
    /// `shadow` only records what it would refuse; `off` skips them.
    pub range_mode: Mode,
    /// Trailing digits of the national number that make the narrowest range watched
    /// (3: blocks of 1,000 numbers); three wider levels are watched too, each capped
    /// below the national number's own length.
    pub range_digits: u8,
    /// The longest window a range's sends are counted over, in seconds (the rule also
    /// looks at 2 and 10 minutes).
    pub range_window_seconds: u32,
    /// How long a refused range stays refused after the last attempt inside it, in
    /// seconds.
    pub range_hold_seconds: u32,
}

impl Default for PumpingGuard {
    fn default() -> Self {
        PumpingGuard {
            mode: Mode::Shadow,
            safe_numbers: Vec::new(),
            safe_prefixes: Vec::new(),
            prefix_lengths: vec![5, 6, 7, 8],
            window_seconds: 3_600,
            maturity_seconds: 90,
            min_distinct: 4,
            min_distinct_country: 12,
            conversion_ratio_percent: 35,
            spike_percent: 500,
            block_seconds: 3_600,
            sequential_distance: 20,
            sequential_count: 3,
            sequential_window_seconds: 900,
            range_mode: Mode::Enforce,
            range_digits: 3,
            range_window_seconds: 3_600,
            range_hold_seconds: 1_800,
        }
    }
}

impl PumpingGuard {
    /// Checks and normalizes the settings.
    pub fn validate(self) -> Result<Self, DomainError> {
        let bad = |m: &str| Err(DomainError::InvalidRequest(format!("pumping: {m}")));
        if self.prefix_lengths.iter().any(|l| !(2..=12).contains(l)) {
            return bad("prefix_lengths must be 2-12");
        }
        if !(60..=86_400).contains(&self.window_seconds)
            || self.maturity_seconds >= self.window_seconds
            || !(60..=86_400).contains(&self.sequential_window_seconds)
            || self.block_seconds > 86_400
        {
            return bad("windows must be 60-86400 s, maturity below the window");
        }
        if !(2..=8).contains(&self.range_digits)
            || !(600..=86_400).contains(&self.range_window_seconds)
            || !(60..=86_400).contains(&self.range_hold_seconds)
        {
            return bad(
                "range_digits must be 2-8, range windows and holds 60-86400 s (the window at least 600)",
            );
        }
        if self.min_distinct == 0 || self.min_distinct_country == 0 || self.sequential_count == 0 {
            return bad("counts must be positive");
        }
        if self.safe_numbers.len() + self.safe_prefixes.len() > 1_000 {
            return bad("at most 1000 safe entries");
        }
        Ok(PumpingGuard {
            safe_numbers: self
                .safe_numbers
                .iter()
                .map(|p| prefix(p))
                .collect::<Result<_, _>>()?,
            safe_prefixes: self
                .safe_prefixes
                .iter()
                .map(|p| prefix(p))
                .collect::<Result<_, _>>()?,
            ..self
        })
    }

    fn is_safe(&self, e164: &str) -> bool {
        self.safe_numbers.iter().any(|n| n == e164)
            || self
                .safe_prefixes
                .iter()
                .any(|p| e164.starts_with(p.as_str()))
    }
}

#[derive(Debug, Default)]
struct Window {
    /// (minute, distinct sends, approvals), oldest first.
    buckets: VecDeque<(i64, u64, u64)>,
}

impl Window {
    fn add(&mut self, minute: i64, sends: u64, approvals: u64) {
        if let Some(b) = self.buckets.iter_mut().rev().find(|b| b.0 == minute) {
            b.1 += sends;
            b.2 += approvals;
            return;
        }
        let at = self
            .buckets
            .iter()
            .rposition(|b| b.0 < minute)
            .map_or(0, |i| i + 1);
        self.buckets.insert(at, (minute, sends, approvals));
    }

    fn prune(&mut self, oldest: i64) {
        while self.buckets.front().is_some_and(|b| b.0 < oldest) {
            self.buckets.pop_front();
        }
    }

    /// (sends, approvals) of buckets in `[from, to)`.
    fn sum(&self, from: i64, to: i64) -> (u64, u64) {
        self.buckets
            .iter()
            .filter(|b| b.0 >= from && b.0 < to)
            .fold((0, 0), |(s, a), b| (s + b.1, a + b.2))
    }
}

/// The learned state of one service.
#[derive(Debug, Default)]
pub struct PumpingState {
    windows: HashMap<String, Window>,
    baselines: HashMap<String, Window>,
    /// Last allowed send per number: (time, country) — approvals count against it, and a
    /// resend within the window is not a new distinct number.
    last_send: HashMap<String, (i64, String)>,
    recent: HashMap<String, VecDeque<(i64, u64)>>,
    blocked: HashMap<String, Blocked>,
    /// First hour each country was seen (its average hour counts from there).
    first_hour: HashMap<String, i64>,
    /// When each country sent in the last day was first sent to (since its last day
    /// without sends): a country is new to the service for an hour.
    first_seen: HashMap<String, i64>,
    /// Rule 4's view of each country's national number ranges.
    ranges: HashMap<String, CountryRanges>,
    /// Rule 5's pool of sends to countries new to the service.
    new_countries: NewCountries,
    /// What the last judged send was suspected of without being refused.
    watch: Option<String>,
    last_prune: i64,
}

/// A refused key: until when, why, and the traffic that condemned it (left out when a
/// shorter prefix or the country is judged, so one bad block does not condemn its
/// neighbours).
#[derive(Debug)]
struct Blocked {
    until: i64,
    /// The last attempt on it (the refusal, then each refused attempt).
    last: i64,
    why: String,
    country: String,
    sends: u64,
    approvals: u64,
}

/// The keys a number is counted under: each watched prefix, most specific first, then
/// its country.
fn keys(guard: &PumpingGuard, e164: &str, country: &str) -> Vec<String> {
    let digits = e164.trim_start_matches('+');
    let mut lengths: Vec<usize> = guard
        .prefix_lengths
        .iter()
        .map(|&l| usize::from(l))
        .collect();
    lengths.sort_unstable_by(|a, b| b.cmp(a));
    lengths.dedup();
    let mut out: Vec<String> = lengths
        .into_iter()
        .filter(|&len| len < digits.len())
        .map(|len| format!("p:+{}", &digits[..len]))
        .collect();
    out.push(format!("c:{country}"));
    out
}

/// P(X <= k) for X ~ Binomial(n, p). Only asked when k/n is far below p, where the
/// terms grow with k, so summing upward from (1-p)^n is accurate (an underflow to 0 then
/// means "vanishingly unlikely", which is the truth).
fn binomial_tail(n: u64, k: u64, p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    let q = 1.0 - p;
    let mut term = q.powf(n as f64);
    let mut sum = term;
    for i in 0..k.min(n) {
        term *= (n - i) as f64 / (i + 1) as f64 * (p / q);
        sum += term;
    }
    sum.min(1.0)
}

fn number_value(e164: &str) -> Option<u64> {
    e164.trim_start_matches('+').parse().ok()
}

impl PumpingState {
    /// Decides about a send to `e164` (in `country`, `ZZ` when unknown) at `now` (seconds).
    /// An allowed send is counted; a refused one only feeds the run detector.
    pub fn check_send(
        &mut self,
        guard: &PumpingGuard,
        e164: &str,
        country: Option<&str>,
        now: i64,
    ) -> Verdict {
        self.check_send_watched(guard, e164, country, now).0
    }

    /// [`check_send`](Self::check_send), with what the send was suspected of without
    /// being refused (weak evidence of a range walk, or the range rule in `shadow`): a
    /// refusal to record, never to apply.
    pub fn check_send_watched(
        &mut self,
        guard: &PumpingGuard,
        e164: &str,
        country: Option<&str>,
        now: i64,
    ) -> (Verdict, Option<Refusal>) {
        if guard.mode == Mode::Off {
            return (Ok(()), None);
        }
        self.prune(guard, now);
        self.watch = None;
        let country = country.unwrap_or("ZZ").to_string();
        let national = national(e164);
        // Rule 5 judges the sends to new countries, and those to the countries its hold
        // refused.
        let fresh = self.new_country_rate(&country, now).or_else(|| {
            self.new_countries
                .holds(guard, Some(&country), now)
                .then_some(0.0)
        });
        let verdict = if guard.is_safe(e164) {
            Ok(())
        } else {
            self.judge(guard, e164, &country, national, fresh, now)
        };
        let value = number_value(e164);
        if let Some(v) = value {
            self.recent
                .entry(country.clone())
                .or_default()
                .push_back((now, v));
        }
        // In shadow mode the send goes out, so it is counted like an allowed one.
        let allowed = verdict.is_ok() || guard.mode == Mode::Shadow;
        let counted = allowed && self.count_send(guard, e164, &country, now);
        if let Some(v) = value
            && fresh.is_some()
        {
            self.new_countries.observe(v, now, allowed);
        }
        if let Some(n) = national
            && guard.range_mode != Mode::Off
        {
            self.ranges
                .entry(country)
                .or_default()
                .observe(guard, n, now, allowed, counted);
        }
        let watch = self.watch.take().map(|reason| Refusal {
            guard: GuardName::Fraud,
            reason,
            retry_after_secs: None,
        });
        (verdict, watch)
    }

    /// Counts an approval (a right code) for `e164` at `now`.
    pub fn record_approval(&mut self, guard: &PumpingGuard, e164: &str, now: i64) {
        let Some((sent, country)) = self.last_send.get(e164).cloned() else {
            return;
        };
        if now - sent > i64::from(guard.window_seconds) {
            return;
        }
        let minute = sent.div_euclid(BUCKET_SECONDS);
        for key in keys(guard, e164, &country) {
            self.windows.entry(key).or_default().add(minute, 0, 1);
        }
        if let (Some(ranges), Some(n)) = (self.ranges.get_mut(&country), national(e164)) {
            ranges.approve(n.value);
        }
        if let Some(v) = number_value(e164) {
            self.new_countries.approve(v);
        }
        self.baselines.entry(country).or_default().add(
            sent.div_euclid(BASELINE_BUCKET_SECONDS),
            0,
            1,
        );
    }

    /// Counts a send that went out; false for a resend within the window (not a new
    /// distinct number).
    fn count_send(&mut self, guard: &PumpingGuard, e164: &str, country: &str, now: i64) -> bool {
        let window = i64::from(guard.window_seconds);
        let repeat = self
            .last_send
            .get(e164)
            .is_some_and(|(t, _)| now - t <= window);
        if repeat {
            return false;
        }
        self.last_send
            .insert(e164.to_string(), (now, country.to_string()));
        self.first_seen.entry(country.to_string()).or_insert(now);
        let minute = now.div_euclid(BUCKET_SECONDS);
        for key in keys(guard, e164, country) {
            self.windows.entry(key).or_default().add(minute, 1, 0);
        }
        self.baselines.entry(country.to_string()).or_default().add(
            now.div_euclid(BASELINE_BUCKET_SECONDS),
            1,
            0,
        );
        true
    }

    /// The country's conversion over the last day, per mille, with the prior.
    fn baseline_permille(&self, country: &str, now: i64) -> u64 {
        let hour = now.div_euclid(BASELINE_BUCKET_SECONDS);
        let (s, a) = self.baselines.get(country).map_or((0, 0), |w| {
            // The current hour is still maturing: judge on the finished ones.
            w.sum(hour - BASELINE_BUCKETS as i64, hour)
        });
        (a * 1000 + PRIOR_CONVERSION_PERMILLE * PRIOR_WEIGHT) / (s + PRIOR_WEIGHT)
    }

    /// The country's last day for rule 4: its sends, and a day at its busiest finished
    /// hour's pace (at least its sends).
    fn day(&self, country: &str, now: i64) -> ranges::Day {
        let Some(w) = self.baselines.get(country) else {
            return ranges::Day::default();
        };
        let hour = now.div_euclid(BASELINE_BUCKET_SECONDS);
        let from = hour - BASELINE_BUCKETS as i64 + 1;
        let (sends, _) = w.sum(from, hour + 1);
        let busy_hour = w
            .buckets
            .iter()
            .filter(|b| b.0 >= from && b.0 < hour)
            .map(|b| b.1)
            .max()
            .unwrap_or(0);
        ranges::Day {
            sends,
            busy: (busy_hour * BASELINE_BUCKETS as u64).max(sends) as f64,
        }
    }

    /// Whether `country` is new to the service (first sent to less than
    /// [`NEW_COUNTRY_SECONDS`] ago, and at least [`NEW_COUNTRY_AFTER_SECONDS`] after the
    /// service's first send of its last day), with the service's sends a day to its rare
    /// countries (the pace new countries are expected at, for rule 5).
    fn new_country_rate(&self, country: &str, now: i64) -> Option<f64> {
        let service = self.first_seen.values().min()?;
        let new = |c: &str| match self.first_seen.get(c) {
            None => now - service >= NEW_COUNTRY_AFTER_SECONDS,
            Some(t) => now - t < NEW_COUNTRY_SECONDS && t - service >= NEW_COUNTRY_AFTER_SECONDS,
        };
        if !new(country) {
            return None;
        }
        let hour = now.div_euclid(BASELINE_BUCKET_SECONDS);
        let rare: u64 = self
            .baselines
            .iter()
            .filter(|(c, _)| !new(c))
            .map(|(_, w)| w.sum(hour - BASELINE_BUCKETS as i64 + 1, hour + 1).0)
            .filter(|sends| *sends < RARE_SENDS)
            .sum();
        Some(rare as f64)
    }

    fn is_spiking(&self, guard: &PumpingGuard, country: &str, now: i64) -> bool {
        let Some(w) = self.windows.get(&format!("c:{country}")) else {
            return false;
        };
        let minute = now.div_euclid(BUCKET_SECONDS);
        let (last_hour, _) = w.sum(minute - 60, minute + 1);
        let hour = now.div_euclid(BASELINE_BUCKET_SECONDS);
        let (day, _) = self
            .baselines
            .get(country)
            .map_or((0, 0), |b| b.sum(hour - BASELINE_BUCKETS as i64, hour));
        let seen_hours = self
            .first_hour
            .get(country)
            .map_or(0, |first| (hour - first).clamp(0, BASELINE_BUCKETS as i64));
        if seen_hours == 0 {
            // No finished hour yet: only a country never seen before can spike.
            return self.first_hour.get(country).is_none_or(|f| *f == hour)
                && last_hour >= MIN_SPIKE_SENDS
                && day == 0
                && self
                    .baselines
                    .get(country)
                    .is_none_or(|b| b.sum(hour, hour + 1).1 == 0);
        }
        let average_hour = day / seen_hours as u64;
        last_hour >= MIN_SPIKE_SENDS
            && last_hour * 100 >= average_hour.max(1) * u64::from(guard.spike_percent)
    }

    fn judge(
        &mut self,
        guard: &PumpingGuard,
        e164: &str,
        country: &str,
        national: Option<National>,
        fresh: Option<f64>,
        now: i64,
    ) -> Verdict {
        let refuse = |reason: String| {
            Err(Refusal {
                guard: GuardName::Fraud,
                reason,
                retry_after_secs: None,
            })
        };
        let keys = keys(guard, e164, country);
        let mut condemned: Option<String> = None;
        for key in &keys {
            if let Some(b) = self.blocked.get_mut(key)
                && b.until > now
            {
                // A narrow range or one where not one code was used is a pump's: its
                // refusal lasts while the attempts go on at a pump's pace.
                if (b.approvals == 0 || key.len() >= NARROW_PREFIX_KEY)
                    && now - b.last <= PROLONG_GAP_SECONDS
                {
                    b.until = b.until.max(now + i64::from(guard.block_seconds));
                }
                b.last = now;
                condemned.get_or_insert_with(|| b.why.clone());
            }
        }
        if let Some(why) = condemned {
            return refuse(why);
        }
        // Rule 3: runs of near-sequential numbers.
        if let Some(v) = number_value(e164)
            && let Some(recent) = self.recent.get(country)
        {
            let since = now - i64::from(guard.sequential_window_seconds);
            let mut near: Vec<u64> = recent
                .iter()
                .filter(|(t, n)| {
                    *t >= since && *n != v && n.abs_diff(v) <= u64::from(guard.sequential_distance)
                })
                .map(|(_, n)| *n)
                .collect();
            near.sort_unstable();
            near.dedup();
            if near.len() >= guard.sequential_count as usize {
                return refuse("a run of sequential numbers".into());
            }
        }
        let baseline = self.baseline_permille(country, now);
        // Rule 5: a burst over countries new to the service, pooled.
        if let Some(per_day) = fresh
            && let Some(v) = number_value(e164)
            && guard.range_mode != Mode::Off
        {
            let verdict =
                self.new_countries
                    .judge(guard, country, v, now, per_day, baseline as f64 / 1000.0);
            match verdict {
                RangeVerdict::Fine => {}
                RangeVerdict::Refuse(why) if guard.range_mode == Mode::Enforce => {
                    return refuse(why);
                }
                RangeVerdict::Refuse(why) | RangeVerdict::Watch(why) => self.watch = Some(why),
            }
        }
        // Rule 4: walks along a national number range.
        if let Some(n) = national
            && guard.range_mode != Mode::Off
        {
            let day = self.day(country, now);
            let verdict = self.ranges.entry(country.to_string()).or_default().judge(
                guard,
                country,
                n,
                now,
                day,
                baseline as f64 / 1000.0,
            );
            match verdict {
                RangeVerdict::Fine => {}
                RangeVerdict::Refuse(why) if guard.range_mode == Mode::Enforce => {
                    return refuse(why);
                }
                RangeVerdict::Refuse(why) | RangeVerdict::Watch(why) => self.watch = Some(why),
            }
        }
        // Rules 1 and 2: low conversion against the baseline, tighter under a spike.
        let spiking = self.is_spiking(guard, country, now);
        let never_converted = self.baselines.get(country).is_none_or(|w| {
            let hour = now.div_euclid(BASELINE_BUCKET_SECONDS);
            w.sum(hour - BASELINE_BUCKETS as i64, hour + 1).1 == 0
        });
        if spiking && never_converted {
            let why = format!("{country}: a burst of sends and not one code used");
            self.blocked.insert(
                format!("c:{country}"),
                Blocked {
                    until: now + i64::from(guard.block_seconds),
                    last: now,
                    why: why.clone(),
                    country: country.to_string(),
                    sends: 0,
                    approvals: 0,
                },
            );
            return refuse(why);
        }
        let minute = now.div_euclid(BUCKET_SECONDS);
        let from = minute - i64::from(guard.window_seconds) / BUCKET_SECONDS;
        let maturity = if spiking {
            guard.maturity_seconds.min(SPIKE_MATURITY_SECONDS)
        } else {
            guard.maturity_seconds
        };
        // Buckets that ended at least `maturity` ago (a bucket ends a minute after it starts).
        let to = minute + 1 - i64::from(maturity) / BUCKET_SECONDS;
        for key in &keys {
            let Some(w) = self.windows.get(key) else {
                continue;
            };
            let (mut sends, mut approvals) = w.sum(from, to);
            let is_country = key.starts_with("c:");
            // Traffic of refused, more specific keys is theirs, not this key's.
            for (other, b) in &self.blocked {
                let inside = if is_country {
                    other.starts_with("p:") && b.country == country
                } else {
                    other.len() > key.len() && other.starts_with(key.as_str())
                };
                if inside && b.until > now {
                    sends = sends.saturating_sub(b.sends);
                    approvals = approvals.saturating_sub(b.approvals);
                }
            }
            let needed = match (is_country, spiking) {
                (true, true) => u64::from(guard.min_distinct_country).div_ceil(2),
                (false, true) => u64::from(guard.min_distinct).min(3),
                (true, false) => u64::from(guard.min_distinct_country),
                (false, false) => u64::from(guard.min_distinct),
            };
            if sends < needed {
                continue;
            }
            let conversion = approvals * 1000 / sends;
            // A wide prefix holds many real users: it needs far stronger evidence.
            let chance = if is_country || key.len() >= NARROW_PREFIX_KEY {
                MAX_CHANCE
            } else {
                WIDE_PREFIX_CHANCE
            };
            if conversion * 100 < baseline * u64::from(guard.conversion_ratio_percent)
                && binomial_tail(sends, approvals, baseline as f64 / 1000.0) < chance
            {
                let what = key.trim_start_matches("c:").trim_start_matches("p:");
                let why = format!(
                    "{what}: {approvals} of {sends} recent codes used (usual: {}%){}",
                    baseline / 10,
                    if spiking { ", volume spike" } else { "" }
                );
                self.blocked.insert(
                    key.clone(),
                    Blocked {
                        until: now + i64::from(guard.block_seconds),
                        last: now,
                        why: why.clone(),
                        country: country.to_string(),
                        sends,
                        approvals,
                    },
                );
                return refuse(why);
            }
        }
        Ok(())
    }

    fn prune(&mut self, guard: &PumpingGuard, now: i64) {
        if now - self.last_prune < BUCKET_SECONDS {
            return;
        }
        self.last_prune = now;
        let minute = now.div_euclid(BUCKET_SECONDS);
        let oldest = minute - i64::from(guard.window_seconds) / BUCKET_SECONDS - 1;
        self.windows.retain(|_, w| {
            w.prune(oldest);
            !w.buckets.is_empty()
        });
        let hour = now.div_euclid(BASELINE_BUCKET_SECONDS);
        self.baselines
            .values_mut()
            .for_each(|w| w.prune(hour - BASELINE_BUCKETS as i64 - 1));
        let baselines = &self.baselines;
        self.first_seen.retain(|c, _| {
            baselines
                .get(c)
                .is_some_and(|w| w.sum(hour - BASELINE_BUCKETS as i64 + 1, hour + 1).0 > 0)
        });
        let window = i64::from(guard.window_seconds);
        self.last_send.retain(|_, (t, _)| now - *t <= window);
        let run = now - i64::from(guard.sequential_window_seconds);
        self.recent.retain(|_, q| {
            while q.front().is_some_and(|(t, _)| *t < run) {
                q.pop_front();
            }
            !q.is_empty()
        });
        self.blocked.retain(|_, b| b.until > now);
        self.ranges.retain(|_, r| r.prune(guard, now));
        self.new_countries.prune(guard, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enforce() -> PumpingGuard {
        PumpingGuard {
            mode: Mode::Enforce,
            ..Default::default()
        }
    }

    /// A day of healthy traffic in GH: 90% of users type their code.
    fn warm(state: &mut PumpingState, g: &PumpingGuard, until: i64) {
        let mut n = 0u64;
        let mut t = 0;
        while t < until {
            let to = format!("+23324{:07}", (n * 7_919_993) % 10_000_000);
            assert!(state.check_send(g, &to, Some("GH"), t).is_ok(), "warm {to}");
            if !n.is_multiple_of(10) {
                state.record_approval(g, &to, t + 30);
            }
            n += 1;
            t += 97;
        }
    }

    /// [`warm`], with numbers spread as real users' are (at random over GH's mobile
    /// ranges, not on a lattice).
    fn warm_spread(state: &mut PumpingState, g: &PumpingGuard, until: i64) {
        let mut n = 0u64;
        let mut t = 0;
        while t < until {
            let mut x = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^= x >> 31;
            let start = ["+23324", "+23354", "+23355", "+23320"][(x % 4) as usize];
            let to = format!("{start}{:07}", (x >> 8) % 10_000_000);
            assert!(state.check_send(g, &to, Some("GH"), t).is_ok(), "warm {to}");
            if !n.is_multiple_of(10) {
                state.record_approval(g, &to, t + 30);
            }
            n += 1;
            t += 97;
        }
    }

    #[test]
    fn a_prefix_that_never_converts_is_refused_while_others_go() {
        let g = enforce();
        let mut s = PumpingState::default();
        warm(&mut s, &g, 86_400);
        let t0 = 86_400;
        // A pump on random numbers of one 8-digit block, no code ever typed.
        let mut refused = 0;
        for i in 0..40u64 {
            let to = format!("+2335519{:05}", (i * 7_717) % 100_000);
            if s.check_send(&g, &to, Some("GH"), t0 + (i as i64) * 60)
                .is_err()
            {
                refused += 1;
            }
        }
        assert!(refused >= 30, "refused only {refused} of 40");
        // Real users elsewhere in GH are not held back.
        let to = "+233241234567";
        assert!(s.check_send(&g, to, Some("GH"), t0 + 2_500).is_ok());
    }

    #[test]
    fn runs_of_sequential_numbers_are_refused_and_the_safe_list_exempts() {
        let g = enforce();
        let mut s = PumpingState::default();
        let base = 2_348_035_550_000u64;
        let mut verdicts = Vec::new();
        for i in 0..6 {
            let to = format!("+{}", base + i * 2);
            verdicts.push(s.check_send(&g, &to, Some("NG"), i as i64 * 40).is_ok());
        }
        assert_eq!(verdicts, [true, true, true, false, false, false]);
        let r = s
            .check_send(&g, &format!("+{}", base + 13), Some("NG"), 300)
            .unwrap_err();
        assert_eq!(r.guard, GuardName::Fraud);
        let safe = PumpingGuard {
            safe_prefixes: vec!["+234803555".into()],
            ..enforce()
        }
        .validate()
        .unwrap();
        assert!(
            s.check_send(&safe, &format!("+{}", base + 15), Some("NG"), 310)
                .is_ok()
        );
        // Long after, the run is forgotten.
        assert!(
            s.check_send(&g, &format!("+{}", base + 17), Some("NG"), 5_000)
                .is_ok()
        );
    }

    #[test]
    fn a_country_spike_without_conversion_is_throttled() {
        let g = enforce();
        let mut s = PumpingState::default();
        warm(&mut s, &g, 86_400);
        // A burst into a country with no history: random mobile-looking numbers.
        let mut refused = 0;
        for i in 0..200u64 {
            let to = format!("+99890{:07}", (i * 4_999_963) % 10_000_000);
            if s.check_send(&g, &to, Some("UZ"), 86_400 + i as i64 * 5)
                .is_err()
            {
                refused += 1;
            }
        }
        assert!(refused >= 170, "refused only {refused} of 200");
    }

    #[test]
    fn a_walk_along_a_range_is_refused_early_and_held() {
        let g = enforce();
        let mut s = PumpingState::default();
        warm(&mut s, &g, 86_400);
        // Steps of 40-200 (beyond the run rule's distance), one every 8 s, 2% checked.
        let mut number = 233_551_200_000u64;
        let mut verdicts = Vec::new();
        for i in 0..60i64 {
            number += 40 + (i as u64 * 37) % 160;
            let t = 86_400 + i * 8;
            verdicts.push(
                s.check_send(&g, &format!("+{number}"), Some("GH"), t)
                    .is_ok(),
            );
        }
        let allowed = verdicts.iter().filter(|ok| **ok).count();
        assert!(allowed <= 4, "{allowed} of 60 went out: {verdicts:?}");
        // The range stays held while the walk goes on, and a real user elsewhere in GH
        // is not held back.
        let next = format!("+{}", number + 50);
        let r = s
            .check_send(&g, &next, Some("GH"), 86_400 + 600)
            .unwrap_err();
        assert!(r.reason.contains("GH range"), "{}", r.reason);
        assert!(
            s.check_send(&g, "+233241234567", Some("GH"), 86_400 + 610)
                .is_ok()
        );
        // In shadow the range rule only records.
        let shadow = PumpingGuard {
            range_mode: Mode::Shadow,
            ..enforce()
        };
        let mut s = PumpingState::default();
        warm(&mut s, &shadow, 86_400);
        let mut watched = 0;
        // (Six sends in 40 s: none matured, so only the range rule speaks.)
        for i in 0..6i64 {
            let to = format!("+{}", 233_551_200_000u64 + i as u64 * 97);
            let (v, w) = s.check_send_watched(&shadow, &to, Some("GH"), 86_400 + i * 8);
            assert!(v.is_ok(), "shadow range rule refused {to}: {v:?}");
            watched += usize::from(w.is_some());
        }
        assert!(watched >= 2, "only {watched} watched");
    }

    #[test]
    fn a_walk_in_a_country_with_history_goes_out_twice_and_is_held_where_it_goes() {
        let g = enforce();
        let mut s = PumpingState::default();
        warm_spread(&mut s, &g, 86_400);
        // Steps of 25-45 (beyond the run rule's distance), one every 2-6 s: GH's day tells
        // the density of its numbers, so the third number of the walk is already
        // implausible.
        let mut number = 233_244_100_000u64;
        let mut t = 86_400;
        let mut verdicts = Vec::new();
        for i in 0..40u64 {
            number += 25 + (i * 7) % 21;
            t += 2 + (i as i64 * 3) % 5;
            verdicts.push(
                s.check_send(&g, &format!("+{number}"), Some("GH"), t)
                    .is_ok(),
            );
        }
        assert_eq!(verdicts[..3], [true, true, false], "{verdicts:?}");
        assert!(verdicts[2..].iter().all(|ok| !ok), "{verdicts:?}");
        // The walk's next steps are held ...
        let r = s
            .check_send(&g, &format!("+{}", number + 30), Some("GH"), t + 60)
            .unwrap_err();
        assert!(
            r.reason.starts_with("a walk along GH range"),
            "{}",
            r.reason
        );
        // ... but not its range: a real user two thousand numbers on goes out.
        assert!(
            s.check_send(&g, &format!("+{}", number + 2_000), Some("GH"), t + 70)
                .is_ok()
        );
    }

    #[test]
    fn a_burst_over_new_countries_is_pooled_and_held_while_it_goes_on() {
        let g = enforce();
        let mut s = PumpingState::default();
        warm(&mut s, &g, 86_400);
        // Four small countries the service never sent to, a send every 3 s over them:
        // none has enough sends of its own, together they are a burst.
        let targets = [
            ("+676770", "TO"),
            ("+685770", "WS"),
            ("+678550", "VU"),
            ("+679920", "FJ"),
        ];
        let mut allowed = 0;
        let mut last = 0;
        for i in 0..60u64 {
            let (start, country) = targets[(i % 4) as usize];
            let to = format!("{start}{:04}", (i * 7_919) % 10_000);
            last = 86_400 + i as i64 * 3;
            allowed += usize::from(s.check_send(&g, &to, Some(country), last).is_ok());
        }
        assert!(allowed <= 3, "{allowed} of 60 went out");
        // Held: another new country is refused while the hold lasts, then the hold
        // decays.
        let r = s
            .check_send(&g, "+6862112345", Some("KI"), last + 600)
            .unwrap_err();
        assert!(
            r.reason.contains("countries new to the service"),
            "{}",
            r.reason
        );
        let after = last + 600 + i64::from(g.range_hold_seconds) + 60;
        assert!(s.check_send(&g, "+6862154321", Some("KI"), after).is_ok());
        // At a service's start no country is new: its first countries are its own.
        let mut s = PumpingState::default();
        for (i, (start, country)) in targets.iter().enumerate() {
            for j in 0..3u64 {
                let to = format!("{start}{:04}", j * 3_331 + i as u64);
                let t = (i * 3 + j as usize) as i64 * 2;
                assert!(s.check_send(&g, &to, Some(country), t).is_ok(), "{to}");
            }
        }
    }

    #[test]
    fn a_refusal_lapses_when_the_attempts_come_at_a_users_pace() {
        let g = enforce();
        let mut s = PumpingState::default();
        warm(&mut s, &g, 86_400);
        // A pump on one 8-digit block, no code typed: the block is refused and stays
        // refused while it keeps trying once a minute.
        let t0 = 86_400;
        let mut last = t0;
        for i in 0..30u64 {
            let to = format!("+2335519{:05}", (i * 7_717) % 100_000);
            last = t0 + i as i64 * 60;
            let _ = s.check_send(&g, &to, Some("GH"), last);
        }
        let to = |i: u64| format!("+2335519{:05}", (i * 3_037 + 11) % 100_000);
        assert!(s.check_send(&g, &to(1), Some("GH"), last + 60).is_err());
        // Then a real user's attempt every ten minutes: it does not prolong the
        // refusal, which lapses an hour after the pump's last attempt.
        let mut t = last + 60;
        for i in 2..7 {
            t += 600;
            let _ = s.check_send(&g, &to(i), Some("GH"), t);
        }
        let t = last + 60 + i64::from(g.block_seconds) + 60;
        let v = s.check_send(&g, &to(9), Some("GH"), t);
        assert!(v.is_ok(), "{v:?}");
    }

    #[test]
    fn the_binomial_tail_is_right() {
        assert!((binomial_tail(4, 0, 0.85) - 0.15f64.powi(4)).abs() < 1e-12);
        let two_of_seven = binomial_tail(7, 2, 0.83);
        assert!((0.0020..0.0023).contains(&two_of_seven), "{two_of_seven}");
        assert_eq!(binomial_tail(5_000, 10, 0.85), 0.0);
    }

    #[test]
    fn shadow_decides_but_counts_and_off_is_silent() {
        let g = PumpingGuard::default();
        assert_eq!(g.mode, Mode::Shadow);
        let mut s = PumpingState::default();
        let base = 2_348_035_550_000u64;
        let results: Vec<bool> = (0..5)
            .map(|i| {
                s.check_send(&g, &format!("+{}", base + i), Some("NG"), i as i64)
                    .is_ok()
            })
            .collect();
        assert_eq!(results, [true, true, true, false, false]);
        let off = PumpingGuard {
            mode: Mode::Off,
            ..Default::default()
        };
        assert!(
            s.check_send(&off, &format!("+{}", base + 5), Some("NG"), 6)
                .is_ok()
        );
        assert!(
            PumpingGuard {
                prefix_lengths: vec![1],
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }
}
