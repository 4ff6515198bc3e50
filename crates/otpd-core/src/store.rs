//! The storage capabilities otpd needs, as small traits. Each backend (the embedded
//! SQLite store first) implements them; the server and the delivery worker only see these.
//!
//! Multi-step changes are single store calls (`start`, `check`, `cancel`, `claim`, …) so
//! that each backend can make them atomic: a transaction, a conditional update, or a script.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::apikey::ApiKey;
use crate::channel::Channel;
use crate::event::Event;
use crate::guards::budget::{BudgetGuard, Money};
use crate::guards::proof_of_work::Challenge;
use crate::guards::rate::Bucket;
use crate::guards::{DecisionRecord, Refusal};
use crate::service::Service;
use crate::totp::{Factor, FactorKind};
use crate::verification::{DeliveryStatus, MessageOptions, Status, Verification};

/// Errors a store reports.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique name is taken.
    #[error("{0} already exists")]
    Conflict(String),
    /// Too many sends; try again after this many seconds.
    #[error("too many sends to this recipient")]
    RateLimited {
        /// Seconds until a send is allowed again.
        retry_after_secs: u64,
    },
    /// Too many wrong codes for this recipient or entity: checks (and sends to the
    /// recipient) are refused until the lock ends, and nothing was changed.
    #[error("too many wrong codes; locked")]
    Locked {
        /// Seconds until the lock ends.
        retry_after_secs: u64,
    },
    /// The idempotency key was used with another request body.
    #[error("idempotency key reused with a different request")]
    IdempotencyConflict,
    /// The store cannot be reached or failed; the request must fail closed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be read back (a bug, or a damaged database): the request
    /// fails closed, and the operator has something to look at.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The record kept changing under the call (concurrent writers on other requests or
    /// nodes): nothing was changed, and the caller may try again.
    #[error("raced: {0}")]
    Raced(String),
}

/// A store result.
pub type StoreResult<T> = Result<T, StoreError>;

/// Services.
#[async_trait]
pub trait ServiceStore: Send + Sync {
    /// Inserts a service; `Conflict` if the name is taken.
    async fn create_service(
        &self,
        service: &Service,
        sealed_webhook_secret: Option<Vec<u8>>,
    ) -> StoreResult<()>;
    /// Finds a service by name, id or SID.
    async fn find_service(&self, name_id_or_sid: &str) -> StoreResult<Option<Service>>;
    /// Every service, by name.
    async fn list_services(&self) -> StoreResult<Vec<Service>>;
    /// Replaces a service's settings (and optionally its sealed webhook secret).
    async fn update_service(
        &self,
        service: &Service,
        sealed_webhook_secret: Option<Option<Vec<u8>>>,
    ) -> StoreResult<()>;
    /// Deletes a service; false if there was none.
    async fn delete_service(&self, id: &str) -> StoreResult<bool>;
    /// The sealed webhook secret of a service.
    async fn sealed_webhook_secret(&self, id: &str) -> StoreResult<Option<Vec<u8>>>;
}

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
    /// Sends allowed per recipient per window.
    pub sends_per_window: u32,
    /// The window.
    pub send_window: Duration,
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
    ) -> StoreResult<StartOutcome>;
    /// A verification with its deliveries.
    async fn get_verification(&self, id: &str) -> StoreResult<Option<Verification>>;
    /// Checks a code: finds the verification, asks `matcher`, applies the decision (spend,
    /// count, lock) with a conditional update and records the event, atomically. A wrong
    /// code is a lockout failure for `to` (and the verification's entity); while either is
    /// locked a check that would compare a code fails with `Locked` and changes nothing.
    async fn check(
        &self,
        target: CheckTarget,
        matcher: CodeMatcher<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<CheckOutcome>;
    /// [`check`](Self::check) by id of a verification the caller has just read
    /// (`seen`): a store may decide on that state and rely on its compare-and-set, reading
    /// again only when it changed meanwhile (one round trip fewer for a remote store). The
    /// outcome is the same as a check by id.
    async fn check_seen(
        &self,
        seen: &Verification,
        matcher: CodeMatcher<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<CheckOutcome> {
        self.check(CheckTarget::Id(seen.id.clone()), matcher, now)
            .await
    }
    /// Cancels a pending verification. Returns it; `None` if there is none.
    async fn cancel(&self, id: &str, now: DateTime<Utc>) -> StoreResult<Option<Verification>>;
    /// Approves a pending verification out of band (the application vouches for the user):
    /// pending → approved, the code spent (its sealed copy erased), an `approved` event,
    /// atomically. Returns the verification as it is after; `None` if there is none.
    async fn approve(&self, id: &str, now: DateTime<Utc>) -> StoreResult<Option<Verification>>;
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
    async fn expire_due(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<u64>;
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
    ) -> StoreResult<()>;
    /// Applies a delivery receipt; false if no such message of that provider exists.
    async fn apply_receipt(&self, receipt: &Receipt, now: DateTime<Utc>) -> StoreResult<bool>;
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
    ) -> StoreResult<bool>;
}

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
    ) -> StoreResult<()>;
}

/// Which factor(s) a code is checked against.
#[derive(Clone, Debug)]
pub enum FactorTarget {
    /// Activation: this unverified factor.
    Activate(String),
    /// This active factor (and its entity's backup codes).
    Factor(String),
    /// Every active factor of the entity, and its backup codes.
    Entity {
        /// Service id.
        service_id: String,
        /// The entity.
        entity: String,
    },
}

/// The stored hash of the submitted code as a backup code of `(service id, entity)`, or
/// `None` when it does not have a backup code's shape (or backup codes do not apply).
pub type BackupHasher<'a> = &'a (dyn Fn(&str, &str) -> Option<Vec<u8>> + Send + Sync);

/// Opens a factor's secret and verifies the submitted code against it, returning the time
/// step or counter that matched (strictly after `factor.last_used`).
pub type FactorMatcher<'a> = &'a (dyn Fn(&Factor) -> Option<u64> + Send + Sync);

/// How a factor check was satisfied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactorMethod {
    /// A code of a TOTP or HOTP factor.
    Code(FactorKind),
    /// A backup code (now spent).
    BackupCode,
}

/// The result of a factor check.
#[derive(Clone, Debug)]
pub enum FactorCheckOutcome {
    /// No such factor, or the entity has no active factor and no backup code left.
    NotFound,
    /// Activation of a factor that is already active (nothing changed).
    AlreadyActive(Box<Factor>),
    /// A check by id of a factor not yet activated (nothing changed).
    NotActive(Box<Factor>),
    /// The right code: the factor (after the change, `None` for a backup code checked by
    /// entity) and how.
    Approved {
        /// The factor that matched, or the one named by the check.
        factor: Option<Box<Factor>>,
        /// TOTP/HOTP or backup code.
        method: FactorMethod,
        /// Unused backup codes left for the entity.
        backup_codes_remaining: u32,
    },
    /// A wrong (or replayed) code; the failure was counted toward the entity's lockout.
    Rejected {
        /// The factor named by the check, if one was.
        factor: Option<Box<Factor>>,
    },
}

/// Authenticator-app factors and backup codes.
#[async_trait]
pub trait FactorStore: Send + Sync {
    /// Stores a new (unverified) factor and its event.
    async fn create_factor(&self, factor: &Factor) -> StoreResult<()>;
    /// A factor by id.
    async fn get_factor(&self, id: &str) -> StoreResult<Option<Factor>>;
    /// The entity's factors in a service, oldest first.
    async fn list_factors(&self, service_id: &str, entity: &str) -> StoreResult<Vec<Factor>>;
    /// Deletes a factor (and records the event); false if there was none.
    async fn delete_factor(&self, id: &str, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Checks a code atomically: refuses a locked entity (`Locked`, nothing changed); asks
    /// `matcher` about each candidate factor and records the matched step with a
    /// conditional update (a step is accepted once); else spends a matching backup code;
    /// else counts a lockout failure. Activation also turns the factor active.
    async fn check_factor(
        &self,
        target: FactorTarget,
        matcher: FactorMatcher<'_>,
        backup: BackupHasher<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<FactorCheckOutcome>;
    /// Replaces the entity's backup codes with these hashes.
    async fn replace_backup_codes(
        &self,
        service_id: &str,
        entity: &str,
        hashes: &[Vec<u8>],
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Unused backup codes of the entity.
    async fn count_backup_codes(&self, service_id: &str, entity: &str) -> StoreResult<u32>;
}

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
    async fn record_decision(&self, record: &DecisionRecord, now: DateTime<Utc>)
    -> StoreResult<()>;
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

/// What spending a proof-of-work challenge did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spend {
    /// Spent now, by this send.
    Spent,
    /// Spent earlier by a send with the same idempotency digest: this is its retry.
    Retried,
    /// Spent earlier by another send, or gone.
    AlreadySpent,
}

/// Issued proof-of-work challenges (`guards::proof_of_work`), each spent at most once.
#[async_trait]
pub trait ChallengeStore: Send + Sync {
    /// Keeps a newly issued challenge (and forgets a few long-expired ones).
    async fn create_challenge(&self, challenge: &Challenge) -> StoreResult<()>;
    /// The challenge with this id, spent or not (`None` once spent, expired and purged).
    async fn get_challenge(&self, id: &str) -> StoreResult<Option<Challenge>>;
    /// Marks the challenge spent unless it already is, atomically across nodes.
    /// `spender` is a digest of the send's idempotency key, when it has one.
    async fn spend_challenge(
        &self,
        id: &str,
        spender: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<Spend>;
}

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
    async fn purge(&self, policy: &RetentionPolicy, now: DateTime<Utc>) -> StoreResult<RowCounts>;
    /// Deletes every record that holds `to` (a normalized phone number or email address)
    /// or derives from it, in every service, and records an `erasure.completed` event
    /// carrying only `masked`.
    async fn erase_recipient(
        &self,
        to: &str,
        masked: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<RowCounts>;
}

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

/// A webhook message leased to a sender: one event for one service's endpoint.
#[derive(Clone, Debug)]
pub struct WebhookJob {
    /// `whk_…`
    pub id: String,
    /// The service whose `webhook_url` receives it.
    pub service_id: String,
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

/// Operational checks.
#[async_trait]
pub trait HealthStore: Send + Sync {
    /// Whether the store answers.
    async fn ping(&self) -> StoreResult<()>;
    /// Each dependency by name (`database`, `redis`, …) and whether it answers, for
    /// `/readyz` to say which one is down.
    async fn dependencies(&self) -> Vec<(&'static str, StoreResult<()>)> {
        vec![("database", self.ping().await)]
    }
}

/// A verification's durable record as a hot store hands it over (see [`JournalSink`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VerificationRecord {
    /// `ver_…`
    pub id: String,
    /// Owning service id.
    pub service_id: String,
    /// Normalized recipient.
    pub to: String,
    /// Channel of the latest send.
    pub channel: Channel,
    /// `HMAC(secret, id ‖ code)`.
    pub code_hash: Vec<u8>,
    /// The sealed code, for the delivery worker (erased when the verification ends).
    pub sealed_code: Vec<u8>,
    /// End of life.
    pub expires_at: DateTime<Utc>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Wrong checks allowed.
    pub max_check_attempts: u32,
    /// Locale.
    pub locale: String,
    /// Caller metadata.
    pub metadata: Option<serde_json::Value>,
    /// The application user.
    pub entity: Option<String>,
    /// Recipient region (statistics).
    pub region: Option<String>,
    /// Started with a test key.
    pub test: bool,
    /// Calling key.
    pub key_id: String,
    /// Message overrides.
    pub message_options: MessageOptions,
}

/// A delivery job to queue in the durable outbox (where the delivery worker claims it).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JournalDelivery {
    /// `dlv_…`, chosen by the hot store (applying it twice queues it once).
    pub id: String,
    /// The verification.
    pub verification_id: String,
    /// Channel.
    pub channel: Channel,
    /// Fallback channels.
    pub fallback: Vec<Channel>,
    /// Provider chain.
    pub providers: Vec<String>,
    /// Test mode.
    pub test: bool,
    /// When it was queued.
    pub at: DateTime<Utc>,
}

/// An event to append (its id is chosen by the hot store: appending it twice keeps one).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JournalEvent {
    /// `evt_…`
    pub id: String,
    /// Type.
    pub kind: crate::event::EventType,
    /// The verification it is about.
    pub verification_id: Option<String>,
    /// The service.
    pub service_id: Option<String>,
    /// Payload (no secrets; recipients masked).
    pub data: serde_json::Value,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who caused it (the request's audit context when it happened).
    pub actor: crate::audit::Actor,
}

/// One change of a journal entry, applied in order.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum JournalOp {
    /// A new pending verification: inserted unless its id exists (and then counted once
    /// in the durable send log, which feeds statistics; send limits are the hot store's).
    Create(Box<VerificationRecord>),
    /// A resend on an existing verification: its channel becomes `channel`, its entity and
    /// message options are set where given (an entity is never replaced); counted in the
    /// send log the first time it applies. Fails (to be retried) while the verification is
    /// not there yet.
    Resend {
        /// The verification.
        id: String,
        /// Channel of this send.
        channel: Channel,
        /// Entity given with this send.
        entity: Option<String>,
        /// Overrides given with this send (empty: keep the stored ones).
        message_options: MessageOptions,
        /// When.
        at: DateTime<Utc>,
    },
    /// A state change made by the hot store: `check_attempts` rises to the given count
    /// (never falls), `status` replaces `pending` (or `expired`, when the change happened
    /// before the expiry: the hot store's word wins over the durable sweep); a status other
    /// than `pending` erases the sealed code (invariant 1). `events` are appended only when
    /// this changed the record. Fails (to be retried) while the verification is not there.
    State {
        /// The verification.
        id: String,
        /// Its status after the change.
        status: Status,
        /// Its attempt count after the change.
        check_attempts: u32,
        /// When the change happened.
        at: DateTime<Utc>,
        /// Events of the change.
        events: Vec<JournalEvent>,
    },
    /// Queues a delivery job unless its id exists.
    Enqueue(JournalDelivery),
    /// Appends an event unless its id exists.
    Event(JournalEvent),
}

/// A unit of hot-store changes for the durable store, applied all or nothing.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JournalEntry {
    /// The changes, in order.
    pub ops: Vec<JournalOp>,
}

/// The durable side of a hot store (Redis): applies the hot store's journal — verification
/// history, delivery jobs, events — so that the durable store holds what it would have
/// written itself. Every op is idempotent by its ids: an entry applied twice (a node died
/// before acknowledging it, another node took it over) changes nothing the second time.
/// An error leaves the entry to be retried (e.g. a state change that arrived before the
/// verification's creation).
#[async_trait]
pub trait JournalSink: Send + Sync {
    /// Applies `entry` in one transaction.
    async fn apply_journal(&self, entry: &JournalEntry) -> StoreResult<()>;
}

/// A store a hot store (Redis) can stand in front of: everything, plus the journal.
/// `RedisHot<dyn DurableStore>` wraps whichever database the configuration opened.
pub trait DurableStore: Store + JournalSink {}

impl<T: Store + JournalSink + ?Sized> DurableStore for T {}

/// Everything otpd needs from its storage, as one object.
pub trait Store:
    ServiceStore
    + KeyStore
    + VerificationStore
    + OutboxStore
    + EventStore
    + FactorStore
    + GuardStore
    + ChallengeStore
    + HealthStore
    + RetentionStore
    + SessionStore
    + StatsStore
    + WebhookStore
    + TelemetryStore
{
}

impl<T> Store for T where
    T: ServiceStore
        + KeyStore
        + VerificationStore
        + OutboxStore
        + EventStore
        + FactorStore
        + GuardStore
        + ChallengeStore
        + HealthStore
        + RetentionStore
        + SessionStore
        + StatsStore
        + WebhookStore
        + TelemetryStore
{
}
