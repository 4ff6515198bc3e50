//! Challenges of authenticator factors (Twilio's Challenges).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::audit::WriteContext;
use crate::totp::challenge::{ChallengeStatus, FactorChallenge};

/// Which challenges of an entity to list.
#[derive(Clone, Debug)]
pub struct FactorChallengeFilter {
    /// Service id.
    pub service_id: String,
    /// The entity.
    pub entity: String,
    /// Only this factor's.
    pub factor_id: Option<String>,
    /// Only those with this status at `now` (`expired`: pending past the deadline).
    pub status: Option<ChallengeStatus>,
    /// The time `status` is judged at.
    pub now: DateTime<Utc>,
    /// Newest first (else oldest first).
    pub newest_first: bool,
    /// Items skipped.
    pub offset: u64,
    /// Most items.
    pub limit: u32,
}

/// Challenges of authenticator factors, deleted with their factor.
#[async_trait]
pub trait FactorChallengeStore: Send + Sync {
    /// Stores a new challenge (one stored approved records `factor.challenge_approved`).
    async fn create_factor_challenge(
        &self,
        challenge: &FactorChallenge,
        ctx: &WriteContext,
    ) -> StoreResult<()>;
    /// A challenge by id.
    async fn get_factor_challenge(&self, id: &str) -> StoreResult<Option<FactorChallenge>>;
    /// An entity's challenges.
    async fn list_factor_challenges(
        &self,
        filter: &FactorChallengeFilter,
    ) -> StoreResult<Vec<FactorChallenge>>;
    /// Approves a challenge still pending before its deadline at `now`, with its
    /// `factor.challenge_approved` event; false otherwise (nothing changed).
    async fn approve_factor_challenge(
        &self,
        id: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<bool>;
}
