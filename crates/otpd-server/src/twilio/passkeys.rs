//! `/v2/Services/{ServiceSid}/Passkeys/…` (Twilio Verify Passkeys) on otpd's own passkeys
//! (`otpd_engine::Passkeys`): the four operations take and give JSON, not forms.
//!
//! SIDs round-trip without a lookup table: a Factor `YF<hex>` is the registration
//! `pkr_<hex>` and then the passkey `pk_<hex>` it becomes (same digits); a Challenge
//! `YC<hex>` is the sign-in `pka_<hex>`. `VerifyFactor` and `ApproveChallenge` carry only
//! the browser's credential: its ceremony is found from the challenge in its
//! `clientDataJSON` (see `Passkeys::ceremony_of_client_data`). The relying party is the
//! service's `passkeys` settings; a `config` in the request is not used.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use otpd_core::apikey::Principal;
use otpd_core::audit::WriteContext;
use otpd_core::passkey::{CeremonyKind, PasskeyFactor, validate_user_name};
use otpd_core::service::Service;
use otpd_engine::{Passkeys, SignIn};
use serde_json::{Value, json};

use super::entities::identity;
use super::errors::{TwilioError, TwilioErrorBody, TwilioResult};
use super::factor_views::{entity_sid, entity_url};
use super::verifications::service_of;
use super::views::{ACCOUNT_SID, base_url, twilio_date};
use super::{TwPath, TwilioPrincipal};
use crate::state::AppState;

fn passkeys(state: &AppState) -> Passkeys {
    Passkeys::new(
        state.store.clone(),
        state.secret.clone(),
        state.clock.clone(),
    )
}

/// The JSON body, or Twilio's 60200 for one that is not a JSON object.
fn body_of(
    body: Result<Json<Value>, JsonRejection>,
) -> TwilioResult<serde_json::Map<String, Value>> {
    match body {
        Ok(Json(Value::Object(m))) => Ok(m),
        Ok(_) => Err(TwilioError::invalid(
            "The request body must be a JSON object",
        )),
        Err(e) => Err(TwilioError::invalid(format!(
            "The request body must be a JSON object: {}",
            e.body_text()
        ))),
    }
}

/// The value without its null members (the SDKs send every unset field as `null`, which
/// the WebAuthn parser would take as a wrong type).
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

/// A string member, `None` when absent or null, 60200 when of another type.
fn text(m: &serde_json::Map<String, Value>, name: &str) -> TwilioResult<Option<String>> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TwilioError::invalid(format!(
            "Invalid parameter {name}: must be a string"
        ))),
    }
}

/// `YF<hex>` of a registration (`pkr_<hex>`) or passkey (`pk_<hex>`).
fn factor_sid(id: &str) -> String {
    let hex = id
        .strip_prefix("pkr_")
        .or_else(|| id.strip_prefix("pk_"))
        .unwrap_or(id);
    format!("YF{hex}")
}

/// `YC<hex>` of a sign-in (`pka_<hex>`).
fn challenge_sid(id: &str) -> String {
    format!("YC{}", id.strip_prefix("pka_").unwrap_or(id))
}

/// The passkey of a `YF…` SID in this service.
async fn passkey_of(state: &AppState, service: &Service, sid: &str) -> TwilioResult<PasskeyFactor> {
    let not_found = || {
        TwilioError::not_found(format!(
            "/v2/Services/{}/Passkeys/Factors/{sid}",
            service.sid
        ))
    };
    let hex = sid.strip_prefix("YF").ok_or_else(not_found)?;
    state
        .store
        .get_passkey(&format!("pk_{hex}"))
        .await?
        .filter(|f| f.service_id == service.id)
        .ok_or_else(not_found)
}

/// The ceremony a credential answers, if the caller may finish it (404 otherwise).
async fn ceremony_of(
    state: &AppState,
    principal: &Principal,
    service: &Service,
    kind: CeremonyKind,
    credential: &serde_json::Map<String, Value>,
) -> TwilioResult<otpd_core::passkey::PasskeyCeremony> {
    let client_data = credential
        .get("response")
        .and_then(|r| r.get("clientDataJSON"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            TwilioError::invalid("Missing required parameter response.clientDataJSON")
        })?;
    let what = match kind {
        CeremonyKind::Registration => "Factors",
        CeremonyKind::Authentication => "Challenges",
    };
    let not_found =
        || TwilioError::not_found(format!("/v2/Services/{}/Passkeys/{what}", service.sid));
    let id = passkeys(state)
        .ceremony_of_client_data(kind, client_data)
        .ok_or_else(|| {
            TwilioError::invalid(
                "Invalid parameter response.clientDataJSON: not a WebAuthn client data",
            )
        })?;
    let c = passkeys(state)
        .ceremony(&id, kind)
        .await
        .map_err(|_| not_found())?;
    if c.service_id == service.id && principal.may_use_service(&c.service_id) {
        Ok(c)
    } else {
        Err(not_found())
    }
}

fn factor_view(
    f: &PasskeyFactor,
    service: &Service,
    base: &str,
    status: &str,
    options: Option<Value>,
) -> Value {
    let sid = factor_sid(&f.id);
    let mut v = json!({
        "sid": sid,
        "account_sid": ACCOUNT_SID,
        "service_sid": service.sid,
        "entity_sid": entity_sid(&service.id, &f.entity),
        "identity": f.entity,
        "date_created": twilio_date(f.created_at),
        "date_updated": twilio_date(f.last_used_at.unwrap_or(f.created_at)),
        "friendly_name": f.user_name,
        "status": status,
        "factor_type": "passkeys",
        "config": null,
        "metadata": null,
        "url": format!("{}/Factors/{sid}", entity_url(base, &service.id, &f.entity)),
    });
    if let Some(o) = options {
        v["binding"] = Value::Null;
        v["options"] = json!({ "publicKey": o });
    }
    v
}

#[allow(clippy::too_many_arguments)]
fn challenge_view(
    sid: &str,
    service: &Service,
    base: &str,
    entity: Option<&str>,
    factor: Option<&str>,
    created: DateTime<Utc>,
    expires: Option<DateTime<Utc>>,
    responded: Option<DateTime<Utc>>,
    status: &str,
    options: Value,
) -> Value {
    json!({
        "sid": sid,
        "account_sid": ACCOUNT_SID,
        "service_sid": service.sid,
        "entity_sid": entity.map(|e| entity_sid(&service.id, e)),
        "identity": entity,
        "factor_sid": factor.map(factor_sid),
        "date_created": twilio_date(created),
        "date_updated": twilio_date(responded.unwrap_or(created)),
        "date_responded": responded.map(twilio_date),
        "expiration_date": expires.map(twilio_date),
        "status": status,
        "responded_reason": "none",
        "details": null,
        "hidden_details": null,
        "metadata": null,
        "factor_type": "passkeys",
        "url": format!("{base}/v2/Services/{}/Passkeys/Challenges", service.sid),
        "links": {},
        "options": options,
    })
}

/// Create a passkey factor: starts its registration (options for the browser).
#[utoipa::path(
    post, path = "/v2/Services/{ServiceSid}/Passkeys/Factors", tag = "twilio-compatible",
    params(("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name")),
    request_body(content_type = "application/json", description = "`identity` (required: otpd's entity), `friendly_name` (required: the account name the authenticator shows), `config` (not used: the relying party is the service's `passkeys` settings)", content = Object),
    responses(
        (status = 201, description = "Started (`status: unverified`): give `options.publicKey` to the browser, then `VerifyFactor` within 5 minutes", body = Object),
        (status = "4XX", description = "Refused (60200, 20404)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn create_factor(
    State(state): State<AppState>,
    TwilioPrincipal(principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath(service_sid): TwPath<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> TwilioResult<(StatusCode, Json<Value>)> {
    let m = body_of(body)?;
    let entity = text(&m, "identity")?
        .ok_or_else(|| TwilioError::invalid("Missing required parameter identity"))?;
    identity(&entity)?;
    let name = text(&m, "friendly_name")?
        .ok_or_else(|| TwilioError::invalid("Missing required parameter friendly_name"))?;
    validate_user_name("friendly_name", &name)
        .map_err(|e| TwilioError::invalid(format!("Invalid parameter friendly_name: {e}")))?;
    let service = service_of(&state, &principal, &service_sid).await?;
    let started = passkeys(&state)
        .start_registration(&service, &entity, &name, None)
        .await?;
    let now = state.clock.now();
    let pending = PasskeyFactor {
        id: started.id,
        service_id: service.id.clone(),
        service_name: service.name.clone(),
        entity,
        user_handle: String::new(),
        credential_id: String::new(),
        user_name: name,
        sign_count: 0,
        credential: String::new(),
        created_at: now,
        last_used_at: None,
    };
    let base = base_url(&state.config, &headers);
    Ok((
        StatusCode::CREATED,
        Json(factor_view(
            &pending,
            &service,
            &base,
            "unverified",
            Some(started.options),
        )),
    ))
}

/// Verify a passkey factor with the browser's `RegistrationResponseJSON`.
#[utoipa::path(
    post, path = "/v2/Services/{ServiceSid}/Passkeys/VerifyFactor", tag = "twilio-compatible",
    params(("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name")),
    request_body(content_type = "application/json", description = "The browser's `RegistrationResponseJSON` (`PublicKeyCredential.toJSON()`)", content = Object),
    responses(
        (status = 200, description = "Verified (`status: verified`)", body = Object),
        (status = "4XX", description = "Refused: a bad attestation, a used or expired registration (60200), or none (20404)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn verify_factor(
    State(state): State<AppState>,
    ctx: WriteContext,
    TwilioPrincipal(principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath(service_sid): TwPath<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> TwilioResult<Json<Value>> {
    let m = body_of(body)?;
    let service = service_of(&state, &principal, &service_sid).await?;
    let c = ceremony_of(&state, &principal, &service, CeremonyKind::Registration, &m).await?;
    let factor = passkeys(&state)
        .finish_registration(&c.id, without_nulls(Value::Object(m)), &ctx)
        .await?;
    tracing::info!(factor_id = %factor.id, "passkey registered (/v2)");
    let base = base_url(&state.config, &headers);
    Ok(Json(factor_view(
        &factor, &service, &base, "verified", None,
    )))
}

/// Create a passkey challenge: starts a sign-in (options for the browser).
#[utoipa::path(
    post, path = "/v2/Services/{ServiceSid}/Passkeys/Challenges", tag = "twilio-compatible",
    params(("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name")),
    request_body(content_type = "application/json", description = "`identity` (optional: without it, a discoverable sign-in), `factor_sid` (optional: a passkey of that identity)", content = Object),
    responses(
        (status = 201, description = "Started (`status: pending`): give `options.publicKey` to the browser, then `ApproveChallenge` within 5 minutes", body = Object),
        (status = "4XX", description = "Refused (60200, 20404; 429 while the entity is locked)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn create_challenge(
    State(state): State<AppState>,
    TwilioPrincipal(principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath(service_sid): TwPath<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> TwilioResult<(StatusCode, Json<Value>)> {
    let m = body_of(body)?;
    let entity = text(&m, "identity")?;
    if let Some(e) = &entity {
        identity(e)?;
    }
    let factor = text(&m, "factor_sid")?;
    let service = service_of(&state, &principal, &service_sid).await?;
    let mut factor_id = None;
    if let Some(sid) = &factor {
        let f = passkey_of(&state, &service, sid).await?;
        if entity.as_deref().is_some_and(|e| e != f.entity) {
            return Err(TwilioError::invalid(
                "Invalid parameter factor_sid: not a passkey of this identity",
            ));
        }
        factor_id = Some(f.id);
    }
    let started = passkeys(&state)
        .start_authentication(&service, entity.as_deref())
        .await?;
    let now = state.clock.now();
    let base = base_url(&state.config, &headers);
    Ok((
        StatusCode::CREATED,
        Json(challenge_view(
            &challenge_sid(&started.id),
            &service,
            &base,
            entity.as_deref(),
            factor_id.as_deref(),
            now,
            Some(started.expires_at),
            None,
            "pending",
            json!({ "publicKey": started.options }),
        )),
    ))
}

/// Approve a passkey challenge with the browser's `AuthenticationResponseJSON`.
#[utoipa::path(
    post, path = "/v2/Services/{ServiceSid}/Passkeys/ApproveChallenge", tag = "twilio-compatible",
    params(("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name")),
    request_body(content_type = "application/json", description = "The browser's `AuthenticationResponseJSON` (`PublicKeyCredential.toJSON()`)", content = Object),
    responses(
        (status = 200, description = "Approved (`status: approved`)", body = Object),
        (status = "4XX", description = "Refused: a failed assertion, a used or expired challenge (60200), none (20404), a locked entity (429)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn approve_challenge(
    State(state): State<AppState>,
    ctx: WriteContext,
    TwilioPrincipal(principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath(service_sid): TwPath<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> TwilioResult<Json<Value>> {
    let m = body_of(body)?;
    let service = service_of(&state, &principal, &service_sid).await?;
    let c = ceremony_of(
        &state,
        &principal,
        &service,
        CeremonyKind::Authentication,
        &m,
    )
    .await?;
    match passkeys(&state)
        .finish_authentication(&c.id, without_nulls(Value::Object(m)), &ctx)
        .await?
    {
        SignIn::Valid { entity, factor } => {
            tracing::info!(factor_id = %factor, "passkey sign-in (/v2)");
            let base = base_url(&state.config, &headers);
            let now = state.clock.now();
            Ok(Json(challenge_view(
                &challenge_sid(&c.id),
                &service,
                &base,
                Some(&entity),
                Some(&factor),
                c.created_at,
                Some(c.expires_at),
                Some(now),
                "approved",
                json!({}),
            )))
        }
        SignIn::Invalid => {
            tracing::info!("failed passkey sign-in (/v2)");
            Err(TwilioError::invalid(
                "The passkey assertion was refused: start a new challenge",
            ))
        }
    }
}
