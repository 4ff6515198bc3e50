//! Proof-of-work challenges, each spent once.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::guards::proof_of_work::Challenge;

/// What spending a proof-of-work challenge did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spend {
    /// Spent now, by this send.
    Spent,
    /// Spent earlier by a send with the same idempotency digest: this is its retry.
    Retried,
    /// Spent earlier by another send, or gone.
    AlreadySpent,
}

/// Issued proof-of-work challenges (`guards::proof_of_work`), each spent at most once.
#[async_trait]
pub trait ChallengeStore: Send + Sync {
    /// Keeps a newly issued challenge (and forgets a few long-expired ones).
    async fn create_challenge(&self, challenge: &Challenge) -> StoreResult<()>;
    /// The challenge with this id, spent or not (`None` once spent, expired and purged).
    async fn get_challenge(&self, id: &str) -> StoreResult<Option<Challenge>>;
    /// Marks the challenge spent unless it already is, atomically across nodes.
    /// `spender` is a digest of the send's idempotency key, when it has one.
    async fn spend_challenge(
        &self,
        id: &str,
        spender: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<Spend>;
}
