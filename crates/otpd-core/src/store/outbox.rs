//! The delivery outbox: jobs claimed by workers, attempts, receipts.

use crate::audit::WriteContext;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::StoreResult;
use crate::channel::Channel;
use crate::verification::DeliveryStatus;
use crate::verification::MessageOptions;
use crate::verification::Status;

/// A delivery job leased to a worker.
#[derive(Clone, Debug)]
pub struct DeliveryJob {
    /// `dlv_…`, also the provider-facing message id.
    pub id: String,
    /// The verification.
    pub verification_id: String,
    /// Service id.
    pub service_id: String,
    /// Recipient.
    pub to: String,
    /// Channel.
    pub channel: Channel,
    /// Fallback channels still to try.
    pub fallback: Vec<Channel>,
    /// Provider chain.
    pub providers: Vec<String>,
    /// Index in the chain of the provider to use now.
    pub provider_index: u32,
    /// Attempts already made with the current provider.
    pub attempts: u32,
    /// Test mode: record, never hand to a provider.
    pub test: bool,
    /// Verification status when claimed.
    pub verification_status: Status,
    /// The sealed code (None once the verification has ended).
    pub sealed_code: Option<Vec<u8>>,
    /// Verification expiry, for `{minutes}`.
    pub expires_at: DateTime<Utc>,
    /// Locale.
    pub locale: String,
    /// The verification's message overrides.
    pub message_options: MessageOptions,
    /// The lease owner that claimed it.
    pub lease_owner: String,
}

impl DeliveryJob {
    /// The provider to use now, if the chain is not exhausted.
    pub fn current_provider(&self) -> Option<&str> {
        self.providers
            .get(self.provider_index as usize)
            .map(String::as_str)
    }
}

/// How a delivery attempt ended, as the worker reports it.
#[derive(Clone, Debug)]
pub enum AttemptResult {
    /// Accepted (or delivered) by the provider.
    Sent {
        /// `sent` or `delivered`.
        status: DeliveryStatus,
        /// The provider's own message id, if it gave one.
        provider_message_id: Option<String>,
        /// For a `sent` message: when to give up waiting for its receipt and hand the same
        /// code to the next provider or channel.
        receipt_deadline: Option<DateTime<Utc>>,
    },
    /// Recorded for a test key.
    Recorded {
        /// `msg_…`
        message_id: String,
        /// The body sealed for `message_id`.
        sealed_body: Vec<u8>,
    },
    /// Try again later with the same provider.
    Retry {
        /// When.
        at: DateTime<Utc>,
        /// Why (no secrets).
        error: String,
    },
    /// Move on to the next provider in the chain.
    NextProvider {
        /// Why.
        error: String,
    },
    /// Give up on this delivery: queue `next` (a fallback channel) if given, else the
    /// verification fails unless another of its deliveries got through.
    Fail {
        /// Why.
        error: String,
        /// The follow-up delivery on the next fallback channel.
        next: Option<NextDelivery>,
    },
    /// The verification ended before delivery; nothing sent.
    Skip,
}

/// A follow-up delivery on a fallback channel, routed by the worker.
#[derive(Clone, Debug)]
pub struct NextDelivery {
    /// The channel.
    pub channel: Channel,
    /// Channels left after it.
    pub fallback: Vec<Channel>,
    /// Its provider chain.
    pub providers: Vec<String>,
}

/// A delivery receipt from a provider.
#[derive(Clone, Debug)]
pub struct Receipt {
    /// The provider reporting.
    pub provider: String,
    /// The otpd message id (`dlv_…`) or the provider's own id.
    pub message_id: String,
    /// Delivered or failed.
    pub delivered: bool,
    /// Error text from the provider.
    pub error: Option<String>,
}

/// The delivery queue.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Leases the next due job to `owner` until `now + lease`. A job whose lease ran out
    /// (its worker died) is due again.
    async fn claim(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> StoreResult<Option<DeliveryJob>>;
    /// Records the outcome of an attempt, releases the lease, and writes events (and the
    /// follow-up job for a fallback channel, or the verification's failure) in one step.
    async fn finish(
        &self,
        job: &DeliveryJob,
        result: AttemptResult,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<()>;
    /// Applies a delivery receipt; false if no such message of that provider exists.
    async fn apply_receipt(
        &self,
        receipt: &Receipt,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<bool>;
    /// The USSD delivery held for `to` with `provider` — handed over (`sent`), waiting for
    /// the user to dial in — while its verification is pending and unexpired, if any.
    async fn held_ussd(
        &self,
        provider: &str,
        to: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DeliveryJob>>;
    /// Earliest time a queued job becomes due, if any (lets the worker sleep exactly).
    async fn next_due(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// Deliveries whose receipt deadline has passed (`sent` with no receipt, or a `failed`
    /// receipt that came before it), at most `limit`. `lease_owner` is empty.
    async fn overdue_receipts(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryJob>>;
    /// Ends the wait for `job`'s receipt: clears its deadline and, while the verification
    /// is pending, queues `next` (the next provider of the chain or a fallback channel,
    /// with the same code) and records the event, in one step. False when another worker
    /// (or a receipt) got there first: nothing changed.
    async fn receipt_timeout(
        &self,
        job: &DeliveryJob,
        next: Option<NextDelivery>,
        error: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<bool>;
}
