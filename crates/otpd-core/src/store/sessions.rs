//! Dashboard sessions.

use super::StoreResult;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A signed-in dashboard session (found by the digest of its cookie token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DashboardSession {
    /// The admin key that signed in.
    pub key_id: String,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
}

/// Dashboard sessions, stored by token digest so any node can serve them.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Opens a session (and forgets expired ones).
    async fn create_session(
        &self,
        digest: &[u8],
        session: &DashboardSession,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The live session with this digest whose key is still live (or is `master`).
    async fn find_session(
        &self,
        digest: &[u8],
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DashboardSession>>;
    /// Ends a session; false if there was none.
    async fn delete_session(&self, digest: &[u8]) -> StoreResult<bool>;
}
