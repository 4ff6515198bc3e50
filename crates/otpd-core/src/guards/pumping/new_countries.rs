//! Rule 5 of the pumping guard: a burst over countries new to the service, pooled.
//!
//! A pump that spreads a burst over several small countries the service never sent to
//! gives each country too few sends to condemn it alone (the first few of each go out,
//! before its own evidence is strong). Real users rarely appear in a country the
//! service has not served in the last day, so the sends to all such countries are
//! judged as one pool: its distinct numbers in the last 30 seconds, 2 minutes, 10
//! minutes and `range_window_seconds`, against the rate the service sends to its rare
//! countries (fewer than [`RARE_SENDS`] in its last day), never below one a day. As for
//! a range (rule 4): refused below [`STRONG_CHANCE`], or below [`WEAK_CHANCE`] with low
//! conversion, otherwise recorded; matured sends that convert like real users' clear
//! the pool.
//!
//! A refused pool is held: every send to a new country (and to a country it refused,
//! new or not since) is refused until `range_hold_seconds` after the last one, so the
//! hold lasts while the burst goes on and decays once it stops. A country is new while it has no sends before the previous hour
//! in the last day, and only in a service that has such sends elsewhere (at a service's
//! start, every country is new and none is suspect).

use std::collections::VecDeque;

use super::ranges::{RangeVerdict, STRONG_CHANCE, WEAK_CHANCE, poisson_tail};
use super::{MAX_CHANCE, PumpingGuard, binomial_tail};

/// The shorter windows the pool is counted over, in seconds (with the guard's longest).
const SHORT_WINDOWS: [i64; 3] = [30, 120, 600];
/// The longest window refused attempts count in.
const REFUSED_WINDOW: i64 = 600;
/// A country with fewer sends than this in the service's last day is rare: the sends to
/// such countries are the rate new countries are expected at.
pub(super) const RARE_SENDS: u64 = 10;
/// The least the pool is expected to see in a day.
const MIN_PER_DAY: f64 = 1.0;
/// Matured sends of the pool before its conversion counts.
const MIN_MATURED: u64 = 3;
const DAY: i64 = 86_400;

#[derive(Clone, Copy, Debug)]
struct Sent {
    t: i64,
    /// The E.164 digits.
    number: u64,
    /// Went out (counts in conversion).
    allowed: bool,
    approved: bool,
}

/// The service's sends to new countries (refused ones too: a burst's refused attempts keep
/// the pool suspect while it goes on), and the pool's hold.
#[derive(Debug, Default)]
pub(super) struct NewCountries {
    /// Oldest first, within the longest window.
    sent: VecDeque<Sent>,
    held: Option<Held>,
}

/// A refused pool: until `range_hold_seconds` after its last attempt, the sends to new
/// countries and to the countries it refused (new or not since) are refused.
#[derive(Debug)]
struct Held {
    last: i64,
    countries: Vec<String>,
}

impl NewCountries {
    /// Rule 5 for a send to `number` (E.164 digits) in the new country `country` at
    /// `now`; `per_day`: the service's sends a day to rare countries; `baseline`: the
    /// country's conversion (0-1).
    pub(super) fn judge(
        &mut self,
        guard: &PumpingGuard,
        country: &str,
        number: u64,
        now: i64,
        per_day: f64,
        baseline: f64,
    ) -> RangeVerdict {
        if self.holds(guard, None, now)
            && let Some(held) = &mut self.held
        {
            held.last = now;
            if !held.countries.iter().any(|c| c == country) {
                held.countries.push(country.to_string());
            }
            return RangeVerdict::Refuse(format!(
                "a burst over countries new to the service ({country})"
            ));
        }
        self.held = None;
        let longest = i64::from(guard.range_window_seconds);
        let maturity = i64::from(guard.maturity_seconds);
        let windows: Vec<i64> = SHORT_WINDOWS.iter().copied().chain([longest]).collect();
        let per_day = per_day.max(MIN_PER_DAY);
        let (chance, count, window) = windows
            .iter()
            .map(|&w| {
                // Refused attempts count in the short windows only: they keep the pool
                // suspect while a burst goes on, not for an hour after its hold lapsed.
                let mut seen: Vec<u64> = self
                    .sent
                    .iter()
                    .filter(|s| {
                        s.number != number && s.t >= now - w && (s.allowed || w <= REFUSED_WINDOW)
                    })
                    .map(|s| s.number)
                    .collect();
                seen.sort_unstable();
                seen.dedup();
                let c = seen.len() as u64;
                (poisson_tail(c, per_day * w as f64 / DAY as f64), c, w)
            })
            .fold(
                (1.0f64, 0, 0),
                |best, x| if x.0 < best.0 { x } else { best },
            );
        if chance >= WEAK_CHANCE {
            return RangeVerdict::Fine;
        }
        let (matured, approved) = self
            .sent
            .iter()
            .filter(|s| s.allowed && s.t >= now - longest && s.t <= now - maturity)
            .fold((0u64, 0u64), |(m, a), s| (m + 1, a + u64::from(s.approved)));
        let unlikely_low =
            matured >= MIN_MATURED && binomial_tail(matured, approved, baseline) < MAX_CHANCE;
        let converts_like_users = matured >= MIN_MATURED
            && (approved as f64 * 100.0
                >= matured as f64 * f64::from(guard.conversion_ratio_percent) * baseline
                || !unlikely_low);
        if converts_like_users {
            return RangeVerdict::Fine;
        }
        let why = format!(
            "countries new to the service: {count} other numbers in {window} s (usual: {:.2}), {approved} of {matured} codes used",
            per_day * window as f64 / DAY as f64
        );
        if chance < STRONG_CHANCE || unlikely_low {
            self.held = Some(Held {
                last: now,
                countries: vec![country.to_string()],
            });
            return RangeVerdict::Refuse(why);
        }
        RangeVerdict::Watch(why)
    }

    /// Whether the pool is held (for `country`, if given: one it refused).
    pub(super) fn holds(&self, guard: &PumpingGuard, country: Option<&str>, now: i64) -> bool {
        self.held.as_ref().is_some_and(|h| {
            now - h.last <= i64::from(guard.range_hold_seconds)
                && country.is_none_or(|c| h.countries.iter().any(|h| h == c))
        })
    }

    /// Remembers a send to a new country (`allowed`: it went out).
    pub(super) fn observe(&mut self, number: u64, now: i64, allowed: bool) {
        self.sent.push_back(Sent {
            t: now,
            number,
            allowed,
            approved: false,
        });
    }

    /// A right code for `number`.
    pub(super) fn approve(&mut self, number: u64) {
        if let Some(s) = self
            .sent
            .iter_mut()
            .rev()
            .find(|s| s.allowed && s.number == number)
        {
            s.approved = true;
        }
    }

    /// Forgets sends older than the longest window and a hold run out.
    pub(super) fn prune(&mut self, guard: &PumpingGuard, now: i64) {
        let oldest = now - i64::from(guard.range_window_seconds);
        while self.sent.front().is_some_and(|s| s.t < oldest) {
            self.sent.pop_front();
        }
        if !self.holds(guard, None, now) {
            self.held = None;
        }
    }
}
