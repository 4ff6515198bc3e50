//! Guards: the rules that decide whether a send (or a check) may go ahead, before the
//! store is asked to create anything.
//!
//! Each guard lives in its own file, is pure (the time is passed in, state comes from the
//! caller) and runs per service in one of three [`Mode`]s. The server asks every guard,
//! then records one [`DecisionRecord`] per send: allowed, or blocked by which guard and
//! why; guards in `shadow` mode add what they *would* have blocked to that record.
//!
//! - [`geo`]: allowed and blocked countries, blocked number prefixes (`geo_blocked`).
//! - [`number_type`]: line types from the phone metadata (`number_type_blocked`).
//! - [`rate`]: GCRA rate limits for sends and checks, keyed by recipient, end-user IP,
//!   API key and service (`rate_limited`, with an exact `Retry-After`).
//! - [`pumping`]: SMS-pumping detection from conversion, volume and number runs
//!   (`fraud_blocked`).
//! - [`budget`]: spend per service per day and month from a price table
//!   (`budget_exceeded`).
//! - [`proof_of_work`]: a hashcash puzzle demanded always or when risk is elevated
//!   (`proof_of_work_required`).

pub mod budget;
pub mod geo;
pub mod keyed;
pub mod number_type;
pub mod proof_of_work;
pub mod pumping;
pub mod rate;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// How a guard acts for a service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Not asked at all.
    Off,
    /// Asked; what it would block is recorded, nothing is blocked (for tuning).
    Shadow,
    /// Asked; what it refuses is refused.
    #[default]
    Enforce,
}

/// Which guard decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GuardName {
    /// Countries and prefixes.
    Geo,
    /// Line types.
    NumberType,
    /// Rate limits.
    RateLimit,
    /// Wrong-code lockout.
    Lockout,
    /// Spend limits.
    Budget,
    /// SMS-pumping detection.
    Fraud,
    /// Proof-of-work puzzle.
    ProofOfWork,
}

impl GuardName {
    /// The wire name (`geo`, `number_type`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            GuardName::Geo => "geo",
            GuardName::NumberType => "number_type",
            GuardName::RateLimit => "rate_limit",
            GuardName::Lockout => "lockout",
            GuardName::Budget => "budget",
            GuardName::Fraud => "fraud",
            GuardName::ProofOfWork => "proof_of_work",
        }
    }
}

/// A guard's refusal: which guard and why (safe to show: no full number, no secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Refusal {
    /// The guard.
    pub guard: GuardName,
    /// Why, in a few words (`country IR is blocked`, `premium_rate numbers get no message`).
    pub reason: String,
    /// For rate limits: seconds until the request would be allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

/// What one guard said about a request.
pub type Verdict = Result<(), Refusal>;

/// The combined outcome of every guard for one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// The enforced refusal, if any (the first guard that refused in `enforce` mode).
    pub blocked: Option<Refusal>,
    /// Refusals of guards in `shadow` mode: recorded, not applied.
    pub shadow: Vec<Refusal>,
}

impl Decision {
    /// Adds one guard's verdict under its mode. After an enforced refusal later guards are
    /// not consulted by callers (see [`Decision::is_blocked`]).
    pub fn add(&mut self, mode: Mode, verdict: Verdict) {
        match (mode, verdict) {
            (Mode::Off, _) | (_, Ok(())) => {}
            (Mode::Shadow, Err(r)) => self.shadow.push(r),
            (Mode::Enforce, Err(r)) => {
                if self.blocked.is_none() {
                    self.blocked = Some(r);
                }
            }
        }
    }

    /// Whether an enforced guard refused.
    pub fn is_blocked(&self) -> bool {
        self.blocked.is_some()
    }
}

/// Whether a decision record is about a send or a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A send (first send or resend).
    Send,
    /// A code check.
    Check,
}

impl Action {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Send => "send",
            Action::Check => "check",
        }
    }
}

/// One record per guarded send: what was decided, by which guard, why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DecisionRecord {
    /// The service.
    pub service_id: String,
    /// Send or check.
    pub action: Action,
    /// The recipient as normalized (E.164 or address).
    pub to: String,
    /// The end user's IP, when the caller gave it.
    pub client_ip: Option<String>,
    /// The verification created or resent (for allowed sends).
    pub verification_id: Option<String>,
    /// `true` when allowed.
    pub allowed: bool,
    /// The refusal, when blocked.
    pub blocked: Option<Refusal>,
    /// What shadow-mode guards would have refused.
    pub shadow: Vec<Refusal>,
}

/// Every guard's settings for one service (the `guards` section of its settings).
/// Fields left out keep their defaults, so stored services load unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct GuardSettings {
    /// Countries and prefixes.
    pub geo: geo::GeoGuard,
    /// Line types.
    pub number_type: number_type::NumberTypeGuard,
    /// Rate limits for sends and checks.
    pub rate_limits: rate::RateLimitGuard,
    /// Spend limits.
    pub budget: budget::BudgetGuard,
    /// SMS-pumping detection.
    pub pumping: pumping::PumpingGuard,
    /// Proof-of-work puzzle before a send.
    pub proof_of_work: proof_of_work::ProofOfWorkGuard,
}

impl GuardSettings {
    /// Checks every section, normalizing where it can (country codes upper-cased).
    pub fn validate(self) -> Result<Self, DomainError> {
        Ok(GuardSettings {
            geo: self.geo.validate()?,
            number_type: self.number_type,
            rate_limits: self.rate_limits.validate()?,
            budget: self.budget.validate()?,
            pumping: self.pumping.validate()?,
            proof_of_work: self.proof_of_work.validate()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(guard: GuardName) -> Refusal {
        Refusal {
            guard,
            reason: "x".into(),
            retry_after_secs: None,
        }
    }

    #[test]
    fn modes_decide_what_a_refusal_does() {
        let mut d = Decision::default();
        d.add(Mode::Off, Err(refusal(GuardName::Geo)));
        assert_eq!(d, Decision::default(), "off: not even recorded");
        d.add(Mode::Shadow, Err(refusal(GuardName::NumberType)));
        assert!(!d.is_blocked(), "shadow: recorded only");
        assert_eq!(d.shadow.len(), 1);
        d.add(Mode::Enforce, Ok(()));
        assert!(!d.is_blocked());
        d.add(Mode::Enforce, Err(refusal(GuardName::Geo)));
        d.add(Mode::Enforce, Err(refusal(GuardName::RateLimit)));
        assert_eq!(
            d.blocked.unwrap().guard,
            GuardName::Geo,
            "first enforced wins"
        );
    }

    #[test]
    fn settings_default_to_enforce_and_old_documents_load() {
        let s: GuardSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, GuardSettings::default());
        assert_eq!(s.geo.mode, Mode::Enforce);
        let s: GuardSettings =
            serde_json::from_str(r#"{"geo": {"mode": "shadow", "blocked_countries": ["ir"]}}"#)
                .unwrap();
        let s = s.validate().unwrap();
        assert_eq!(s.geo.mode, Mode::Shadow);
        assert_eq!(s.geo.blocked_countries, vec!["IR".to_string()]);
        assert!(serde_json::from_str::<GuardSettings>(r#"{"nope": 1}"#).is_err());
    }
}
