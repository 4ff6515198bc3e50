//! `/v2/Services/{ServiceSid}/Webhooks` (Twilio's per-service webhooks): URLs that receive
//! the service's authenticator-factor events (`factor.created`, `factor.verified`,
//! `factor.deleted`, `challenge.approved`, or `*`), beside otpd's own Standard Webhooks.
//! Kept in the service's settings (`factor_webhooks`, see `otpd_core::factor_webhook`);
//! the messages are queued durably with the events and sent by the webhook senders
//! ([`super::webhook_messages`] builds and signs them).
//!
//! **The signing key.** Twilio signs with the account's auth token, which its SDKs' apps
//! hold; otpd's equivalent is the API key an app uses as that token. The key that creates
//! a webhook (or last updates it) signs its messages, so that `RequestValidator(<that
//! key>)` validates them; it is kept sealed with the server secret (otpd otherwise stores
//! keys only as digests), never shown, and checked to be still live before each message.
//! Updating a webhook with another key moves the signing to that key (how to move off a
//! revoked one).
//!
//! Changes are a read-modify-write of the service's settings: two admins editing one
//! service's webhooks at the same instant may lose one edit (the last write wins).

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use otpd_core::factor_webhook::{
    FactorWebhook, validate_event_types, validate_status, validate_version,
};
use otpd_core::ids::new_hex;
use otpd_core::service::Service;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::errors::{TwilioError, TwilioErrorBody, TwilioResult};
use super::form::{Params, TwilioForm};
use super::services::{find, save_settings};
use super::views::{ACCOUNT_SID, base_url, paged, twilio_date};
use super::{Paging, TwPath, TwilioPrincipal};
use crate::auth::PresentedKey;
use crate::state::AppState;

/// Most webhooks one service may have.
pub const MAX_WEBHOOKS: usize = 20;
/// Longest friendly name.
const MAX_FRIENDLY_NAME: usize = 64;

/// A Webhook resource.
#[derive(Serialize, ToSchema)]
pub struct TwWebhook {
    /// `YW…`
    pub sid: String,
    /// The service's `VA…`.
    pub service_sid: String,
    /// Always the placeholder account.
    pub account_sid: String,
    /// Its label.
    pub friendly_name: String,
    /// The events it receives.
    pub event_types: Vec<String>,
    /// `enabled` or `disabled`.
    pub status: String,
    /// `v1` or `v2`.
    pub version: String,
    /// Where messages go.
    pub webhook_url: String,
    /// Always `POST`.
    pub webhook_method: String,
    /// Created.
    pub date_created: String,
    /// Last change.
    pub date_updated: String,
    /// This resource.
    pub url: String,
}

impl TwWebhook {
    fn of(w: &FactorWebhook, service: &Service, base: &str) -> Self {
        TwWebhook {
            sid: w.sid.clone(),
            service_sid: service.sid.clone(),
            account_sid: ACCOUNT_SID.into(),
            friendly_name: w.friendly_name.clone(),
            event_types: w.event_types.clone(),
            status: w.status.clone(),
            version: w.version.clone(),
            webhook_url: w.url.clone(),
            webhook_method: "POST".into(),
            date_created: twilio_date(w.created_at),
            date_updated: twilio_date(w.updated_at),
            url: format!("{base}/v2/Services/{}/Webhooks/{}", service.sid, w.sid),
        }
    }
}

/// The webhook `sid` of `service`.
fn index_of(service: &Service, sid: &str) -> TwilioResult<usize> {
    service
        .settings
        .factor_webhooks
        .iter()
        .position(|w| w.sid == sid)
        .ok_or_else(|| {
            TwilioError::not_found(format!("/v2/Services/{}/Webhooks/{sid}", service.sid))
        })
}

/// The parameters a create or update may carry (absent: `None`).
struct Changes {
    friendly_name: Option<String>,
    event_types: Option<Vec<String>>,
    url: Option<String>,
    status: Option<String>,
    version: Option<String>,
}

impl Changes {
    /// Takes and checks the parameters (the URL against the SSRF rule).
    fn take(state: &AppState, p: &mut Params) -> TwilioResult<Self> {
        let friendly_name = p.take("FriendlyName");
        if let Some(n) = &friendly_name
            && (n.is_empty() || n.chars().count() > MAX_FRIENDLY_NAME)
        {
            return Err(TwilioError::invalid(format!(
                "Invalid parameter FriendlyName: 1 to {MAX_FRIENDLY_NAME} characters"
            )));
        }
        let types = p.take_all("EventTypes");
        let event_types = if types.is_empty() {
            None
        } else {
            Some(validate_event_types(types)?)
        };
        let url = p.take("WebhookUrl");
        if let Some(u) = &url {
            crate::outbound::check_target(u, state.config.webhooks.allow_private_targets)
                .map_err(|e| TwilioError::invalid(format!("Invalid parameter WebhookUrl: {e}")))?;
        }
        let status = p.take("Status");
        if let Some(s) = &status {
            validate_status(s)?;
        }
        let version = p.take("Version");
        if let Some(v) = &version {
            validate_version(v)?;
        }
        Ok(Changes {
            friendly_name,
            event_types,
            url,
            status,
            version,
        })
    }
}

/// Seals the caller's key as the webhook's signing key.
fn seal_key(state: &AppState, sid: &str, key: &PresentedKey) -> String {
    STANDARD.encode(state.secret.sealer().seal_str(sid, &key.0))
}

/// Create a webhook.
#[utoipa::path(
    post, path = "/v2/Services/{ServiceSid}/Webhooks", tag = "twilio-compatible",
    params(("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name")),
    request_body(content_type = "application/x-www-form-urlencoded", description = "`FriendlyName` (required, ≤64), `EventTypes` (required, repeated: `*`, `factor.created`, `factor.verified`, `factor.deleted`, `challenge.approved`, `challenge.denied`), `WebhookUrl` (required), `Status` (`enabled`, the default, or `disabled`), `Version` (`v2`, the default, or `v1`). Messages are signed with `X-Twilio-Signature` keyed by the calling API key.", example = json!("FriendlyName=factors&EventTypes=factor.verified&EventTypes=challenge.approved&WebhookUrl=https://example.com/verify-events")),
    responses(
        (status = 201, description = "Created", body = TwWebhook),
        (status = "4XX", description = "Refused (60200)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    TwilioPrincipal(principal): TwilioPrincipal,
    key: PresentedKey,
    headers: HeaderMap,
    TwPath(service_sid): TwPath<String>,
    form: TwilioForm,
) -> TwilioResult<(StatusCode, Json<TwWebhook>)> {
    let mut p = form.params;
    for required in ["FriendlyName", "EventTypes", "WebhookUrl"] {
        if !p.has(required) {
            return Err(TwilioError::invalid(format!(
                "Missing required parameter {required} in the post body"
            )));
        }
    }
    let changes = Changes::take(&state, &mut p)?;
    p.finish(&[])?;
    let mut service = find(&state, &service_sid).await?;
    if service.settings.factor_webhooks.len() >= MAX_WEBHOOKS {
        return Err(TwilioError::invalid(format!(
            "A service has at most {MAX_WEBHOOKS} webhooks"
        )));
    }
    let now = state.clock.now();
    let sid = format!("YW{}", new_hex());
    let webhook = FactorWebhook {
        sealed_key: seal_key(&state, &sid, &key),
        key_id: principal.key_id.clone(),
        sid,
        friendly_name: changes.friendly_name.unwrap_or_default(),
        event_types: changes.event_types.unwrap_or_default(),
        url: changes.url.unwrap_or_default(),
        status: changes.status.unwrap_or_else(|| "enabled".into()),
        version: changes.version.unwrap_or_else(|| "v2".into()),
        created_at: now,
        updated_at: now,
    };
    service.settings.factor_webhooks.push(webhook.clone());
    save_settings(&state, &mut service).await?;
    let base = base_url(&state.config, &headers);
    Ok((
        StatusCode::CREATED,
        Json(TwWebhook::of(&webhook, &service, &base)),
    ))
}

/// List a service's webhooks (key `webhooks`).
#[utoipa::path(
    get, path = "/v2/Services/{ServiceSid}/Webhooks", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u64>, Query, description = "Page number, from 0"),
        ("PageToken" = Option<String>, Query, description = "Token from `next_page_url`"),
    ),
    responses(
        (status = 200, description = "A page of webhooks (`webhooks`, `meta`)", body = Object),
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
    let url = format!("{base}/v2/Services/{}/Webhooks", service.sid);
    Ok(Json(paged(
        &service.settings.factor_webhooks,
        |w| TwWebhook::of(w, &service, &base),
        &paging,
        "webhooks",
        url,
    )))
}

/// Fetch a webhook.
#[utoipa::path(
    get, path = "/v2/Services/{ServiceSid}/Webhooks/{Sid}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Sid" = String, Path, description = "The webhook (`YW…`)"),
    ),
    responses(
        (status = 200, description = "The webhook", body = TwWebhook),
        (status = 404, description = "No such webhook (20404)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn fetch(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath((service_sid, sid)): TwPath<(String, String)>,
    RawQuery(query): RawQuery,
) -> TwilioResult<Json<TwWebhook>> {
    Params::from_query(query.as_deref())?.finish(&[])?;
    let service = find(&state, &service_sid).await?;
    let i = index_of(&service, &sid)?;
    let base = base_url(&state.config, &headers);
    Ok(Json(TwWebhook::of(
        &service.settings.factor_webhooks[i],
        &service,
        &base,
    )))
}

/// Change a webhook; the calling key becomes its signing key.
#[utoipa::path(
    post, path = "/v2/Services/{ServiceSid}/Webhooks/{Sid}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Sid" = String, Path, description = "The webhook (`YW…`)"),
    ),
    request_body(content_type = "application/x-www-form-urlencoded", description = "Any of `FriendlyName`, `EventTypes` (repeated; replaces the list), `WebhookUrl`, `Status`, `Version`. The calling API key signs its messages from now on.", example = json!("Status=disabled")),
    responses(
        (status = 200, description = "Updated", body = TwWebhook),
        (status = "4XX", description = "Refused or not found", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    TwilioPrincipal(principal): TwilioPrincipal,
    key: PresentedKey,
    headers: HeaderMap,
    TwPath((service_sid, sid)): TwPath<(String, String)>,
    form: TwilioForm,
) -> TwilioResult<Json<TwWebhook>> {
    let mut p = form.params;
    let changes = Changes::take(&state, &mut p)?;
    p.finish(&[])?;
    let mut service = find(&state, &service_sid).await?;
    let i = index_of(&service, &sid)?;
    let sealed_key = seal_key(&state, &sid, &key);
    let webhook = &mut service.settings.factor_webhooks[i];
    if let Some(v) = changes.friendly_name {
        webhook.friendly_name = v;
    }
    if let Some(v) = changes.event_types {
        webhook.event_types = v;
    }
    if let Some(v) = changes.url {
        webhook.url = v;
    }
    if let Some(v) = changes.status {
        webhook.status = v;
    }
    if let Some(v) = changes.version {
        webhook.version = v;
    }
    webhook.sealed_key = sealed_key;
    webhook.key_id = principal.key_id.clone();
    webhook.updated_at = state.clock.now();
    let webhook = webhook.clone();
    save_settings(&state, &mut service).await?;
    let base = base_url(&state.config, &headers);
    Ok(Json(TwWebhook::of(&webhook, &service, &base)))
}

/// Delete a webhook (messages still queued for it are dropped when they come due).
#[utoipa::path(
    delete, path = "/v2/Services/{ServiceSid}/Webhooks/{Sid}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Sid" = String, Path, description = "The webhook (`YW…`)"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such webhook (20404)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    TwPath((service_sid, sid)): TwPath<(String, String)>,
) -> TwilioResult<StatusCode> {
    let mut service = find(&state, &service_sid).await?;
    let i = index_of(&service, &sid)?;
    service.settings.factor_webhooks.remove(i);
    save_settings(&state, &mut service).await?;
    Ok(StatusCode::NO_CONTENT)
}
