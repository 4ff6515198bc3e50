//! Rule 4 of the pumping guard: walks along a national number range.
//!
//! A range is a prefix of the national significant number: the number without its last
//! `range_digits` digits (1,000 numbers by default), and wider levels (10,000 upwards),
//! each at least one digit short of the national number's own length, so a country with
//! 7-digit numbers is watched down to its first digit. Around each send the rule counts
//! the distinct numbers sent in the same neighbourhood (centred on the number, the width
//! of a range) in the last 30 seconds, 2 minutes, 10 minutes and `range_window_seconds`,
//! and asks how likely that many would be for real users: Poisson, at the rate the range
//! sees in a day. That rate is the larger of the range's own day (before the window) and
//! the country's, taken at the pace of its busiest hour of the last day:
//!
//! - at a level whose ranges the country's day fills (at least [`FILL`] sends a range),
//!   its sends over those ranges;
//! - below that level, the density of the narrowest filled level (real users' numbers
//!   are spread evenly inside a block in use), which lets a country with history watch
//!   one level narrower too (100 numbers) and catch a walk at its third number;
//! - a country without such a level (too little history): its sends over the ranges
//!   they fell in, never below one a day.
//!
//! - Below [`STRONG_CHANCE`] the range is refused (strong evidence: the count alone).
//! - Below [`WEAK_CHANCE`] it is refused when its matured sends also convert far below
//!   the country's baseline; otherwise the suspicion is only recorded (a shadow refusal).
//! - A neighbourhood whose matured sends convert like real users' is never refused: a
//!   busy range of real users is not a walk.
//!
//! A refusal holds where the walk is, not the whole range: around the numbers that made
//! the evidence and every later attempt near them (within a reach of a few of the walk's
//! own steps), each for `range_hold_seconds`. The hold moves with the walk and decays
//! behind it: the numbers it passed leave the hold once their attempt is that old, and
//! the hold ends that long after the walk's last attempt at a walk's pace (within
//! [`WALK_PACE`] of the one before; a real user trying now and then does not prolong it).

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::{MAX_CHANCE, PumpingGuard, binomial_tail};

/// The shorter windows the counts are taken over, in seconds (with the guard's longest);
/// the shortest sees a walk's first few sends (one every few seconds).
const SHORT_WINDOWS: [i64; 3] = [30, 120, 600];
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
/// The least a range is expected to see in a day, when the country's history does not
/// tell its density.
const MIN_PER_DAY: f64 = 1.0;
/// Sends a range of a level must see on average in the country's day for the level to
/// be "filled": its ranges in use are then all seen, and their sends over their width is
/// the density of real users' numbers.
const FILL: u64 = 5;
/// A hold reaches this many times the walk's largest step beyond its attempts (the next
/// step of a walk is rarely more than twice its largest so far) ...
const REACH_STEPS: u64 = 3;
/// ... and at least this far (a walk of steps of one or two).
const MIN_REACH: u64 = 10;
/// A held attempt this soon after the walk's previous one is the walk going on (and
/// prolongs the hold); later ones are refused without prolonging it.
const WALK_PACE: i64 = 300;
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

/// A refused walk: where it went lately. A number within `reach` of an attempt of the
/// last `range_hold_seconds` is held.
#[derive(Clone, Debug)]
struct Hold {
    /// (time, national number) of the walk's attempts, oldest first.
    trail: VecDeque<(i64, u64)>,
    /// A few of the walk's steps (at most half the refused range's width).
    reach: u64,
    why: String,
}

impl Hold {
    fn holds(&self, v: u64, since: i64) -> bool {
        self.trail
            .iter()
            .any(|&(t, w)| t >= since && w.abs_diff(v) <= self.reach)
    }
}

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

/// The levels watched for `n`: from `range_digits` (one narrower when the country's
/// density is known, `dense`) up to [`LEVELS`] wider, below the number's own length.
fn levels(guard: &PumpingGuard, n: National, dense: bool) -> impl Iterator<Item = u8> {
    let first = guard.range_digits;
    let last = (first + LEVELS - 1).min(n.len.saturating_sub(1));
    let from = if dense {
        first.saturating_sub(1).max(1)
    } else {
        first
    };
    from..=last
}

/// A country's day as rule 4 sees it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Day {
    /// Counted sends of the last day.
    pub sends: u64,
    /// Sends a day at the pace of its busiest finished hour of the last day (at least
    /// `sends`): ranges are compared with the country at its busiest.
    pub busy: f64,
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
        for level in levels(guard, n, true) {
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

    /// The narrowest level (of those watched for `n`) that the country's day fills.
    fn filled_level(&self, guard: &PumpingGuard, n: National, day: Day) -> Option<u8> {
        levels(guard, n, true).find(|level| {
            self.distinct
                .get(level)
                .is_some_and(|&d| d > 0 && day.sends >= FILL * d)
        })
    }

    /// The sends a day expected in the range of `level` around `n` (before the window
    /// of the last `longest` seconds, which is what is judged).
    fn per_day(
        &self,
        n: National,
        level: u8,
        day: Day,
        filled: Option<u8>,
        now: i64,
        longest: i64,
    ) -> f64 {
        let range = n.value / 10u64.pow(u32::from(level));
        let before = (now - longest).div_euclid(HOUR);
        let own: u64 = self.history.get(&(level, range)).map_or(0, |h| {
            h.iter()
                .filter(|(hour, _)| *hour < before)
                .map(|(_, c)| c)
                .sum()
        });
        let distinct = |level: u8| self.distinct.get(&level).copied().unwrap_or(0).max(1) as f64;
        let country = match filled {
            Some(f) if f > level => day.busy / distinct(f) / 10f64.powi(i32::from(f - level)),
            Some(_) => day.busy / distinct(level),
            None if day.sends > 0 => (day.busy / distinct(level)).max(MIN_PER_DAY),
            None => MIN_PER_DAY,
        };
        country.max(own as f64)
    }

    /// Rule 4 for a send to `n` in `country` at `now`. `day`: the country's last day;
    /// `baseline`: its conversion (0-1).
    pub(super) fn judge(
        &mut self,
        guard: &PumpingGuard,
        country: &str,
        n: National,
        now: i64,
        day: Day,
        baseline: f64,
    ) -> RangeVerdict {
        let hold = i64::from(guard.range_hold_seconds);
        let v = n.value;
        if let Some(h) = self.holds.iter_mut().find(|h| h.holds(v, now - hold)) {
            // The walk carries its hold along; attempts at a real user's pace (one now
            // and then) are refused without prolonging it.
            if h.trail.back().is_some_and(|(t, _)| now - t <= WALK_PACE) {
                h.trail.push_back((now, v));
            }
            return RangeVerdict::Refuse(h.why.clone());
        }
        let longest = i64::from(guard.range_window_seconds);
        let maturity = i64::from(guard.maturity_seconds);
        let windows: Vec<i64> = SHORT_WINDOWS.iter().copied().chain([longest]).collect();
        let filled = self.filled_level(guard, n, day);
        let mut watch = None;
        for level in levels(guard, n, filled.is_some()) {
            let width = 10u64.pow(u32::from(level));
            let range = n.value / width;
            let per_day = self.per_day(n, level, day, filled, now, longest);
            let low = n.value.saturating_sub(width / 2);
            let high = n.value.saturating_add(width / 2);
            let mut counts = vec![0u64; windows.len()];
            let (mut matured, mut approved) = (0u64, 0u64);
            // Refused attempts count at the narrowest levels only: they keep a walk's own
            // neighbourhood suspect, and must not condemn a wide range's real users.
            let narrow = level <= guard.range_digits;
            let counted = |v: u64, seen: &Seen| {
                v != n.value && seen.t >= now - longest && (seen.allowed || narrow)
            };
            for (v, seen) in self.by_value.range(low..=high) {
                if !counted(*v, seen) {
                    continue;
                }
                for (i, w) in windows.iter().enumerate() {
                    if seen.t >= now - w {
                        counts[i] += 1;
                    }
                }
                if seen.allowed && seen.t <= now - maturity {
                    matured += 1;
                    approved += u64::from(seen.approved);
                }
            }
            let (chance, count, window) = windows
                .iter()
                .zip(counts.iter().copied())
                .map(|(w, c)| (poisson_tail(c, per_day * *w as f64 / DAY as f64), c, *w))
                .fold(
                    (1.0f64, 0, 0),
                    |best, x| if x.0 < best.0 { x } else { best },
                );
            if chance >= WEAK_CHANCE {
                continue;
            }
            // Real users convert: a neighbourhood whose matured sends do so at a fair
            // share of the country's baseline (or not unlikely low for it) is no walk.
            let unlikely_low =
                matured >= MIN_MATURED && binomial_tail(matured, approved, baseline) < MAX_CHANCE;
            let converts_like_users = matured >= MIN_MATURED
                && (approved as f64 * 100.0
                    >= matured as f64 * f64::from(guard.conversion_ratio_percent) * baseline
                    || !unlikely_low);
            if converts_like_users {
                continue;
            }
            let shown = format!(
                "{country} range {}{}",
                range,
                "x".repeat(usize::from(level))
            );
            let why = format!(
                "{shown}: {count} other numbers in {window} s (usual: {:.2}), {approved} of {matured} codes used",
                per_day * window as f64 / DAY as f64
            );
            if chance < STRONG_CHANCE || unlikely_low {
                // A range wider than a million numbers is a country's whole block: its
                // sends are refused while the evidence lasts, and it is never held.
                if level >= guard.range_digits + HELD_LEVELS {
                    return RangeVerdict::Refuse(why);
                }
                // Held: where the walk went in the window, and a few of its steps around.
                let mut trail: Vec<(i64, u64)> = self
                    .by_value
                    .range(low..=high)
                    .filter(|(w, seen)| counted(**w, seen) && seen.t >= now - window)
                    .map(|(w, seen)| (seen.t, *w))
                    .chain([(now, v)])
                    .collect();
                trail.sort_unstable_by_key(|&(_, w)| w);
                let step = trail.windows(2).map(|p| p[1].1 - p[0].1).max().unwrap_or(0);
                trail.sort_unstable();
                self.holds.push(Hold {
                    trail: trail.into(),
                    reach: (step * REACH_STEPS).clamp(MIN_REACH, (width / 2).max(MIN_REACH)),
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
        let hold = i64::from(guard.range_hold_seconds);
        self.holds.retain_mut(|h| {
            while h.trail.front().is_some_and(|(t, _)| *t < now - hold) {
                h.trail.pop_front();
            }
            !h.trail.is_empty()
        });
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
    fn a_hold_follows_the_walk_and_decays_behind_it() {
        let g = PumpingGuard::default();
        let hold = i64::from(g.range_hold_seconds);
        let mut r = CountryRanges::default();
        let n = |value: u64| National { value, len: 9 };
        // A walk of steps of 3, one every 5 s, in a country without history.
        let mut refused_at = None;
        for i in 0..20u64 {
            let (v, t) = (244_100_000 + i * 3, i as i64 * 5);
            let verdict = r.judge(&g, "GH", n(v), t, Day::default(), 0.85);
            let refused = matches!(verdict, RangeVerdict::Refuse(_));
            if refused {
                refused_at.get_or_insert(i);
            }
            r.observe(&g, n(v), t, !refused, !refused);
        }
        assert!(
            refused_at.is_some_and(|i| i <= 4),
            "refused from {refused_at:?}"
        );
        assert_eq!(r.holds.len(), 1);
        // The hold reaches a few steps beyond the walk, not its whole range.
        assert!(r.holds[0].holds(244_100_057 + 9, 0));
        assert!(!r.holds[0].holds(244_100_500, 0));
        // The numbers it passed leave the hold once their attempt is that old, and the
        // hold ends that long after the last attempt.
        r.prune(&g, 10 * 5 + hold);
        assert!(!r.holds[0].holds(244_100_000, 0));
        assert!(r.holds[0].holds(244_100_057, 0));
        r.prune(&g, 19 * 5 + hold + 1);
        assert!(r.holds.is_empty());
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
