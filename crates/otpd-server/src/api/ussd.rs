//! `/v1/ussd/{provider}`: USSD sessions, where a held code is handed to the user.
//!
//! USSD is pulled, not pushed: the user dials the operator's service code, and the
//! aggregator (Africa's Talking) POSTs the session — `sessionId`, `serviceCode`,
//! `phoneNumber`, `text` — here and shows the user the `text/plain` answer. A `ussd`
//! delivery is therefore *held*: the worker marks it `sent` without calling anyone, and
//! when that number dials in, this endpoint opens the sealed code, renders the USSD
//! message, answers `END <message>` (ending the session; a message longer than one USSD
//! screen, 182 GSM characters, is cut down to its sentence with the code,
//! [`render::ussd_reply`]) and records the delivery as
//! `delivered`, so the next dial finds nothing. With nothing held for the number the answer
//! is a plain `END` sentence saying so. A user who does not dial before the route's
//! receipt timeout gets the same code through the next provider or channel.
//!
//! The session is authenticated like the provider's receipts (a `receipt_token` in the
//! URL, [`otpd_delivery::providers::callback`]); forged sessions are answered 403 and get
//! no code.

use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use otpd_core::audit::WriteContext;
use otpd_core::channel::Channel;
use otpd_core::mask::mask_recipient as mask;
use otpd_core::recipient::PhoneNumber;
use otpd_core::store::Receipt;
use otpd_delivery::provider::ReceiptError;
use otpd_delivery::render;
use serde::Deserialize;
use tracing::info;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::extract::ProviderCallback;
use crate::state::AppState;

/// The answer when no code is waiting for the number that dialled.
pub const NOTHING_PENDING: &str = "END No verification code is waiting for this number.";

/// A USSD session callback (Africa's Talking's form).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct UssdSessionForm {
    /// The aggregator's session id.
    #[serde(rename = "sessionId")]
    session_id: String,
    /// The service code dialled (`*384*123#`).
    #[serde(rename = "serviceCode")]
    service_code: String,
    /// The number that dialled, E.164.
    #[serde(rename = "phoneNumber")]
    phone_number: String,
    /// What the user typed so far (empty on the first request).
    text: Option<String>,
    /// The mobile network.
    #[serde(rename = "networkCode")]
    network_code: Option<String>,
}

fn text(body: String) -> Response {
    ([(CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// Answer a USSD session: the held verification message for the number, once.
#[utoipa::path(
    post, path = "/v1/ussd/{provider}", tag = "receipts",
    params(("provider" = String, Path, description = "The configured provider name")),
    request_body(content = UssdSessionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "`END <message>` with the code, or `END` and a sentence when nothing is waiting", body = String, content_type = "text/plain"),
        (status = 400, description = "Not a USSD session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The session is not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown provider, or one that serves no USSD", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn session(
    State(state): State<AppState>,
    ctx: WriteContext,
    Path(provider): Path<String>,
    callback: ProviderCallback,
) -> ApiResult<Response> {
    let Some(adapter) = state.router.provider(&provider).cloned() else {
        return Err(ApiError::not_found("provider"));
    };
    let parsed = adapter.ussd_session(&callback.request());
    let session = match parsed {
        None => return Err(ApiError::not_found("USSD provider")),
        Some(Err(ReceiptError::Forged)) => {
            return Err(ApiError::forbidden("the USSD session is not authenticated"));
        }
        Some(Err(e @ ReceiptError::Malformed(_))) => return Err(ApiError::invalid(e.to_string())),
        Some(Ok(s)) => s,
    };
    let phone = PhoneNumber::parse_possible(&session.phone_number, None).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidPhoneNumber,
            "phoneNumber is not a phone number",
        )
    })?;
    let now = state.clock.now();
    let Some(job) = state.store.held_ussd(&provider, phone.e164(), now).await? else {
        info!(provider = %provider, to = %mask(phone.e164()), "USSD session: nothing held");
        return Ok(text(NOTHING_PENDING.into()));
    };
    let Some(sealed) = &job.sealed_code else {
        return Ok(text(NOTHING_PENDING.into()));
    };
    let code = state
        .secret
        .sealer()
        .open_str(&job.verification_id, sealed)
        .map_err(|_| ApiError::new(ErrorCode::Internal, "the held code cannot be opened"))?;
    let Some(service) = state.store.find_service(&job.service_id).await? else {
        return Ok(text(NOTHING_PENDING.into()));
    };
    let rendered = render::message(
        &service,
        &job.message_options,
        Channel::Ussd,
        &job.locale,
        &code,
        job.expires_at,
        now,
    );
    let receipt = Receipt {
        provider: provider.clone(),
        message_id: job.id.clone(),
        delivered: true,
        error: None,
    };
    if !state.store.apply_receipt(&receipt, now, &ctx).await? {
        return Ok(text(NOTHING_PENDING.into()));
    }
    info!(provider = %provider, delivery_id = %job.id, verification_id = %job.verification_id, to = %mask(phone.e164()), "USSD session: held code handed over");
    Ok(text(render::ussd_reply(rendered.body.as_str(), &code)))
}
