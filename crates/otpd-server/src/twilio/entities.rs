//! `/v2/Services/{ServiceSid}/Entities`: Twilio's Entities, which are otpd's entity ids (the
//! application's own id for a user, shared by factors, backup codes and the lockout). otpd
//! keeps no entity record: an entity exists while it has factors, creating one only checks
//! the identity and answers it, and deleting one deletes its factors.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use otpd_core::audit::WriteContext;
use otpd_core::entity::validate_entity;
use otpd_core::service::Service;
use otpd_core::totp::FactorKind;
use serde_json::Value;

use super::errors::{TwilioError, TwilioErrorBody, TwilioResult};
use super::factor_views::TwEntity;
use super::form::{Params, TwilioForm};
use super::verifications::service_of;
use super::views::{Page, base_url};
use super::{Paging, TwPath, TwilioPrincipal};
use crate::state::AppState;

/// Checks an identity (otpd's entity rule: 1–128 characters, no control characters, no
/// surrounding spaces; Twilio's own 8–64 `[A-Za-z0-9_-]` identities all pass).
pub fn identity(raw: &str) -> TwilioResult<()> {
    validate_entity(raw).map_err(|_| {
        TwilioError::invalid(
            "Invalid parameter Identity: 1-128 characters without control characters or surrounding spaces",
        )
    })
}

/// The 404 of an entity without factors.
pub fn entity_not_found(service: &Service, identity: &str) -> TwilioError {
    TwilioError::not_found(format!(
        "/v2/Services/{}/Entities/{}",
        service.sid,
        super::factor_views::path_segment(identity)
    ))
}

/// Create an entity (nothing is stored: an entity exists once it has a factor).
#[utoipa::path(
    post, path = "/v2/Services/{ServiceSid}/Entities", tag = "twilio-compatible",
    params(("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name")),
    request_body(content_type = "application/x-www-form-urlencoded", description = "`Identity` (otpd's entity id).", example = json!("Identity=ff483d1ff591898a9942916050d2ca3f")),
    responses(
        (status = 201, description = "The entity", body = TwEntity),
        (status = "4XX", description = "Refused", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    TwilioPrincipal(principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath(service_sid): TwPath<String>,
    form: TwilioForm,
) -> TwilioResult<(StatusCode, Json<TwEntity>)> {
    let service = service_of(&state, &principal, &service_sid).await?;
    let mut p = form.params;
    let id = p.required("Identity")?;
    p.finish(&[])?;
    identity(&id)?;
    let factors = state.store.list_factors(&service.id, &id).await?;
    let created = factors
        .iter()
        .map(|f| f.created_at)
        .min()
        .unwrap_or_else(|| state.clock.now());
    let base = base_url(&state.config, &headers);
    Ok((
        StatusCode::CREATED,
        Json(TwEntity::of(&service.id, &id, created, &base)),
    ))
}

/// List the service's entities (those with factors), oldest first.
#[utoipa::path(
    get, path = "/v2/Services/{ServiceSid}/Entities", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u64>, Query, description = "Page number, from 0"),
        ("PageToken" = Option<String>, Query, description = "Token from `next_page_url`"),
    ),
    responses(
        (status = 200, description = "A page of entities (`entities`, `meta`)", body = Object),
        (status = "4XX", description = "Refused", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    TwilioPrincipal(principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath(service_sid): TwPath<String>,
    RawQuery(query): RawQuery,
) -> TwilioResult<Json<Value>> {
    let service = service_of(&state, &principal, &service_sid).await?;
    let mut p = Params::from_query(query.as_deref())?;
    let paging = Paging::take(&mut p)?;
    p.finish(&[])?;
    let mut rows = state
        .store
        .list_factor_entities(&service.id, paging.offset, paging.page_size + 1)
        .await?;
    let has_more = rows.len() > paging.page_size as usize;
    rows.truncate(paging.page_size as usize);
    let base = base_url(&state.config, &headers);
    let items: Vec<TwEntity> = rows
        .iter()
        .map(|(id, created)| TwEntity::of(&service.id, id, *created, &base))
        .collect();
    let page = Page {
        key: "entities",
        list_url: format!("{base}/v2/Services/{}/Entities", service.sid),
        filters: Vec::new(),
        page: paging.page,
        page_size: paging.page_size,
        has_more,
    };
    Ok(Json(
        page.wrap(serde_json::to_value(items).unwrap_or_default()),
    ))
}

/// Fetch an entity (20404 when it has no factor).
#[utoipa::path(
    get, path = "/v2/Services/{ServiceSid}/Entities/{Identity}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Identity" = String, Path, description = "The entity"),
    ),
    responses(
        (status = 200, description = "The entity", body = TwEntity),
        (status = 404, description = "No factor for this entity (20404)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn fetch(
    State(state): State<AppState>,
    TwilioPrincipal(principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath((service_sid, id)): TwPath<(String, String)>,
    RawQuery(query): RawQuery,
) -> TwilioResult<Json<TwEntity>> {
    let service = service_of(&state, &principal, &service_sid).await?;
    Params::from_query(query.as_deref())?.finish(&[])?;
    identity(&id)?;
    let created = state
        .store
        .list_factors(&service.id, &id)
        .await?
        .iter()
        .map(|f| f.created_at)
        .min()
        .ok_or_else(|| entity_not_found(&service, &id))?;
    let base = base_url(&state.config, &headers);
    Ok(Json(TwEntity::of(&service.id, &id, created, &base)))
}

/// Delete an entity: every factor of it (on both faces).
#[utoipa::path(
    delete, path = "/v2/Services/{ServiceSid}/Entities/{Identity}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Identity" = String, Path, description = "The entity"),
    ),
    responses(
        (status = 204, description = "Its factors are deleted"),
        (status = 404, description = "No factor for this entity (20404)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
#[tracing::instrument(skip_all)]
pub async fn delete(
    State(state): State<AppState>,
    ctx: WriteContext,
    TwilioPrincipal(principal): TwilioPrincipal,
    TwPath((service_sid, id)): TwPath<(String, String)>,
) -> TwilioResult<StatusCode> {
    let service = service_of(&state, &principal, &service_sid).await?;
    identity(&id)?;
    let factors = state.store.list_factors(&service.id, &id).await?;
    if factors.is_empty() {
        return Err(entity_not_found(&service, &id));
    }
    let now = state.clock.now();
    for f in &factors {
        state.store.delete_factor(&f.id, now, &ctx).await?;
    }
    tracing::info!(
        factors = factors.len(),
        hotp = factors
            .iter()
            .filter(|f| f.params.kind == FactorKind::Hotp)
            .count(),
        "entity deleted"
    );
    Ok(StatusCode::NO_CONTENT)
}
