//! `/v1/receipts/{provider}`: delivery receipts pushed by providers (`POST`, or `GET` with
//! the receipt in the query string for providers configured that way), and Meta's `GET`
//! verification of the webhook URL.
//!
//! A receipt names a message by otpd's `message_id` or the provider's own id, and is
//! matched only among the deliveries of the provider it comes for: a receipt for provider
//! A naming a message that B sent changes nothing and is answered as for an unknown id.
//! It needs no API key, but it needs proof that it comes from the provider (DESIGN.md,
//! invariant 9):
//!
//! otpd's generic JSON receipt (`{"message_id", "status", "error"?}`, for the `http`
//! provider and any adapter without a format of its own) carries the provider's
//! `receipt_token` as `Authorization: Bearer <token>`, compared in constant time; without
//! it, with another one, or for a provider with no `receipt_token` the receipt is answered
//! 401 `unauthorized` and changes nothing.
//!
//! Providers with their own callback format parse and authenticate it in their adapter
//! ([`otpd_delivery::provider::Provider::parse_receipt`]): Twilio's form with
//! `X-Twilio-Signature`, Vonage's signed delivery receipts (`sig`) and signed Voice and
//! Messages webhooks (a JWT), Meta's `X-Hub-Signature-256`, AWS SNS's RSA message
//! signatures (its certificate fetched from the SNS host the message names), and — for Arkesel and Africa's
//! Talking, which sign nothing — the operator's `receipt_token` in the callback URL. A
//! forged or unauthenticated callback is answered 403 and changes nothing; a malformed one
//! 400; one for a message otpd does not know 404; an intermediate status (queued,
//! ringing) is acknowledged and changes nothing. Meta's webhooks carry any number of
//! statuses: each is recorded, unknown ids are skipped, and an authentic webhook is
//! answered 200 even when it reports nothing otpd uses (incoming messages, errors).
//! Telnyx's Call Control webhooks drive a call as well as report on it: a signed
//! `call.answered` makes otpd open the call's sealed script and send Telnyx the speak
//! command ([`otpd_delivery::provider::Provider::call_webhook`]).

use axum::Json;
use axum::extract::{FromRequest, Path, Request, State};
use otpd_core::audit::WriteContext;
use otpd_core::store::Receipt;
use otpd_delivery::provider::{ReceiptError, ReceiptStatus};
use otpd_delivery::providers::callback;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
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
        (status = 200, description = "Recorded (a batched webhook, Meta's: every status applied, statuses of unknown messages and webhooks without statuses acknowledged)", body = ReceiptAck),
        (status = 400, description = "Bad status", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "A generic JSON receipt without the provider's receipt token (`Authorization: Bearer`), or for a provider that has none", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The provider's signature (or the receipt token) does not verify", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown provider or message", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn receive(
    State(state): State<AppState>,
    ctx: WriteContext,
    Path(provider): Path<String>,
    callback: ProviderCallback,
) -> ApiResult<Json<ReceiptAck>> {
    let Some(adapter) = state.router.provider(&provider).cloned() else {
        return Err(ApiError::not_found("provider"));
    };
    // A call-control webhook (Telnyx) first: it may call for a command on the call.
    let mut batch = adapter
        .call_webhook(&callback.request(), state.secret.sealer())
        .await;
    if batch.is_none() {
        batch = adapter
            .parse_receipt_batch_online(&callback.request())
            .await;
    }
    if let Some(batch) = batch.or_else(|| adapter.parse_receipt_batch(&callback.request())) {
        // Meta's webhooks: any number of statuses (or none: incoming messages, errors).
        // Each final status is recorded; an id otpd does not know (another app on the same
        // number) is skipped, and the webhook is acknowledged so Meta does not retry it.
        let receipts = batch.map_err(|e| match e {
            ReceiptError::Forged => ApiError::forbidden(
                "the receipt is not authenticated (its signature or token does not verify)",
            ),
            e @ ReceiptError::Malformed(_) => ApiError::invalid(e.to_string()),
        })?;
        for r in receipts {
            let delivered = r.status == ReceiptStatus::Delivered;
            if r.status != ReceiptStatus::Pending {
                apply(&state, &provider, r.message_id, delivered, r.error, &ctx).await?;
            }
        }
        return Ok(Json(ReceiptAck { accepted: true }));
    }
    let own = adapter.parse_receipt(&callback.request());
    let (message_id, delivered, error) = match own {
        Some(parsed) => match outcome(parsed)? {
            Some(found) => found,
            None => return Ok(Json(ReceiptAck { accepted: true })),
        },
        None => {
            // otpd's generic JSON receipt: believed only with the provider's receipt token.
            let token = state.router.receipt_token(&provider);
            if callback::check_bearer(token, &callback.request()).is_err() {
                let detail = if token.is_some() {
                    "a receipt needs this provider's receipt_token as Authorization: Bearer"
                } else {
                    "this provider has no receipt_token: it accepts no receipts"
                };
                return Err(ApiError::new(ErrorCode::Unauthorized, detail));
            }
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
    record(&state, provider, message_id, delivered, error, &ctx).await
}

/// A parsed provider receipt as (message id, delivered?, error), `None` for an
/// intermediate status; forged and malformed receipts become their problems.
fn outcome(
    parsed: Result<otpd_delivery::provider::ParsedReceipt, ReceiptError>,
) -> ApiResult<Option<(String, bool, Option<String>)>> {
    match parsed {
        Ok(r) => Ok(match r.status {
            ReceiptStatus::Pending => None,
            ReceiptStatus::Delivered => Some((r.message_id, true, r.error)),
            ReceiptStatus::Failed => Some((r.message_id, false, r.error)),
        }),
        Err(ReceiptError::Forged) => Err(ApiError::forbidden(
            "the receipt is not authenticated (its signature or token does not verify)",
        )),
        Err(e @ ReceiptError::Malformed(_)) => Err(ApiError::invalid(e.to_string())),
    }
}

/// Records a final receipt for a message of `provider`; 404 when there is no such message.
async fn record(
    state: &AppState,
    provider: String,
    message_id: String,
    delivered: bool,
    error: Option<String>,
    ctx: &WriteContext,
) -> ApiResult<Json<ReceiptAck>> {
    if apply(state, &provider, message_id, delivered, error, ctx).await? {
        Ok(Json(ReceiptAck { accepted: true }))
    } else {
        Err(ApiError::not_found("message"))
    }
}

/// Applies a final receipt for a message of `provider`: whether there was such a message.
async fn apply(
    state: &AppState,
    provider: &str,
    message_id: String,
    delivered: bool,
    error: Option<String>,
    ctx: &WriteContext,
) -> ApiResult<bool> {
    let provider = provider.to_string();
    // Read before the receipt changes it: the message's channel and how long otpd waited.
    let wait = state.store.receipt_wait(&provider, &message_id).await?;
    let receipt = Receipt {
        provider,
        message_id,
        delivered,
        error: error.map(|e| e.chars().take(500).collect()),
    };
    let now = state.clock.now();
    if state.store.apply_receipt(&receipt, now, ctx).await? {
        if let Some((channel, since)) = wait {
            let waited = since.and_then(|t| (now - t).to_std().ok());
            state
                .telemetry
                .receipt(channel, &receipt.provider, delivered, waited);
        }
        Ok(true)
    } else {
        Ok(false)
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

/// A provider's `GET` to its callback URL: Meta's webhook verification (echoes
/// `hub.challenge` when `hub.verify_token` is the provider's `verify_token`), or a
/// delivery receipt in the query string from a provider configured to send them as `GET`
/// (Vonage's SMS API, Arkesel), checked exactly like a `POST`ed one.
#[utoipa::path(
    get, path = "/v1/receipts/{provider}", tag = "receipts",
    params(("provider" = String, Path, description = "The configured provider name"), SubscriptionQuery),
    responses(
        (status = 200, description = "The challenge, echoed (text), or the receipt recorded (JSON)", content(
            (String = "text/plain"),
            (ReceiptAck = "application/json"),
        )),
        (status = 400, description = "Neither a subscription check nor a receipt", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Wrong or missing verify token, signature or receipt token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown provider or message, or a provider that sends neither by GET", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn subscribe(
    State(state): State<AppState>,
    ctx: WriteContext,
    Path(provider): Path<String>,
    callback: ProviderCallback,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let Some(adapter) = state.router.provider(&provider).cloned() else {
        return Err(ApiError::not_found("provider"));
    };
    if let Some(check) = adapter.verify_subscription(&callback.query) {
        return match check {
            Err(ReceiptError::Forged) => {
                Err(ApiError::forbidden("the verify token does not match"))
            }
            Err(e @ ReceiptError::Malformed(_)) => Err(ApiError::invalid(e.to_string())),
            Ok(challenge) => Ok((
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; charset=utf-8",
                )],
                challenge,
            )
                .into_response()),
        };
    }
    // A receipt sent as GET: only its query string counts.
    let query_only = ProviderCallback {
        body: Default::default(),
        ..callback
    };
    let Some(parsed) = adapter.parse_receipt(&query_only.request()) else {
        return Err(ApiError::not_found("receipt by GET"));
    };
    match outcome(parsed)? {
        None => Ok(Json(ReceiptAck { accepted: true }).into_response()),
        Some((message_id, delivered, error)) => {
            Ok(record(&state, provider, message_id, delivered, error, &ctx)
                .await?
                .into_response())
        }
    }
}
