//! The storage capabilities otpd needs, as small traits. Each backend (the embedded
//! SQLite store first) implements them; the server and the delivery worker only see these.
//!
//! Multi-step changes are single store calls (`start`, `check`, `cancel`, `claim`, …) so
//! that each backend can make them atomic: a transaction, a conditional update, or a script.
//!
//! One file per capability; consumers ask for the capability they need (`Arc<dyn Store>`
//! upcasts to any of them), and `Store` is all of them for the backends that keep everything.

mod challenges;
mod error;
mod events;
mod factor_challenges;
mod factors;
mod guards;
mod health;
mod journal;
mod keys;
mod outbox;
mod passkeys;
mod retention;
mod safe_list;
mod services;
mod sessions;
mod stats;
mod telemetry;
mod verifications;
mod webhooks;

pub use challenges::*;
pub use error::*;
pub use events::*;
pub use factor_challenges::*;
pub use factors::*;
pub use guards::*;
pub use health::*;
pub use journal::*;
pub use keys::*;
pub use outbox::*;
pub use passkeys::*;
pub use retention::*;
pub use safe_list::*;
pub use services::*;
pub use sessions::*;
pub use stats::*;
pub use telemetry::*;
pub use verifications::*;
pub use webhooks::*;

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
    + FactorChallengeStore
    + GuardStore
    + ChallengeStore
    + HealthStore
    + RetentionStore
    + SessionStore
    + StatsStore
    + WebhookStore
    + TelemetryStore
    + SafeListStore
    + PasskeyStore
{
}

impl<T> Store for T where
    T: ServiceStore
        + KeyStore
        + VerificationStore
        + OutboxStore
        + EventStore
        + FactorStore
        + FactorChallengeStore
        + GuardStore
        + ChallengeStore
        + HealthStore
        + RetentionStore
        + SessionStore
        + StatsStore
        + WebhookStore
        + TelemetryStore
        + SafeListStore
        + PasskeyStore
{
}
