//! Authenticator factors (TOTP) and backup codes.

use crate::audit::WriteContext;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::totp::FactorKind;
use crate::totp::{Factor, FactorParams};

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
    async fn create_factor(&self, factor: &Factor, ctx: &WriteContext) -> StoreResult<()>;
    /// A factor by id.
    async fn get_factor(&self, id: &str) -> StoreResult<Option<Factor>>;
    /// The entity's factors in a service, oldest first.
    async fn list_factors(&self, service_id: &str, entity: &str) -> StoreResult<Vec<Factor>>;
    /// Deletes a factor (and records the event); false if there was none.
    async fn delete_factor(
        &self,
        id: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<bool>;
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
        ctx: &WriteContext,
    ) -> StoreResult<FactorCheckOutcome>;
    /// Replaces the entity's backup codes with these hashes.
    async fn replace_backup_codes(
        &self,
        service_id: &str,
        entity: &str,
        hashes: &[Vec<u8>],
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<()>;
    /// Unused backup codes of the entity.
    async fn count_backup_codes(&self, service_id: &str, entity: &str) -> StoreResult<u32>;
    /// The entities of a service that have factors, with their first factor's creation,
    /// oldest first (`offset`, at most `limit`).
    async fn list_factor_entities(
        &self,
        service_id: &str,
        offset: u64,
        limit: u32,
    ) -> StoreResult<Vec<(String, DateTime<Utc>)>>;
    /// Renames a factor (its account label) and, while it is unverified, changes its code
    /// parameters. False when there is no such factor, or `params` were given and the
    /// factor is active (then nothing changed).
    async fn update_factor(
        &self,
        id: &str,
        label: &str,
        params: Option<FactorParams>,
    ) -> StoreResult<bool>;
}
