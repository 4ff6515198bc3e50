//! `/v2/Services/{ServiceSid}/Verifications` and `/VerificationCheck`: start, fetch (by SID
//! or by `To`), update (`Status=canceled|approved`) and check — translated to the native
//! engine's commands (`otpd_engine::Verifier`), so the rules and the store are the same as
//! on `/v1`.
//!
//! Parameter mapping: `To` → `to`; `Channel` (`sms`, `call` → voice, `email`, `whatsapp`)
//! → `channel`; `Locale` → `locale`; `CustomCode` → the code (needs `CustomCodeEnabled`);
//! `CustomFriendlyName` and `AppHash` → this verification's message; `TemplateSid` → one of
//! otpd's built-in templates ([`super::templates`], SMS); `Tags` (a JSON object
//! of strings) → `metadata`; `RiskCheck=enable` and `EnableSnaClientToken=false` are what
//! otpd does. Everything else Twilio defines is refused with 400 / 60200.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use otpd_core::apikey::Principal;
use otpd_core::audit::WriteContext;
use otpd_core::ids::Kind;
use otpd_core::service::Service;
use otpd_core::verification::{MessageOptions, Status, Verification};
use zeroize::Zeroizing;

use super::errors::{TwilioError, TwilioErrorBody, TwilioResult};
use super::form::{Params, TwilioForm};
use super::views::{TwVerification, TwVerificationCheck, base_url, parse_channel};
use super::{TwPath, TwilioPrincipal};
use otpd_engine::{CheckBy, ClientIp, StartCommand, check_recipient};

use crate::api::verifications::idempotency_of;
use crate::auth::{PresentedKey, usable_service};
use crate::state::AppState;

/// Twilio start parameters otpd refuses.
const UNSUPPORTED_START: &[&str] = &[
    "CustomMessage",
    "SendDigits",
    "Amount",
    "Payee",
    "ChannelConfiguration",
    "TemplateCustomSubstitutions",
    "Templates",
    "DeviceIp",
];
/// Twilio check parameters otpd refuses.
const UNSUPPORTED_CHECK: &[&str] = &["Amount", "Payee", "SnaClientToken"];
/// Longest `CustomFriendlyName`.
const MAX_CUSTOM_FRIENDLY_NAME: usize = 64;
/// Most `Tags` pairs, and the longest key or value (Twilio's limits).
const MAX_TAGS: usize = 10;
const MAX_TAG_LEN: usize = 128;

/// The service of the path, if the caller may use it.
pub(crate) async fn service_of(
    state: &AppState,
    p: &Principal,
    sid: &str,
) -> TwilioResult<Service> {
    usable_service(state, p, Some(sid)).await.map_err(|e| {
        if e.code() == crate::error::ErrorCode::NotFound {
            TwilioError::not_found(format!("/v2/Services/{sid}"))
        } else {
            e.into()
        }
    })
}

/// `RateLimits` (a JSON object: a service rate limit's unique name → the key to count the
/// start under; numbers are taken as their text) for the keyed rate limits.
fn rate_limit_keys(raw: &str) -> TwilioResult<BTreeMap<String, String>> {
    let invalid = || {
        TwilioError::invalid(
            "Invalid parameter RateLimits: a JSON object of rate limit names to string keys",
        )
    };
    let value: serde_json::Value = serde_json::from_str(raw).map_err(|_| invalid())?;
    let obj = value.as_object().ok_or_else(invalid)?;
    obj.iter()
        .map(|(name, key)| {
            let key = match key {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => return Err(invalid()),
            };
            Ok((name.clone(), key))
        })
        .collect()
}

/// `Tags` (a JSON object of up to 10 string pairs) as metadata.
fn tags(raw: &str) -> TwilioResult<serde_json::Value> {
    let invalid =
        || TwilioError::invalid("Invalid parameter Tags: a JSON object of at most 10 string pairs");
    let value: serde_json::Value = serde_json::from_str(raw).map_err(|_| invalid())?;
    let obj = value.as_object().ok_or_else(invalid)?;
    if obj.len() > MAX_TAGS
        || obj.iter().any(|(k, v)| {
            k.chars().count() > MAX_TAG_LEN
                || v.as_str().is_none_or(|s| s.chars().count() > MAX_TAG_LEN)
        })
    {
        return Err(invalid());
    }
    Ok(serde_json::json!({ "tags": value }))
}

/// Start a verification.
#[utoipa::path(
    post, path = "/v2/Services/{ServiceSid}/Verifications", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Idempotency-Key" = Option<String>, Header, description = "otpd extension: a retried request returns the first response"),
    ),
    request_body(content_type = "application/x-www-form-urlencoded", description = "`To`, `Channel` (`sms`|`call`|`email`|`whatsapp`) required; `Locale`, `CustomCode`, `CustomFriendlyName`, `AppHash`, `TemplateSid` (SMS; `GET /v2/Templates`), `Tags`, `RiskCheck=enable`, `EnableSnaClientToken=false`. Others: 400 / 60200.", example = json!("To=%2B14155550123&Channel=sms")),
    responses(
        (status = 201, description = "Started or resent", body = TwVerification),
        (status = 429, description = "Too many sends (60203), with Retry-After", body = TwilioErrorBody),
        (status = "4XX", description = "Refused", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
#[tracing::instrument(skip_all, fields(verification_id, channel))]
pub async fn create(
    State(state): State<AppState>,
    ctx: WriteContext,
    TwilioPrincipal(principal): TwilioPrincipal,
    key: PresentedKey,
    headers: HeaderMap,
    TwPath(service_sid): TwPath<String>,
    form: TwilioForm,
) -> TwilioResult<(StatusCode, Json<TwVerification>)> {
    let service = service_of(&state, &principal, &service_sid).await?;
    let mut p = form.params;
    let to = p.required("To")?;
    let channel_name = p.required("Channel")?;
    let channel = parse_channel(&channel_name).ok_or_else(|| {
        TwilioError::invalid("Invalid parameter Channel: otpd offers sms, call, email, whatsapp")
    })?;
    let locale = p.take("Locale");
    let custom_code = p.take("CustomCode").map(Zeroizing::new);
    let friendly_name = p.take("CustomFriendlyName");
    if let Some(n) = &friendly_name
        && otpd_core::text::one_line("CustomFriendlyName", n, MAX_CUSTOM_FRIENDLY_NAME).is_err()
    {
        return Err(TwilioError::invalid(
            "Invalid parameter CustomFriendlyName: 1-64 characters",
        ));
    }
    let app_hash = p.take("AppHash");
    if let Some(h) = &app_hash
        && !(h.len() == 11
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/".contains(&b)))
    {
        return Err(TwilioError::invalid(
            "Invalid parameter AppHash: the 11-character SMS Retriever hash",
        ));
    }
    let built_in_warning = p
        .take("TemplateSid")
        .map(|sid| super::templates::chosen(&sid, channel))
        .transpose()?;
    let metadata = p.take("Tags").map(|t| tags(&t)).transpose()?;
    let rate_limit_keys = p
        .take("RateLimits")
        .map(|r| rate_limit_keys(&r))
        .transpose()?
        .unwrap_or_default();
    p.only_value("RiskCheck", "enable")?;
    p.only_false("EnableSnaClientToken")?;
    p.finish(UNSUPPORTED_START)?;

    let command = StartCommand {
        to,
        channel: Some(channel),
        locale,
        metadata,
        custom_code,
        message_options: MessageOptions {
            friendly_name,
            app_hash,
            built_in_warning,
            ..MessageOptions::default()
        },
        idempotency: idempotency_of(&headers, &principal, &form.digest)?,
        signing_key: Some(key.0),
        rate_limit_keys,
        ..StartCommand::default()
    };
    let started = state
        .verifier
        .start(&principal, &service, command, &ctx)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TwVerification::of(
            &started.verification,
            &service,
            &base_url(&state.config, &headers),
            started.now,
        )),
    ))
}

/// The verification named by a path `Sid`: a `VE…` SID of this service, or a `To` (the
/// latest verification for it, of any status — otpd keeps finished ones readable).
async fn resolve(
    state: &AppState,
    p: &Principal,
    service: &Service,
    sid: &str,
) -> TwilioResult<Verification> {
    let not_found =
        || TwilioError::not_found(format!("/v2/Services/{}/Verifications/{sid}", service.sid));
    if Kind::Verification.id_of_sid(sid).is_some() {
        let v = state.verifier.read(p, sid).await.map_err(|_| not_found())?;
        if v.service_id != service.id {
            return Err(not_found());
        }
        return Ok(v);
    }
    let to = check_recipient(service, sid, None)?;
    state
        .verifier
        .latest(p, &service.id, &to)
        .await?
        .ok_or_else(not_found)
}

/// Fetch a verification by SID or by `To`.
#[utoipa::path(
    get, path = "/v2/Services/{ServiceSid}/Verifications/{Sid}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID or native name"),
        ("Sid" = String, Path, description = "Verification SID (`VE…`) or the `To` it was sent to"),
    ),
    responses(
        (status = 200, description = "The verification (finished ones stay readable)", body = TwVerification),
        (status = 404, description = "No such verification (20404)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn fetch(
    State(state): State<AppState>,
    TwilioPrincipal(principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath((service_sid, sid)): TwPath<(String, String)>,
    RawQuery(query): RawQuery,
) -> TwilioResult<Json<TwVerification>> {
    Params::from_query(query.as_deref())?.finish(&[])?;
    let service = service_of(&state, &principal, &service_sid).await?;
    let v = resolve(&state, &principal, &service, &sid).await?;
    Ok(Json(TwVerification::of(
        &v,
        &service,
        &base_url(&state.config, &headers),
        state.clock.now(),
    )))
}

/// Cancel a verification, or approve it out of band.
#[utoipa::path(
    post, path = "/v2/Services/{ServiceSid}/Verifications/{Sid}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID or native name"),
        ("Sid" = String, Path, description = "Verification SID (`VE…`) or its `To`"),
    ),
    request_body(content_type = "application/x-www-form-urlencoded", description = "`Status` = `canceled` | `approved` (required)", example = json!("Status=canceled")),
    responses(
        (status = 200, description = "Changed", body = TwVerification),
        (status = 404, description = "No such pending verification (20404)", body = TwilioErrorBody),
        (status = "4XX", description = "Refused", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
#[tracing::instrument(skip_all)]
pub async fn update(
    State(state): State<AppState>,
    ctx: WriteContext,
    TwilioPrincipal(principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath((service_sid, sid)): TwPath<(String, String)>,
    form: TwilioForm,
) -> TwilioResult<Json<TwVerification>> {
    let mut p = form.params;
    let status = match p.required("Status")?.as_str() {
        "canceled" => Status::Canceled,
        "approved" => Status::Approved,
        _ => {
            return Err(TwilioError::invalid(
                "Invalid parameter Status: canceled or approved",
            ));
        }
    };
    p.finish(&[])?;
    let service = service_of(&state, &principal, &service_sid).await?;
    let v = resolve(&state, &principal, &service, &sid).await?;
    // Twilio changes pending verifications only (it deletes finished ones): setting a
    // finished one to any status, even the one it has, is 20404 here too. (`/v1`'s
    // cancel and approve stay idempotent.)
    match v.status_at(state.clock.now()) {
        Status::Pending => {}
        Status::Expired => return Err(otpd_engine::VerifyError::Expired.into()),
        other => return Err(otpd_engine::VerifyError::NotPending(other).into()),
    }
    let v = state.verifier.end(&principal, &v.id, status, &ctx).await?;
    Ok(Json(TwVerification::of(
        &v,
        &service,
        &base_url(&state.config, &headers),
        state.clock.now(),
    )))
}

/// Check a code.
#[utoipa::path(
    post, path = "/v2/Services/{ServiceSid}/VerificationCheck", tag = "twilio-compatible",
    params(("ServiceSid" = String, Path, description = "Service SID or native name")),
    request_body(content_type = "application/x-www-form-urlencoded", description = "`Code` and `To` or `VerificationSid`", example = json!("To=%2B14155550123&Code=123456")),
    responses(
        (status = 200, description = "`approved` / `valid: true`, or `pending` / `valid: false`", body = TwVerificationCheck),
        (status = 404, description = "Nothing pending (20404)", body = TwilioErrorBody),
        (status = 429, description = "Too many checks (60202)", body = TwilioErrorBody),
        (status = "4XX", description = "Refused", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
#[tracing::instrument(skip_all, fields(verification_id))]
pub async fn check(
    State(state): State<AppState>,
    ctx: WriteContext,
    TwilioPrincipal(principal): TwilioPrincipal,
    TwPath(service_sid): TwPath<String>,
    form: TwilioForm,
) -> TwilioResult<Json<TwVerificationCheck>> {
    let mut p = form.params;
    let code = Zeroizing::new(p.required("Code")?);
    let to = p.take("To");
    let verification_sid = p.take("VerificationSid");
    p.finish(UNSUPPORTED_CHECK)?;
    let service = service_of(&state, &principal, &service_sid).await?;
    let by = match (to, verification_sid) {
        (Some(to), None) => CheckBy::To {
            service: Box::new(service),
            to,
            country: None,
        },
        (None, Some(sid)) => {
            let v = resolve(&state, &principal, &service, &sid).await?;
            CheckBy::Id(v.id)
        }
        // Both, as Twilio's own examples send them: they must name the same verification.
        (Some(to), Some(sid)) => {
            let v = resolve(&state, &principal, &service, &sid).await?;
            if check_recipient(&service, &to, None)? != v.to {
                // Twilio finds no verification that is both: the "not found" it answers
                // for a check of nothing (20404), with the SID only (never the To).
                return Err(TwilioError::not_found(format!(
                    "/v2/Services/{}/Verifications/{sid} for this To",
                    service.sid
                )));
            }
            CheckBy::Id(v.id)
        }
        (None, None) => {
            return Err(TwilioError::invalid(
                "Either a To or VerificationSid must be specified",
            ));
        }
    };
    let checked = state
        .verifier
        .check(&principal, &code, by, ClientIp::default(), &ctx)
        .await
        .map_err(|e| TwilioError::from(e).on_check())?;
    Ok(Json(TwVerificationCheck::of(
        &checked.verification,
        checked.now,
    )))
}
