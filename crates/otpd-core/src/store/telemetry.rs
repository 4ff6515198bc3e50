//! What the metrics read from the store.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{QueueStats, StoreResult};
use crate::channel::Channel;

/// What the metrics read from the store.
#[async_trait]
pub trait TelemetryStore: Send + Sync {
    /// Delivery jobs queued.
    async fn outbox_stats(&self) -> StoreResult<QueueStats>;
    /// The message a receipt names (by otpd's or the provider's id, for that provider):
    /// its channel, and since when otpd has been waiting for its receipt (`None` when it
    /// is not waiting: delivered, or the wait already ended).
    async fn receipt_wait(
        &self,
        provider: &str,
        message_id: &str,
    ) -> StoreResult<Option<(Channel, Option<DateTime<Utc>>)>>;
}
