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

    /// Every code, in the order of the contract (the error reference lists them so).
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidPhoneNumber,
        ErrorCode::UnsupportedChannel,
        ErrorCode::NotFound,
        ErrorCode::VerificationNotPending,
        ErrorCode::Expired,
        ErrorCode::MaxAttemptsReached,
        ErrorCode::RateLimited,
        ErrorCode::GeoBlocked,
        ErrorCode::FraudBlocked,
        ErrorCode::NumberTypeBlocked,
        ErrorCode::BudgetExceeded,
        ErrorCode::ProofOfWorkRequired,
        ErrorCode::IdempotencyConflict,
        ErrorCode::DeliveryUnavailable,
        ErrorCode::Internal,
    ];

    /// The problem's `type`: the code's entry in the served error reference, a URI
    /// reference resolved against the API's own address (RFC 9457, section 3.1.1).
    pub fn type_url(self) -> String {
        format!("{ERROR_REFERENCE_PATH}#{}", self.as_str())
    }

    /// The short summary (the problem's `title`).
    pub fn title(self) -> &'static str {
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

    /// What causes the code, for the error reference.
    pub fn cause(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => {
                "The request has no API key, or the key is unknown or revoked. Keys go in \
                 `Authorization: Bearer otpd_live_…` (or `otpd_test_…`)."
            }
            ErrorCode::Forbidden => {
                "The key is valid but may not do this: a `verify` key on an admin route, a key \
                 scoped to other services, a test key reading a live verification (or the \
                 reverse), or a key minting a key wider than itself."
            }
            ErrorCode::InvalidRequest => {
                "The body or a parameter is malformed or out of range: unknown fields, a \
                 missing `to`, a `code_length` outside 4–10, a `ttl_seconds` outside its \
                 bounds, a body that is not JSON. The `detail` names the field."
            }
            ErrorCode::InvalidPhoneNumber => {
                "`to` is not a valid phone number. A number written without `+` needs its \
                 country (`\"country\": \"GH\"`)."
            }
            ErrorCode::UnsupportedChannel => {
                "The channel is unknown, not among the service's `channels`, or no configured \
                 provider serves it (for this recipient's country, with the routes given)."
            }
            ErrorCode::NotFound => {
                "No such resource, or not one this key may see (the two answer alike, so a \
                 key learns nothing about other services). A check by `to` finds no \
                 verification for that recipient."
            }
            ErrorCode::VerificationNotPending => {
                "The verification is over: approved, canceled or failed. Its code can no \
                 longer be checked."
            }
            ErrorCode::Expired => {
                "The verification's code expired (`ttl_seconds` after it was first sent) \
                 before a right code was checked."
            }
            ErrorCode::MaxAttemptsReached => {
                "The verification reached its `max_check_attempts` wrong codes; it accepts \
                 no more checks. When the wrong codes also reached the service's lockout \
                 (`lockout.max_failures` within `lockout.window_seconds`), the recipient is \
                 locked for `lockout.duration_seconds` and `Retry-After` says for how long."
            }
            ErrorCode::RateLimited => {
                "Too many requests: sends to one recipient (`rate_limits.sends_per_to` per \
                 `send_window_seconds`), a guard's rate limit (per IP, key, service), or a \
                 recipient locked by too many wrong codes. `Retry-After` gives the seconds."
            }
            ErrorCode::GeoBlocked => {
                "The number's country is not in the service's `allowed_countries`, or the geo \
                 guard blocks it (`guards.geo.blocked_countries`, `blocked_prefixes`)."
            }
            ErrorCode::FraudBlocked => {
                "The SMS-pumping guard judged the send part of an attack (a burst to one \
                 prefix or country, a walk along a number range, low conversion)."
            }
            ErrorCode::NumberTypeBlocked => {
                "The number's type (landline, VoIP, premium rate, …) is not allowed by the \
                 service's number-type guard."
            }
            ErrorCode::BudgetExceeded => {
                "The service's spending limit for the period (`guards.budget`) is reached; \
                 sends resume when the period rolls over or the budget is raised."
            }
            ErrorCode::ProofOfWorkRequired => {
                "The service asks for a solved proof-of-work challenge with each send, and \
                 this one is missing, invalid, expired or already used."
            }
            ErrorCode::IdempotencyConflict => {
                "The `Idempotency-Key` was used before with a different request body."
            }
            ErrorCode::DeliveryUnavailable => {
                "No provider could take the message: every provider for the channel failed \
                 or has its circuit open."
            }
            ErrorCode::Internal => {
                "Something failed on otpd's side. With status 503 a backing store is \
                 unreachable or a record changed under the request; nothing was changed."
            }
        }
    }

    /// What the caller can do about it, for the error reference.
    pub fn fix(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => {
                "Send a current key. An operator mints one with `otpd keys create`."
            }
            ErrorCode::Forbidden => {
                "Use a key with the role and service scope the route needs; test keys only \
                 see test verifications."
            }
            ErrorCode::InvalidRequest => {
                "Fix the field the `detail` names; `/docs` lists every field with its bounds."
            }
            ErrorCode::InvalidPhoneNumber => {
                "Send the number in E.164 (`+14155550123`), or add `country`."
            }
            ErrorCode::UnsupportedChannel => {
                "Use one of the service's channels, or configure a provider (and a route) \
                 for this channel; `otpd config check` lists what serves what."
            }
            ErrorCode::NotFound => {
                "Check the id and the key's service scope; to check by `to`, start a \
                 verification for that recipient first."
            }
            ErrorCode::VerificationNotPending => {
                "Read the verification (`GET /v1/verifications/{id}`) for its outcome; start \
                 a new verification for a new code."
            }
            ErrorCode::Expired => "Start a new verification: the recipient gets a new code.",
            ErrorCode::MaxAttemptsReached => {
                "Start a new verification once `Retry-After` has passed (or at once when \
                 there is none); show the user that the code was wrong too many times."
            }
            ErrorCode::RateLimited => {
                "Wait for `Retry-After` seconds. Do not retry in a loop: a resend reuses the \
                 pending code, so the user can still type the first message's code."
            }
            ErrorCode::GeoBlocked => {
                "Add the country to the service's `allowed_countries` if it should be served."
            }
            ErrorCode::FraudBlocked => {
                "Nothing, for an attacker. For legitimate traffic, read the decision in \
                 `GET /v1/services/{name}/decisions` and tune the pumping guard (or run it \
                 in `shadow` mode first)."
            }
            ErrorCode::NumberTypeBlocked => {
                "Ask the user for a mobile number, or allow the type in the service's guard."
            }
            ErrorCode::BudgetExceeded => "Raise the service's budget, or wait for the next period.",
            ErrorCode::ProofOfWorkRequired => {
                "Fetch a challenge (`POST /v1/challenges`), solve it (the served \
                 `/v1/challenges/solver.js` does), and send its solution with the request."
            }
            ErrorCode::IdempotencyConflict => {
                "Use a new `Idempotency-Key` for a new request; retry a request with exactly \
                 its first body."
            }
            ErrorCode::DeliveryUnavailable => {
                "Retry later; the operator should read `/readyz` and the dashboard's \
                 provider circuits."
            }
            ErrorCode::Internal => {
                "Retry with backoff (after `Retry-After` on 503). The operator finds the \
                 cause in otpd's log, by the request id."
            }
        }
    }
}

/// Where the error reference is served; each problem's `type` points into it.
pub const ERROR_REFERENCE_PATH: &str = "/docs/errors";

/// The problem+json body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// The problem type: the code's entry in the served error reference
    /// (`/docs/errors#<code>`, which explains the cause and the fix).
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
            VerifyError::MaxAttempts { locked_for_secs } => {
                let e = ApiError::new(ErrorCode::MaxAttemptsReached, detail);
                match locked_for_secs {
                    Some(secs) => e.retry_after(secs),
                    None => e,
                }
            }
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
            kind: self.code.type_url(),
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

    #[test]
    fn the_reference_lists_every_code_once_with_its_cause_and_fix() {
        // An exhaustive match: a new code does not compile until it is listed in `ALL`.
        let listed = |c: ErrorCode| match c {
            ErrorCode::Unauthorized
            | ErrorCode::Forbidden
            | ErrorCode::InvalidRequest
            | ErrorCode::InvalidPhoneNumber
            | ErrorCode::UnsupportedChannel
            | ErrorCode::NotFound
            | ErrorCode::VerificationNotPending
            | ErrorCode::Expired
            | ErrorCode::MaxAttemptsReached
            | ErrorCode::RateLimited
            | ErrorCode::GeoBlocked
            | ErrorCode::FraudBlocked
            | ErrorCode::NumberTypeBlocked
            | ErrorCode::BudgetExceeded
            | ErrorCode::ProofOfWorkRequired
            | ErrorCode::IdempotencyConflict
            | ErrorCode::DeliveryUnavailable
            | ErrorCode::Internal => ErrorCode::ALL.contains(&c),
        };
        let names: std::collections::BTreeSet<String> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len(), "a code listed twice");
        for code in ErrorCode::ALL {
            assert!(listed(code));
            assert!(!code.cause().is_empty() && !code.fix().is_empty());
            assert_eq!(code.type_url(), format!("/docs/errors#{}", code.as_str()));
        }
    }
}
