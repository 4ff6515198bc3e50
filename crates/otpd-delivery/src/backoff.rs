//! Retry delays: exponential growth with full jitter (a random delay between zero and the
//! exponential bound), so many failing jobs do not retry in lockstep.

use std::time::Duration;

use rand::Rng;

/// The upper bound of the delay before retry number `attempt` (1-based):
/// `base × 2^(attempt-1)`, capped at `max`.
pub fn bound(attempt: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1).min(31))
        .unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max)
}

/// A jittered delay in `[bound/2, bound]` (half fixed, half random: spread out, yet never
/// an immediate retry).
pub fn delay(attempt: u32, base: Duration, max: Duration) -> Duration {
    let b = bound(attempt, base, max);
    let half = b / 2;
    let jitter_ms = rand::thread_rng().gen_range(0..=half.as_millis().max(1) as u64);
    half + Duration::from_millis(jitter_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        assert_eq!(bound(1, base, max), Duration::from_millis(100));
        assert_eq!(bound(2, base, max), Duration::from_millis(200));
        assert_eq!(bound(4, base, max), Duration::from_millis(800));
        assert_eq!(bound(10, base, max), max);
        assert_eq!(bound(1000, base, max), max);
    }

    #[test]
    fn jitter_stays_within_half_and_full_bound() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        for attempt in 1..8 {
            let b = bound(attempt, base, max);
            for _ in 0..200 {
                let d = delay(attempt, base, max);
                assert!(
                    d >= b / 2 && d <= b + Duration::from_millis(1),
                    "{d:?} vs {b:?}"
                );
            }
        }
    }
}
