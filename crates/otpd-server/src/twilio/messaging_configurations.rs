//! `/v2/Services/{ServiceSid}/MessagingConfigurations` (Twilio's per-country senders): for
//! a destination country, or `all`, the Twilio Messaging Service (`MG…`) the service's
//! SMS go out through. Kept in the service's settings (`messaging_configurations`) and
//! mapped onto otpd's routing: a start for a number of that country carries the Messaging
//! Service, and a `twilio` provider in its route sends with `MessagingServiceSid` instead
//! of its own sender (`otpd_core::messaging`); other providers keep their own senders.
//!
//! Changes are a read-modify-write of the service's settings: two admins editing one
//! service's configurations at the same instant may lose one edit (the last write wins).

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use otpd_core::messaging::{
    MessagingConfiguration, normalize_country, validate_messaging_service_sid,
};
use otpd_core::service::Service;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::errors::{TwilioError, TwilioErrorBody, TwilioResult};
use super::form::{Params, TwilioForm};
use super::services::{find, save_settings};
use super::views::{ACCOUNT_SID, base_url, paged, twilio_date};
use super::{Paging, TwPath, TwilioPrincipal};
use crate::state::AppState;

/// A Messaging Configuration resource.
#[derive(Serialize, ToSchema)]
pub struct TwMessagingConfiguration {
    /// Always the placeholder account.
    pub account_sid: String,
    /// The service's `VA…`.
    pub service_sid: String,
    /// ISO 3166-1 alpha-2, or `all`.
    pub country: String,
    /// The Messaging Service (`MG…`).
    pub messaging_service_sid: String,
    /// Created.
    pub date_created: String,
    /// Last change.
    pub date_updated: String,
    /// This resource.
    pub url: String,
}

impl TwMessagingConfiguration {
    fn of(c: &MessagingConfiguration, service: &Service, base: &str) -> Self {
        TwMessagingConfiguration {
            account_sid: ACCOUNT_SID.into(),
            service_sid: service.sid.clone(),
            country: c.country.clone(),
            messaging_service_sid: c.messaging_service_sid.clone(),
            date_created: twilio_date(c.created_at),
            date_updated: twilio_date(c.updated_at),
            url: format!(
                "{base}/v2/Services/{}/MessagingConfigurations/{}",
                service.sid, c.country
            ),
        }
    }
}

/// The configuration of `country` in `service`.
fn index_of(service: &Service, country: &str) -> TwilioResult<usize> {
    let not_found = || {
        TwilioError::not_found(format!(
            "/v2/Services/{}/MessagingConfigurations/{country}",
            service.sid
        ))
    };
    let country = normalize_country(country).map_err(|_| not_found())?;
    service
        .settings
        .messaging_configurations
        .iter()
        .position(|c| c.country == country)
        .ok_or_else(not_found)
}

/// Takes and checks `MessagingServiceSid`.
fn messaging_service_sid(p: &mut Params) -> TwilioResult<String> {
    let sid = p.required("MessagingServiceSid")?;
    validate_messaging_service_sid(&sid)?;
    Ok(sid)
}

/// Create a messaging configuration.
#[utoipa::path(
    post, path = "/v2/Services/{ServiceSid}/MessagingConfigurations", tag = "twilio-compatible",
    params(("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name")),
    request_body(content_type = "application/x-www-form-urlencoded", description = "`Country` (required: ISO 3166-1 alpha-2 or `all`), `MessagingServiceSid` (required, `MG…`).", example = json!("Country=GB&MessagingServiceSid=MG9752274e9e519418a7406176694466fa")),
    responses(
        (status = 201, description = "Created", body = TwMessagingConfiguration),
        (status = "4XX", description = "Refused (60200; 20409 for a country already configured)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath(service_sid): TwPath<String>,
    form: TwilioForm,
) -> TwilioResult<(StatusCode, Json<TwMessagingConfiguration>)> {
    let mut p = form.params;
    let country = normalize_country(&p.required("Country")?)?;
    let sid = messaging_service_sid(&mut p)?;
    p.finish(&[])?;
    let mut service = find(&state, &service_sid).await?;
    let configs = &mut service.settings.messaging_configurations;
    if configs.iter().any(|c| c.country == country) {
        return Err(TwilioError::new(
            StatusCode::CONFLICT,
            super::errors::code::CONFLICT,
            format!("A messaging configuration for {country} already exists in this service"),
        ));
    }
    let now = state.clock.now();
    let config = MessagingConfiguration {
        country,
        messaging_service_sid: sid,
        created_at: now,
        updated_at: now,
    };
    configs.push(config.clone());
    save_settings(&state, &mut service).await?;
    let base = base_url(&state.config, &headers);
    Ok((
        StatusCode::CREATED,
        Json(TwMessagingConfiguration::of(&config, &service, &base)),
    ))
}

/// List a service's messaging configurations (key `messaging_configurations`).
#[utoipa::path(
    get, path = "/v2/Services/{ServiceSid}/MessagingConfigurations", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u64>, Query, description = "Page number, from 0"),
        ("PageToken" = Option<String>, Query, description = "Token from `next_page_url`"),
    ),
    responses(
        (status = 200, description = "A page of configurations (`messaging_configurations`, `meta`)", body = Object),
        (status = "4XX", description = "Refused", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath(service_sid): TwPath<String>,
    RawQuery(query): RawQuery,
) -> TwilioResult<Json<Value>> {
    let mut p = Params::from_query(query.as_deref())?;
    let paging = Paging::take(&mut p)?;
    p.finish(&[])?;
    let service = find(&state, &service_sid).await?;
    let base = base_url(&state.config, &headers);
    let url = format!("{base}/v2/Services/{}/MessagingConfigurations", service.sid);
    Ok(Json(paged(
        &service.settings.messaging_configurations,
        |c| TwMessagingConfiguration::of(c, &service, &base),
        &paging,
        "messaging_configurations",
        url,
    )))
}

/// Fetch a country's messaging configuration.
#[utoipa::path(
    get, path = "/v2/Services/{ServiceSid}/MessagingConfigurations/{Country}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Country" = String, Path, description = "ISO 3166-1 alpha-2, or `all`"),
    ),
    responses(
        (status = 200, description = "The configuration", body = TwMessagingConfiguration),
        (status = 404, description = "None for this country (20404)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn fetch(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath((service_sid, country)): TwPath<(String, String)>,
    RawQuery(query): RawQuery,
) -> TwilioResult<Json<TwMessagingConfiguration>> {
    Params::from_query(query.as_deref())?.finish(&[])?;
    let service = find(&state, &service_sid).await?;
    let i = index_of(&service, &country)?;
    let base = base_url(&state.config, &headers);
    Ok(Json(TwMessagingConfiguration::of(
        &service.settings.messaging_configurations[i],
        &service,
        &base,
    )))
}

/// Change a country's Messaging Service.
#[utoipa::path(
    post, path = "/v2/Services/{ServiceSid}/MessagingConfigurations/{Country}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Country" = String, Path, description = "ISO 3166-1 alpha-2, or `all`"),
    ),
    request_body(content_type = "application/x-www-form-urlencoded", description = "`MessagingServiceSid` (required, `MG…`).", example = json!("MessagingServiceSid=MG9752274e9e519418a7406176694466fa")),
    responses(
        (status = 200, description = "Updated", body = TwMessagingConfiguration),
        (status = "4XX", description = "Refused or not found", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath((service_sid, country)): TwPath<(String, String)>,
    form: TwilioForm,
) -> TwilioResult<Json<TwMessagingConfiguration>> {
    let mut p = form.params;
    let sid = messaging_service_sid(&mut p)?;
    p.finish(&[])?;
    let mut service = find(&state, &service_sid).await?;
    let i = index_of(&service, &country)?;
    let config = &mut service.settings.messaging_configurations[i];
    config.messaging_service_sid = sid;
    config.updated_at = state.clock.now();
    let config = config.clone();
    save_settings(&state, &mut service).await?;
    let base = base_url(&state.config, &headers);
    Ok(Json(TwMessagingConfiguration::of(&config, &service, &base)))
}

/// Delete a country's messaging configuration.
#[utoipa::path(
    delete, path = "/v2/Services/{ServiceSid}/MessagingConfigurations/{Country}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Country" = String, Path, description = "ISO 3166-1 alpha-2, or `all`"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "None for this country (20404)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    TwPath((service_sid, country)): TwPath<(String, String)>,
) -> TwilioResult<StatusCode> {
    let mut service = find(&state, &service_sid).await?;
    let i = index_of(&service, &country)?;
    service.settings.messaging_configurations.remove(i);
    save_settings(&state, &mut service).await?;
    Ok(StatusCode::NO_CONTENT)
}
