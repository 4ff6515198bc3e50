//! Request body extraction with the API's own errors: malformed JSON, unknown fields and
//! oversized bodies become `invalid_request` problems, never plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// A JSON body parsed into `T`, with the digest of its raw bytes (for idempotency).
pub struct ApiJson<T> {
    /// The parsed value.
    pub value: T,
    /// SHA-256 of the raw body.
    pub digest: Vec<u8>,
}

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let json_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let mime = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !json_type {
            return Err(ApiError::invalid("expected Content-Type: application/json")
                .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!(
                        "request body is larger than {} bytes",
                        state.config.http.body_limit_bytes
                    ),
                )
                .with_status(status)
            } else {
                ApiError::invalid("the request body could not be read")
            }
        })?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
        Ok(ApiJson {
            value,
            digest: Sha256::digest(&bytes).to_vec(),
        })
    }
}

/// A provider's callback (receipt or USSD session) as it came: headers, raw query string
/// and raw body, for the adapter to authenticate and parse
/// ([`otpd_delivery::provider::ReceiptRequest`]).
pub struct ProviderCallback {
    /// The request headers.
    pub headers: axum::http::HeaderMap,
    /// The raw query string (`""` when none).
    pub query: String,
    /// The raw body.
    pub body: Bytes,
    /// When it arrived (signatures that carry a time are judged against it).
    pub received_at: chrono::DateTime<chrono::Utc>,
}

impl ProviderCallback {
    /// The view the provider adapters take.
    pub fn request(&self) -> otpd_delivery::provider::ReceiptRequest<'_> {
        otpd_delivery::provider::ReceiptRequest {
            headers: &self.headers,
            query: &self.query,
            body: &self.body,
            now: self.received_at,
        }
    }
}

impl FromRequest<AppState> for ProviderCallback {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let query = req.uri().query().unwrap_or_default().to_string();
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::invalid("the request body could not be read"))?;
        Ok(ProviderCallback {
            headers,
            query,
            body,
            received_at: state.clock.now(),
        })
    }
}
