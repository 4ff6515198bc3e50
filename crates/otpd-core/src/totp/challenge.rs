//! Challenges of authenticator factors (Twilio's `YC…` Challenges): a request to prove
//! the factor with a code before a deadline. The code itself is checked by the factor (its
//! window, replay rule and the entity's lockout); the challenge records the outcome.

use chrono::{DateTime, Duration, Utc};

/// Default life of a challenge (Twilio's).
pub const DEFAULT_CHALLENGE_TTL: Duration = Duration::minutes(5);
/// Longest life of a challenge (Twilio's).
pub const MAX_CHALLENGE_TTL: Duration = Duration::minutes(60);

/// Where a challenge stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeStatus {
    /// Waiting for a right code.
    Pending,
    /// A right code was given.
    Approved,
    /// Not approved before its deadline.
    Expired,
}

impl ChallengeStatus {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeStatus::Pending => "pending",
            ChallengeStatus::Approved => "approved",
            ChallengeStatus::Expired => "expired",
        }
    }

    /// Parses the wire and storage name.
    pub fn parse(s: &str) -> Option<ChallengeStatus> {
        match s {
            "pending" => Some(ChallengeStatus::Pending),
            "approved" => Some(ChallengeStatus::Approved),
            "expired" => Some(ChallengeStatus::Expired),
            _ => None,
        }
    }
}

/// A stored challenge. Only `pending` and `approved` are stored; `expired` is a pending
/// challenge past its deadline ([`FactorChallenge::status_at`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FactorChallenge {
    /// `fch_…`
    pub id: String,
    /// Owning service id.
    pub service_id: String,
    /// The factor's entity.
    pub entity: String,
    /// The factor (`tf_…`).
    pub factor_id: String,
    /// Pending or approved.
    pub status: ChallengeStatus,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When a right code approved it.
    pub responded_at: Option<DateTime<Utc>>,
    /// Deadline.
    pub expires_at: DateTime<Utc>,
}

/// The data of a `factor.challenge_approved` event: the challenge, its factor and entity.
pub fn approval_data(challenge_id: &str, factor_id: &str, entity: &str) -> serde_json::Value {
    serde_json::json!({"challenge_id": challenge_id, "factor_id": factor_id, "entity": entity})
}

impl FactorChallenge {
    /// The status at `now`: a pending challenge past its deadline is expired.
    pub fn status_at(&self, now: DateTime<Utc>) -> ChallengeStatus {
        if self.status == ChallengeStatus::Pending && now >= self.expires_at {
            ChallengeStatus::Expired
        } else {
            self.status
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_challenges_expire_at_their_deadline() {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let c = FactorChallenge {
            id: "fch_1".into(),
            service_id: "svc_1".into(),
            entity: "e".into(),
            factor_id: "tf_1".into(),
            status: ChallengeStatus::Pending,
            created_at: t,
            updated_at: t,
            responded_at: None,
            expires_at: t + DEFAULT_CHALLENGE_TTL,
        };
        assert_eq!(c.status_at(t), ChallengeStatus::Pending);
        assert_eq!(c.status_at(c.expires_at), ChallengeStatus::Expired);
        let approved = FactorChallenge {
            status: ChallengeStatus::Approved,
            ..c
        };
        assert_eq!(
            approved.status_at(t + MAX_CHALLENGE_TTL),
            ChallengeStatus::Approved
        );
        for s in ["pending", "approved", "expired"] {
            assert_eq!(ChallengeStatus::parse(s).unwrap().as_str(), s);
        }
    }
}
