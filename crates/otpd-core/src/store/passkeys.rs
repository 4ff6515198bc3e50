//! Passkeys (WebAuthn): registered credentials and the ceremonies under way.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::audit::WriteContext;
use crate::passkey::{PasskeyCeremony, PasskeyFactor};

/// The `passkey.failed` reason of a signature counter that did not go up.
pub const COUNTER_WENT_BACK: &str = "signature counter did not increase";

/// A sign-in the WebAuthn library verified, for the store to apply.
#[derive(Clone, Debug)]
pub struct PasskeyUse {
    /// The passkey that signed (`pk_…`).
    pub factor_id: String,
    /// The signature counter the authenticator presented.
    pub sign_count: u32,
    /// The library's credential after the sign-in (flags and counter updated).
    pub credential: String,
}

/// What became of a verified sign-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasskeyUseOutcome {
    /// Accepted: the counter went up (or the authenticator keeps none); the entity's
    /// lockout failures are forgotten and `passkey.authenticated` is recorded.
    Accepted(Box<PasskeyFactor>),
    /// The counter did not go up (a cloned authenticator?): refused, counted toward the
    /// entity's lockout, and `passkey.failed` recorded.
    CounterRegressed,
    /// The passkey was deleted meanwhile (nothing changed).
    NotFound,
}

/// A sign-in that failed, for the store to record.
#[derive(Clone, Debug)]
pub struct PasskeyFailure {
    /// Service id.
    pub service_id: String,
    /// The entity, when it is known (named by the ceremony, or the owner of the credential
    /// used): the failure then counts toward its lockout.
    pub entity: Option<String>,
    /// The passkey used, when it is known.
    pub factor_id: Option<String>,
    /// Why, in a few words (never a credential or a challenge).
    pub reason: String,
}

/// Passkeys and their ceremonies.
#[async_trait]
pub trait PasskeyStore: Send + Sync {
    /// Stores a ceremony just started.
    async fn create_passkey_ceremony(&self, ceremony: &PasskeyCeremony) -> StoreResult<()>;
    /// A ceremony by id, used or not (to check who may finish it before it is taken).
    async fn get_passkey_ceremony(&self, id: &str) -> StoreResult<Option<PasskeyCeremony>>;
    /// Takes a ceremony for finishing, atomically: only one caller ever gets it, and only
    /// before its deadline at `now`; `None` when it is unknown, already taken, or expired.
    async fn take_passkey_ceremony(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<PasskeyCeremony>>;
    /// Stores a newly registered passkey and its `passkey.registered` event; false (nothing
    /// stored) when its credential id is already registered in the service.
    async fn register_passkey(
        &self,
        factor: &PasskeyFactor,
        ctx: &WriteContext,
    ) -> StoreResult<bool>;
    /// A passkey by id.
    async fn get_passkey(&self, id: &str) -> StoreResult<Option<PasskeyFactor>>;
    /// The passkey with this credential id (base64url) in a service.
    async fn find_passkey_by_credential(
        &self,
        service_id: &str,
        credential_id: &str,
    ) -> StoreResult<Option<PasskeyFactor>>;
    /// An entity's passkeys in a service, oldest first.
    async fn list_passkeys(
        &self,
        service_id: &str,
        entity: &str,
    ) -> StoreResult<Vec<PasskeyFactor>>;
    /// Deletes a passkey (and records `passkey.deleted`); false if there was none.
    async fn delete_passkey(
        &self,
        id: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<bool>;
    /// Applies a verified sign-in in one atomic step: refuses a locked entity (`Locked`,
    /// nothing changed); raises the counter with a conditional update
    /// ([`crate::passkey::counter_accepts`]); then clears or counts the entity's lockout
    /// failures and records the event.
    async fn use_passkey(
        &self,
        used: &PasskeyUse,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<PasskeyUseOutcome>;
    /// Records a failed sign-in (`passkey.failed`), counted toward the entity's lockout
    /// when the entity is known.
    async fn passkey_failed(
        &self,
        failure: &PasskeyFailure,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<()>;
    /// The end of the entity's lock at `now`, if it is locked (a sign-in is not started for
    /// a locked entity).
    async fn entity_locked_until(
        &self,
        service_id: &str,
        entity: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DateTime<Utc>>>;
}
