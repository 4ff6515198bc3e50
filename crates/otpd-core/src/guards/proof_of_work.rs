//! Proof of work: a hashcash-style puzzle a service can demand before it sends a code, so
//! that every send costs the sender some CPU. A person's browser pays it once per login
//! (well under a second at the default difficulty); a bot that pumps thousands of sends
//! pays it thousands of times.
//!
//! The puzzle: find a `nonce` (decimal digits) such that `SHA-256("<challenge>:<nonce>")`
//! starts with at least `difficulty` zero bits. Challenges are issued by
//! `POST /v1/challenges`, kept by the store, and spent by the first send that presents a
//! solution (a replay is refused). A service asks for it `always`, or only when its risk
//! is `elevated`: when another guard in shadow mode would have refused this send (say the
//! pumping detector in `shadow`), the send may still go out, but only with a solved
//! puzzle.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Decision, GuardName, Mode, Refusal};
use crate::DomainError;
use crate::ids::Kind;

/// Smallest difficulty a service may set (below it the puzzle costs nothing).
pub const MIN_DIFFICULTY: u8 = 8;
/// Largest difficulty (2^28 hashes is tens of seconds in a browser: beyond it nobody waits).
pub const MAX_DIFFICULTY: u8 = 28;
/// Default difficulty: about 65,000 hashes, a fraction of a second in a browser.
pub const DEFAULT_DIFFICULTY: u8 = 16;
/// Default lifetime of an issued challenge.
pub const DEFAULT_CHALLENGE_TTL_SECONDS: u32 = 300;
/// Longest lifetime a service may give its challenges.
pub const MAX_CHALLENGE_TTL_SECONDS: u32 = 3600;
/// Longest nonce accepted (a `u64` in decimal has at most 20 digits).
pub const MAX_NONCE_LEN: usize = 20;

/// When a service demands a solved puzzle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    /// For every send.
    Always,
    /// Only when another guard in `shadow` mode would have refused this send.
    #[default]
    Elevated,
}

/// A service's proof-of-work rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ProofOfWorkGuard {
    /// `off` (default), `shadow` (records sends that came without a needed solution) or
    /// `enforce`.
    pub mode: Mode,
    /// `always`, or `elevated` (default): only when a shadow-mode guard objects.
    pub require: Require,
    /// Leading zero bits the hash must have (8–28, default 16).
    #[schema(minimum = 8, maximum = 28)]
    pub difficulty: u8,
    /// Seconds an issued challenge stays valid (30–3600, default 300).
    #[schema(minimum = 30, maximum = 3600)]
    pub challenge_ttl_seconds: u32,
}

impl Default for ProofOfWorkGuard {
    fn default() -> Self {
        ProofOfWorkGuard {
            mode: Mode::Off,
            require: Require::Elevated,
            difficulty: DEFAULT_DIFFICULTY,
            challenge_ttl_seconds: DEFAULT_CHALLENGE_TTL_SECONDS,
        }
    }
}

impl ProofOfWorkGuard {
    /// Checks the ranges.
    pub fn validate(self) -> Result<Self, DomainError> {
        if !(MIN_DIFFICULTY..=MAX_DIFFICULTY).contains(&self.difficulty) {
            return Err(DomainError::InvalidRequest(format!(
                "guards.proof_of_work.difficulty must be {MIN_DIFFICULTY}-{MAX_DIFFICULTY}"
            )));
        }
        if !(30..=MAX_CHALLENGE_TTL_SECONDS).contains(&self.challenge_ttl_seconds) {
            return Err(DomainError::InvalidRequest(format!(
                "guards.proof_of_work.challenge_ttl_seconds must be 30-{MAX_CHALLENGE_TTL_SECONDS}"
            )));
        }
        Ok(self)
    }

    /// Whether this send needs a solved puzzle, given what the other guards decided.
    pub fn required(&self, decision: &Decision) -> bool {
        match (self.mode, self.require) {
            (Mode::Off, _) => false,
            (_, Require::Always) => true,
            (_, Require::Elevated) => !decision.shadow.is_empty(),
        }
    }
}

/// An issued puzzle, as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// `pow_…`: the part of the challenge string the store looks up.
    pub id: String,
    /// The service it was issued for (a solution is good for that service only).
    pub service_id: String,
    /// 128 random bits (hex) that make the challenge unpredictable.
    pub salt: String,
    /// Leading zero bits required.
    pub difficulty: u8,
    /// Unix seconds after which it is refused.
    pub expires_at: i64,
}

impl Challenge {
    /// Issues a new challenge for `service_id` under `guard`'s difficulty and lifetime.
    pub fn issue(service_id: &str, guard: &ProofOfWorkGuard, now: i64) -> Challenge {
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        Challenge {
            id: new_challenge_id(),
            service_id: service_id.to_string(),
            salt: hex::encode(salt),
            difficulty: guard.difficulty,
            expires_at: now + i64::from(guard.challenge_ttl_seconds),
        }
    }

    /// The string the solver hashes: `pow_….<salt>`.
    pub fn text(&self) -> String {
        format!("{}.{}", self.id, self.salt)
    }
}

fn new_challenge_id() -> String {
    Kind::Challenge.new_id()
}

/// A solution as a send presents it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Solution {
    /// The challenge string from `POST /v1/challenges`.
    pub challenge: String,
    /// The nonce the solver found (decimal digits).
    pub nonce: String,
}

impl Solution {
    /// The challenge id and salt the solution names, if it is well formed.
    pub fn parts(&self) -> Option<(&str, &str)> {
        let (id, salt) = self.challenge.split_once('.')?;
        let well_formed = id.starts_with("pow_")
            && !self.nonce.is_empty()
            && self.nonce.len() <= MAX_NONCE_LEN
            && self.nonce.bytes().all(|b| b.is_ascii_digit());
        well_formed.then_some((id, salt))
    }
}

/// Whether `nonce` solves `challenge` at `difficulty`.
pub fn solves(challenge: &str, nonce: &str, difficulty: u8) -> bool {
    let hash = Sha256::new()
        .chain_update(challenge.as_bytes())
        .chain_update(b":")
        .chain_update(nonce.as_bytes())
        .finalize();
    leading_zero_bits(&hash) >= u32::from(difficulty)
}

fn leading_zero_bits(bytes: &[u8]) -> u32 {
    let mut bits = 0;
    for &b in bytes {
        if b == 0 {
            bits += 8;
        } else {
            return bits + b.leading_zeros();
        }
    }
    bits
}

/// Why a presented solution was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The send needed a solution and came without one.
    Missing,
    /// Malformed, unknown, for another service, or the hash falls short.
    Invalid,
    /// Past its lifetime.
    Expired,
    /// Already spent by an earlier send.
    Spent,
}

impl Rejection {
    /// The guard's refusal for this rejection.
    pub fn refusal(self) -> Refusal {
        let reason = match self {
            Rejection::Missing => {
                "this send needs a proof-of-work solution (POST /v1/challenges, then send it as proof_of_work)"
            }
            Rejection::Invalid => "the proof-of-work solution is not valid for this service",
            Rejection::Expired => "the proof-of-work challenge expired; ask for a new one",
            Rejection::Spent => "the proof-of-work challenge was already used; ask for a new one",
        };
        Refusal {
            guard: GuardName::ProofOfWork,
            reason: reason.into(),
            retry_after_secs: None,
        }
    }
}

/// Judges a solution against the stored challenge it names (`None`: unknown), before the
/// store spends it. Spending is the store's atomic step; this is everything else.
pub fn judge(
    solution: &Solution,
    stored: Option<&Challenge>,
    service_id: &str,
    now: i64,
) -> Result<(), Rejection> {
    let (id, salt) = solution.parts().ok_or(Rejection::Invalid)?;
    let c = stored.ok_or(Rejection::Invalid)?;
    let matches = c.id == id
        && c.service_id == service_id
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            c.salt.as_bytes(),
            salt.as_bytes(),
        ));
    if !matches {
        return Err(Rejection::Invalid);
    }
    if now >= c.expires_at {
        return Err(Rejection::Expired);
    }
    if !solves(&solution.challenge, &solution.nonce, c.difficulty) {
        return Err(Rejection::Invalid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solve(challenge: &str, difficulty: u8) -> String {
        (0u64..)
            .map(|n| n.to_string())
            .find(|n| solves(challenge, n, difficulty))
            .unwrap()
    }

    fn issued(now: i64) -> Challenge {
        let guard = ProofOfWorkGuard {
            difficulty: 10,
            ..ProofOfWorkGuard::default()
        };
        Challenge::issue("svc_1", &guard, now)
    }

    #[test]
    fn counts_leading_zero_bits() {
        assert_eq!(leading_zero_bits(&[0, 0, 0x80]), 16);
        assert_eq!(leading_zero_bits(&[0, 0x01]), 15);
        assert_eq!(leading_zero_bits(&[0xff]), 0);
        assert_eq!(leading_zero_bits(&[0, 0]), 16);
    }

    #[test]
    fn a_found_nonce_solves_and_a_neighbour_mostly_does_not() {
        let c = issued(0);
        let nonce = solve(&c.text(), 10);
        let s = Solution {
            challenge: c.text(),
            nonce: nonce.clone(),
        };
        assert_eq!(judge(&s, Some(&c), "svc_1", 1), Ok(()));
        // The same nonce against a harder puzzle fails unless it happens to be lucky.
        let hard = Challenge {
            difficulty: 28,
            ..c.clone()
        };
        assert_eq!(judge(&s, Some(&hard), "svc_1", 1), Err(Rejection::Invalid));
    }

    #[test]
    fn solutions_are_bound_to_their_challenge_service_and_lifetime() {
        let c = issued(0);
        let nonce = solve(&c.text(), 10);
        let good = Solution {
            challenge: c.text(),
            nonce,
        };
        assert_eq!(
            judge(&good, Some(&c), "svc_2", 1),
            Err(Rejection::Invalid),
            "another service"
        );
        assert_eq!(
            judge(&good, Some(&c), "svc_1", c.expires_at),
            Err(Rejection::Expired)
        );
        assert_eq!(judge(&good, None, "svc_1", 1), Err(Rejection::Invalid));
        let forged_salt = Solution {
            challenge: format!("{}.{}", c.id, "00".repeat(16)),
            nonce: good.nonce.clone(),
        };
        assert_eq!(
            judge(&forged_salt, Some(&c), "svc_1", 1),
            Err(Rejection::Invalid)
        );
    }

    #[test]
    fn malformed_solutions_are_invalid() {
        let c = issued(0);
        for (challenge, nonce) in [
            (c.text(), ""),
            (c.text(), "12a"),
            (c.text(), "123456789012345678901"),
            (c.id.clone(), "1"),
            ("nope.abc".to_string(), "1"),
        ] {
            let s = Solution {
                challenge,
                nonce: nonce.into(),
            };
            assert_eq!(judge(&s, Some(&c), "svc_1", 1), Err(Rejection::Invalid));
        }
    }

    #[test]
    fn required_follows_mode_and_risk() {
        let mut guard = ProofOfWorkGuard::default();
        let calm = Decision::default();
        let mut risky = Decision::default();
        risky.add(
            Mode::Shadow,
            Err(Refusal {
                guard: GuardName::Fraud,
                reason: "x".into(),
                retry_after_secs: None,
            }),
        );
        assert!(!guard.required(&risky), "off by default");
        guard.mode = Mode::Enforce;
        assert!(!guard.required(&calm));
        assert!(guard.required(&risky));
        guard.require = Require::Always;
        assert!(guard.required(&calm));
    }

    #[test]
    fn issued_challenges_differ_and_difficulty_is_bounded() {
        assert_ne!(issued(0).text(), issued(0).text());
        let mut g = ProofOfWorkGuard {
            difficulty: 7,
            ..ProofOfWorkGuard::default()
        };
        assert!(g.clone().validate().is_err());
        g.difficulty = 29;
        assert!(g.clone().validate().is_err());
        g.difficulty = 20;
        assert!(g.validate().is_ok());
    }
}
