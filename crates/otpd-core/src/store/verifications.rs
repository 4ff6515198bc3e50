//! Verifications: the start and check steps, reads, and the recorded test messages.

use crate::audit::WriteContext;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::StoreResult;
use crate::channel::Channel;
use crate::lockout::LockoutPolicy;
use crate::verification::MessageOptions;
use crate::verification::Status;
use crate::verification::Verification;

/// A request's idempotency key, scoped to the calling API key.
#[derive(Clone, Debug)]
pub struct Idempotency {
    /// The calling key's id.
    pub key_id: String,
    /// The `Idempotency-Key` header.
    pub key: String,
    /// Digest of the request (method, path, body).
    pub request_hash: Vec<u8>,
}

impl Idempotency {
    /// A digest naming this key (of this caller) without revealing it: what a spent
    /// proof-of-work challenge remembers, so the same request retried is no replay.
    pub fn spender(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(self.key_id.as_bytes())
            .chain_update(b"\n")
            .chain_update(self.key.as_bytes())
            .finalize();
        hex::encode(digest)
    }
}

/// Everything `start` needs, decided by the caller before the atomic step.
#[derive(Clone, Debug)]
pub struct StartRequest {
    /// The service.
    pub service_id: String,
    /// Normalized recipient.
    pub to: String,
    /// Channel of this send.
    pub channel: Channel,
    /// Channels to fall back to, in order, if this one fails.
    pub fallback: Vec<Channel>,
    /// The provider chain for `channel` (first tried first); `["test"]` for test keys.
    pub providers: Vec<String>,
    /// Whether a message is to be delivered (false for test numbers).
    pub deliver: bool,
    /// Id for a new verification (unused on resend).
    pub new_id: String,
    /// `HMAC(secret, new_id ‖ code)` for a new verification.
    pub code_hash: Vec<u8>,
    /// The sealed code for a new verification (sealed for `new_id`).
    pub sealed_code: Vec<u8>,
    /// Lifetime of a new verification.
    pub ttl: Duration,
    /// Attempt limit of a new verification.
    pub max_check_attempts: u32,
    /// Locale.
    pub locale: String,
    /// Caller metadata.
    pub metadata: Option<serde_json::Value>,
    /// The application user, whose lockout the checks then share.
    pub entity: Option<String>,
    /// The recipient's region (ISO 3166, phone numbers only), kept for statistics.
    pub region: Option<String>,
    /// Test-mode caller.
    pub test: bool,
    /// Calling key.
    pub key_id: String,
    /// The per-recipient send limit (the service's `rate_limits`).
    pub send_limit: crate::start::SendLimit,
    /// Idempotency, when the caller gave a key.
    pub idempotency: Option<Idempotency>,
    /// Message overrides of this verification (replaced on a resend that gives some).
    pub message_options: MessageOptions,
}

/// What `start` did.
#[derive(Clone, Debug)]
pub enum StartOutcome {
    /// A new verification.
    Created(Verification),
    /// A resend on the pending verification for this recipient.
    Resent(Verification),
    /// The same idempotent request again: its verification, nothing sent.
    Replayed(Verification),
}

/// Which verification a check is for.
#[derive(Clone, Debug)]
pub enum CheckTarget {
    /// By id.
    Id(String),
    /// The latest for this recipient in this service, in the caller's world.
    To {
        /// Service id.
        service_id: String,
        /// Normalized recipient.
        to: String,
        /// The caller's world: test keys see only test verifications, live keys only live
        /// ones (invariant 8).
        test: bool,
    },
}

/// The result of an atomic check.
#[derive(Clone, Debug)]
pub enum CheckOutcome {
    /// No verification found.
    NotFound,
    /// The decision made and applied, with the verification after it.
    Decided {
        /// What the rules decided.
        decision: crate::verification::CheckDecision,
        /// The verification as it is now (boxed: it is much larger than `NotFound`).
        verification: Box<Verification>,
    },
}

/// Compares a submitted code with a verification's stored hash (the store calls it inside
/// its atomic step, so the comparison and the state change cannot be separated).
pub type CodeMatcher<'a> = &'a (dyn Fn(&Verification) -> bool + Send + Sync);

/// What a test-mode send is rendered from, inside the store's atomic step.
pub struct TestSend<'a> {
    /// The verification (new or resent).
    pub verification_id: &'a str,
    /// Its sealed code.
    pub sealed_code: &'a [u8],
    /// Its expiry.
    pub expires_at: DateTime<Utc>,
}

/// A message recorded for a test key: `(message id, body sealed for that id)`.
pub type SealedMessage = (String, Vec<u8>);

/// Renders the message of a test-mode send (test keys never reach a provider: their
/// messages are recorded in the same step as the send, so they are readable at once).
pub type TestRecorder<'a> = &'a (dyn Fn(&TestSend<'_>) -> Option<SealedMessage> + Send + Sync);

/// Verifications.
#[async_trait]
pub trait VerificationStore: Send + Sync {
    /// Creates a verification or resends the pending one for the same recipient in the
    /// same world (`req.test`: a test key's send never finds a live verification, nor the
    /// reverse), with the send limit, the delivery job (or, with `record`, the recorded
    /// test message), the idempotency record and events, all in one step.
    async fn start(
        &self,
        req: StartRequest,
        record: Option<TestRecorder<'_>>,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<StartOutcome>;
    /// A verification with its deliveries.
    async fn get_verification(&self, id: &str) -> StoreResult<Option<Verification>>;
    /// Checks a code: finds the verification, asks `matcher`, applies the decision (spend,
    /// count, lock) with a conditional update and records the event, atomically. A wrong
    /// code is a lockout failure for `to` (and the verification's entity); while either is
    /// locked a check that would compare a code fails with `Locked` and changes nothing.
    /// The decision's effects are `otpd_core::verification::CheckDecision::effects`; a
    /// failure counts under `lockout`, the service's policy (the caller holds the service).
    async fn check(
        &self,
        target: CheckTarget,
        lockout: &LockoutPolicy,
        matcher: CodeMatcher<'_>,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<CheckOutcome>;
    /// [`check`](Self::check) by id of a verification the caller has just read
    /// (`seen`): a store may decide on that state and rely on its compare-and-set, reading
    /// again only when it changed meanwhile (one round trip fewer for a remote store). The
    /// outcome is the same as a check by id.
    async fn check_seen(
        &self,
        seen: &Verification,
        lockout: &LockoutPolicy,
        matcher: CodeMatcher<'_>,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<CheckOutcome> {
        self.check(CheckTarget::Id(seen.id.clone()), lockout, matcher, now, ctx)
            .await
    }
    /// Cancels a pending verification. Returns it; `None` if there is none.
    async fn cancel(
        &self,
        id: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<Option<Verification>>;
    /// Approves a pending verification out of band (the application vouches for the user):
    /// pending → approved, the code spent (its sealed copy erased), an `approved` event,
    /// atomically. Returns the verification as it is after; `None` if there is none.
    async fn approve(
        &self,
        id: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<Option<Verification>>;
    /// The latest verification (of any status) for a recipient in a service, in one world
    /// (`test`: started with test keys, or with live ones).
    async fn latest_verification(
        &self,
        service_id: &str,
        to: &str,
        test: bool,
    ) -> StoreResult<Option<Verification>>;
    /// Deliveries matching the filter, newest first.
    async fn list_deliveries(&self, filter: &DeliveryFilter) -> StoreResult<Vec<DeliveryRecord>>;
    /// One delivery by id (`dlv_…`).
    async fn get_delivery(&self, id: &str) -> StoreResult<Option<DeliveryRecord>>;
    /// Marks pending verifications past their expiry as expired (erasing their sealed
    /// codes) and records events. Returns how many.
    async fn expire_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        ctx: &WriteContext,
    ) -> StoreResult<u64>;
    /// Messages recorded for a test-mode verification (sealed bodies, opened by the caller).
    async fn recorded_messages(&self, verification_id: &str) -> StoreResult<Vec<RecordedMessage>>;
}

/// Filters for listing deliveries (Twilio's Verification Attempts).
#[derive(Clone, Debug, Default)]
pub struct DeliveryFilter {
    /// Only this service's.
    pub service_id: Option<String>,
    /// Only this verification's.
    pub verification_id: Option<String>,
    /// Only this channel.
    pub channel: Option<Channel>,
    /// Only to this recipient.
    pub to: Option<String>,
    /// Only created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only created at or before this time.
    pub created_before: Option<DateTime<Utc>>,
    /// Only of approved (`true`) or not approved (`false`) verifications.
    pub converted: Option<bool>,
    /// Skip this many.
    pub offset: u64,
    /// At most this many.
    pub limit: u32,
}

/// A delivery with what a listing needs of its verification.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryRecord {
    /// The delivery.
    pub delivery: crate::verification::Delivery,
    /// Its verification.
    pub verification_id: String,
    /// The verification's service.
    pub service_id: String,
    /// Recipient.
    pub to: String,
    /// The verification's stored status.
    pub verification_status: Status,
    /// The verification's expiry (a pending one past it is expired).
    pub verification_expires_at: DateTime<Utc>,
}

/// A message recorded instead of delivered (test keys).
#[derive(Clone, Debug)]
pub struct RecordedMessage {
    /// `msg_…`
    pub id: String,
    /// Delivery it belongs to.
    pub delivery_id: String,
    /// Channel.
    pub channel: Channel,
    /// Recipient.
    pub to: String,
    /// Body sealed for the message id.
    pub sealed_body: Vec<u8>,
    /// When recorded.
    pub created_at: DateTime<Utc>,
}
