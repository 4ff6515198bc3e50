//! `/v1/receipts/{provider}`: delivery receipts pushed by providers.
//!
//! A receipt names a message by otpd's `message_id` (a random 128-bit id handed only to
//! that provider) or the provider's own id, so it needs no API key; it must also come for
//! the provider that holds the message.
//!
//! Providers with their own callback format parse and authenticate it in their adapter
//! ([`otpd_delivery::provider::Provider::parse_receipt`]): Twilio's form with
//! `X-Twilio-Signature`, Vonage's signed delivery receipts (`sig`) and signed Voice and
//! Messages webhooks (a JWT), Meta's `X-Hub-Signature-256`, and — for Arkesel and Africa's
//! Talking, which sign nothing — the operator's `receipt_token` in the callback URL. A
//! forged or unauthenticated callback is answered 403 and changes nothing; a malformed one
//! 400; one for a message otpd does not know 404; an intermediate status (queued,
//! ringing) is acknowledged and changes nothing.

use axum::Json;
use axum::extract::{FromRequest, Path, Request, State};
use chrono::Utc;
use otpd_core::store::Receipt;
use otpd_delivery::provider::{ReceiptError, ReceiptStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ProviderCallback};
use crate::state::AppState;

/// A delivery receipt.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptBody {
    /// otpd's message id (`dlv_…`) or the provider's own id.
    pub message_id: String,
    /// `delivered` or `failed`.
    pub status: String,
    /// The provider's error text.
    pub error: Option<String>,
}

/// Acknowledgement.
#[derive(Serialize, ToSchema)]
pub struct ReceiptAck {
    /// Always true.
    pub accepted: bool,
}

/// Report a delivery outcome for a message.
#[utoipa::path(
    post, path = "/v1/receipts/{provider}", tag = "receipts",
    params(("provider" = String, Path, description = "The configured provider name")),
    request_body = ReceiptBody,
    responses(
        (status = 200, description = "Recorded", body = ReceiptAck),
        (status = 400, description = "Bad status", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The provider's signature (or the receipt token) does not verify", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown provider or message", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn receive(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    callback: ProviderCallback,
) -> ApiResult<Json<ReceiptAck>> {
    let Some(adapter) = state.router.provider(&provider).cloned() else {
        return Err(ApiError::not_found("provider"));
    };
    let own = adapter.parse_receipt(&callback.request());
    let (message_id, delivered, error) = match own {
        Some(Ok(r)) => match r.status {
            ReceiptStatus::Pending => return Ok(Json(ReceiptAck { accepted: true })),
            ReceiptStatus::Delivered => (r.message_id, true, r.error),
            ReceiptStatus::Failed => (r.message_id, false, r.error),
        },
        Some(Err(ReceiptError::Forged)) => {
            return Err(ApiError::forbidden(
                "the receipt is not authenticated (its signature or token does not verify)",
            ));
        }
        Some(Err(e @ ReceiptError::Malformed(_))) => return Err(ApiError::invalid(e.to_string())),
        None => {
            let mut rebuilt = Request::new(axum::body::Body::from(callback.body));
            *rebuilt.headers_mut() = callback.headers;
            let body = ApiJson::<ReceiptBody>::from_request(rebuilt, &state)
                .await?
                .value;
            let delivered = match body.status.as_str() {
                "delivered" => true,
                "failed" => false,
                _ => return Err(ApiError::invalid("status must be 'delivered' or 'failed'")),
            };
            (body.message_id, delivered, body.error)
        }
    };
    let receipt = Receipt {
        provider,
        message_id,
        delivered,
        error: error.map(|e| e.chars().take(500).collect()),
    };
    if state.store.apply_receipt(&receipt, Utc::now()).await? {
        Ok(Json(ReceiptAck { accepted: true }))
    } else {
        Err(ApiError::not_found("message"))
    }
}

/// Meta's webhook verification query (`whatsapp_cloud`).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SubscriptionQuery {
    /// `subscribe`.
    #[serde(rename = "hub.mode")]
    #[param(rename = "hub.mode")]
    mode: Option<String>,
    /// The provider's `verify_token`.
    #[serde(rename = "hub.verify_token")]
    #[param(rename = "hub.verify_token")]
    verify_token: Option<String>,
    /// The value to echo.
    #[serde(rename = "hub.challenge")]
    #[param(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// A provider's check of its callback URL (Meta's webhook verification): echoes
/// `hub.challenge` when `hub.verify_token` is the provider's `verify_token`.
#[utoipa::path(
    get, path = "/v1/receipts/{provider}", tag = "receipts",
    params(("provider" = String, Path, description = "The configured provider name"), SubscriptionQuery),
    responses(
        (status = 200, description = "The challenge, echoed", body = String, content_type = "text/plain"),
        (status = 400, description = "Not a subscription check", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Wrong or missing verify token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown provider, or one that makes no such check", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn subscribe(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    uri: axum::http::Uri,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let Some(adapter) = state.router.provider(&provider).cloned() else {
        return Err(ApiError::not_found("provider"));
    };
    match adapter.verify_subscription(uri.query().unwrap_or_default()) {
        None => Err(ApiError::not_found("subscription check")),
        Some(Err(ReceiptError::Forged)) => {
            Err(ApiError::forbidden("the verify token does not match"))
        }
        Some(Err(e @ ReceiptError::Malformed(_))) => Err(ApiError::invalid(e.to_string())),
        Some(Ok(challenge)) => Ok((
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            challenge,
        )
            .into_response()),
    }
}
