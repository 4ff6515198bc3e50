//! The dashboard's statistics.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::StoreResult;
use crate::event::Event;

/// Sends, deliveries and checks of a recent window, aggregated by the store.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Verifications started per time bucket: `(bucket start, count)`, oldest first.
    pub sends: Vec<(DateTime<Utc>, u64)>,
    /// Approvals per time bucket, as `sends`.
    pub approvals: Vec<(DateTime<Utc>, u64)>,
    /// Refused sends and checks per time bucket, as `sends`.
    pub blocks: Vec<(DateTime<Utc>, u64)>,
    /// Failed hand-offs and receipt waits that ended undelivered per time bucket, as
    /// `sends`.
    pub failures: Vec<(DateTime<Utc>, u64)>,
    /// Per provider: deliveries and their outcome.
    pub providers: Vec<ProviderStats>,
    /// Per recipient region: started and approved verifications.
    pub countries: Vec<CountryStats>,
    /// Refused sends and checks per guard.
    pub blocked: Vec<(String, u64)>,
    /// Spend per service and budget period, in micro-units.
    pub spend: Vec<SpendRow>,
    /// The latest verifications (recipient as stored: mask before showing).
    pub recent: Vec<RecentVerification>,
    /// The latest alert events (circuits, budgets, `alert.*`).
    pub alerts: Vec<Event>,
}

/// Deliveries of one provider in the window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProviderStats {
    /// Provider name.
    pub provider: String,
    /// Messages it accepted (every hand-off, whichever provider ended up delivering).
    pub sent: u64,
    /// Confirmed delivered (in its reply or by a receipt).
    pub delivered: u64,
    /// Hand-offs it refused or failed (retried or not).
    pub failed: u64,
    /// Messages that passed it by because its circuit was open.
    pub skipped: u64,
    /// Receipt waits that ended undelivered, the code going on to the next provider.
    pub receipt_timeouts: u64,
    /// Mean time from queueing to the delivery receipt, in milliseconds (delivered only).
    pub mean_latency_ms: Option<f64>,
    /// Longest such time, in milliseconds.
    pub max_latency_ms: Option<i64>,
}

/// Conversion in one region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CountryStats {
    /// ISO 3166 region (`ZZ` when unknown, e.g. email).
    pub country: String,
    /// Verifications started.
    pub started: u64,
    /// Of which approved.
    pub approved: u64,
    /// Of which still pending (not expired): neither won nor lost yet.
    pub pending: u64,
}

/// A service's spend in one budget period.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpendRow {
    /// Service id.
    pub service_id: String,
    /// `d:2026-11-22` or `m:2026-11`.
    pub period: String,
    /// Spent, in micro-units of the price table's currency.
    pub spent_micros: i64,
}

/// A verification as the dashboard lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecentVerification {
    /// `ver_…`
    pub id: String,
    /// Service id.
    pub service_id: String,
    /// Recipient as stored.
    pub to: String,
    /// The recipient's ISO 3166 region (`ZZ` when unknown, e.g. email).
    pub country: String,
    /// Channel.
    pub channel: String,
    /// Status at `now` (a pending one past its expiry is `expired`).
    pub status: String,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// Aggregates for the operator dashboard.
#[async_trait]
pub trait StatsStore: Send + Sync {
    /// Aggregates from `since` to `now`, sends bucketed by `bucket` (at most `recent` rows
    /// in the lists of latest items; spend of the budget periods `now` is in).
    async fn stats(
        &self,
        since: DateTime<Utc>,
        bucket: Duration,
        recent: u32,
        now: DateTime<Utc>,
    ) -> StoreResult<Stats>;
}
