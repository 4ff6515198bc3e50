//! `/v2/Services`: create, fetch, update, list and delete services (admin keys), with
//! Twilio's settings mapped to otpd's service configuration:
//! `FriendlyName` → `friendly_name`, `CodeLength` → `code_length`, `LookupEnabled`,
//! `SkipSmsToLandlines`, `DoNotShareWarningEnabled`, `CustomCodeEnabled`,
//! `DefaultTemplateSid` → the settings of the same names, and the otpd extension
//! `OtpdStatusCallback` → `status_callback_url`. A service created here gets a unique
//! native `name` derived from its friendly name and id.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use otpd_core::code::{MAX_CODE_LENGTH, MIN_CODE_LENGTH};
use otpd_core::ids::Kind;
use otpd_core::service::{DEFAULT_SERVICE, Service, ServicePatch, ServiceSettings};
use otpd_core::store::StoreError;
use serde_json::Value;

use super::errors::{TwilioError, TwilioErrorBody, TwilioResult};
use super::form::{Params, TwilioForm};
use super::views::{TwService, base_url, paged};
use super::{Paging, TwPath, TwilioPrincipal};
use crate::state::AppState;

/// Longest `FriendlyName` (Twilio's limit).
const MAX_FRIENDLY_NAME: usize = 32;
/// Random hex digits of the id appended to a derived name.
const NAME_SUFFIX: usize = 8;

/// Twilio service parameters otpd refuses (features it does not have).
const UNSUPPORTED: &[&str] = &["TtsName", "Push.", "Totp.", "Whatsapp.", "Passkeys."];

/// Takes the settings parameters shared by create and update.
fn take_settings(p: &mut Params) -> TwilioResult<ServicePatch> {
    let mut patch = ServicePatch::default();
    if let Some(name) = p.take("FriendlyName") {
        if otpd_core::text::one_line("FriendlyName", &name, MAX_FRIENDLY_NAME).is_err() {
            return Err(TwilioError::invalid(
                "Invalid parameter FriendlyName: 1-32 characters",
            ));
        }
        patch.friendly_name = Some(name);
    }
    if let Some(n) = p.take_parsed::<u8>("CodeLength")? {
        if !(MIN_CODE_LENGTH..=MAX_CODE_LENGTH).contains(&n) {
            return Err(TwilioError::invalid(
                "Invalid parameter CodeLength: must be 4-10",
            ));
        }
        patch.code_length = Some(n);
    }
    patch.lookup_enabled = p.take_bool("LookupEnabled")?;
    patch.skip_sms_to_landlines = p.take_bool("SkipSmsToLandlines")?;
    patch.do_not_share_warning = p.take_bool("DoNotShareWarningEnabled")?;
    patch.custom_code_enabled = p.take_bool("CustomCodeEnabled")?;
    patch.default_template_sid = p.take("DefaultTemplateSid");
    patch.status_callback_url = p.take("OtpdStatusCallback");
    p.only_false("Psd2Enabled")?;
    p.only_false("DtmfInputRequired")?;
    p.only_false("VerifyEventSubscriptionEnabled")?;
    Ok(patch)
}

/// Applies a patch and checks a status callback target against the SSRF rule.
fn apply(
    state: &AppState,
    patch: ServicePatch,
    to: &ServiceSettings,
) -> TwilioResult<ServiceSettings> {
    let settings = patch.apply(to)?;
    if let Some(url) = &settings.status_callback_url {
        crate::outbound::check_target(url, state.config.webhooks.allow_private_targets).map_err(
            |e| TwilioError::invalid(format!("Invalid parameter OtpdStatusCallback: {e}")),
        )?;
    }
    Ok(settings)
}

/// A native name for a service created on `/v2`: its friendly name as a slug plus the
/// random end of its id (`my-app-3f9c20d1`), or the whole id hex when that is taken.
fn derived_name(friendly: &str, id: &str, full: bool) -> String {
    let slug: String = friendly
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug: Vec<&str> = slug.split('-').filter(|s| !s.is_empty()).collect();
    let slug: String = slug.join("-").chars().take(40).collect();
    let hex = id.strip_prefix("svc_").unwrap_or(id);
    let suffix = if full {
        hex
    } else {
        &hex[hex.len().saturating_sub(NAME_SUFFIX)..]
    };
    let slug = if slug.is_empty() {
        "verify"
    } else {
        slug.as_str()
    };
    format!("{}-{suffix}", slug.trim_end_matches('-'))
}

/// The service named by a path (its `VA…` sid or native name), or 20404.
pub(super) async fn find(state: &AppState, sid: &str) -> TwilioResult<Service> {
    state
        .store
        .find_service(sid)
        .await?
        .ok_or_else(|| TwilioError::not_found(format!("/v2/Services/{sid}")))
}

/// Stores a service whose settings a `/v2` sub-resource changed (rate limits, messaging
/// configurations), stamping its update time.
pub(super) async fn save_settings(state: &AppState, service: &mut Service) -> TwilioResult<()> {
    service.updated_at = state.clock.now();
    state.store.update_service(service, None).await?;
    Ok(())
}

/// Create a service.
#[utoipa::path(
    post, path = "/v2/Services", tag = "twilio-compatible",
    request_body(content_type = "application/x-www-form-urlencoded", description = "`FriendlyName` (required, ≤32), `CodeLength` (4–10), `LookupEnabled`, `SkipSmsToLandlines`, `DoNotShareWarningEnabled`, `CustomCodeEnabled`, `DefaultTemplateSid`, otpd's `OtpdStatusCallback`; `Psd2Enabled`, `DtmfInputRequired`, `VerifyEventSubscriptionEnabled` only `false`. Others: 400 / 60200.", example = json!("FriendlyName=Acme&CodeLength=6")),
    responses(
        (status = 201, description = "Created", body = TwService),
        (status = "4XX", description = "Refused", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    headers: HeaderMap,
    form: TwilioForm,
) -> TwilioResult<(StatusCode, Json<TwService>)> {
    let mut p = form.params;
    let friendly = p.required("FriendlyName")?;
    let mut patch = take_settings(&mut p)?;
    p.finish(UNSUPPORTED)?;
    patch.friendly_name = Some(friendly.clone());
    // Twilio's default: no "don't share" sentence unless asked for.
    patch.do_not_share_warning = Some(patch.do_not_share_warning.unwrap_or(false));
    let settings = apply(&state, patch, &ServiceSettings::default())?;
    let now = state.clock.now();
    let id = Kind::Service.new_id();
    let mut service = Service {
        sid: Kind::Service.sid_of(&id),
        name: derived_name(&friendly, &id, false),
        id,
        settings,
        webhook_secret: None,
        created_at: now,
        updated_at: now,
    };
    match state.store.create_service(&service, None).await {
        Err(StoreError::Conflict(_)) => {
            service.name = derived_name(&friendly, &service.id, true);
            state.store.create_service(&service, None).await?;
        }
        other => other?,
    }
    tracing::info!(service = %service.name, "service created on /v2");
    Ok((
        StatusCode::CREATED,
        Json(TwService::of(&service, &base_url(&state.config, &headers))),
    ))
}

/// Fetch a service (by SID; its native name works too).
#[utoipa::path(
    get, path = "/v2/Services/{Sid}", tag = "twilio-compatible",
    params(("Sid" = String, Path, description = "Service SID (`VA…`) or native name")),
    responses(
        (status = 200, description = "The service", body = TwService),
        (status = 404, description = "No such service (20404)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn fetch(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath(sid): TwPath<String>,
    RawQuery(query): RawQuery,
) -> TwilioResult<Json<TwService>> {
    Params::from_query(query.as_deref())?.finish(&[])?;
    let service = find(&state, &sid).await?;
    Ok(Json(TwService::of(
        &service,
        &base_url(&state.config, &headers),
    )))
}

/// Update a service.
#[utoipa::path(
    post, path = "/v2/Services/{Sid}", tag = "twilio-compatible",
    params(("Sid" = String, Path, description = "Service SID (`VA…`) or native name")),
    request_body(content_type = "application/x-www-form-urlencoded", description = "The create parameters, all optional.", example = json!("FriendlyName=Acme%20Login&CodeLength=8")),
    responses(
        (status = 200, description = "Updated", body = TwService),
        (status = "4XX", description = "Refused", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath(sid): TwPath<String>,
    form: TwilioForm,
) -> TwilioResult<Json<TwService>> {
    let mut p = form.params;
    let patch = take_settings(&mut p)?;
    p.finish(UNSUPPORTED)?;
    let mut service = find(&state, &sid).await?;
    service.settings = apply(&state, patch, &service.settings)?;
    service.updated_at = state.clock.now();
    state.store.update_service(&service, None).await?;
    Ok(Json(TwService::of(
        &service,
        &base_url(&state.config, &headers),
    )))
}

/// List services, in Twilio's page envelope (key `services`).
#[utoipa::path(
    get, path = "/v2/Services", tag = "twilio-compatible",
    params(
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u64>, Query, description = "Page number, from 0"),
        ("PageToken" = Option<String>, Query, description = "Token from `next_page_url`"),
    ),
    responses(
        (status = 200, description = "A page of services (`services`, `meta`)", body = Object),
        (status = "4XX", description = "Refused", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    TwilioPrincipal(principal): TwilioPrincipal,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> TwilioResult<Json<Value>> {
    let mut p = Params::from_query(query.as_deref())?;
    let paging = Paging::take(&mut p)?;
    p.finish(&[])?;
    let base = base_url(&state.config, &headers);
    let mut all = state.store.list_services().await?;
    all.retain(|s| principal.may_use_service(&s.id));
    Ok(Json(paged(
        &all,
        |s| TwService::of(s, &base),
        &paging,
        "services",
        format!("{base}/v2/Services"),
    )))
}

/// Delete a service and its verifications (not the `default` service).
#[utoipa::path(
    delete, path = "/v2/Services/{Sid}", tag = "twilio-compatible",
    params(("Sid" = String, Path, description = "Service SID (`VA…`) or native name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = "4XX", description = "Refused or not found", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    TwPath(sid): TwPath<String>,
) -> TwilioResult<StatusCode> {
    let service = find(&state, &sid).await?;
    if service.name == DEFAULT_SERVICE {
        return Err(TwilioError::invalid(
            "the default service cannot be deleted",
        ));
    }
    state.store.delete_service(&service.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_are_valid_native_names() {
        let id = "svc_0190f2a3b4c5d6e7f8091a2b3c4d5e6f";
        let name = derived_name("My App!", id, false);
        assert_eq!(name, "my-app-3c4d5e6f");
        assert!(otpd_core::service::validate_name(&name).is_ok());
        let name = derived_name("Привет", id, true);
        assert_eq!(name, "verify-0190f2a3b4c5d6e7f8091a2b3c4d5e6f");
        assert!(otpd_core::service::validate_name(&name).is_ok());
    }

    #[test]
    fn settings_parameters_map_and_unsupported_ones_are_refused() {
        let mut p = Params::parse(
            b"FriendlyName=Acme&CodeLength=8&SkipSmsToLandlines=true&DoNotShareWarningEnabled=true&CustomCodeEnabled=true&Psd2Enabled=false",
        )
        .unwrap();
        let patch = take_settings(&mut p).unwrap();
        assert!(p.finish(UNSUPPORTED).is_ok());
        let s = patch.apply(&ServiceSettings::default()).unwrap();
        assert_eq!(s.code_length, 8);
        assert!(s.skip_sms_to_landlines && s.custom_code_enabled);
        assert_eq!(s.do_not_share_warning, Some(true));

        let mut p = Params::parse(b"CodeLength=3").unwrap();
        assert_eq!(take_settings(&mut p).err().map(|e| e.code()), Some(60200));
        let mut p = Params::parse(b"Psd2Enabled=true").unwrap();
        assert!(take_settings(&mut p).is_err());
        let mut p = Params::parse(b"Totp.Issuer=Acme").unwrap();
        let _ = take_settings(&mut p).unwrap();
        assert!(p.finish(UNSUPPORTED).is_err());
    }
}
