//! The SMS-pumping simulator: a seeded trace generator and a replayer that drives the very
//! guard code the server runs (`otpd_core::guards`) with the trace's clock.
//!
//! A trace is JSON lines: `{"t": seconds, "to": "+…", "client_ip": "…", "verify_after":
//! seconds or null, "label": "legit" | "attack"}` (sorted by `t`). The label is for
//! scoring only: the replayer never shows it to a guard.

pub mod generate;
pub mod replay;

use serde::{Deserialize, Serialize};

/// One send of a trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Seconds from the trace's start.
    pub t: f64,
    /// The number, as an application would pass it.
    pub to: String,
    /// The end user's IP.
    pub client_ip: String,
    /// Seconds after the send at which the user types the right code; `null`: never.
    pub verify_after: Option<f64>,
    /// `legit` or `attack` (scoring only).
    pub label: String,
    /// Which scenario produced it (scoring only; optional in traces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
}

/// A small deterministic PRNG (SplitMix64): the same seed gives the same trace on every
/// machine, without a dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `n` random decimal digits.
    pub fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}
