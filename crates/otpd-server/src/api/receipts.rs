//! `/v1/receipts/{provider}`: delivery receipts pushed by providers.
//!
//! A receipt names a message by otpd's `message_id` (a random 128-bit id handed only to
//! that provider) or the provider's own id, so it needs no API key; it must also come for
//! the provider that holds the message.

use axum::Json;
use axum::extract::{Path, State};
use chrono::Utc;
use otpd_core::store::Receipt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
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
        (status = 404, description = "Unknown provider or message", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn receive(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    body: ApiJson<ReceiptBody>,
) -> ApiResult<Json<ReceiptAck>> {
    if state.router.provider(&provider).is_none() {
        return Err(ApiError::not_found("provider"));
    }
    let body = body.value;
    let delivered = match body.status.as_str() {
        "delivered" => true,
        "failed" => false,
        _ => return Err(ApiError::invalid("status must be 'delivered' or 'failed'")),
    };
    let receipt = Receipt {
        provider,
        message_id: body.message_id,
        delivered,
        error: body.error.map(|e| e.chars().take(500).collect()),
    };
    if state.store.apply_receipt(&receipt, Utc::now()).await? {
        Ok(Json(ReceiptAck { accepted: true }))
    } else {
        Err(ApiError::not_found("message"))
    }
}
