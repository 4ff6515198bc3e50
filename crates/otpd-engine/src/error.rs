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
    #[error("{}", max_attempts_text(*.locked_for_secs))]
    MaxAttempts {
        /// Set when these wrong codes certainly locked the recipient (the service's
        /// lockout counts them all): for how long new codes and checks are refused.
        locked_for_secs: Option<u64>,
    },
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

/// The text of [`VerifyError::MaxAttempts`]: what the caller can do next, without
/// advising a new verification that the lockout would refuse.
fn max_attempts_text(locked_for_secs: Option<u64>) -> String {
    match locked_for_secs {
        Some(secs) => format!(
            "too many wrong codes; this recipient is locked: new codes and checks are refused \
             for {} (Retry-After)",
            duration_text(secs)
        ),
        None => "too many wrong codes for this verification; a new verification can be \
                 started, unless wrong codes have locked the recipient (its send then answers \
                 429 with Retry-After)"
            .into(),
    }
}

/// `90 s`, `15 min`, `2 h`, rounded up to the unit.
fn duration_text(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs.div_ceil(60)),
        _ => format!("{} h", secs.div_ceil(3600)),
    }
}

/// A result of the engine.
pub type VerifyResult<T> = Result<T, VerifyError>;

impl VerifyError {
    /// `Invalid` with this text.
    pub fn invalid(detail: impl Into<String>) -> Self {
        VerifyError::Invalid(detail.into())
    }
}
