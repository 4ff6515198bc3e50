//! Rule 4 of the pumping guard: walks along a national number range.
//!
//! A range is a prefix of the national significant number: the number without its last
//! `range_digits` digits (1,000 numbers by default), and three wider levels (10,000 to
//! 1,000,000), each at least one digit short of the national number's own length, so a
//! country with 7-digit numbers is watched down to its first digit and one with 10-digit
//! numbers no wider than its million-blocks. Around each send the rule counts the distinct
//! numbers sent in the same neighbourhood (centred on the number, the width of a range) in
//! the last 2 minutes, 10 minutes and `range_window_seconds`, and asks how likely that
//! many would be for real users: Poisson, at the rate the range sees in a day — the
//! larger of the range's own last day and the country's average range (its sends of the
//! last day over the ranges they fell in), never below one a day.
//!
//! - Below [`STRONG_CHANCE`] the range is refused (strong evidence: the count alone).
//! - Below [`WEAK_CHANCE`] it is refused when its matured sends also convert far below
//!   the country's baseline; otherwise the suspicion is only recorded (a shadow refusal).
//! - A neighbourhood whose matured sends convert like real users' is never refused: a
//!   busy range of real users is not a walk.
//!
//! A refused range holds for `range_hold_seconds` after the last attempt inside it (the
//! walk carries on: its attempts keep the hold), then decays: attempts leave the windows
//! and the hold runs out.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::{MAX_CHANCE, PumpingGuard, binomial_tail};

/// The shorter windows the counts are taken over, in seconds (with the guard's longest).
const SHORT_WINDOWS: [i64; 2] = [120, 600];
/// Levels watched from `range_digits` upwards (the widest ones, up to the national
/// number's first digit, catch bursts over a whole country's mobile block).
const LEVELS: u8 = 6;
/// Levels that are held after a refusal (up to a million numbers).
const HELD_LEVELS: u8 = 4;
/// A count this unlikely for real users is refused on its own.
pub(super) const STRONG_CHANCE: f64 = 1e-9;
/// A count this unlikely is refused with low conversion, else recorded.
pub(super) const WEAK_CHANCE: f64 = 1e-6;
/// Matured sends of a neighbourhood before its conversion counts.
const MIN_MATURED: u64 = 3;
/// The least a range is expected to see in a day.
const MIN_PER_DAY: f64 = 1.0;
const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

/// A national significant number: its value (without leading zeros) and digit count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct National {
    /// The digits as a number.
    pub value: u64,
    /// How many digits, leading zeros included.
    pub len: u8,
}

/// The national significant number of an E.164 number, from the numbering plan.
pub fn national(e164: &str) -> Option<National> {
    let parsed = phonenumber::parse(None, e164).ok()?;
    let n = parsed.national();
    let digits = n.value().checked_ilog10().map_or(1, |l| l + 1);
    Some(National {
        value: n.value(),
        len: u8::try_from(digits)
            .unwrap_or(u8::MAX)
            .saturating_add(n.zeros()),
    })
}

/// What rule 4 says about a send.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum RangeVerdict {
    /// Nothing unusual.
    Fine,
    /// Unusual, not enough to refuse: recorded only.
    Watch(String),
    /// Refused.
    Refuse(String),
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    t: i64,
    /// Went out (counts in conversion).
    allowed: bool,
    approved: bool,
}

#[derive(Clone, Debug)]
struct Hold {
    low: u64,
    high: u64,
    /// Half the width of the range that was refused: a walk's next attempt this far
    /// beyond the edge, soon after the last one, is the walk going on.
    reach: u64,
    /// The last attempt inside.
    last: i64,
    until: i64,
    why: String,
}

/// How soon after a hold's last attempt one just beyond its edge is taken for the walk.
const WALK_GAP: i64 = 600;

/// One country's recent sends by national number, its ranges' last day and its holds.
#[derive(Debug, Default)]
pub(super) struct CountryRanges {
    /// National number → its latest send within the longest window.
    by_value: BTreeMap<u64, Seen>,
    /// Sends in time order, to forget them.
    order: VecDeque<(i64, u64)>,
    holds: Vec<Hold>,
    /// (level, range) → counted sends per hour of the last day.
    history: HashMap<(u8, u64), VecDeque<(i64, u64)>>,
    /// Ranges per level with a counted send in the last day.
    distinct: HashMap<u8, u64>,
    pruned_hour: i64,
}

/// P(X >= n) for X ~ Poisson(lambda), summed from the n-th term upwards (accurate when
/// small, which is when it matters).
pub(super) fn poisson_tail(n: u64, lambda: f64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let lambda = lambda.max(1e-12);
    // ln of the n-th term: -λ + n ln λ - ln n!
    let ln_fact: f64 = (1..=n).map(|k| (k as f64).ln()).sum();
    let mut term = (-lambda + n as f64 * lambda.ln() - ln_fact).exp();
    let mut sum = term;
    let mut k = n;
    while term > sum * 1e-12 && k < n + 10_000 {
        k += 1;
        term *= lambda / k as f64;
        sum += term;
    }
    sum.min(1.0)
}

fn levels(guard: &PumpingGuard, n: National) -> impl Iterator<Item = u8> {
    let first = guard.range_digits;
    let last = (first + LEVELS - 1).min(n.len.saturating_sub(1));
    first..=last
}

impl CountryRanges {
    /// Remembers a send to `n` at `now` (refused ones too: a walk's refused attempts keep
    /// its range suspect); `counted` sends (went out, not a resend) join the history.
    pub(super) fn observe(
        &mut self,
        guard: &PumpingGuard,
        n: National,
        now: i64,
        allowed: bool,
        counted: bool,
    ) {
        let seen = self.by_value.entry(n.value).or_insert(Seen {
            t: now,
            allowed,
            approved: false,
        });
        seen.t = now;
        seen.allowed |= allowed;
        self.order.push_back((now, n.value));
        if !counted {
            return;
        }
        let hour = now.div_euclid(HOUR);
        for level in levels(guard, n) {
            let range = n.value / 10u64.pow(u32::from(level));
            let hours = self.history.entry((level, range)).or_default();
            if hours.is_empty() {
                *self.distinct.entry(level).or_default() += 1;
            }
            match hours.back_mut() {
                Some((h, c)) if *h == hour => *c += 1,
                _ => hours.push_back((hour, 1)),
            }
        }
    }

    /// A right code for `value` (a send still in the window).
    pub(super) fn approve(&mut self, value: u64) {
        if let Some(seen) = self.by_value.get_mut(&value) {
            seen.approved = true;
        }
    }

    /// Rule 4 for a send to `n` in `country` at `now`. `day_sends`: the country's
    /// counted sends of the last day; `baseline`: its conversion (0-1).
    pub(super) fn judge(
        &mut self,
        guard: &PumpingGuard,
        country: &str,
        n: National,
        now: i64,
        day_sends: u64,
        baseline: f64,
    ) -> RangeVerdict {
        let hold = i64::from(guard.range_hold_seconds);
        let v = n.value;
        if let Some(h) = self.holds.iter_mut().find(|h| {
            h.until > now
                && ((h.low..=h.high).contains(&v)
                    || (now - h.last <= WALK_GAP
                        && (h.low.saturating_sub(h.reach)..=h.high.saturating_add(h.reach))
                            .contains(&v)))
        }) {
            // The walk carries its hold along.
            h.low = h.low.min(v);
            h.high = h.high.max(v);
            h.last = now;
            h.until = h.until.max(now + hold);
            return RangeVerdict::Refuse(h.why.clone());
        }
        let longest = i64::from(guard.range_window_seconds);
        let maturity = i64::from(guard.maturity_seconds);
        let mut watch = None;
        for level in levels(guard, n) {
            let width = 10u64.pow(u32::from(level));
            let range = n.value / width;
            let per_range_day = match self.distinct.get(&level) {
                Some(&d) if d > 0 && day_sends > 0 => day_sends as f64 / d as f64,
                _ => 1.0,
            };
            let own_day: u64 = self
                .history
                .get(&(level, range))
                .map_or(0, |h| h.iter().map(|(_, c)| c).sum());
            let per_day = per_range_day.max(own_day as f64).max(MIN_PER_DAY);
            let low = n.value.saturating_sub(width / 2);
            let high = n.value.saturating_add(width / 2);
            let mut counts = [0u64; 3];
            let (mut matured, mut approved) = (0u64, 0u64);
            // Refused attempts count at the narrowest level only: they keep a walk's own
            // neighbourhood suspect, and must not condemn a wide range's real users.
            let narrowest = level == guard.range_digits;
            for (v, seen) in self.by_value.range(low..=high) {
                if *v == n.value || seen.t < now - longest || !(seen.allowed || narrowest) {
                    continue;
                }
                for (i, w) in SHORT_WINDOWS.iter().chain([&longest]).enumerate() {
                    if seen.t >= now - w {
                        counts[i] += 1;
                    }
                }
                if seen.allowed && seen.t <= now - maturity {
                    matured += 1;
                    approved += u64::from(seen.approved);
                }
            }
            let (chance, count, window) = SHORT_WINDOWS
                .iter()
                .chain([&longest])
                .zip(counts)
                .map(|(w, c)| (poisson_tail(c, per_day * *w as f64 / DAY as f64), c, *w))
                .fold(
                    (1.0f64, 0, 0),
                    |best, x| if x.0 < best.0 { x } else { best },
                );
            if chance >= WEAK_CHANCE {
                continue;
            }
            let converts_like_users = matured >= MIN_MATURED
                && approved * 100 >= matured * u64::from(guard.conversion_ratio_percent)
                && binomial_tail(matured, approved, baseline) >= MAX_CHANCE;
            if converts_like_users {
                continue;
            }
            let low_conversion =
                matured >= MIN_MATURED && binomial_tail(matured, approved, baseline) < MAX_CHANCE;
            let shown = format!(
                "{country} range {}{}",
                range,
                "x".repeat(usize::from(level))
            );
            let why = format!(
                "{shown}: {count} other numbers in {window} s (usual: {:.2}), {approved} of {matured} codes used",
                per_day * window as f64 / DAY as f64
            );
            if chance < STRONG_CHANCE || low_conversion {
                // The range, and the neighbourhood where it straddles the range's edge;
                // a range wider than a million numbers is a country's whole block: its
                // sends are refused while the evidence lasts, and it is never held.
                if level >= guard.range_digits + HELD_LEVELS {
                    return RangeVerdict::Refuse(why);
                }
                self.holds.push(Hold {
                    low: low.min(range * width),
                    high: high.max(range * width + width - 1),
                    reach: width / 2,
                    last: now,
                    until: now + hold,
                    why: format!("a walk along {shown}"),
                });
                return RangeVerdict::Refuse(why);
            }
            watch.get_or_insert(why);
        }
        watch.map_or(RangeVerdict::Fine, RangeVerdict::Watch)
    }

    /// Forgets sends older than the longest window, holds run out and hours older than a
    /// day. Returns whether anything is left.
    pub(super) fn prune(&mut self, guard: &PumpingGuard, now: i64) -> bool {
        let oldest = now - i64::from(guard.range_window_seconds);
        while let Some(&(t, v)) = self.order.front() {
            if t >= oldest {
                break;
            }
            self.order.pop_front();
            if self.by_value.get(&v).is_some_and(|s| s.t == t) {
                self.by_value.remove(&v);
            }
        }
        self.holds.retain(|h| h.until > now);
        let hour = now.div_euclid(HOUR);
        if hour != self.pruned_hour {
            self.pruned_hour = hour;
            let distinct = &mut self.distinct;
            self.history.retain(|(level, _), hours| {
                while hours.front().is_some_and(|(h, _)| *h <= hour - 24) {
                    hours.pop_front();
                }
                if hours.is_empty() {
                    if let Some(d) = distinct.get_mut(level) {
                        *d = d.saturating_sub(1);
                    }
                    return false;
                }
                true
            });
        }
        !self.order.is_empty() || !self.history.is_empty() || !self.holds.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poisson_tail_is_right() {
        assert!((poisson_tail(1, 0.5) - (1.0 - (-0.5f64).exp())).abs() < 1e-12);
        let p3 = poisson_tail(3, 0.01);
        assert!((p3 - 1.6625e-7).abs() < 1e-9, "{p3}");
        assert_eq!(poisson_tail(0, 3.0), 1.0);
    }

    #[test]
    fn national_numbers_follow_the_plan() {
        let gh = national("+233244123456").unwrap();
        assert_eq!((gh.value, gh.len), (244_123_456, 9));
        let to = national("+6767712345").unwrap();
        assert_eq!(to.len, 7);
        let it = national("+390612345678").unwrap();
        assert_eq!(it.len, 10, "Italy's leading zero counts");
    }
}
