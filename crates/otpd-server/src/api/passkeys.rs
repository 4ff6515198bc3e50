//! `/v1/passkeys`: passkeys (WebAuthn) of an entity, beside its authenticator apps.
//!
//! Two ceremonies, each started here (options for the browser) and finished here (the
//! browser's credential): registration, and sign-in for an entity or discoverable
//! (username-less). Options and credentials are the WebAuthn Level 3 JSON forms, passed
//! through untouched. This module parses, resolves the service within the caller's scope,
//! and hands over to `otpd_engine::Passkeys`, where the ceremony is decided.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use otpd_core::apikey::Principal;
use otpd_core::audit::WriteContext;
use otpd_core::entity::validate_entity;
use otpd_core::ids::Kind;
use otpd_core::passkey::{CeremonyKind, PasskeyFactor, validate_user_name};
use otpd_engine::{CeremonyStarted, Passkeys, SignIn};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::views::timestamp;
use crate::auth::usable_service;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use crate::state::AppState;

/// The engine's passkey ceremonies over the application's store, secret and clock.
fn passkeys(state: &AppState) -> Passkeys {
    Passkeys::new(
        state.store.clone(),
        state.secret.clone(),
        state.clock.clone(),
    )
}

/// Start registering a passkey.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationBody {
    /// Service name or SID; default `default`. Its `passkeys` settings name the relying party.
    pub service: Option<String>,
    /// Your id for the user (1–128 characters).
    pub entity: String,
    /// The account name the authenticator shows (e.g. an email address).
    pub user_name: String,
    /// The person's name the authenticator shows; default: `user_name`.
    pub display_name: Option<String>,
}

/// Start a sign-in.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthenticationBody {
    /// Service name or SID; default `default`.
    pub service: Option<String>,
    /// Your id for the user; leave it out for a discoverable (username-less) sign-in.
    pub entity: Option<String>,
}

/// The browser's answer to a ceremony.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialBody {
    /// `RegistrationResponseJSON` or `AuthenticationResponseJSON`, as
    /// `PublicKeyCredential.toJSON()` gives it (base64url strings).
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

/// Whose passkeys to list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Your id for the user.
    pub entity: String,
    /// Service name or SID; default `default`.
    pub service: Option<String>,
}

/// A ceremony started.
#[derive(Serialize, ToSchema)]
pub struct CeremonyView {
    /// `pkr_…` (registration) or `pka_…` (sign-in): finish it with `…/{id}/verify`.
    pub id: String,
    /// `PublicKeyCredentialCreationOptionsJSON` or `PublicKeyCredentialRequestOptionsJSON`:
    /// give it to `PublicKeyCredential.parseCreationOptionsFromJSON` /
    /// `parseRequestOptionsFromJSON`.
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
    /// It cannot be finished after this (5 minutes), and only once.
    pub expires_at: String,
}

impl CeremonyView {
    fn of(c: CeremonyStarted) -> Self {
        CeremonyView {
            id: c.id,
            options: c.options,
            expires_at: timestamp(c.expires_at),
        }
    }
}

/// A passkey (never its public key).
#[derive(Serialize, ToSchema)]
pub struct PasskeyView {
    /// `pk_…`
    pub id: String,
    /// Service name.
    pub service: String,
    /// Service SID (`VA…`).
    pub service_sid: String,
    /// Your id for the user.
    pub entity: String,
    /// `passkey`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Always `active`: a passkey is stored only once its registration is verified.
    pub status: &'static str,
    /// The account name the authenticator shows.
    pub user_name: String,
    /// The WebAuthn credential id (base64url).
    pub credential_id: String,
    /// Registered.
    pub created_at: String,
    /// Last sign-in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
}

impl PasskeyView {
    /// The view of a passkey.
    pub fn of(f: &PasskeyFactor) -> Self {
        PasskeyView {
            id: f.id.clone(),
            service: f.service_name.clone(),
            service_sid: Kind::Service.sid_of(&f.service_id),
            entity: f.entity.clone(),
            kind: "passkey",
            status: "active",
            user_name: f.user_name.clone(),
            credential_id: f.credential_id.clone(),
            created_at: timestamp(f.created_at),
            last_used_at: f.last_used_at.map(timestamp),
        }
    }
}

/// A registered passkey.
#[derive(Serialize, ToSchema)]
pub struct RegisteredView {
    /// The new passkey.
    pub factor: PasskeyView,
}

/// The outcome of a sign-in.
#[derive(Serialize, ToSchema)]
pub struct SignInView {
    /// Whether the assertion was right.
    pub valid: bool,
    /// The entity signed in (when valid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// The passkey used (`pk_…`, when valid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factor: Option<String>,
}

/// An entity's passkeys.
#[derive(Serialize, ToSchema)]
pub struct PasskeyList {
    /// Oldest first.
    pub factors: Vec<PasskeyView>,
}

/// The ceremony with this id if the caller may finish it (404 otherwise, like a missing one).
async fn ceremony_for(
    state: &AppState,
    p: &Principal,
    id: &str,
    kind: CeremonyKind,
) -> ApiResult<()> {
    let c = passkeys(state)
        .ceremony(id, kind)
        .await
        .map_err(ApiError::from)?;
    if p.may_use_service(&c.service_id) {
        Ok(())
    } else {
        Err(ApiError::not_found("ceremony"))
    }
}

/// Start registering a passkey: options for `navigator.credentials.create`.
#[utoipa::path(
    post, path = "/v1/passkeys/registrations", tag = "passkeys",
    request_body = RegistrationBody,
    responses(
        (status = 201, description = "Started: give `options` to the browser, then finish within 5 minutes", body = CeremonyView),
        (status = "4XX", description = "Refused (e.g. the service has no `passkeys` settings)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(ceremony_id))]
pub async fn start_registration(
    State(state): State<AppState>,
    principal: Principal,
    body: ApiJson<RegistrationBody>,
) -> ApiResult<(StatusCode, Json<CeremonyView>)> {
    let body = body.value;
    validate_entity(&body.entity)?;
    validate_user_name("user_name", &body.user_name)?;
    if let Some(d) = &body.display_name {
        validate_user_name("display_name", d)?;
    }
    let service = usable_service(&state, &principal, body.service.as_deref()).await?;
    let started = passkeys(&state)
        .start_registration(
            &service,
            &body.entity,
            &body.user_name,
            body.display_name.as_deref(),
        )
        .await?;
    tracing::Span::current().record("ceremony_id", started.id.as_str());
    Ok((StatusCode::CREATED, Json(CeremonyView::of(started))))
}

/// Finish a registration with the browser's `RegistrationResponseJSON`.
#[utoipa::path(
    post, path = "/v1/passkeys/registrations/{id}/verify", tag = "passkeys",
    params(("id" = String, Path, description = "Registration id (`pkr_…`)")),
    request_body = CredentialBody,
    responses(
        (status = 201, description = "Registered", body = RegisteredView),
        (status = 400, description = "A bad attestation, another origin or RP id, a used or expired ceremony (nothing stored)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such registration", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(ceremony_id = %id, factor_id))]
pub async fn finish_registration(
    State(state): State<AppState>,
    ctx: WriteContext,
    principal: Principal,
    Path(id): Path<String>,
    body: ApiJson<CredentialBody>,
) -> ApiResult<(StatusCode, Json<RegisteredView>)> {
    ceremony_for(&state, &principal, &id, CeremonyKind::Registration).await?;
    let factor = passkeys(&state)
        .finish_registration(&id, body.value.credential, &ctx)
        .await?;
    tracing::Span::current().record("factor_id", factor.id.as_str());
    tracing::info!("passkey registered");
    Ok((
        StatusCode::CREATED,
        Json(RegisteredView {
            factor: PasskeyView::of(&factor),
        }),
    ))
}

/// Start a sign-in: options for `navigator.credentials.get`.
#[utoipa::path(
    post, path = "/v1/passkeys/authentications", tag = "passkeys",
    request_body = AuthenticationBody,
    responses(
        (status = 201, description = "Started: give `options` to the browser, then finish within 5 minutes", body = CeremonyView),
        (status = 404, description = "The entity has no passkey", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The entity is locked after too many failures (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(ceremony_id))]
pub async fn start_authentication(
    State(state): State<AppState>,
    principal: Principal,
    body: ApiJson<AuthenticationBody>,
) -> ApiResult<(StatusCode, Json<CeremonyView>)> {
    let body = body.value;
    if let Some(entity) = &body.entity {
        validate_entity(entity)?;
    }
    let service = usable_service(&state, &principal, body.service.as_deref()).await?;
    let started = passkeys(&state)
        .start_authentication(&service, body.entity.as_deref())
        .await?;
    tracing::Span::current().record("ceremony_id", started.id.as_str());
    Ok((StatusCode::CREATED, Json(CeremonyView::of(started))))
}

/// Finish a sign-in with the browser's `AuthenticationResponseJSON`.
#[utoipa::path(
    post, path = "/v1/passkeys/authentications/{id}/verify", tag = "passkeys",
    params(("id" = String, Path, description = "Sign-in id (`pka_…`)")),
    request_body = CredentialBody,
    responses(
        (status = 200, description = "Right (`valid: true`, with the entity and passkey) or failed (`valid: false`, counted toward the entity's lockout)", body = SignInView),
        (status = 400, description = "Not a credential, or a used or expired ceremony", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such sign-in", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The entity is locked after too many failures (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(ceremony_id = %id, factor_id))]
pub async fn finish_authentication(
    State(state): State<AppState>,
    ctx: WriteContext,
    principal: Principal,
    Path(id): Path<String>,
    body: ApiJson<CredentialBody>,
) -> ApiResult<Json<SignInView>> {
    ceremony_for(&state, &principal, &id, CeremonyKind::Authentication).await?;
    let view = match passkeys(&state)
        .finish_authentication(&id, body.value.credential, &ctx)
        .await?
    {
        SignIn::Valid { entity, factor } => {
            tracing::Span::current().record("factor_id", factor.as_str());
            tracing::info!("passkey sign-in");
            SignInView {
                valid: true,
                entity: Some(entity),
                factor: Some(factor),
            }
        }
        SignIn::Invalid => {
            tracing::info!("failed passkey sign-in");
            SignInView {
                valid: false,
                entity: None,
                factor: None,
            }
        }
    };
    Ok(Json(view))
}

/// List an entity's passkeys.
#[utoipa::path(
    get, path = "/v1/passkeys/factors", tag = "passkeys",
    params(ListQuery),
    responses(
        (status = 200, description = "The entity's passkeys, oldest first", body = PasskeyList),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<PasskeyList>> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    validate_entity(&q.entity)?;
    let service = usable_service(&state, &principal, q.service.as_deref()).await?;
    let factors = passkeys(&state).list(&service, &q.entity).await?;
    Ok(Json(PasskeyList {
        factors: factors.iter().map(PasskeyView::of).collect(),
    }))
}

/// Delete a passkey.
#[utoipa::path(
    delete, path = "/v1/passkeys/factors/{id}", tag = "passkeys",
    params(("id" = String, Path, description = "Passkey id (`pk_…`)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such passkey", body = Problem, content_type = "application/problem+json"),
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
    let found = state
        .store
        .get_passkey(&id)
        .await?
        .filter(|f| principal.may_use_service(&f.service_id));
    if found.is_some()
        && state
            .store
            .delete_passkey(&id, state.clock.now(), &ctx)
            .await?
    {
        tracing::info!("passkey deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("passkey"))
    }
}
