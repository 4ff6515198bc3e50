//! API keys, found by the digest of their secret.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::apikey::ApiKey;

/// API keys (stored as digests).
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores a key record with its digest.
    async fn insert_key(&self, key: &ApiKey, digest: &[u8]) -> StoreResult<()>;
    /// The live (not revoked) key with this digest.
    async fn find_key(&self, digest: &[u8]) -> StoreResult<Option<ApiKey>>;
    /// Every key, newest first.
    async fn list_keys(&self) -> StoreResult<Vec<ApiKey>>;
    /// Revokes a key; false if there was no such live key.
    async fn revoke_key(&self, id: &str, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Number of keys not revoked.
    async fn count_live_keys(&self) -> StoreResult<u64>;
}
