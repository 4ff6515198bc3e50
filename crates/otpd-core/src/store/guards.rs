//! The guards' state: rate-limit tokens, the pumping log, decision records, budgets.

use crate::audit::WriteContext;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::guards::DecisionRecord;
use crate::guards::Refusal;
use crate::guards::budget::BudgetGuard;
use crate::guards::budget::Money;
use crate::guards::rate::Bucket;

/// A decision record as stored, with its id and time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDecision {
    /// Position in the decision log (increasing).
    pub seq: i64,
    /// The record.
    pub record: DecisionRecord,
    /// When it was decided.
    pub created_at: DateTime<Utc>,
}

/// How long a pumping log entry is kept (a day and an hour): the guard's longest memory
/// (its 24 hourly baselines) and the hour it judges on.
pub const PUMPING_LOG_KEEP_SECONDS: i64 = 90_000;

/// One entry of a service's pumping log: a send the pumping guard judged, or a right
/// code. The log is the guard's whole input; every node replays it in order
/// (`guards::pumping::shared`), so nodes decide as one and a restart decides as before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PumpingEvent {
    /// When, in Unix seconds.
    pub at: i64,
    /// `true`: a right code for `to`; `false`: a send to `to`.
    pub approval: bool,
    /// The E.164 number.
    pub to: String,
    /// The send's country (ISO 3166 alpha-2), when known.
    pub country: Option<String>,
}

/// The state guards keep: rate-limit arrival times, the pumping log and decision records.
#[async_trait]
pub trait GuardStore: Send + Sync {
    /// Takes one token from every bucket or from none, atomically across nodes sharing the
    /// store (GCRA, see `guards::rate::take`). The inner `Err` is the refusal. Tokens are
    /// soft state: a store may forget those taken in the moments before a crash.
    async fn take_tokens(
        &self,
        buckets: &[Bucket],
        now: DateTime<Utc>,
    ) -> StoreResult<Result<(), Refusal>>;
    /// Appends `event` to the service's pumping log; returns its position (increasing per
    /// service, in the order every reader sees) and the entries between position `after`
    /// and it, oldest first: what other nodes logged since this one last looked. Entries
    /// older than [`PUMPING_LOG_KEEP_SECONDS`] before `event.at` may be forgotten.
    async fn append_pumping(
        &self,
        service_id: &str,
        event: &PumpingEvent,
        after: i64,
    ) -> StoreResult<(i64, Vec<(i64, PumpingEvent)>)>;
    /// The service's pumping log after position `after`, entries at or after `since`
    /// (Unix seconds), oldest first, at most `limit`.
    async fn pumping_log(
        &self,
        service_id: &str,
        after: i64,
        since: i64,
        limit: u32,
    ) -> StoreResult<Vec<(i64, PumpingEvent)>>;
    /// Appends a decision record; a blocked one also appends a `verification.blocked`
    /// event with the guard and reason, in the same step (except under a lockout, whose
    /// start already raised one).
    async fn record_decision(
        &self,
        record: &DecisionRecord,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<()>;
    /// Charges a send's `cost` to the service's day and month, unless `guard` (in enforce
    /// mode) refuses it because a limit would be passed; raises `budget.threshold` events
    /// at 80% and 100%, once per period. Returns the budget's verdict (in shadow mode the
    /// charge is made even when the verdict is a refusal).
    async fn charge_budget(
        &self,
        service_id: &str,
        guard: &BudgetGuard,
        cost: Money,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<Result<(), Refusal>>;
    /// Gives back a charge whose send did not happen.
    async fn refund_budget(
        &self,
        service_id: &str,
        cost: Money,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// A service's latest decision records, newest first.
    async fn list_decisions(
        &self,
        service_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<StoredDecision>>;
}
