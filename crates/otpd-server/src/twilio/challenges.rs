//! `/v2/Services/{ServiceSid}/Entities/{Identity}/Challenges`: Twilio's Challenges of TOTP
//! factors. Create one for a verified factor (with `AuthPayload`, the code is checked at
//! once: `approved`, or `pending` when wrong), verify a pending one with `AuthPayload`,
//! list and fetch them. The code is checked by the factor exactly as `/v1/totp/check` does
//! (window, each code once, the entity's lockout shared with every other check); a locked
//! entity is answered 429 / 60308, an expired challenge 403 / 60323.
//!
//! `Details.*` and `HiddenDetails` (shown by push apps) and Notifications are not offered.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::ids::Kind;
use otpd_core::service::Service;
use otpd_core::store::{FactorChallengeFilter, FactorCheckOutcome, FactorTarget};
use otpd_core::totp::challenge::{
    ChallengeStatus, DEFAULT_CHALLENGE_TTL, FactorChallenge, MAX_CHALLENGE_TTL,
};
use otpd_core::totp::{Factor, FactorStatus, TotpCode};
use serde_json::{Value, json};

use super::entities::identity;
use super::errors::{TwilioError, TwilioErrorBody, TwilioResult};
use super::factor_views::{TwChallenge, entity_sid, entity_url};
use super::factors;
use super::form::{Params, TwilioForm};
use super::verifications::service_of;
use super::views::{Page, base_url, twilio_date};
use super::{Paging, TwPath, TwilioPrincipal};
use crate::api::totp::code_matcher;
use crate::state::AppState;

/// Twilio's challenge attempts limit (the entity is locked).
pub const CHALLENGE_ATTEMPTS: u32 = 60308;
/// Twilio's "the challenge has expired".
pub const CHALLENGE_EXPIRED: u32 = 60323;
/// Parameters of push challenges, refused.
const UNSUPPORTED: &[&str] = &["Details.", "HiddenDetails", "Metadata"];

/// The Twilio view of a challenge at `now`.
fn view(c: &FactorChallenge, base: &str, now: DateTime<Utc>) -> TwChallenge {
    let sid = Kind::FactorChallenge.sid_of(&c.id);
    let url = format!(
        "{}/Challenges/{sid}",
        entity_url(base, &c.service_id, &c.entity)
    );
    TwChallenge {
        links: json!({ "notifications": format!("{url}/Notifications") }),
        url,
        sid,
        account_sid: super::views::ACCOUNT_SID.into(),
        service_sid: Kind::Service.sid_of(&c.service_id),
        entity_sid: entity_sid(&c.service_id, &c.entity),
        identity: c.entity.clone(),
        factor_sid: Kind::Factor.sid_of(&c.factor_id),
        date_created: twilio_date(c.created_at),
        date_updated: twilio_date(c.updated_at),
        date_responded: c.responded_at.map(twilio_date),
        expiration_date: twilio_date(c.expires_at),
        status: c.status_at(now).as_str().into(),
        responded_reason: "none".into(),
        details: None,
        hidden_details: None,
        metadata: None,
        factor_type: "totp".into(),
    }
}

/// `AuthPayload` as a code (6 or 8 digits, what otpd's factors make).
fn auth_payload(raw: Option<String>) -> TwilioResult<Option<TotpCode>> {
    raw.map(|raw| {
        TotpCode::parse(&raw)
            .ok_or_else(|| TwilioError::invalid("Invalid parameter AuthPayload: 6 or 8 digits"))
    })
    .transpose()
}

/// Checks `code` against the factor (the entity's lockout applies); whether it was right.
async fn check(
    state: &AppState,
    f: &Factor,
    code: &TotpCode,
    ctx: &WriteContext,
) -> TwilioResult<bool> {
    let now = state.clock.now();
    let matcher = code_matcher(state, Some(code), now);
    let no_backup = |_: &str, _: &str| None;
    let outcome = state
        .store
        .check_factor(
            FactorTarget::Factor(f.id.clone()),
            &matcher,
            &no_backup,
            now,
            ctx,
        )
        .await
        .map_err(|e| TwilioError::from(e).on_factor_check(CHALLENGE_ATTEMPTS))?;
    match outcome {
        FactorCheckOutcome::Approved { .. } => Ok(true),
        FactorCheckOutcome::Rejected { .. } => Ok(false),
        FactorCheckOutcome::NotActive(_) => Err(not_verified()),
        _ => Err(TwilioError::not_found("Factor")),
    }
}

fn not_verified() -> TwilioError {
    TwilioError::invalid(
        "Invalid parameter FactorSid: the factor is not verified yet (update it with AuthPayload first)",
    )
}

/// The challenge `sid` of `identity` in the service.
async fn find(
    state: &AppState,
    service: &Service,
    identity: &str,
    sid: &str,
) -> TwilioResult<FactorChallenge> {
    let not_found = || {
        TwilioError::not_found(format!(
            "/v2/Services/{}/Entities/{}/Challenges/{sid}",
            service.sid,
            super::factor_views::path_segment(identity)
        ))
    };
    let id = Kind::FactorChallenge.id_of_sid(sid).ok_or_else(not_found)?;
    state
        .store
        .get_factor_challenge(&id)
        .await?
        .filter(|c| c.service_id == service.id && c.entity == identity)
        .ok_or_else(not_found)
}

/// Create a challenge of a TOTP factor (checked at once when it carries `AuthPayload`).
#[utoipa::path(
    post, path = "/v2/Services/{ServiceSid}/Entities/{Identity}/Challenges", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Identity" = String, Path, description = "The entity"),
    ),
    request_body(content_type = "application/x-www-form-urlencoded", description = "`FactorSid` (a verified TOTP factor) required; `AuthPayload` (the code), `ExpirationDate` (ISO 8601, at most an hour ahead; default 5 minutes).", example = json!("FactorSid=YF0123456789abcdef0123456789abcdef&AuthPayload=123456")),
    responses(
        (status = 201, description = "`approved` (right code) or `pending`", body = TwChallenge),
        (status = 429, description = "The entity is locked after too many wrong codes (60308), with Retry-After", body = TwilioErrorBody),
        (status = "4XX", description = "Refused", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
#[tracing::instrument(skip_all, fields(factor_id, challenge_id))]
pub async fn create(
    State(state): State<AppState>,
    ctx: WriteContext,
    TwilioPrincipal(principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath((service_sid, entity)): TwPath<(String, String)>,
    form: TwilioForm,
) -> TwilioResult<(StatusCode, Json<TwChallenge>)> {
    let service = service_of(&state, &principal, &service_sid).await?;
    identity(&entity)?;
    let mut p = form.params;
    let factor_sid = p.required("FactorSid")?;
    let code = auth_payload(p.take("AuthPayload"))?;
    let expiration = p.take("ExpirationDate");
    p.finish(UNSUPPORTED)?;
    let f = factors::find(&state, &principal, &service, &entity, &factor_sid).await?;
    tracing::Span::current().record("factor_id", f.id.as_str());
    if f.status != FactorStatus::Active {
        return Err(not_verified());
    }
    let now = state.clock.now();
    let expires_at = match expiration {
        None => now + DEFAULT_CHALLENGE_TTL,
        Some(raw) => DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .filter(|t| *t > now && *t <= now + MAX_CHALLENGE_TTL)
            .ok_or_else(|| {
                TwilioError::invalid(
                    "Invalid parameter ExpirationDate: an ISO 8601 date-time in the next hour",
                )
            })?,
    };
    let approved = match &code {
        Some(code) => check(&state, &f, code, &ctx).await?,
        None => false,
    };
    let at = state.clock.now();
    let challenge = FactorChallenge {
        id: Kind::FactorChallenge.new_id(),
        service_id: service.id.clone(),
        entity: entity.clone(),
        factor_id: f.id.clone(),
        status: if approved {
            ChallengeStatus::Approved
        } else {
            ChallengeStatus::Pending
        },
        created_at: now,
        updated_at: at,
        responded_at: approved.then_some(at),
        expires_at,
    };
    state
        .store
        .create_factor_challenge(&challenge, &ctx)
        .await?;
    tracing::Span::current().record("challenge_id", challenge.id.as_str());
    tracing::info!(
        status = challenge.status.as_str(),
        "factor challenge created on /v2"
    );
    let base = base_url(&state.config, &headers);
    Ok((StatusCode::CREATED, Json(view(&challenge, &base, at))))
}

/// List an entity's challenges.
#[utoipa::path(
    get, path = "/v2/Services/{ServiceSid}/Entities/{Identity}/Challenges", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Identity" = String, Path, description = "The entity"),
        ("FactorSid" = Option<String>, Query, description = "Only this factor's"),
        ("Status" = Option<String>, Query, description = "`pending`, `expired`, `approved` or `denied`"),
        ("Order" = Option<String>, Query, description = "`asc` (default) or `desc`, by creation"),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u64>, Query, description = "Page number, from 0"),
        ("PageToken" = Option<String>, Query, description = "Token from `next_page_url`"),
    ),
    responses(
        (status = 200, description = "A page of challenges (`challenges`, `meta`)", body = Object),
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
    let mut filters = Vec::new();
    let factor_sid = p.take("FactorSid");
    let factor_id = match &factor_sid {
        Some(sid) => {
            filters.push(("FactorSid".to_string(), sid.clone()));
            Some(
                Kind::Factor
                    .id_of_sid(sid)
                    .ok_or_else(|| TwilioError::invalid("Invalid parameter FactorSid"))?,
            )
        }
        None => None,
    };
    let status_raw = p.take("Status");
    // A TOTP challenge is never denied (only push users deny): that filter lists nothing.
    let denied = status_raw.as_deref() == Some("denied");
    let status = match status_raw.as_deref() {
        None | Some("denied") => None,
        Some(s) => Some(ChallengeStatus::parse(s).ok_or_else(|| {
            TwilioError::invalid("Invalid parameter Status: pending, expired, approved or denied")
        })?),
    };
    if let Some(s) = &status_raw {
        filters.push(("Status".to_string(), s.clone()));
    }
    let order = p.take("Order");
    let newest_first = match order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(TwilioError::invalid("Invalid parameter Order: asc or desc")),
    };
    if let Some(o) = &order {
        filters.push(("Order".to_string(), o.clone()));
    }
    let paging = Paging::take(&mut p)?;
    p.finish(&[])?;
    let now = state.clock.now();
    let mut items = if denied {
        Vec::new()
    } else {
        state
            .store
            .list_factor_challenges(&FactorChallengeFilter {
                service_id: service.id.clone(),
                entity: entity.clone(),
                factor_id,
                status,
                now,
                newest_first,
                offset: paging.offset,
                limit: paging.page_size + 1,
            })
            .await?
    };
    let has_more = items.len() > paging.page_size as usize;
    items.truncate(paging.page_size as usize);
    let base = base_url(&state.config, &headers);
    let views: Vec<TwChallenge> = items.iter().map(|c| view(c, &base, now)).collect();
    let page = Page {
        key: "challenges",
        list_url: format!("{}/Challenges", entity_url(&base, &service.id, &entity)),
        filters,
        page: paging.page,
        page_size: paging.page_size,
        has_more,
    };
    Ok(Json(
        page.wrap(serde_json::to_value(views).unwrap_or_default()),
    ))
}

/// Fetch a challenge.
#[utoipa::path(
    get, path = "/v2/Services/{ServiceSid}/Entities/{Identity}/Challenges/{Sid}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Identity" = String, Path, description = "The entity"),
        ("Sid" = String, Path, description = "Challenge SID (`YC…`)"),
    ),
    responses(
        (status = 200, description = "The challenge", body = TwChallenge),
        (status = 404, description = "No such challenge (20404)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn fetch(
    State(state): State<AppState>,
    TwilioPrincipal(principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath((service_sid, entity, sid)): TwPath<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> TwilioResult<Json<TwChallenge>> {
    let service = service_of(&state, &principal, &service_sid).await?;
    Params::from_query(query.as_deref())?.finish(&[])?;
    let c = find(&state, &service, &entity, &sid).await?;
    let base = base_url(&state.config, &headers);
    Ok(Json(view(&c, &base, state.clock.now())))
}

/// Verify a pending challenge with a code (`AuthPayload`).
#[utoipa::path(
    post, path = "/v2/Services/{ServiceSid}/Entities/{Identity}/Challenges/{Sid}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Identity" = String, Path, description = "The entity"),
        ("Sid" = String, Path, description = "Challenge SID (`YC…`)"),
    ),
    request_body(content_type = "application/x-www-form-urlencoded", description = "`AuthPayload`: the code from the app.", example = json!("AuthPayload=123456")),
    responses(
        (status = 200, description = "`approved` (right code) or still `pending`", body = TwChallenge),
        (status = 403, description = "The challenge expired (60323)", body = TwilioErrorBody),
        (status = 404, description = "No such challenge (20404)", body = TwilioErrorBody),
        (status = 429, description = "The entity is locked after too many wrong codes (60308), with Retry-After", body = TwilioErrorBody),
        (status = "4XX", description = "Refused", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
#[tracing::instrument(skip_all, fields(challenge_id))]
pub async fn update(
    State(state): State<AppState>,
    ctx: WriteContext,
    TwilioPrincipal(principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath((service_sid, entity, sid)): TwPath<(String, String, String)>,
    form: TwilioForm,
) -> TwilioResult<Json<TwChallenge>> {
    let service = service_of(&state, &principal, &service_sid).await?;
    let mut p = form.params;
    let code = auth_payload(p.take("AuthPayload"))?;
    p.finish(UNSUPPORTED)?;
    let mut c = find(&state, &service, &entity, &sid).await?;
    tracing::Span::current().record("challenge_id", c.id.as_str());
    let now = state.clock.now();
    match c.status_at(now) {
        ChallengeStatus::Expired => {
            return Err(TwilioError::new(
                StatusCode::FORBIDDEN,
                CHALLENGE_EXPIRED,
                "The challenge has expired",
            ));
        }
        ChallengeStatus::Approved => {}
        ChallengeStatus::Pending => {
            if let Some(code) = code {
                let f = state
                    .store
                    .get_factor(&c.factor_id)
                    .await?
                    .ok_or_else(|| TwilioError::not_found(format!("Challenge {sid}")))?;
                if check(&state, &f, &code, &ctx).await? {
                    let at = state.clock.now();
                    if !state
                        .store
                        .approve_factor_challenge(&c.id, at, &ctx)
                        .await?
                    {
                        // Expired (or approved by another request) meanwhile.
                        c = find(&state, &service, &entity, &sid).await?;
                        if c.status_at(at) == ChallengeStatus::Expired {
                            return Err(TwilioError::new(
                                StatusCode::FORBIDDEN,
                                CHALLENGE_EXPIRED,
                                "The challenge has expired",
                            ));
                        }
                    } else {
                        c = find(&state, &service, &entity, &sid).await?;
                    }
                }
                tracing::info!(
                    status = c.status.as_str(),
                    "factor challenge checked on /v2"
                );
            }
        }
    }
    let base = base_url(&state.config, &headers);
    Ok(Json(view(&c, &base, state.clock.now())))
}
