//! Events: every state change of a verification or an authenticator factor, in order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::Actor;

/// How the error of a `verification.delivery_failed` event ends when the provider was
/// passed by because its circuit was open (the dashboard counts these apart).
pub const SKIPPED_FOR_OPEN_CIRCUIT: &str = "circuit open, skipped";

/// The kinds of event (the contract's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    /// A verification was started.
    #[serde(rename = "verification.created")]
    Created,
    /// A provider accepted a message (also a resend's).
    #[serde(rename = "verification.delivery_sent")]
    DeliverySent,
    /// A provider confirmed delivery.
    #[serde(rename = "verification.delivered")]
    Delivered,
    /// A delivery attempt failed (retried or final, see `data.final`).
    #[serde(rename = "verification.delivery_failed")]
    DeliveryFailed,
    /// The right code was given.
    #[serde(rename = "verification.approved")]
    Approved,
    /// A wrong code was given.
    #[serde(rename = "verification.check_failed")]
    CheckFailed,
    /// The code's lifetime ended unused.
    #[serde(rename = "verification.expired")]
    Expired,
    /// The application canceled it.
    #[serde(rename = "verification.canceled")]
    Canceled,
    /// The attempt limit was reached.
    #[serde(rename = "verification.max_attempts_reached")]
    MaxAttemptsReached,
    /// A guard refused a send, or a lockout started (`data.reason = "lockout"`).
    #[serde(rename = "verification.blocked")]
    Blocked,
    /// A resend was accepted.
    #[serde(rename = "verification.resent")]
    Resent,
    /// No delivery could be made; the verification failed.
    #[serde(rename = "verification.failed")]
    Failed,
    /// An authenticator factor was created (unverified).
    #[serde(rename = "factor.created")]
    FactorCreated,
    /// A factor was activated by its first valid code.
    #[serde(rename = "factor.verified")]
    FactorVerified,
    /// A factor was deleted.
    #[serde(rename = "factor.deleted")]
    FactorDeleted,
    /// A right authenticator or backup code was given.
    #[serde(rename = "factor.approved")]
    FactorApproved,
    /// A challenge of a factor (Twilio's `/v2` Challenges) was approved by its right code
    /// (`data.challenge_id`, `factor_id`, `entity`), after the check's `factor.approved`.
    #[serde(rename = "factor.challenge_approved")]
    FactorChallengeApproved,
    /// A wrong authenticator or backup code was given.
    #[serde(rename = "factor.check_failed")]
    FactorCheckFailed,
    /// A new set of backup codes replaced the old one.
    #[serde(rename = "factor.backup_codes_created")]
    BackupCodesCreated,
    /// A passkey was registered (`data.factor_id`, `data.entity`).
    #[serde(rename = "passkey.registered")]
    PasskeyRegistered,
    /// A passkey signed an entity in.
    #[serde(rename = "passkey.authenticated")]
    PasskeyAuthenticated,
    /// A passkey sign-in failed (`data.reason`); counted toward the entity's lockout.
    #[serde(rename = "passkey.failed")]
    PasskeyFailed,
    /// A passkey was deleted.
    #[serde(rename = "passkey.deleted")]
    PasskeyDeleted,
    /// A provider's circuit opened: it is skipped for a while (`data.provider`).
    #[serde(rename = "provider.circuit_opened")]
    CircuitOpened,
    /// An open circuit lets one probe message through.
    #[serde(rename = "provider.circuit_half_open")]
    CircuitHalfOpen,
    /// A provider's circuit closed again after a successful probe.
    #[serde(rename = "provider.circuit_closed")]
    CircuitClosed,
    /// A service's spend reached 80% or 100% of a budget limit (`data.percent`).
    #[serde(rename = "budget.threshold")]
    BudgetThreshold,
    /// A state-changing API call was answered (`data`: method, route, status); its
    /// domain events carry the same request id.
    #[serde(rename = "api.request")]
    ApiRequest,
    /// Every record of a recipient was erased on request (`data.to` masked, counts).
    #[serde(rename = "erasure.completed")]
    ErasureCompleted,
    /// The retention purge deleted rows older than their configured age (counts).
    #[serde(rename = "retention.purged")]
    RetentionPurged,
    /// Alert: a provider delivered less than the threshold share of its messages over the
    /// alert window (`data.provider`, `data.rate_percent`; see [`crate::alerts`]).
    #[serde(rename = "alert.delivery_rate_low")]
    AlertDeliveryRateLow,
    /// Alert ended: the provider's delivery rate is back at or above the threshold.
    #[serde(rename = "alert.delivery_rate_recovered")]
    AlertDeliveryRateRecovered,
    /// Alert: a country's conversion (approved / started) fell well below its baseline
    /// (`data.country`, `data.conversion_percent`, `data.baseline_percent`).
    #[serde(rename = "alert.conversion_drop")]
    AlertConversionDrop,
    /// Alert ended: the country's conversion is back near its baseline.
    #[serde(rename = "alert.conversion_recovered")]
    AlertConversionRecovered,
}

impl EventType {
    /// The wire name (`verification.approved`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "verification.created",
            EventType::DeliverySent => "verification.delivery_sent",
            EventType::Delivered => "verification.delivered",
            EventType::DeliveryFailed => "verification.delivery_failed",
            EventType::Approved => "verification.approved",
            EventType::CheckFailed => "verification.check_failed",
            EventType::Expired => "verification.expired",
            EventType::Canceled => "verification.canceled",
            EventType::MaxAttemptsReached => "verification.max_attempts_reached",
            EventType::Blocked => "verification.blocked",
            EventType::Resent => "verification.resent",
            EventType::Failed => "verification.failed",
            EventType::FactorCreated => "factor.created",
            EventType::FactorVerified => "factor.verified",
            EventType::FactorDeleted => "factor.deleted",
            EventType::FactorApproved => "factor.approved",
            EventType::FactorChallengeApproved => "factor.challenge_approved",
            EventType::FactorCheckFailed => "factor.check_failed",
            EventType::BackupCodesCreated => "factor.backup_codes_created",
            EventType::PasskeyRegistered => "passkey.registered",
            EventType::PasskeyAuthenticated => "passkey.authenticated",
            EventType::PasskeyFailed => "passkey.failed",
            EventType::PasskeyDeleted => "passkey.deleted",
            EventType::CircuitOpened => "provider.circuit_opened",
            EventType::CircuitHalfOpen => "provider.circuit_half_open",
            EventType::CircuitClosed => "provider.circuit_closed",
            EventType::BudgetThreshold => "budget.threshold",
            EventType::ApiRequest => "api.request",
            EventType::ErasureCompleted => "erasure.completed",
            EventType::RetentionPurged => "retention.purged",
            EventType::AlertDeliveryRateLow => "alert.delivery_rate_low",
            EventType::AlertDeliveryRateRecovered => "alert.delivery_rate_recovered",
            EventType::AlertConversionDrop => "alert.conversion_drop",
            EventType::AlertConversionRecovered => "alert.conversion_recovered",
        }
    }
}

/// A stored event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Position in the log (increasing).
    pub seq: i64,
    /// `evt_…`
    pub id: String,
    /// Kind (wire name).
    pub kind: String,
    /// The verification concerned (factor events carry `data.factor_id` instead).
    pub verification_id: Option<String>,
    /// The service concerned.
    pub service_id: Option<String>,
    /// Details (never a code or a full number).
    pub data: serde_json::Value,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// Who caused it (empty for work no request caused, e.g. the delivery worker).
    pub actor: Actor,
}
