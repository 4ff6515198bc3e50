//! The one mapping from otpd's errors to Twilio's: the legacy error body
//! `{"code", "message", "more_info", "status"}` (what Verify returns, and what makes the
//! SDKs raise `TwilioRestException` / `RestException` with `code`), Twilio's error codes,
//! and its HTTP statuses.
//!
//! | otpd `code` | Twilio code | HTTP |
//! |---|---|---|
//! | `invalid_request`, `invalid_phone_number` | 60200 | 400 |
//! | `unsupported_channel` (no provider for it) | 60223 | 400 |
//! | `not_found`, `verification_not_pending`, `expired` | 20404 | 404 |
//! | `max_attempts_reached` | 60202 | 429 |
//! | `rate_limited` | 60203 | 429, `Retry-After` |
//! | `geo_blocked` | 60605 | 403 |
//! | `fraud_blocked`, `proof_of_work_required` | 60410 | 403 |
//! | `number_type_blocked` | 60205 | 403 |
//! | `budget_exceeded` | 60238 | 403 |
//! | `unauthorized` | 20003 ("Authenticate", HTTP Basic) | 401 |
//! | `forbidden` | 20403 | 403 |
//! | `idempotency_conflict`, a name conflict | 20409 | 409 |
//! | `delivery_unavailable`, a store down | 20503 | 503 |
//! | `internal` | 20500 | 500 |
//!
//! Twilio deletes finished verifications, so a check or change of one that is no longer
//! pending is a 20404 there; otpd answers the same codes (its message says the status),
//! and keeps the verification readable by SID.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use otpd_core::DomainError;
use otpd_core::store::StoreError;
use serde::Serialize;

use crate::error::{ApiError, ErrorCode, redact_digits};

/// Where each code is explained (Twilio's error pages).
const MORE_INFO: &str = "https://www.twilio.com/docs/errors/";

/// The 401 message on `/v2`: Twilio's "Authenticate", then how to authenticate here.
pub const UNAUTHENTICATED: &str = "Authenticate: HTTP Basic authentication is required, with an otpd API key as the password (the SDKs' auth token) and any user name (the account SID)";

/// Twilio error codes otpd answers with.
pub mod code {
    /// Authentication failed.
    pub const AUTHENTICATE: u32 = 20003;
    /// Method not allowed.
    pub const METHOD_NOT_ALLOWED: u32 = 20004;
    /// The resource was not found.
    pub const NOT_FOUND: u32 = 20404;
    /// Forbidden.
    pub const FORBIDDEN: u32 = 20403;
    /// Conflict.
    pub const CONFLICT: u32 = 20409;
    /// Internal error.
    pub const INTERNAL: u32 = 20500;
    /// Service unavailable.
    pub const UNAVAILABLE: u32 = 20503;
    /// Invalid parameter.
    pub const INVALID_PARAMETER: u32 = 60200;
    /// Max check attempts reached.
    pub const MAX_CHECK_ATTEMPTS: u32 = 60202;
    /// Max send attempts reached.
    pub const MAX_SEND_ATTEMPTS: u32 = 60203;
    /// SMS is not supported by landline numbers.
    pub const LANDLINE: u32 = 60205;
    /// The delivery channel is disabled (no provider serves it).
    pub const CHANNEL_DISABLED: u32 = 60223;
    /// Creation blocked.
    pub const BLOCKED: u32 = 60238;
    /// Blocked as fraud (Fraud Guard).
    pub const FRAUD: u32 = 60410;
    /// Blocked by geo permissions.
    pub const GEO: u32 = 60605;
}

/// A Twilio-style error reply.
#[derive(Debug)]
pub struct TwilioError {
    status: StatusCode,
    code: u32,
    message: String,
    retry_after: Option<u64>,
}

/// The error body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TwilioErrorBody {
    /// Twilio error code, e.g. 60200.
    pub code: u32,
    /// What went wrong (never a code or secret).
    pub message: String,
    /// Twilio's page about the code.
    pub more_info: String,
    /// The HTTP status.
    pub status: u16,
}

impl TwilioError {
    /// An error with a status and a Twilio code.
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        TwilioError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 / 60200 with a message (digit runs redacted: values are never echoed).
    pub fn invalid(message: impl AsRef<str>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::INVALID_PARAMETER,
            redact_digits(message.as_ref()),
        )
    }

    /// 400 / 60200: a Twilio parameter (or value) otpd does not implement.
    pub fn unsupported(name: &str, value: &str) -> Self {
        let what = if value.is_empty() {
            name.to_string()
        } else {
            format!("{name}={value}")
        };
        Self::invalid(format!(
            "Invalid parameter {what}: not supported by otpd (see docs/twilio-migration.md, every Verify v2 endpoint and parameter)"
        ))
    }

    /// 404 / 20404.
    pub fn not_found(what: impl AsRef<str>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            code::NOT_FOUND,
            format!("The requested resource {} was not found", what.as_ref()),
        )
    }

    /// The same with another HTTP status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The same error as a check's answer: a lockout after too many wrong codes
    /// (`rate_limited`) is Twilio's "max check attempts" (60202) there, not its send limit.
    pub fn on_check(mut self) -> Self {
        if self.code == code::MAX_SEND_ATTEMPTS {
            self.code = code::MAX_CHECK_ATTEMPTS;
            self.message = self
                .message
                .replacen("Max send attempts", "Max check attempts", 1);
        }
        self
    }

    /// The same error as the answer of an authenticator-factor check: the entity's lockout
    /// (`rate_limited`) is Twilio's factor or challenge attempts limit (`code`, 60310 or
    /// 60308) there.
    pub fn on_factor_check(mut self, code: u32) -> Self {
        if self.code == code::MAX_SEND_ATTEMPTS {
            self.code = code;
            self.message =
                self.message
                    .replacen("Max send attempts reached", "Max check attempts reached", 1);
        }
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The Twilio code.
    pub fn code(&self) -> u32 {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<ApiError> for TwilioError {
    fn from(e: ApiError) -> Self {
        let status = e.status();
        let (code, status) = match e.code() {
            ErrorCode::InvalidRequest if status == StatusCode::CONFLICT => (code::CONFLICT, status),
            ErrorCode::InvalidRequest | ErrorCode::InvalidPhoneNumber => {
                // 413 / 415 keep their status; everything else is Twilio's 400.
                let keep = matches!(
                    status,
                    StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE
                );
                (
                    code::INVALID_PARAMETER,
                    if keep {
                        status
                    } else {
                        StatusCode::BAD_REQUEST
                    },
                )
            }
            ErrorCode::UnsupportedChannel => (code::CHANNEL_DISABLED, StatusCode::BAD_REQUEST),
            ErrorCode::NotFound | ErrorCode::VerificationNotPending | ErrorCode::Expired => {
                (code::NOT_FOUND, StatusCode::NOT_FOUND)
            }
            ErrorCode::MaxAttemptsReached => {
                (code::MAX_CHECK_ATTEMPTS, StatusCode::TOO_MANY_REQUESTS)
            }
            ErrorCode::RateLimited => (code::MAX_SEND_ATTEMPTS, StatusCode::TOO_MANY_REQUESTS),
            ErrorCode::GeoBlocked => (code::GEO, StatusCode::FORBIDDEN),
            // Twilio has no puzzle: its SDKs see the fraud-guard refusal.
            ErrorCode::FraudBlocked | ErrorCode::ProofOfWorkRequired => {
                (code::FRAUD, StatusCode::FORBIDDEN)
            }
            ErrorCode::NumberTypeBlocked => (code::LANDLINE, StatusCode::FORBIDDEN),
            ErrorCode::BudgetExceeded => (code::BLOCKED, StatusCode::FORBIDDEN),
            ErrorCode::Unauthorized => (code::AUTHENTICATE, StatusCode::UNAUTHORIZED),
            ErrorCode::Forbidden => (code::FORBIDDEN, StatusCode::FORBIDDEN),
            ErrorCode::IdempotencyConflict => (code::CONFLICT, StatusCode::CONFLICT),
            ErrorCode::DeliveryUnavailable => (code::UNAVAILABLE, StatusCode::SERVICE_UNAVAILABLE),
            ErrorCode::Internal if status == StatusCode::SERVICE_UNAVAILABLE => {
                (code::UNAVAILABLE, status)
            }
            ErrorCode::Internal => (code::INTERNAL, StatusCode::INTERNAL_SERVER_ERROR),
        };
        let message = match e.code() {
            ErrorCode::NotFound => format!("The requested resource was not found: {}", e.detail()),
            ErrorCode::VerificationNotPending | ErrorCode::Expired => format!(
                "The requested resource was not found: {} (otpd keeps it readable by SID)",
                e.detail()
            ),
            ErrorCode::MaxAttemptsReached => {
                format!("Max check attempts reached: {}", e.detail())
            }
            ErrorCode::RateLimited => format!("Max send attempts reached: {}", e.detail()),
            // `/v1`'s text names Bearer; `/v2` callers use Basic, as the SDKs do.
            ErrorCode::Unauthorized => UNAUTHENTICATED.to_string(),
            ErrorCode::NumberTypeBlocked => {
                format!(
                    "SMS is not supported by landline phone number: {}",
                    e.detail()
                )
            }
            _ => e.detail().to_string(),
        };
        TwilioError {
            status,
            code,
            message,
            retry_after: e.retry_after_secs(),
        }
    }
}

impl From<otpd_engine::VerifyError> for TwilioError {
    fn from(e: otpd_engine::VerifyError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<DomainError> for TwilioError {
    fn from(e: DomainError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<StoreError> for TwilioError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for TwilioError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, status = self.status.as_u16(), message = %self.message, "request failed");
        }
        let body = TwilioErrorBody {
            code: self.code,
            more_info: format!("{MORE_INFO}{}", self.code),
            message: self.message,
            status: self.status.as_u16(),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"otpd\""),
            );
        }
        response
    }
}

/// Result of a `/v2` handler.
pub type TwilioResult<T> = Result<T, TwilioError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(e: ApiError) -> (u16, u32) {
        let t = TwilioError::from(e);
        (t.status().as_u16(), t.code())
    }

    #[test]
    fn otpd_codes_map_to_twilio_codes_and_statuses() {
        let cases = [
            (ErrorCode::NotFound, 404, 20404),
            (ErrorCode::VerificationNotPending, 404, 20404),
            (ErrorCode::Expired, 404, 20404),
            (ErrorCode::InvalidRequest, 400, 60200),
            (ErrorCode::InvalidPhoneNumber, 400, 60200),
            (ErrorCode::UnsupportedChannel, 400, 60223),
            (ErrorCode::MaxAttemptsReached, 429, 60202),
            (ErrorCode::RateLimited, 429, 60203),
            (ErrorCode::GeoBlocked, 403, 60605),
            (ErrorCode::FraudBlocked, 403, 60410),
            (ErrorCode::ProofOfWorkRequired, 403, 60410),
            (ErrorCode::NumberTypeBlocked, 403, 60205),
            (ErrorCode::Unauthorized, 401, 20003),
            (ErrorCode::Forbidden, 403, 20403),
            (ErrorCode::IdempotencyConflict, 409, 20409),
            (ErrorCode::Internal, 500, 20500),
        ];
        for (code, status, twilio) in cases {
            assert_eq!(
                mapped(ApiError::new(code, "x")),
                (status, twilio),
                "{code:?}"
            );
        }
        let down =
            ApiError::new(ErrorCode::Internal, "x").with_status(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(mapped(down), (503, 20503));
    }

    #[test]
    fn rate_limits_keep_retry_after_and_bodies_have_twilio_members() {
        let locked = TwilioError::from(StoreError::Locked {
            retry_after_secs: 30,
        })
        .on_check();
        assert_eq!((locked.code(), locked.status().as_u16()), (60202, 429));
        let t = TwilioError::from(StoreError::RateLimited {
            retry_after_secs: 42,
        });
        assert_eq!(t.code(), 60203);
        let response = t.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "42");
        let body = TwilioErrorBody {
            code: 60200,
            message: "Invalid parameter To".into(),
            more_info: format!("{MORE_INFO}60200"),
            status: 400,
        };
        let json = serde_json::to_value(body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": 60200, "message": "Invalid parameter To",
                "more_info": "https://www.twilio.com/docs/errors/60200", "status": 400})
        );
    }
}
