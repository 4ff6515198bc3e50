//! Retention: the periodic purge and the erasure of a recipient.

use super::StoreResult;
use crate::audit::WriteContext;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

/// How long each kind of record is kept (`None`: forever).
#[derive(Clone, Debug, Default)]
pub struct RetentionPolicy {
    /// Finished verifications, with their deliveries, recorded messages, send log,
    /// lockout records and idempotency records.
    pub verifications: Option<Duration>,
    /// Recorded test messages and finished deliveries (of verifications still kept).
    pub messages: Option<Duration>,
    /// Events (the audit trail).
    pub events: Option<Duration>,
    /// `api.request` events (calls that changed nothing else), sooner than other events.
    pub api_requests: Option<Duration>,
    /// Guard decision records.
    pub guard_decisions: Option<Duration>,
}

/// Rows removed (or scrubbed), per table.
pub type RowCounts = std::collections::BTreeMap<String, u64>;

/// Data lifecycle: the retention purge and erasure of one person's data. Both record their
/// own audit event (`retention.purged`, `erasure.completed`) in the same step; events are
/// otherwise never changed or deleted.
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Deletes what is older than the policy allows, and records a `retention.purged`
    /// event when anything was deleted.
    async fn purge(
        &self,
        policy: &RetentionPolicy,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<RowCounts>;
    /// Deletes every record that holds `to` (a normalized phone number or email address)
    /// or derives from it, in every service, and records an `erasure.completed` event
    /// carrying only `masked`.
    async fn erase_recipient(
        &self,
        to: &str,
        masked: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<RowCounts>;
}
