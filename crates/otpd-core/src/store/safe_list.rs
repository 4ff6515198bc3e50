//! The safe list: phone numbers the operator vouches for, exempt from the fraud guards
//! (geo permissions, number type, pumping) but not from send limits or the lockout.
//! Twilio's `/v2/SafeList/Numbers`; one list for the whole deployment, as Twilio's is one
//! per account.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;

/// A number on the safe list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafeNumber {
    /// Twilio's SID for it (`GN` + 32 hex digits), given when it was added.
    pub sid: String,
    /// The number, E.164.
    pub phone_number: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// Stores the safe list.
#[async_trait]
pub trait SafeListStore: Send + Sync {
    /// Adds `number` (its `phone_number` is the key); when the number is already listed,
    /// changes nothing and returns the entry as it was first added.
    async fn add_safe_number(&self, number: &SafeNumber) -> StoreResult<SafeNumber>;
    /// The entry of an E.164 number, if listed.
    async fn safe_number(&self, phone_number: &str) -> StoreResult<Option<SafeNumber>>;
    /// Removes an E.164 number; whether it was listed.
    async fn remove_safe_number(&self, phone_number: &str) -> StoreResult<bool>;
}
