//! The journal a hot store (Redis) writes and the durable store applies.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::channel::Channel;
use crate::verification::MessageOptions;
use crate::verification::Status;

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
