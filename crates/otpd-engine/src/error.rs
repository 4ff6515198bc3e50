//! The engine's one error type. Each face maps it to its wire format once (`/v1`:
//! problem+json; `/v2`: Twilio's error body).

use otpd_core::DomainError;
use otpd_core::channel::Channel;
use otpd_core::guards::Refusal;
use otpd_core::store::StoreError;
use otpd_core::verification::Status;

/// Why a start, check, end or read did not happen. Nothing was changed, except where a
/// variant says so (an exhausted attempt limit is recorded).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Malformed or out-of-range input.
    #[error("{0}")]
    Invalid(String),
    /// A domain rule refused the input (phone number, channel, code, locale, …).
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// No such thing, or not one the caller may see (the two look alike on purpose).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// No provider serves the channel.
    #[error("no provider is configured for channel {0}")]
    NoProvider(Channel),
    /// The attempt limit is reached (the attempt that reached it is recorded).
    #[error("too many wrong codes; start a new verification")]
    MaxAttempts,
    /// The verification expired.
    #[error("the verification expired")]
    Expired,
    /// The verification is over (approved, canceled, …).
    #[error("the verification is {}", .0.as_str())]
    NotPending(Status),
    /// An enforced guard refused (geo, number type, budget, fraud, proof of work, rate
    /// limit, lockout); the decision is recorded.
    #[error("{}", .0.reason)]
    Refused(Refusal),
    /// A recorded test message could not be opened.
    #[error("a recorded message could not be opened")]
    Unreadable,
    /// The store refused (send limit, lockout, idempotency) or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A result of the engine.
pub type VerifyResult<T> = Result<T, VerifyError>;

impl VerifyError {
    /// `Invalid` with this text.
    pub fn invalid(detail: impl Into<String>) -> Self {
        VerifyError::Invalid(detail.into())
    }
}
