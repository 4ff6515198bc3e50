//! `/v1/totp`: authenticator-app factors (TOTP, HOTP) and backup codes.
//!
//! Enrolment: create a factor (the secret, its `otpauth://` URI and QR code are shown once),
//! then activate it with a first code from the app. After that, `POST /v1/totp/check`
//! accepts a code of any active factor of the entity, or one of its backup codes. Wrong
//! codes count toward the same lockout as sent codes. The store decides every check in one
//! atomic step; this module parses, authorizes, and opens sealed secrets only inside that
//! step's matcher.

pub mod views;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use otpd_core::apikey::Principal;
use otpd_core::audit::WriteContext;
use otpd_core::entity::validate_entity;
use otpd_core::store::{FactorCheckOutcome, FactorMethod, FactorTarget};
use otpd_core::totp::backup::{BACKUP_CODES_PER_SET, BackupCode, hash_scope};
use otpd_core::totp::uri::otpauth_uri;
use otpd_core::totp::{
    Algorithm, DEFAULT_LOOK_AHEAD, DEFAULT_WINDOW, Factor, FactorKind, FactorParams, FactorSecret,
    FactorStatus, TotpCode, new_factor_id, validate_issuer, validate_label,
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use zeroize::Zeroizing;

use self::views::{
    BackupCodesView, CheckMethod, CreatedFactorView, FactorCheckView, FactorList, FactorView,
    VerifyFactorView,
};
use super::views::timestamp;
use crate::auth::usable_service;
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::extract::ApiJson;
use crate::qr;
use crate::state::AppState;

/// A new factor.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFactorBody {
    /// Service name or SID; default `default`.
    pub service: Option<String>,
    /// Your id for the user (1–128 characters).
    pub entity: String,
    /// Account name shown in the app; default: the entity.
    pub label: Option<String>,
    /// Issuer shown in the app; default: the service's friendly name.
    pub issuer: Option<String>,
    /// `totp` (default) or `hotp`.
    #[serde(rename = "type")]
    pub kind: Option<FactorKind>,
    /// 6 (default) or 8.
    pub digits: Option<u8>,
    /// TOTP: seconds per code, 30 (default) or 60.
    pub period: Option<u32>,
    /// `SHA1` (default; what every app supports), `SHA256` or `SHA512`.
    pub algorithm: Option<Algorithm>,
    /// TOTP: time steps accepted either side of now, 0–2 (default 1).
    #[schema(minimum = 0, maximum = 2)]
    pub window: Option<u32>,
    /// HOTP: counters looked ahead to resynchronize, 0–50 (default 10).
    #[schema(minimum = 0, maximum = 50)]
    pub look_ahead: Option<u32>,
}

/// A code from the app.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeBody {
    /// 6 or 8 digits.
    pub code: String,
}

/// Check a code against one factor or every factor of an entity.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FactorCheckBody {
    /// The code: from the app (6 or 8 digits) or a backup code (`xxxxx-xxxxx`).
    pub code: String,
    /// A factor id (`tf_…`)…
    pub factor: Option<String>,
    /// …or your id for the user: any of its active factors, or a backup code.
    pub entity: Option<String>,
    /// Service name or SID (with `entity`); default `default`.
    pub service: Option<String>,
}

/// Which entity's factors to list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Your id for the user.
    pub entity: String,
    /// Service name or SID; default `default`.
    pub service: Option<String>,
}

/// Whose backup codes to (re)generate.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupCodesBody {
    /// Your id for the user.
    pub entity: String,
    /// Service name or SID; default `default`.
    pub service: Option<String>,
}

/// The parameters of a new factor, defaults applied and checked.
fn params_of(body: &CreateFactorBody) -> Result<FactorParams, ApiError> {
    let kind = body.kind.unwrap_or(FactorKind::Totp);
    let tolerance = match kind {
        FactorKind::Totp if body.look_ahead.is_some() => {
            return Err(ApiError::invalid("look_ahead applies to hotp factors"));
        }
        FactorKind::Hotp if body.window.is_some() || body.period.is_some() => {
            return Err(ApiError::invalid(
                "window and period apply to totp factors (hotp has look_ahead)",
            ));
        }
        FactorKind::Totp => body.window.unwrap_or(DEFAULT_WINDOW),
        FactorKind::Hotp => body.look_ahead.unwrap_or(DEFAULT_LOOK_AHEAD),
    };
    Ok(FactorParams {
        kind,
        algorithm: body.algorithm.unwrap_or(Algorithm::Sha1),
        digits: body.digits.unwrap_or(6),
        period: body.period.unwrap_or(30),
        tolerance,
    }
    .validate()?)
}

/// The factor with this id, if the caller may see it (404 otherwise, like a missing one).
async fn find(state: &AppState, p: &Principal, id: &str) -> ApiResult<Factor> {
    state
        .store
        .get_factor(id)
        .await?
        .filter(|f| p.may_use_service(&f.service_id))
        .ok_or_else(|| ApiError::not_found("factor"))
}

/// The URI of an unverified factor, rebuilt from its sealed secret.
pub(crate) fn uri_of(state: &AppState, f: &Factor) -> ApiResult<Zeroizing<String>> {
    let bytes = state
        .secret
        .sealer()
        .open(&f.id, &f.sealed_secret)
        .map_err(|_| unopenable(f))?;
    let secret = FactorSecret::from_bytes(&bytes);
    Ok(otpauth_uri(&f.params, &secret, &f.issuer, &f.label, 0))
}

/// Verifies `code` against a factor inside the store's atomic step: opens the sealed secret
/// (only there) and applies the window and the replay rule. No code, no match.
pub(crate) fn code_matcher<'a>(
    state: &'a AppState,
    code: Option<&'a TotpCode>,
    now: DateTime<Utc>,
) -> impl Fn(&Factor) -> Option<u64> + Send + Sync + 'a {
    let sealer = state.secret.sealer();
    move |f: &Factor| {
        let code = code?;
        let Ok(bytes) = sealer.open(&f.id, &f.sealed_secret) else {
            // Another server secret, or tampering: the code cannot match.
            tracing::error!(factor_id = %f.id, "a factor's sealed secret could not be opened");
            return None;
        };
        f.params
            .verify(&FactorSecret::from_bytes(&bytes), code, f.last_used, now)
    }
}

fn unopenable(f: &Factor) -> ApiError {
    tracing::error!(factor_id = %f.id, "a factor's sealed secret could not be opened");
    ApiError::new(
        ErrorCode::Internal,
        "the factor's secret could not be opened",
    )
}

fn not_active() -> ApiError {
    ApiError::new(
        ErrorCode::VerificationNotPending,
        "the factor is not active yet: activate it with POST /v1/totp/factors/{id}/verify",
    )
}

/// Create a factor: its secret, URI and QR code are in this reply only.
#[utoipa::path(
    post, path = "/v1/totp/factors", tag = "totp",
    request_body = CreateFactorBody,
    responses(
        (status = 201, description = "Created (`unverified`); `secret`, `otpauth_uri` and `qr_svg` are shown once", body = CreatedFactorView),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(factor_id))]
pub async fn create(
    State(state): State<AppState>,
    ctx: WriteContext,
    principal: Principal,
    body: ApiJson<CreateFactorBody>,
) -> ApiResult<(StatusCode, Json<CreatedFactorView>)> {
    let body = body.value;
    let service = usable_service(&state, &principal, body.service.as_deref()).await?;
    validate_entity(&body.entity)?;
    let params = params_of(&body)?;
    let label = body.label.unwrap_or_else(|| body.entity.clone());
    validate_label(&label)?;
    let issuer = match body.issuer {
        Some(issuer) => issuer,
        // `:` separates issuer and account in the URI label.
        None => service.display_name().replace(':', " "),
    };
    validate_issuer(&issuer)?;

    let id = new_factor_id();
    let secret = FactorSecret::generate(params.algorithm);
    let uri = otpauth_uri(&params, &secret, &issuer, &label, 0);
    let qr_svg = qr::svg(&uri)
        .map_err(|_| ApiError::invalid("label and issuer are too long for a QR code"))?;
    let now = state.clock.now();
    let factor = Factor {
        sealed_secret: state.secret.sealer().seal(&id, secret.bytes()),
        id,
        service_id: service.id.clone(),
        service_name: service.name.clone(),
        entity: body.entity,
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
    tracing::info!(kind = factor.params.kind.as_str(), "factor created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedFactorView {
            qr_png_url: format!("/v1/totp/factors/{}/qr.png", factor.id),
            factor: FactorView::of(&factor),
            secret: secret.base32().to_string(),
            otpauth_uri: uri.to_string(),
            qr_svg,
        }),
    ))
}

/// List an entity's factors (never their secrets).
#[utoipa::path(
    get, path = "/v1/totp/factors", tag = "totp",
    params(ListQuery),
    responses(
        (status = 200, description = "The entity's factors, oldest first", body = FactorList),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<FactorList>> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let service = usable_service(&state, &principal, q.service.as_deref()).await?;
    validate_entity(&q.entity)?;
    let factors = state.store.list_factors(&service.id, &q.entity).await?;
    let backup_codes_remaining = state
        .store
        .count_backup_codes(&service.id, &q.entity)
        .await?;
    Ok(Json(FactorList {
        factors: factors.iter().map(FactorView::of).collect(),
        backup_codes_remaining,
    }))
}

/// Read a factor (never its secret).
#[utoipa::path(
    get, path = "/v1/totp/factors/{id}", tag = "totp",
    params(("id" = String, Path, description = "Factor id (`tf_…`)")),
    responses(
        (status = 200, description = "The factor", body = FactorView),
        (status = 404, description = "No such factor", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<FactorView>> {
    Ok(Json(FactorView::of(&find(&state, &principal, &id).await?)))
}

/// Delete a factor.
#[utoipa::path(
    delete, path = "/v1/totp/factors/{id}", tag = "totp",
    params(("id" = String, Path, description = "Factor id (`tf_…`)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such factor", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(factor_id = %id))]
pub async fn delete(
    State(state): State<AppState>,
    ctx: WriteContext,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    find(&state, &principal, &id).await?;
    if state
        .store
        .delete_factor(&id, state.clock.now(), &ctx)
        .await?
    {
        tracing::info!("factor deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("factor"))
    }
}

/// The enrolment QR code as PNG, while the factor is unverified (after activation the
/// secret is never shown again).
#[utoipa::path(
    get, path = "/v1/totp/factors/{id}/qr.png", tag = "totp",
    params(("id" = String, Path, description = "Factor id (`tf_…`)")),
    responses(
        (status = 200, description = "The QR code of the `otpauth://` URI", content_type = "image/png", body = Vec<u8>),
        (status = 404, description = "No such factor", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The factor is active: its secret is not shown again", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn qr_png(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let f = find(&state, &principal, &id).await?;
    if f.status != FactorStatus::Unverified {
        return Err(ApiError::new(
            ErrorCode::VerificationNotPending,
            "the factor is active: its secret and QR code are not shown again",
        ));
    }
    let png = qr::png(&uri_of(&state, &f)?).map_err(|_| unopenable(&f))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        png,
    )
        .into_response())
}

/// The error for a factor check that decided nothing.
fn outcome_error(outcome: &FactorCheckOutcome) -> ApiError {
    match outcome {
        FactorCheckOutcome::NotActive(_) => not_active(),
        FactorCheckOutcome::AlreadyActive(_) => ApiError::new(
            ErrorCode::VerificationNotPending,
            "the factor is already active",
        ),
        _ => ApiError::not_found("active factor or backup code for this entity"),
    }
}

/// Activate a factor with a first code from the app.
#[utoipa::path(
    post, path = "/v1/totp/factors/{id}/verify", tag = "totp",
    params(("id" = String, Path, description = "Factor id (`tf_…`)")),
    request_body = CodeBody,
    responses(
        (status = 200, description = "Right (`valid: true`, now `active`) or wrong (`valid: false`)", body = VerifyFactorView),
        (status = 404, description = "No such factor", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already active", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Locked after too many wrong codes (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(factor_id = %id))]
pub async fn verify(
    State(state): State<AppState>,
    ctx: WriteContext,
    principal: Principal,
    Path(id): Path<String>,
    body: ApiJson<CodeBody>,
) -> ApiResult<Json<VerifyFactorView>> {
    let code = TotpCode::parse(&body.value.code)
        .ok_or_else(|| ApiError::invalid("code must be 6 or 8 digits"))?;
    let f = find(&state, &principal, &id).await?;
    let now = state.clock.now();
    let matcher = code_matcher(&state, Some(&code), now);
    let no_backup = |_: &str, _: &str| None;
    let outcome = state
        .store
        .check_factor(
            FactorTarget::Activate(f.id),
            &matcher,
            &no_backup,
            now,
            &ctx,
        )
        .await?;
    let (valid, factor) = match outcome {
        FactorCheckOutcome::Approved {
            factor: Some(factor),
            ..
        } => (true, factor),
        FactorCheckOutcome::Rejected {
            factor: Some(factor),
        } => (false, factor),
        other => return Err(outcome_error(&other)),
    };
    tracing::info!(valid, "factor activation attempt");
    Ok(Json(VerifyFactorView {
        valid,
        factor: FactorView::of(&factor),
    }))
}

/// Check a code from the app (or a backup code) for a factor or an entity.
#[utoipa::path(
    post, path = "/v1/totp/check", tag = "totp",
    request_body = FactorCheckBody,
    responses(
        (status = 200, description = "Right (`valid: true`) or wrong (`valid: false`, counted toward the lockout)", body = FactorCheckView),
        (status = 404, description = "No such factor, or the entity has no active factor or backup code", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The factor is not active yet", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Locked after too many wrong codes (`rate_limited`, `Retry-After`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(factor_id))]
pub async fn check(
    State(state): State<AppState>,
    ctx: WriteContext,
    principal: Principal,
    body: ApiJson<FactorCheckBody>,
) -> ApiResult<Json<FactorCheckView>> {
    let body = body.value;
    let totp = TotpCode::parse(&body.code);
    let backup = BackupCode::parse(&body.code);
    if totp.is_none() && backup.is_none() {
        return Err(ApiError::invalid(
            "code must be 6 or 8 digits, or a backup code",
        ));
    }
    let (target, entity) = match (body.factor, body.entity) {
        (Some(id), None) => {
            if body.service.is_some() {
                return Err(ApiError::invalid(
                    "`service` goes with `entity`, not with `factor`",
                ));
            }
            let f = find(&state, &principal, &id).await?;
            (FactorTarget::Factor(f.id), f.entity)
        }
        (None, Some(entity)) => {
            validate_entity(&entity)?;
            let service = usable_service(&state, &principal, body.service.as_deref()).await?;
            (
                FactorTarget::Entity {
                    service_id: service.id,
                    entity: entity.clone(),
                },
                entity,
            )
        }
        _ => {
            return Err(ApiError::invalid(
                "give exactly one of `factor` or `entity`",
            ));
        }
    };
    let now = state.clock.now();
    let matcher = code_matcher(&state, totp.as_ref(), now);
    let hasher = state.secret.hasher();
    let backup_hash = |service_id: &str, entity: &str| {
        backup
            .as_ref()
            .map(|c| hasher.hash_text(&hash_scope(service_id, entity), c.expose()))
    };
    let outcome = state
        .store
        .check_factor(target, &matcher, &backup_hash, now, &ctx)
        .await?;
    let view = match outcome {
        FactorCheckOutcome::Approved {
            factor,
            method,
            backup_codes_remaining,
        } => FactorCheckView {
            valid: true,
            entity,
            factor: factor.map(|f| f.id),
            method: Some(match method {
                FactorMethod::Code(FactorKind::Totp) => CheckMethod::Totp,
                FactorMethod::Code(FactorKind::Hotp) => CheckMethod::Hotp,
                FactorMethod::BackupCode => CheckMethod::BackupCode,
            }),
            backup_codes_remaining: Some(backup_codes_remaining),
        },
        FactorCheckOutcome::Rejected { factor } => FactorCheckView {
            valid: false,
            entity,
            factor: factor.map(|f| f.id),
            method: None,
            backup_codes_remaining: None,
        },
        other => return Err(outcome_error(&other)),
    };
    if let Some(id) = &view.factor {
        tracing::Span::current().record("factor_id", id.as_str());
    }
    if view.valid {
        tracing::info!("factor code approved");
    } else {
        tracing::info!("wrong factor code");
    }
    Ok(Json(view))
}

/// Create a new set of ten backup codes for an entity, replacing the previous set. The codes
/// are in this reply only.
#[utoipa::path(
    post, path = "/v1/totp/backup-codes", tag = "totp",
    request_body = BackupCodesBody,
    responses(
        (status = 201, description = "Ten new single-use codes, shown once", body = BackupCodesView),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn backup_codes(
    State(state): State<AppState>,
    ctx: WriteContext,
    principal: Principal,
    body: ApiJson<BackupCodesBody>,
) -> ApiResult<(StatusCode, Json<BackupCodesView>)> {
    let body = body.value;
    validate_entity(&body.entity)?;
    let service = usable_service(&state, &principal, body.service.as_deref()).await?;
    let codes: Vec<BackupCode> = (0..BACKUP_CODES_PER_SET)
        .map(|_| BackupCode::generate())
        .collect();
    let hasher = state.secret.hasher();
    let scope = hash_scope(&service.id, &body.entity);
    let hashes: Vec<Vec<u8>> = codes
        .iter()
        .map(|c| hasher.hash_text(&scope, c.expose()))
        .collect();
    let now = state.clock.now();
    state
        .store
        .replace_backup_codes(&service.id, &body.entity, &hashes, now, &ctx)
        .await?;
    tracing::info!("backup codes created");
    Ok((
        StatusCode::CREATED,
        Json(BackupCodesView {
            entity: body.entity,
            service: service.name,
            codes: codes.iter().map(|c| c.display().to_string()).collect(),
            created_at: timestamp(now),
        }),
    ))
}
