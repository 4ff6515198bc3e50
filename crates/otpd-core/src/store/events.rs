//! The event log.

use crate::audit::WriteContext;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::event::Event;

/// Filters for listing events.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Only this verification's.
    pub verification_id: Option<String>,
    /// Only this type.
    pub kind: Option<String>,
    /// Only events after this position (a cursor).
    pub after_seq: Option<i64>,
    /// Only events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only this service's (id).
    pub service_id: Option<String>,
    /// Only those caused by this API key (id).
    pub key_id: Option<String>,
    /// Only those of this request (its `x-request-id`).
    pub request_id: Option<String>,
    /// At most this many.
    pub limit: u32,
}

/// The event log.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Events matching the filter, oldest first.
    async fn list_events(&self, filter: &EventFilter) -> StoreResult<Vec<Event>>;
    /// Resolves an event id to its position (for `since=evt_…`).
    async fn event_seq(&self, id: &str) -> StoreResult<Option<i64>>;
    /// Appends an event about no verification (e.g. a provider's circuit changing state).
    async fn append_event(
        &self,
        kind: crate::event::EventType,
        data: serde_json::Value,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<()>;
}
