//! `/v2/SafeList/Numbers`: Twilio's Safe List — phone numbers exempt from the fraud guards
//! (geo permissions, number type, pumping), never from the send limits, proof of work,
//! budget or the lockout after wrong codes. One list for the deployment (Twilio's is one
//! per account), kept by the store (`otpd_core::store::SafeListStore`), so durable on every
//! backend; global admin keys only.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use otpd_core::recipient::PhoneNumber;
use otpd_core::store::SafeNumber;
use serde::Serialize;

use super::errors::{TwilioError, TwilioErrorBody, TwilioResult};
use super::form::{Params, TwilioForm};
use super::views::base_url;
use super::{TwPath, TwilioPrincipal};
use crate::state::AppState;

/// A safe-list entry (`verify.v2.safelist`).
#[derive(Serialize, utoipa::ToSchema, Debug)]
pub struct TwSafeNumber {
    /// `GN…`
    pub sid: String,
    /// The number, E.164.
    pub phone_number: String,
    /// This resource's absolute URL.
    pub url: String,
}

impl TwSafeNumber {
    fn of(n: &SafeNumber, base: &str) -> Self {
        TwSafeNumber {
            sid: n.sid.clone(),
            url: format!("{base}/v2/SafeList/Numbers/{}", n.phone_number),
            phone_number: n.phone_number.clone(),
        }
    }
}

/// The E.164 form of a `PhoneNumber` (with its `+`), or 60200.
fn e164(raw: &str) -> TwilioResult<String> {
    if !raw.trim_start().starts_with('+') {
        return Err(TwilioError::invalid(
            "Invalid parameter PhoneNumber: an E.164 number with its +",
        ));
    }
    PhoneNumber::parse(raw, None)
        .map(|p| p.e164().to_string())
        .map_err(|_| TwilioError::invalid("Invalid parameter PhoneNumber: not a valid number"))
}

/// Add a number to the safe list.
#[utoipa::path(
    post, path = "/v2/SafeList/Numbers", tag = "twilio-compatible",
    request_body(content_type = "application/x-www-form-urlencoded", description = "`PhoneNumber` (E.164, required). Adding a listed number again answers its entry.", example = json!("PhoneNumber=%2B14155550123")),
    responses(
        (status = 201, description = "On the list", body = TwSafeNumber),
        (status = "4XX", description = "Refused", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
#[tracing::instrument(skip_all)]
pub async fn create(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    headers: HeaderMap,
    form: TwilioForm,
) -> TwilioResult<(StatusCode, Json<TwSafeNumber>)> {
    let mut p = form.params;
    let phone_number = e164(&p.required("PhoneNumber")?)?;
    p.finish(&[])?;
    let entry = SafeNumber {
        sid: format!("GN{}", otpd_core::ids::new_hex()),
        phone_number,
        created_at: state.clock.now(),
    };
    let entry = state.store.add_safe_number(&entry).await?;
    tracing::info!(sid = %entry.sid, "number added to the safe list");
    Ok((
        StatusCode::CREATED,
        Json(TwSafeNumber::of(&entry, &base_url(&state.config, &headers))),
    ))
}

/// Fetch a number's safe-list entry.
#[utoipa::path(
    get, path = "/v2/SafeList/Numbers/{PhoneNumber}", tag = "twilio-compatible",
    params(("PhoneNumber" = String, Path, description = "E.164 number")),
    responses(
        (status = 200, description = "On the list", body = TwSafeNumber),
        (status = 404, description = "Not on the list (20404)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn fetch(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath(raw): TwPath<String>,
    RawQuery(query): RawQuery,
) -> TwilioResult<Json<TwSafeNumber>> {
    Params::from_query(query.as_deref())?.finish(&[])?;
    let phone_number = e164(&raw)?;
    let entry = state
        .store
        .safe_number(&phone_number)
        .await?
        .ok_or_else(|| TwilioError::not_found("/v2/SafeList/Numbers/{PhoneNumber}"))?;
    Ok(Json(TwSafeNumber::of(
        &entry,
        &base_url(&state.config, &headers),
    )))
}

/// Remove a number from the safe list.
#[utoipa::path(
    delete, path = "/v2/SafeList/Numbers/{PhoneNumber}", tag = "twilio-compatible",
    params(("PhoneNumber" = String, Path, description = "E.164 number")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "Not on the list (20404)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
#[tracing::instrument(skip_all)]
pub async fn delete(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    TwPath(raw): TwPath<String>,
    RawQuery(query): RawQuery,
) -> TwilioResult<StatusCode> {
    Params::from_query(query.as_deref())?.finish(&[])?;
    let phone_number = e164(&raw)?;
    if state.store.remove_safe_number(&phone_number).await? {
        tracing::info!("number removed from the safe list");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(TwilioError::not_found("/v2/SafeList/Numbers/{PhoneNumber}"))
    }
}
