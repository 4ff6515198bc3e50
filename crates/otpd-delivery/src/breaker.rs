//! Circuit breakers: one per provider, so a provider that keeps failing is skipped by the
//! router instead of costing every message a timeout.
//!
//! A breaker is a small state machine with the clock passed in (`now`), so its rules are
//! tested without sleeping:
//!
//! - **closed**: calls go through; failures are kept in a rolling window, and
//!   `failures` of them within `window` open the circuit;
//! - **open**: calls are refused until `open_for` has passed since it opened;
//! - **half-open**: one probe call goes through; its success closes the circuit, its
//!   failure opens it again for another `open_for`.
//!
//! What counts as a failure is the worker's call: a transient error (timeout, connection
//! error, 5xx, 429) or a missing delivery receipt. A permanent error (the provider answered
//! and refused this one message) says the provider is up. A provider's optional health
//! check ([`crate::health`]) reports too: a failed check counts as a failure, and a passed
//! check while the circuit is open lets the half-open probe through at once instead of
//! after `open_for`. The state lives in the process: each node judges its providers by
//! what it sees.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures within [`DEFAULT_WINDOW`] that open a circuit (the default).
pub const DEFAULT_FAILURES: u32 = 5;
/// The rolling window in which failures count.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// How long an open circuit refuses calls before a half-open probe.
pub const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(30);

/// When a circuit opens and how long it stays open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Failures within `window` that open the circuit.
    pub failures: u32,
    /// The rolling window.
    pub window: Duration,
    /// Time open before a half-open probe is let through.
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failures: DEFAULT_FAILURES,
            window: DEFAULT_WINDOW,
            open_for: DEFAULT_OPEN_FOR,
        }
    }
}

/// A call refused by an open (or probing) circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused;

/// The visible state of a circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls are refused.
    Open,
    /// One probe call is allowed (or in flight).
    HalfOpen,
}

impl CircuitState {
    /// The name shown in `/readyz` and events.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed { failures: VecDeque<Instant> },
    Open { since: Instant },
    HalfOpen { probe_out: bool },
}

/// One provider's breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    policy: BreakerPolicy,
    inner: Inner,
}

/// A change of state, reported so the caller can log it and write an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: CircuitState,
    /// The state after.
    pub to: CircuitState,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(policy: BreakerPolicy) -> Self {
        CircuitBreaker {
            policy,
            inner: Inner::Closed {
                failures: VecDeque::new(),
            },
        }
    }

    /// The current state (an open circuit whose time is up shows as half-open).
    pub fn state(&self, now: Instant) -> CircuitState {
        match &self.inner {
            Inner::Closed { .. } => CircuitState::Closed,
            Inner::Open { since } if now.duration_since(*since) >= self.policy.open_for => {
                CircuitState::HalfOpen
            }
            Inner::Open { .. } => CircuitState::Open,
            Inner::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Asks to make a call now: `Ok` with the transition it caused (open → half-open when
    /// this call is the probe), or `Err(Refused)` when the circuit refuses it.
    pub fn try_acquire(&mut self, now: Instant) -> Result<Option<Transition>, Refused> {
        match &mut self.inner {
            Inner::Closed { .. } => Ok(None),
            Inner::Open { since } => {
                if now.duration_since(*since) >= self.policy.open_for {
                    self.inner = Inner::HalfOpen { probe_out: true };
                    Ok(Some(Transition {
                        from: CircuitState::Open,
                        to: CircuitState::HalfOpen,
                    }))
                } else {
                    Err(Refused)
                }
            }
            Inner::HalfOpen { probe_out } => {
                if *probe_out {
                    Err(Refused)
                } else {
                    *probe_out = true;
                    Ok(None)
                }
            }
        }
    }

    /// A call succeeded: a half-open circuit closes.
    pub fn on_success(&mut self, _now: Instant) -> Option<Transition> {
        match &mut self.inner {
            Inner::Closed { .. } => None,
            Inner::Open { .. } => None,
            Inner::HalfOpen { .. } => {
                self.inner = Inner::Closed {
                    failures: VecDeque::new(),
                };
                Some(Transition {
                    from: CircuitState::HalfOpen,
                    to: CircuitState::Closed,
                })
            }
        }
    }

    /// A call failed: counted in the window (which may open the circuit); a failed probe
    /// opens it again.
    pub fn on_failure(&mut self, now: Instant) -> Option<Transition> {
        let policy = self.policy;
        match &mut self.inner {
            Inner::Closed { failures } => {
                failures.push_back(now);
                while failures
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= policy.window)
                {
                    failures.pop_front();
                }
                if failures.len() as u32 >= policy.failures {
                    self.inner = Inner::Open { since: now };
                    Some(Transition {
                        from: CircuitState::Closed,
                        to: CircuitState::Open,
                    })
                } else {
                    None
                }
            }
            // Late reports of calls made before it opened change nothing.
            Inner::Open { .. } => None,
            Inner::HalfOpen { .. } => {
                self.inner = Inner::Open { since: now };
                Some(Transition {
                    from: CircuitState::HalfOpen,
                    to: CircuitState::Open,
                })
            }
        }
    }

    /// A health check's verdict: a failure counts like a failed call; a pass while the
    /// circuit is open makes it half-open (the next call is the probe).
    pub fn on_health(&mut self, healthy: bool, now: Instant) -> Option<Transition> {
        if !healthy {
            return self.on_failure(now);
        }
        match self.inner {
            Inner::Open { .. } => {
                self.inner = Inner::HalfOpen { probe_out: false };
                Some(Transition {
                    from: CircuitState::Open,
                    to: CircuitState::HalfOpen,
                })
            }
            _ => None,
        }
    }

    /// A call that was allowed ended without telling anything about the provider's health
    /// (e.g. the job was dropped): a half-open probe slot is given back.
    pub fn on_neutral(&mut self, _now: Instant) {
        if let Inner::HalfOpen { probe_out } = &mut self.inner {
            *probe_out = false;
        }
    }
}

/// The breakers of every provider, shared by the worker (which reports outcomes) and the
/// HTTP layer (which shows their state).
#[derive(Debug)]
pub struct Breakers {
    policy: BreakerPolicy,
    map: Mutex<HashMap<String, CircuitBreaker>>,
}

impl Breakers {
    /// Closed breakers for these providers.
    pub fn new<'a>(policy: BreakerPolicy, names: impl IntoIterator<Item = &'a String>) -> Self {
        let map = names
            .into_iter()
            .map(|n| (n.clone(), CircuitBreaker::new(policy)))
            .collect();
        Breakers {
            policy,
            map: Mutex::new(map),
        }
    }

    fn with<T>(&self, provider: &str, f: impl FnOnce(&mut CircuitBreaker) -> T) -> T {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let b = map
            .entry(provider.to_string())
            .or_insert_with(|| CircuitBreaker::new(self.policy));
        f(b)
    }

    /// See [`CircuitBreaker::try_acquire`].
    pub fn try_acquire(&self, provider: &str, now: Instant) -> Result<Option<Transition>, Refused> {
        self.with(provider, |b| b.try_acquire(now))
    }

    /// See [`CircuitBreaker::on_success`].
    pub fn on_success(&self, provider: &str, now: Instant) -> Option<Transition> {
        self.with(provider, |b| b.on_success(now))
    }

    /// See [`CircuitBreaker::on_failure`].
    pub fn on_failure(&self, provider: &str, now: Instant) -> Option<Transition> {
        self.with(provider, |b| b.on_failure(now))
    }

    /// See [`CircuitBreaker::on_health`].
    pub fn on_health(&self, provider: &str, healthy: bool, now: Instant) -> Option<Transition> {
        self.with(provider, |b| b.on_health(healthy, now))
    }

    /// See [`CircuitBreaker::on_neutral`].
    pub fn on_neutral(&self, provider: &str, now: Instant) {
        self.with(provider, |b| b.on_neutral(now))
    }

    /// Every provider's state, by name.
    pub fn states(&self, now: Instant) -> BTreeMap<String, CircuitState> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(n, b)| (n.clone(), b.state(now))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            failures: 5,
            window: Duration::from_secs(60),
            open_for: Duration::from_secs(30),
        }
    }

    #[test]
    fn five_failures_within_the_window_open_the_circuit() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(policy());
        for i in 0..4 {
            assert_eq!(b.try_acquire(t0), Ok(None));
            assert_eq!(b.on_failure(t0 + Duration::from_secs(i * 10)), None);
        }
        let opened = b.on_failure(t0 + Duration::from_secs(59));
        assert_eq!(
            opened,
            Some(Transition {
                from: CircuitState::Closed,
                to: CircuitState::Open
            })
        );
        assert_eq!(b.state(t0 + Duration::from_secs(60)), CircuitState::Open);
        assert_eq!(b.try_acquire(t0 + Duration::from_secs(60)), Err(Refused));
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(policy());
        for i in 0..4 {
            b.on_failure(t0 + Duration::from_secs(i));
        }
        // The first four are more than 60 s old by now.
        for i in 0..4 {
            assert_eq!(b.on_failure(t0 + Duration::from_secs(70 + i)), None);
        }
        assert_eq!(b.state(t0 + Duration::from_secs(75)), CircuitState::Closed);
        assert!(b.on_failure(t0 + Duration::from_secs(76)).is_some());
    }

    #[test]
    fn successes_in_closed_state_do_not_erase_the_window() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(policy());
        for i in 0..4 {
            b.on_failure(t0 + Duration::from_secs(i));
            assert_eq!(b.on_success(t0 + Duration::from_secs(i)), None);
        }
        assert!(b.on_failure(t0 + Duration::from_secs(5)).is_some());
    }

    #[test]
    fn half_open_lets_one_probe_through_and_its_outcome_decides() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(policy());
        for _ in 0..5 {
            b.on_failure(t0);
        }
        let later = t0 + Duration::from_secs(29);
        assert_eq!(b.try_acquire(later), Err(Refused));
        let probe_time = t0 + Duration::from_secs(30);
        assert_eq!(b.state(probe_time), CircuitState::HalfOpen);
        assert_eq!(
            b.try_acquire(probe_time),
            Ok(Some(Transition {
                from: CircuitState::Open,
                to: CircuitState::HalfOpen
            }))
        );
        // A second caller while the probe is out is refused.
        assert_eq!(b.try_acquire(probe_time), Err(Refused));
        // The probe fails: open again for another 30 s.
        assert_eq!(
            b.on_failure(probe_time).map(|t| t.to),
            Some(CircuitState::Open)
        );
        assert_eq!(
            b.try_acquire(probe_time + Duration::from_secs(29)),
            Err(Refused)
        );
        let second = probe_time + Duration::from_secs(30);
        assert!(b.try_acquire(second).is_ok());
        // This probe succeeds: closed, with a fresh window.
        assert_eq!(
            b.on_success(second),
            Some(Transition {
                from: CircuitState::HalfOpen,
                to: CircuitState::Closed
            })
        );
        assert_eq!(b.try_acquire(second), Ok(None));
        for _ in 0..4 {
            assert_eq!(b.on_failure(second), None);
        }
    }

    #[test]
    fn a_neutral_outcome_gives_the_probe_slot_back() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(policy());
        for _ in 0..5 {
            b.on_failure(t0);
        }
        let t = t0 + Duration::from_secs(31);
        assert!(b.try_acquire(t).is_ok());
        assert_eq!(b.try_acquire(t), Err(Refused));
        b.on_neutral(t);
        assert_eq!(b.try_acquire(t), Ok(None));
    }

    #[test]
    fn failed_health_checks_open_the_circuit_and_a_passed_one_lets_a_probe_through() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(policy());
        assert_eq!(
            b.on_health(true, t0),
            None,
            "a healthy closed circuit stays closed"
        );
        for i in 0..4 {
            assert_eq!(b.on_health(false, t0 + Duration::from_secs(i * 10)), None);
        }
        assert_eq!(
            b.on_health(false, t0 + Duration::from_secs(45))
                .map(|t| t.to),
            Some(CircuitState::Open)
        );
        let t = t0 + Duration::from_secs(50);
        assert_eq!(b.try_acquire(t), Err(Refused));
        // Still failing: it stays open (and a later pass is needed).
        assert_eq!(b.on_health(false, t), None);
        // Healthy again 5 s later, long before open_for (30 s): half-open now.
        let healed = t + Duration::from_secs(5);
        assert_eq!(
            b.on_health(true, healed),
            Some(Transition {
                from: CircuitState::Open,
                to: CircuitState::HalfOpen
            })
        );
        assert_eq!(b.state(healed), CircuitState::HalfOpen);
        assert_eq!(b.try_acquire(healed), Ok(None), "the probe goes through");
        assert_eq!(b.try_acquire(healed), Err(Refused), "one probe at a time");
        assert_eq!(
            b.on_success(healed).map(|t| t.to),
            Some(CircuitState::Closed)
        );
        // A failed check while half-open opens the circuit again.
        let mut b = CircuitBreaker::new(policy());
        for _ in 0..5 {
            b.on_failure(t0);
        }
        b.on_health(true, t0);
        assert_eq!(
            b.on_health(false, t0).map(|t| t.to),
            Some(CircuitState::Open)
        );
    }

    #[test]
    fn the_registry_keeps_one_breaker_per_provider() {
        let t0 = Instant::now();
        let names = vec!["a".to_string(), "b".to_string()];
        let reg = Breakers::new(policy(), &names);
        for _ in 0..5 {
            reg.on_failure("a", t0);
        }
        assert_eq!(reg.try_acquire("a", t0), Err(Refused));
        assert_eq!(reg.try_acquire("b", t0), Ok(None));
        let states = reg.states(t0);
        assert_eq!(states["a"], CircuitState::Open);
        assert_eq!(states["b"], CircuitState::Closed);
    }
}
