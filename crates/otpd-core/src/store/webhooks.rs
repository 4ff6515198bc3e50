//! The webhook queue and its dead letters.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::StoreResult;
use crate::event::Event;

/// A webhook message leased to a sender: one event for one endpoint of a service.
#[derive(Clone, Debug)]
pub struct WebhookJob {
    /// `whk_…`
    pub id: String,
    /// The service whose endpoint receives it.
    pub service_id: String,
    /// Which endpoint: `None` for the service's `webhook_url` (Standard Webhooks), or a
    /// factor webhook's sid (`YW…`, Twilio-style, from the service's `factor_webhooks`).
    pub endpoint: Option<String>,
    /// The event (its id is the stable `webhook-id`).
    pub event: Event,
    /// POSTs already made.
    pub attempts: u32,
    /// Start of the retry window (the event's time, or the replay's).
    pub window_start: DateTime<Utc>,
    /// The lease owner that claimed it.
    pub lease_owner: String,
}

/// How a webhook POST ended, as the sender reports it.
#[derive(Clone, Debug)]
pub enum WebhookResult {
    /// A 2xx.
    Delivered {
        /// The HTTP status.
        status: u16,
    },
    /// Refused or unreachable: try again at `at`.
    Retry {
        /// When.
        at: DateTime<Utc>,
        /// Why (a status line or a transport error; no secret).
        error: String,
        /// The HTTP status, if one came.
        status: Option<u16>,
    },
    /// Refused or unreachable, and the retry window is over: dead-letter it.
    Dead {
        /// Why.
        error: String,
        /// The HTTP status, if one came.
        status: Option<u16>,
    },
}

/// A webhook message given up on (replayable).
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// Position in the queue (a paging cursor).
    pub seq: i64,
    /// `whk_…`
    pub id: String,
    /// The service.
    pub service_id: String,
    /// The endpoint: `None` for the service's `webhook_url`, else a factor webhook's sid.
    pub endpoint: Option<String>,
    /// The event id (the `webhook-id`).
    pub event_id: String,
    /// The event type.
    pub event_type: String,
    /// POSTs made.
    pub attempts: u32,
    /// The last refusal.
    pub last_error: Option<String>,
    /// The last HTTP status, if one came.
    pub last_status: Option<u16>,
    /// When the event happened.
    pub event_at: DateTime<Utc>,
    /// When it was given up on.
    pub dead_at: DateTime<Utc>,
}

/// Filters for listing dead letters.
#[derive(Clone, Debug, Default)]
pub struct DeadLetterFilter {
    /// Only this service's.
    pub service_id: Option<String>,
    /// Only those before this position (newest first; a cursor).
    pub before_seq: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// The size of a queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Items waiting (due now or later).
    pub depth: u64,
    /// When the oldest waiting item was queued.
    pub oldest: Option<DateTime<Utc>>,
}

/// Outbound webhooks: a durable queue with one row per event and service endpoint,
/// filled in the same step as the event itself, claimed with a lease like the outbox.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Leases the next due webhook message to `owner` until `now + lease`.
    async fn claim_webhook(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> StoreResult<Option<WebhookJob>>;
    /// Records a POST's outcome and releases the lease; false when the lease was lost
    /// (another sender took the message over): nothing changed.
    async fn finish_webhook(
        &self,
        job: &WebhookJob,
        result: WebhookResult,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Earliest time a waiting message becomes due, if any.
    async fn next_webhook_due(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// Dead letters, newest first.
    async fn list_dead_letters(&self, filter: &DeadLetterFilter) -> StoreResult<Vec<DeadLetter>>;
    /// One dead letter by id.
    async fn get_dead_letter(&self, id: &str) -> StoreResult<Option<DeadLetter>>;
    /// Puts a dead letter back in the queue, due now, with a fresh retry window (same
    /// event, same `webhook-id`). False if it is not a dead letter.
    async fn replay_dead_letter(&self, id: &str, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Replays every dead letter of a service; returns how many.
    async fn replay_dead_letters(&self, service_id: &str, now: DateTime<Utc>) -> StoreResult<u64>;
    /// Waiting messages, and how many are dead.
    async fn webhook_stats(&self) -> StoreResult<(QueueStats, u64)>;
}
