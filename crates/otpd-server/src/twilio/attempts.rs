//! `/v2/Attempts`: Twilio's Verification Attempts, which are otpd's deliveries (`VL` + the
//! delivery id's hex): list with Twilio's filters and page envelope, and fetch (admin keys).

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use otpd_core::channel::Channel;
use otpd_core::ids::Kind;
use otpd_core::store::DeliveryFilter;
use serde_json::Value;

use super::errors::{TwilioError, TwilioErrorBody, TwilioResult};
use super::form::Params;
use super::views::{Page, TwAttempt, base_url, parse_channel};
use super::{Paging, TwPath, TwilioPrincipal};
use crate::auth::scoped_service_filter;
use crate::state::AppState;

/// Filters otpd does not offer (deliveries do not record a country to filter on).
const UNSUPPORTED: &[&str] = &["Country"];

/// Twilio's attempt channels (`verification_attempt_enum_channels`): the otpd channel of
/// one, or `None` for `rbm` (RCS Business Messaging), which otpd never sends over.
pub fn attempt_channel(name: &str) -> TwilioResult<Option<Channel>> {
    match name {
        "rbm" => Ok(None),
        other => parse_channel(other).map(Some).ok_or_else(|| {
            TwilioError::invalid("Invalid parameter Channel: sms, call, email, whatsapp or rbm")
        }),
    }
}

/// Parses an ISO 8601 date-time parameter.
pub fn date(name: &str, raw: Option<&str>) -> TwilioResult<Option<DateTime<Utc>>> {
    raw.map(|v| {
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                TwilioError::invalid(format!(
                    "Invalid parameter {name}: an ISO 8601 date-time such as 2024-01-01T00:00:00Z"
                ))
            })
    })
    .transpose()
}

/// List verification attempts, newest first.
#[utoipa::path(
    get, path = "/v2/Attempts", tag = "twilio-compatible",
    params(
        ("DateCreatedAfter" = Option<String>, Query, description = "ISO 8601"),
        ("DateCreatedBefore" = Option<String>, Query, description = "ISO 8601"),
        ("ChannelData.To" = Option<String>, Query, description = "Recipient (E.164 or email)"),
        ("Channel" = Option<String>, Query, description = "`sms`, `call`, `email`, `whatsapp`, `rbm` (otpd never sends over `rbm`: no attempts)"),
        ("VerifyServiceSid" = Option<String>, Query, description = "Service SID (an unknown one matches nothing)"),
        ("VerificationSid" = Option<String>, Query, description = "Verification SID"),
        ("Status" = Option<String>, Query, description = "`converted` or `unconverted`"),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u64>, Query, description = "Page number, from 0"),
        ("PageToken" = Option<String>, Query, description = "Token from `next_page_url`"),
    ),
    responses(
        (status = 200, description = "A page of attempts (`attempts`, `meta`)", body = Object),
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
    let mut filters: Vec<(String, String)> = Vec::new();
    let mut keep = |name: &str, v: &Option<String>| {
        if let Some(v) = v {
            filters.push((name.to_string(), v.clone()));
        }
    };
    let after_raw = p.take("DateCreatedAfter");
    let before_raw = p.take("DateCreatedBefore");
    keep("DateCreatedAfter", &after_raw);
    keep("DateCreatedBefore", &before_raw);
    let created_after = date("DateCreatedAfter", after_raw.as_deref())?;
    let created_before = date("DateCreatedBefore", before_raw.as_deref())?;
    let to = p.take("ChannelData.To");
    keep("ChannelData.To", &to);
    let channel_raw = p.take("Channel");
    keep("Channel", &channel_raw);
    // A channel of Twilio's enum that otpd never sends over (`rbm`) matches nothing.
    let channel = match channel_raw.as_deref() {
        None => None,
        Some(c) => Some(attempt_channel(c)?),
    };
    let service_sid = p.take("VerifyServiceSid");
    keep("VerifyServiceSid", &service_sid);
    // A filter, not a path: an unknown service matches nothing (an empty page, not 404).
    let service = match &service_sid {
        Some(sid) => Some(state.store.find_service(sid).await?.map(|s| s.id)),
        None => None,
    };
    let service_id = match &service {
        Some(Some(id)) => scoped_service_filter(&state, &principal, Some(id)).await?,
        Some(None) => None,
        None => scoped_service_filter(&state, &principal, None).await?,
    };
    let matches_nothing = matches!(service, Some(None)) || matches!(channel, Some(None));
    let channel = channel.flatten();
    let verification_sid = p.take("VerificationSid");
    keep("VerificationSid", &verification_sid);
    let verification_id = verification_sid
        .as_deref()
        .map(|sid| {
            Kind::Verification
                .id_of_sid(sid)
                .ok_or_else(|| TwilioError::invalid("Invalid parameter VerificationSid"))
        })
        .transpose()?;
    let status = p.take("Status");
    keep("Status", &status);
    let converted = match status.as_deref() {
        None => None,
        Some("converted") => Some(true),
        Some("unconverted") => Some(false),
        Some(_) => {
            return Err(TwilioError::invalid(
                "Invalid parameter Status: converted or unconverted",
            ));
        }
    };
    let paging = Paging::take(&mut p)?;
    p.finish(UNSUPPORTED)?;

    let filter = DeliveryFilter {
        service_id,
        verification_id,
        channel,
        to,
        created_after,
        created_before,
        converted,
        offset: paging.offset,
        limit: paging.page_size + 1,
    };
    let mut records = if matches_nothing {
        Vec::new()
    } else {
        state.store.list_deliveries(&filter).await?
    };
    let has_more = records.len() > paging.page_size as usize;
    records.truncate(paging.page_size as usize);
    let base = base_url(&state.config, &headers);
    let now = state.clock.now();
    let items: Vec<TwAttempt> = records
        .iter()
        .map(|r| TwAttempt::of(r, &base, now))
        .collect();
    let page = Page {
        key: "attempts",
        list_url: format!("{base}/v2/Attempts"),
        filters,
        page: paging.page,
        page_size: paging.page_size,
        has_more,
    };
    Ok(Json(
        page.wrap(serde_json::to_value(items).unwrap_or_default()),
    ))
}

/// Fetch one verification attempt.
#[utoipa::path(
    get, path = "/v2/Attempts/{Sid}", tag = "twilio-compatible",
    params(("Sid" = String, Path, description = "Attempt SID (`VL…`)")),
    responses(
        (status = 200, description = "The attempt", body = TwAttempt),
        (status = 404, description = "No such attempt (20404)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn fetch(
    State(state): State<AppState>,
    TwilioPrincipal(principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath(sid): TwPath<String>,
    RawQuery(query): RawQuery,
) -> TwilioResult<Json<TwAttempt>> {
    Params::from_query(query.as_deref())?.finish(&[])?;
    let not_found = || TwilioError::not_found(format!("/v2/Attempts/{sid}"));
    let id = Kind::Delivery.id_of_sid(&sid).ok_or_else(not_found)?;
    let record = state
        .store
        .get_delivery(&id)
        .await?
        .filter(|r| principal.may_use_service(&r.service_id))
        .ok_or_else(not_found)?;
    Ok(Json(TwAttempt::of(
        &record,
        &base_url(&state.config, &headers),
        state.clock.now(),
    )))
}
