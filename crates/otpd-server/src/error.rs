//! The one place where errors become HTTP: status, stable `code`, a safe message, and
//! `Retry-After` on 429, as `application/problem+json` (RFC 9457).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use otpd_core::DomainError;
use otpd_core::guards::{GuardName, Refusal};
use otpd_core::store::StoreError;
use otpd_engine::VerifyError;
use serde::Serialize;

/// The stable error codes of the API contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No or unknown API key.
    Unauthorized,
    /// The key may not do this.
    Forbidden,
    /// Malformed or out-of-range input.
    InvalidRequest,
    /// `to` is not a valid phone number.
    InvalidPhoneNumber,
    /// Unknown channel, or none of the providers serves it.
    UnsupportedChannel,
    /// No such resource.
    NotFound,
    /// The verification is no longer pending.
    VerificationNotPending,
    /// The verification expired.
    Expired,
    /// Too many wrong codes.
    MaxAttemptsReached,
    /// Too many requests.
    RateLimited,
    /// The number's country is not allowed.
    GeoBlocked,
    /// Refused as likely fraud.
    FraudBlocked,
    /// The number's type is not allowed.
    NumberTypeBlocked,
    /// Spending limit reached.
    BudgetExceeded,
    /// The service wants a solved proof-of-work challenge with this send (missing,
    /// invalid, expired or already used).
    ProofOfWorkRequired,
    /// Idempotency key reused with another body.
    IdempotencyConflict,
    /// No provider could take the message.
    DeliveryUnavailable,
    /// Something failed on otpd's side (or a store is down: status 503).
    Internal,
}

impl ErrorCode {
    /// The default HTTP status of the code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden
            | ErrorCode::GeoBlocked
            | ErrorCode::FraudBlocked
            | ErrorCode::NumberTypeBlocked
            | ErrorCode::BudgetExceeded
            | ErrorCode::ProofOfWorkRequired => StatusCode::FORBIDDEN,
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidPhoneNumber
            | ErrorCode::UnsupportedChannel => StatusCode::BAD_REQUEST,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::VerificationNotPending | ErrorCode::IdempotencyConflict => {
                StatusCode::CONFLICT
            }
            ErrorCode::Expired => StatusCode::GONE,
            ErrorCode::MaxAttemptsReached | ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::DeliveryUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    fn title(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "Unauthorized",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::InvalidRequest => "Invalid request",
            ErrorCode::InvalidPhoneNumber => "Invalid phone number",
            ErrorCode::UnsupportedChannel => "Unsupported channel",
            ErrorCode::NotFound => "Not found",
            ErrorCode::VerificationNotPending => "Verification not pending",
            ErrorCode::Expired => "Verification expired",
            ErrorCode::MaxAttemptsReached => "Too many check attempts",
            ErrorCode::RateLimited => "Rate limited",
            ErrorCode::GeoBlocked => "Country not allowed",
            ErrorCode::FraudBlocked => "Blocked as likely fraud",
            ErrorCode::NumberTypeBlocked => "Number type not allowed",
            ErrorCode::BudgetExceeded => "Budget exceeded",
            ErrorCode::ProofOfWorkRequired => "Proof of work required",
            ErrorCode::IdempotencyConflict => "Idempotency key conflict",
            ErrorCode::DeliveryUnavailable => "Delivery unavailable",
            ErrorCode::Internal => "Internal error",
        }
    }
}

/// The problem+json body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type (`urn:otpd:error:<code>`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the code.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong in this request (never a code or secret).
    pub detail: String,
    /// Stable machine-readable code.
    pub code: ErrorCode,
}

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    status: StatusCode,
    detail: String,
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with the code's usual status.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        ApiError {
            code,
            status: code.status(),
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// The same with another status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// A 429 with `Retry-After`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// `invalid_request` with a redacted message (see [`redact_digits`]).
    pub fn invalid(detail: impl AsRef<str>) -> Self {
        ApiError::new(ErrorCode::InvalidRequest, redact_digits(detail.as_ref()))
    }

    /// `not_found`.
    pub fn not_found(what: &str) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// `forbidden`.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Forbidden, detail)
    }

    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The detail text.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Seconds for `Retry-After`, on a 429.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
    }
}

/// Replaces runs of 4 or more digits with `…`: parser messages can quote input values,
/// and a quoted value could be a code.
pub fn redact_digits(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut run = String::new();
    for c in s.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            run.push(c);
            continue;
        }
        if run.len() >= 4 {
            out.push('…');
        } else {
            out.push_str(&run);
        }
        run.clear();
        if c != '\0' {
            out.push(c);
        }
    }
    out
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let code = match &e {
            DomainError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            DomainError::InvalidPhoneNumber(_) => ErrorCode::InvalidPhoneNumber,
            DomainError::UnsupportedChannel(_) => ErrorCode::UnsupportedChannel,
            DomainError::GeoBlocked(_) => ErrorCode::GeoBlocked,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => {
                ApiError::new(ErrorCode::InvalidRequest, format!("{what} already exists"))
                    .with_status(StatusCode::CONFLICT)
            }
            StoreError::RateLimited { retry_after_secs } => ApiError::new(
                ErrorCode::RateLimited,
                "too many codes sent to this recipient; try again later",
            )
            .retry_after(retry_after_secs),
            StoreError::Locked { retry_after_secs } => ApiError::new(
                ErrorCode::RateLimited,
                "too many wrong codes; checks and new codes are refused until the lock ends",
            )
            .retry_after(retry_after_secs),
            StoreError::IdempotencyConflict => ApiError::new(
                ErrorCode::IdempotencyConflict,
                "this Idempotency-Key was used with a different request",
            ),
            StoreError::Unavailable(cause) => {
                tracing::error!(%cause, "store unavailable");
                ApiError::new(
                    ErrorCode::Internal,
                    "a backing store is unavailable; nothing was changed",
                )
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
            }
            StoreError::Corrupt(what) => {
                tracing::error!(%what, "a stored record could not be read");
                ApiError::new(
                    ErrorCode::Internal,
                    "a stored record could not be read; nothing was changed",
                )
            }
            StoreError::Raced(what) => {
                tracing::warn!(%what, "a record kept changing under the request");
                ApiError::new(
                    ErrorCode::Internal,
                    "the record changed meanwhile; nothing was changed, try again",
                )
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
                .retry_after(1)
            }
        }
    }
}

impl From<VerifyError> for ApiError {
    fn from(e: VerifyError) -> Self {
        let detail = e.to_string();
        match e {
            VerifyError::Invalid(d) => ApiError::invalid(d),
            VerifyError::Domain(d) => d.into(),
            VerifyError::NotFound(what) => ApiError::not_found(what),
            VerifyError::Forbidden(d) => ApiError::forbidden(d),
            VerifyError::NoProvider(_) => ApiError::new(ErrorCode::UnsupportedChannel, detail),
            VerifyError::MaxAttempts => ApiError::new(ErrorCode::MaxAttemptsReached, detail),
            VerifyError::Expired => ApiError::new(ErrorCode::Expired, detail),
            VerifyError::NotPending(_) => ApiError::new(ErrorCode::VerificationNotPending, detail),
            VerifyError::Refused(r) => refusal_error(r),
            VerifyError::Unreadable => ApiError::new(ErrorCode::Internal, detail),
            VerifyError::Store(s) => s.into(),
        }
    }
}

/// The API error for an enforced guard refusal.
fn refusal_error(r: Refusal) -> ApiError {
    let code = match r.guard {
        GuardName::Geo => ErrorCode::GeoBlocked,
        GuardName::NumberType => ErrorCode::NumberTypeBlocked,
        GuardName::Budget => ErrorCode::BudgetExceeded,
        GuardName::Fraud => ErrorCode::FraudBlocked,
        GuardName::ProofOfWork => ErrorCode::ProofOfWorkRequired,
        GuardName::RateLimit | GuardName::Lockout => {
            return ApiError::new(ErrorCode::RateLimited, r.reason)
                .retry_after(r.retry_after_secs.unwrap_or(1));
        }
    };
    ApiError::new(code, r.reason)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = ?self.code, status = self.status.as_u16(), detail = %self.detail, "request failed");
        }
        let body = Problem {
            kind: format!("urn:otpd:error:{}", self.code.as_str()),
            title: self.code.title().into(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_runs_are_redacted() {
        assert_eq!(
            redact_digits("invalid type: integer `123456`, expected a string at line 1 column 20"),
            "invalid type: integer `…`, expected a string at line 1 column 20"
        );
        assert_eq!(redact_digits("abc 12 3456"), "abc 12 …");
    }

    #[test]
    fn codes_have_their_contract_names_and_statuses() {
        assert_eq!(
            ErrorCode::MaxAttemptsReached.as_str(),
            "max_attempts_reached"
        );
        assert_eq!(
            ErrorCode::VerificationNotPending.status(),
            StatusCode::CONFLICT
        );
        assert_eq!(ErrorCode::Expired.status(), StatusCode::GONE);
    }
}
