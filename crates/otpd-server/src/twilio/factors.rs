//! `/v2/Services/{ServiceSid}/Entities/{Identity}/Factors`: Twilio's TOTP factors, which are
//! otpd's authenticator factors (`YF<hex>` ↔ `tf_<hex>`, the same records as `/v1/totp`):
//! create (the `binding` secret and URI shown once), verify with `AuthPayload` (otpd's
//! activation), list, fetch, update (`FriendlyName`; `Config.*` while unverified) and delete.
//!
//! Mapping: `FriendlyName` → the account label; `Config.TimeStep` → period (30 or 60),
//! `Config.Skew` → window (0–2), `Config.CodeLength` → digits (6 or 8), `Config.Alg` →
//! algorithm; `Binding.Secret` imports a base32 secret (as from Authy). Push and passkey
//! factors need Twilio's mobile SDKs and are refused (60204). otpd's HOTP factors are not
//! shown here (Twilio has no such type). Wrong codes count toward the entity's lockout,
//! shared with `/v1` checks and sent codes; a locked entity is answered 429 / 60310.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use otpd_core::apikey::Principal;
use otpd_core::audit::WriteContext;
use otpd_core::ids::Kind;
use otpd_core::service::Service;
use otpd_core::store::{FactorCheckOutcome, FactorTarget};
use otpd_core::totp::uri::otpauth_uri;
use otpd_core::totp::{
    Algorithm, DEFAULT_WINDOW, Factor, FactorKind, FactorParams, FactorSecret, FactorStatus,
    TotpCode, new_factor_id, validate_issuer, validate_label,
};
use serde_json::{Value, json};

use super::entities::identity;
use super::errors::{TwilioError, TwilioErrorBody, TwilioResult};
use super::factor_views::{TwFactor, TwNewFactor, entity_url, parse_alg};
use super::form::{Params, TwilioForm};
use super::verifications::service_of;
use super::views::{base_url, paged};
use super::{Paging, TwPath, TwilioPrincipal};
use crate::api::totp::code_matcher;
use crate::state::AppState;

/// Twilio's "the service does not support this feature" (push and passkey factors).
pub const NOT_SUPPORTED: u32 = 60204;
/// Twilio's factor attempts limit (the entity is locked).
pub const FACTOR_ATTEMPTS: u32 = 60310;
/// Push-only parameters, refused on a TOTP factor.
const PUSH_ONLY: &[&str] = &[
    "Binding.Alg",
    "Binding.PublicKey",
    "Config.AppId",
    "Config.NotificationPlatform",
    "Config.NotificationToken",
    "Config.SdkVersion",
    "Metadata",
];
/// Longest `FriendlyName` (Twilio's).
const MAX_FRIENDLY_NAME: usize = 64;
/// Bytes of an imported secret: at least 80 bits (what Authy issued), at most SHA-512's.
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 10..=64;

/// The refusal of a factor type otpd does not offer.
pub fn type_not_supported(kind: &str) -> TwilioError {
    TwilioError::new(
        StatusCode::BAD_REQUEST,
        NOT_SUPPORTED,
        format!(
            "FactorType {kind} is not supported by otpd: push and passkey factors need Twilio's mobile SDKs; use totp (see docs/twilio-migration.md)"
        ),
    )
}

/// The TOTP factor `sid` of `identity` in the service, if the caller may see it.
pub async fn find(
    state: &AppState,
    p: &Principal,
    service: &Service,
    identity: &str,
    sid: &str,
) -> TwilioResult<Factor> {
    let not_found = || {
        TwilioError::not_found(format!(
            "/v2/Services/{}/Entities/{}/Factors/{sid}",
            service.sid,
            super::factor_views::path_segment(identity)
        ))
    };
    let id = Kind::Factor.id_of_sid(sid).ok_or_else(not_found)?;
    state
        .store
        .get_factor(&id)
        .await?
        .filter(|f| {
            p.may_use_service(&f.service_id)
                && f.service_id == service.id
                && f.entity == identity
                && f.params.kind == FactorKind::Totp
        })
        .ok_or_else(not_found)
}

/// Takes `Config.TimeStep`, `Config.Skew`, `Config.CodeLength` and `Config.Alg` over `base`.
fn take_config(p: &mut Params, base: FactorParams) -> TwilioResult<Option<FactorParams>> {
    let time_step = p.take_parsed::<u32>("Config.TimeStep")?;
    let skew = p.take_parsed::<u32>("Config.Skew")?;
    let code_length = p.take_parsed::<u8>("Config.CodeLength")?;
    let alg = p
        .take("Config.Alg")
        .map(|a| {
            parse_alg(&a).ok_or_else(|| {
                TwilioError::invalid("Invalid parameter Config.Alg: sha1, sha256 or sha512")
            })
        })
        .transpose()?;
    if time_step.is_none() && skew.is_none() && code_length.is_none() && alg.is_none() {
        return Ok(None);
    }
    if time_step.is_some_and(|t| !matches!(t, 30 | 60)) {
        return Err(TwilioError::invalid(
            "Invalid parameter Config.TimeStep: otpd supports 30 or 60 (what authenticator apps show)",
        ));
    }
    if code_length.is_some_and(|c| !matches!(c, 6 | 8)) {
        return Err(TwilioError::invalid(
            "Invalid parameter Config.CodeLength: otpd supports 6 or 8 (what authenticator apps show)",
        ));
    }
    if skew.is_some_and(|s| s > 2) {
        return Err(TwilioError::invalid(
            "Invalid parameter Config.Skew: must be 0-2",
        ));
    }
    let params = FactorParams {
        period: time_step.unwrap_or(base.period),
        tolerance: skew.unwrap_or(base.tolerance),
        digits: code_length.unwrap_or(base.digits),
        algorithm: alg.unwrap_or(base.algorithm),
        ..base
    };
    Ok(Some(params.validate()?))
}

/// Checks a `FriendlyName` (1–64 characters, a valid account label).
fn friendly_name(name: &str) -> TwilioResult<()> {
    if name.chars().count() > MAX_FRIENDLY_NAME || validate_label(name).is_err() {
        return Err(TwilioError::invalid(
            "Invalid parameter FriendlyName: 1-64 characters without control characters",
        ));
    }
    Ok(())
}

/// Create a TOTP factor: `binding.secret` and `binding.uri` are in this reply only.
#[utoipa::path(
    post, path = "/v2/Services/{ServiceSid}/Entities/{Identity}/Factors", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Identity" = String, Path, description = "The entity"),
    ),
    request_body(content_type = "application/x-www-form-urlencoded", description = "`FriendlyName`, `FactorType=totp` required; `Binding.Secret` (base32), `Config.TimeStep` (30|60), `Config.Skew` (0-2), `Config.CodeLength` (6|8), `Config.Alg` (sha1|sha256|sha512). `push`/`passkeys`: 60204.", example = json!("FriendlyName=Alice&FactorType=totp")),
    responses(
        (status = 201, description = "Created, `unverified`", body = TwNewFactor),
        (status = "4XX", description = "Refused", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
#[tracing::instrument(skip_all, fields(factor_id))]
pub async fn create(
    State(state): State<AppState>,
    ctx: WriteContext,
    TwilioPrincipal(principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath((service_sid, entity)): TwPath<(String, String)>,
    form: TwilioForm,
) -> TwilioResult<(StatusCode, Json<TwNewFactor>)> {
    let service = service_of(&state, &principal, &service_sid).await?;
    identity(&entity)?;
    let mut p = form.params;
    let kind = p.required("FactorType")?;
    match kind.as_str() {
        "totp" => {}
        "push" | "passkeys" => return Err(type_not_supported(&kind)),
        _ => {
            return Err(TwilioError::invalid(
                "Invalid parameter FactorType: push, totp or passkeys",
            ));
        }
    }
    let label = p.required("FriendlyName")?;
    friendly_name(&label)?;
    let secret = match p.take("Binding.Secret") {
        Some(text) => FactorSecret::from_base32(&text)
            .filter(|s| SECRET_BYTES.contains(&s.bytes().len()))
            .ok_or_else(|| {
                TwilioError::invalid(
                    "Invalid parameter Binding.Secret: base32, 16 to 102 characters",
                )
            })?,
        None => FactorSecret::generate(Algorithm::Sha1),
    };
    let defaults = FactorParams {
        kind: FactorKind::Totp,
        algorithm: Algorithm::Sha1,
        digits: 6,
        period: 30,
        tolerance: DEFAULT_WINDOW,
    };
    let params = take_config(&mut p, defaults)?.unwrap_or(defaults);
    p.finish(PUSH_ONLY)?;
    // `:` separates issuer and account in the URI label.
    let issuer = service.display_name().replace(':', " ");
    validate_issuer(&issuer)?;

    let id = new_factor_id();
    let uri = otpauth_uri(&params, &secret, &issuer, &label, 0);
    let now = state.clock.now();
    let factor = Factor {
        sealed_secret: state.secret.sealer().seal(&id, secret.bytes()),
        id,
        service_id: service.id.clone(),
        service_name: service.name.clone(),
        entity,
        params,
        label,
        issuer,
        status: FactorStatus::Unverified,
        last_used: None,
        created_at: now,
        verified_at: None,
        last_used_at: None,
    };
    state.store.create_factor(&factor, &ctx).await?;
    tracing::Span::current().record("factor_id", factor.id.as_str());
    tracing::info!("factor created on /v2");
    let base = base_url(&state.config, &headers);
    Ok((
        StatusCode::CREATED,
        Json(TwNewFactor {
            factor: TwFactor::of(&factor, &base),
            binding: json!({"secret": secret.base32().as_str(), "uri": uri.as_str()}),
            options: None,
        }),
    ))
}

/// List an entity's TOTP factors, oldest first.
#[utoipa::path(
    get, path = "/v2/Services/{ServiceSid}/Entities/{Identity}/Factors", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Identity" = String, Path, description = "The entity"),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u64>, Query, description = "Page number, from 0"),
        ("PageToken" = Option<String>, Query, description = "Token from `next_page_url`"),
    ),
    responses(
        (status = 200, description = "A page of factors (`factors`, `meta`)", body = Object),
        (status = "4XX", description = "Refused", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    TwilioPrincipal(principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath((service_sid, entity)): TwPath<(String, String)>,
    RawQuery(query): RawQuery,
) -> TwilioResult<Json<Value>> {
    let service = service_of(&state, &principal, &service_sid).await?;
    identity(&entity)?;
    let mut p = Params::from_query(query.as_deref())?;
    let paging = Paging::take(&mut p)?;
    p.finish(&[])?;
    let factors: Vec<Factor> = state
        .store
        .list_factors(&service.id, &entity)
        .await?
        .into_iter()
        .filter(|f| f.params.kind == FactorKind::Totp)
        .collect();
    let base = base_url(&state.config, &headers);
    Ok(Json(paged(
        &factors,
        |f| TwFactor::of(f, &base),
        &paging,
        "factors",
        format!("{}/Factors", entity_url(&base, &service.id, &entity)),
    )))
}

/// Fetch a factor (never its secret).
#[utoipa::path(
    get, path = "/v2/Services/{ServiceSid}/Entities/{Identity}/Factors/{Sid}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Identity" = String, Path, description = "The entity"),
        ("Sid" = String, Path, description = "Factor SID (`YF…`)"),
    ),
    responses(
        (status = 200, description = "The factor", body = TwFactor),
        (status = 404, description = "No such factor (20404)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn fetch(
    State(state): State<AppState>,
    TwilioPrincipal(principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath((service_sid, entity, sid)): TwPath<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> TwilioResult<Json<TwFactor>> {
    let service = service_of(&state, &principal, &service_sid).await?;
    Params::from_query(query.as_deref())?.finish(&[])?;
    let f = find(&state, &principal, &service, &entity, &sid).await?;
    Ok(Json(TwFactor::of(&f, &base_url(&state.config, &headers))))
}

/// Verify a new factor with a first code (`AuthPayload`), rename it (`FriendlyName`), or
/// change its `Config.*` while it is unverified.
#[utoipa::path(
    post, path = "/v2/Services/{ServiceSid}/Entities/{Identity}/Factors/{Sid}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Identity" = String, Path, description = "The entity"),
        ("Sid" = String, Path, description = "Factor SID (`YF…`)"),
    ),
    request_body(content_type = "application/x-www-form-urlencoded", description = "`AuthPayload` (a code from the app: the factor becomes `verified` when it is right), `FriendlyName`, `Config.TimeStep|Skew|CodeLength|Alg` (while unverified).", example = json!("AuthPayload=123456")),
    responses(
        (status = 200, description = "The factor after the change (`unverified` after a wrong code)", body = TwFactor),
        (status = 404, description = "No such factor (20404)", body = TwilioErrorBody),
        (status = 429, description = "The entity is locked after too many wrong codes (60310), with Retry-After", body = TwilioErrorBody),
        (status = "4XX", description = "Refused", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
#[tracing::instrument(skip_all, fields(factor_id))]
pub async fn update(
    State(state): State<AppState>,
    ctx: WriteContext,
    TwilioPrincipal(principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath((service_sid, entity, sid)): TwPath<(String, String, String)>,
    form: TwilioForm,
) -> TwilioResult<Json<TwFactor>> {
    let service = service_of(&state, &principal, &service_sid).await?;
    let mut f = find(&state, &principal, &service, &entity, &sid).await?;
    tracing::Span::current().record("factor_id", f.id.as_str());
    let mut p = form.params;
    let payload = p.take("AuthPayload");
    let label = p.take("FriendlyName");
    if let Some(l) = &label {
        friendly_name(l)?;
    }
    let params = take_config(&mut p, f.params)?;
    p.finish(PUSH_ONLY)?;
    let code = payload
        .map(|raw| {
            TotpCode::parse(&raw)
                .ok_or_else(|| TwilioError::invalid("Invalid parameter AuthPayload: 6 or 8 digits"))
        })
        .transpose()?;

    if label.is_some() || params.is_some() {
        if params.is_some() && f.status == FactorStatus::Active {
            return Err(TwilioError::invalid(
                "Invalid parameter Config: otpd changes a factor's Config only before it is verified (create a new factor instead)",
            ));
        }
        let new_label = label.unwrap_or_else(|| f.label.clone());
        if !state.store.update_factor(&f.id, &new_label, params).await? {
            return Err(TwilioError::invalid(
                "Invalid parameter Config: the factor was verified meanwhile",
            ));
        }
        f = find(&state, &principal, &service, &entity, &sid).await?;
        tracing::info!("factor updated on /v2");
    }
    if let Some(code) = code
        && f.status == FactorStatus::Unverified
    {
        let now = state.clock.now();
        let matcher = code_matcher(&state, Some(&code), now);
        let no_backup = |_: &str, _: &str| None;
        let outcome = state
            .store
            .check_factor(
                FactorTarget::Activate(f.id.clone()),
                &matcher,
                &no_backup,
                now,
                &ctx,
            )
            .await
            .map_err(|e| TwilioError::from(e).on_factor_check(FACTOR_ATTEMPTS))?;
        f = match outcome {
            FactorCheckOutcome::Approved {
                factor: Some(factor),
                ..
            }
            | FactorCheckOutcome::Rejected {
                factor: Some(factor),
            }
            | FactorCheckOutcome::AlreadyActive(factor) => *factor,
            _ => return Err(TwilioError::not_found(format!("Factor {sid}"))),
        };
        tracing::info!(
            valid = f.status == FactorStatus::Active,
            "factor activation attempt on /v2"
        );
    }
    Ok(Json(TwFactor::of(&f, &base_url(&state.config, &headers))))
}

/// Delete a factor.
#[utoipa::path(
    delete, path = "/v2/Services/{ServiceSid}/Entities/{Identity}/Factors/{Sid}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Identity" = String, Path, description = "The entity"),
        ("Sid" = String, Path, description = "Factor SID (`YF…`)"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such factor (20404)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
#[tracing::instrument(skip_all)]
pub async fn delete(
    State(state): State<AppState>,
    ctx: WriteContext,
    TwilioPrincipal(principal): TwilioPrincipal,
    TwPath((service_sid, entity, sid)): TwPath<(String, String, String)>,
) -> TwilioResult<StatusCode> {
    let service = service_of(&state, &principal, &service_sid).await?;
    let f = find(&state, &principal, &service, &entity, &sid).await?;
    if state
        .store
        .delete_factor(&f.id, state.clock.now(), &ctx)
        .await?
    {
        tracing::info!(factor_id = %f.id, "factor deleted on /v2");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(TwilioError::not_found(format!("Factor {sid}")))
    }
}
