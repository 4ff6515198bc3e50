//! `/v1/verifications`: start (or resend), check, read, cancel, and test-mode messages —
//! parsed here into the engine's commands (`otpd_engine::Verifier`), whose errors map to
//! problem+json through `crate::error`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use otpd_core::apikey::Principal;
use otpd_core::audit::WriteContext;
use otpd_core::channel::Channel;
use otpd_core::guards::proof_of_work::Solution;
use otpd_core::store::Idempotency;
use otpd_core::verification::{CheckDecision, Status};
/// Accepts a verification id or SID (the engine's rule, re-exported for the request parsers).
pub use otpd_engine::normalize_id;
use otpd_engine::{CheckBy, StartCommand};
use serde::Deserialize;
use utoipa::ToSchema;

use super::views::{CheckView, MessageList, MessageView, VerificationView, timestamp};
use crate::auth::{PresentedKey, usable_service};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use crate::forwarded::client_ip;
use crate::state::AppState;

/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Start a verification (or resend the pending one for the same recipient).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// Phone number (any common format) or, for `email`, an address.
    pub to: String,
    /// `sms`, `voice`, `whatsapp`, `email` or `ussd`; default: the service's first channel.
    pub channel: Option<String>,
    /// Service name or SID; default `default`.
    pub service: Option<String>,
    /// ISO 3166 region for numbers written without `+`.
    pub country: Option<String>,
    /// Message locale (`en`, `fr`, `pt-BR`, …).
    pub locale: Option<String>,
    /// Digits in the code (4–10); default: the service's.
    #[schema(minimum = 4, maximum = 10)]
    pub code_length: Option<u8>,
    /// Code lifetime in seconds; default: the service's.
    pub ttl_seconds: Option<u32>,
    /// Fallback workflow: channels tried in order when delivery on one fails.
    pub channels: Option<Vec<String>>,
    /// Opaque data kept with the verification.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Your id for the user (as for authenticator factors): wrong codes then also count
    /// toward that user's lockout, shared with its authenticator checks.
    pub entity: Option<String>,
    /// The end user's IP address (your backend calls otpd, so otpd cannot see it): rate
    /// limits per IP use it.
    pub client_ip: Option<String>,
    /// A solved challenge from `POST /v1/challenges`, when the service's
    /// `guards.proof_of_work` asks for one (each is accepted once).
    pub proof_of_work: Option<Solution>,
}

/// Check a code, by recipient (`to` + `service`) or by verification `id`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    /// The code the user typed.
    pub code: String,
    /// The recipient the code was sent to.
    #[schema(example = "+14155550123")]
    pub to: Option<String>,
    /// The verification id (instead of `to`).
    pub id: Option<String>,
    /// Service name or SID (with `to`); default `default`.
    pub service: Option<String>,
    /// ISO 3166 region for numbers written without `+`.
    pub country: Option<String>,
    /// The end user's IP address, for the check rate limits per IP.
    pub client_ip: Option<String>,
}

fn parse_channel(s: &str) -> Result<Channel, ApiError> {
    s.parse::<Channel>().map_err(ApiError::from)
}

/// The `Idempotency-Key` header as the store's idempotency record.
pub fn idempotency_of(
    headers: &HeaderMap,
    p: &Principal,
    digest: &[u8],
) -> Result<Option<Idempotency>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            ApiError::invalid("Idempotency-Key must be 1-255 visible ASCII characters")
        })?;
    Ok(Some(Idempotency {
        key_id: p.key_id.clone(),
        key: key.to_string(),
        request_hash: digest.to_vec(),
    }))
}

/// Start a verification, or resend the pending one for the same `to`.
#[utoipa::path(
    post, path = "/v1/verifications", tag = "verifications",
    request_body = StartBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first response instead of sending again")),
    responses(
        (status = 201, description = "Started or resent", body = VerificationView),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A store is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(verification_id, channel))]
pub async fn start(
    State(state): State<AppState>,
    ctx: WriteContext,
    principal: Principal,
    key: PresentedKey,
    headers: HeaderMap,
    body: ApiJson<StartBody>,
) -> ApiResult<(StatusCode, Json<VerificationView>)> {
    let ApiJson {
        value: body,
        digest,
    } = body;
    let service = usable_service(&state, &principal, body.service.as_deref()).await?;
    let channels = body
        .channels
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|c| parse_channel(c))
        .collect::<Result<Vec<_>, _>>()?;
    let channel = body.channel.as_deref().map(parse_channel).transpose()?;
    let command = StartCommand {
        to: body.to,
        country: body.country,
        channel,
        channels,
        locale: body.locale,
        code_length: body.code_length,
        ttl_seconds: body.ttl_seconds,
        metadata: body.metadata,
        entity: body.entity,
        idempotency: idempotency_of(&headers, &principal, &digest)?,
        signing_key: Some(key.0),
        client_ip: client_ip(body.client_ip, &headers, &state.config.http),
        proof_of_work: body.proof_of_work,
        ..StartCommand::default()
    };
    let started = state
        .verifier
        .start(&principal, &service, command, &ctx)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(VerificationView::of(&started.verification, started.now)),
    ))
}

/// Check a code.
#[utoipa::path(
    post, path = "/v1/verifications/check", tag = "verifications",
    request_body = CheckBody,
    responses(
        (status = 200, description = "Right (`valid: true`, approved) or wrong (`valid: false`, still pending)", body = CheckView),
        (status = 404, description = "Nothing pending for that `to`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "By id: not pending", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The code expired (by id, or the latest verification for that `to`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Attempt limit reached (`max_attempts_reached`; with `Retry-After` when these wrong codes locked the recipient), or the recipient or entity is locked after too many wrong codes (`rate_limited`, with `Retry-After`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(verification_id))]
pub async fn check(
    State(state): State<AppState>,
    ctx: WriteContext,
    principal: Principal,
    headers: HeaderMap,
    body: ApiJson<CheckBody>,
) -> ApiResult<Json<CheckView>> {
    let body = body.value;
    let by = match (body.id, body.to) {
        (Some(_), None) if body.service.is_some() => {
            return Err(ApiError::invalid("`service` goes with `to`, not with `id`"));
        }
        (Some(id), None) => CheckBy::Id(id),
        (None, Some(to)) => CheckBy::To {
            service: Box::new(usable_service(&state, &principal, body.service.as_deref()).await?),
            to,
            country: body.country,
        },
        _ => return Err(ApiError::invalid("give exactly one of `to` or `id`")),
    };
    let ip = client_ip(body.client_ip, &headers, &state.config.http);
    let checked = state
        .verifier
        .check(&principal, &body.code, by, ip, &ctx)
        .await?;
    let remaining = match checked.decision {
        CheckDecision::Reject { remaining } => Some(remaining),
        _ => None,
    };
    Ok(Json(CheckView {
        valid: checked.decision == CheckDecision::Approve,
        remaining_attempts: remaining,
        verification: VerificationView::of(&checked.verification, checked.now),
    }))
}

/// Read a verification.
#[utoipa::path(
    get, path = "/v1/verifications/{id}", tag = "verifications",
    params(("id" = String, Path, description = "Verification id (`ver_…`) or SID (`VE…`)")),
    responses(
        (status = 200, description = "The verification", body = VerificationView),
        (status = 404, description = "No such verification", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<VerificationView>> {
    let v = state.verifier.read(&principal, &id).await?;
    Ok(Json(VerificationView::of(&v, state.clock.now())))
}

/// Cancel a pending verification.
#[utoipa::path(
    post, path = "/v1/verifications/{id}/cancel", tag = "verifications",
    params(("id" = String, Path, description = "Verification id or SID")),
    responses(
        (status = 200, description = "Canceled", body = VerificationView),
        (status = 404, description = "No such verification", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already finished", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Expired", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(verification_id = %id))]
pub async fn cancel(
    State(state): State<AppState>,
    ctx: WriteContext,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<VerificationView>> {
    let v = state
        .verifier
        .end(&principal, &id, Status::Canceled, &ctx)
        .await?;
    Ok(Json(VerificationView::of(&v, state.clock.now())))
}

/// Messages recorded for a verification started with a test key (test keys only).
#[utoipa::path(
    get, path = "/v1/verifications/{id}/messages", tag = "verifications",
    params(("id" = String, Path, description = "Verification id or SID")),
    responses(
        (status = 200, description = "Recorded messages", body = MessageList),
        (status = 403, description = "Not a test key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such test verification", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn messages(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<MessageList>> {
    let messages = state.verifier.messages(&principal, &id).await?;
    let messages = messages
        .into_iter()
        .map(|m| MessageView {
            id: m.record.id,
            delivery_id: m.record.delivery_id,
            channel: m.record.channel,
            to: m.record.to,
            body: m.body.to_string(),
            created_at: timestamp(m.record.created_at),
        })
        .collect();
    Ok(Json(MessageList { messages }))
}
