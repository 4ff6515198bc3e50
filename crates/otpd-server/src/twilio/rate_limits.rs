//! `/v2/Services/{ServiceSid}/RateLimits` and their `Buckets` (Twilio's Service Rate
//! Limits): named limits with buckets of `Max` sends per `Interval` seconds, kept in the
//! service's settings (`keyed_rate_limits`) and enforced by otpd's rate limiter
//! (`otpd_core::guards::keyed`) for starts that name them in `RateLimits`
//! (`{"<UniqueName>": "<key>"}`), over every node.
//!
//! Changes are a read-modify-write of the service's settings: two admins editing one
//! service's limits at the same instant may lose one edit (the last write wins).

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use otpd_core::guards::keyed::{
    self, KeyedBucket, KeyedLimit, MAX_BUCKETS, MAX_LIMITS, validate_bucket, validate_unique_name,
};
use otpd_core::service::Service;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::errors::{TwilioError, TwilioErrorBody, TwilioResult};
use super::form::{Params, TwilioForm};
use super::services::{find, save_settings};
use super::views::{ACCOUNT_SID, base_url, paged, twilio_date};
use super::{Paging, TwPath, TwilioPrincipal};
use crate::state::AppState;

/// Twilio's error for a service at its most rate limits.
const MAX_RATE_LIMITS_CODE: u32 = 60207;
/// Twilio's error for a rate limit at its most buckets.
const MAX_BUCKETS_CODE: u32 = 60210;

/// A Rate Limit resource.
#[derive(Serialize, ToSchema)]
pub struct TwRateLimit {
    /// `RK…`
    pub sid: String,
    /// The service's `VA…`.
    pub service_sid: String,
    /// Always the placeholder account.
    pub account_sid: String,
    /// The name starts refer to it by in `RateLimits`.
    pub unique_name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Created.
    pub date_created: String,
    /// Last change.
    pub date_updated: String,
    /// This resource.
    pub url: String,
    /// `buckets`.
    #[schema(value_type = Object)]
    pub links: Value,
}

impl TwRateLimit {
    fn of(l: &KeyedLimit, service: &Service, base: &str) -> Self {
        let url = format!("{base}/v2/Services/{}/RateLimits/{}", service.sid, l.id);
        TwRateLimit {
            sid: l.id.clone(),
            service_sid: service.sid.clone(),
            account_sid: ACCOUNT_SID.into(),
            unique_name: l.unique_name.clone(),
            description: l.description.clone(),
            date_created: twilio_date(l.created_at),
            date_updated: twilio_date(l.updated_at),
            links: json!({ "buckets": format!("{url}/Buckets") }),
            url,
        }
    }
}

/// A Bucket resource.
#[derive(Serialize, ToSchema)]
pub struct TwBucket {
    /// `BL…`
    pub sid: String,
    /// Its rate limit's `RK…`.
    pub rate_limit_sid: String,
    /// The service's `VA…`.
    pub service_sid: String,
    /// Always the placeholder account.
    pub account_sid: String,
    /// Sends allowed per interval for one key.
    pub max: u32,
    /// The interval, in seconds.
    pub interval: u32,
    /// Created.
    pub date_created: String,
    /// Last change.
    pub date_updated: String,
    /// This resource.
    pub url: String,
}

impl TwBucket {
    fn of(b: &KeyedBucket, limit: &KeyedLimit, service: &Service, base: &str) -> Self {
        TwBucket {
            sid: b.id.clone(),
            rate_limit_sid: limit.id.clone(),
            service_sid: service.sid.clone(),
            account_sid: ACCOUNT_SID.into(),
            max: b.max,
            interval: b.interval_seconds,
            date_created: twilio_date(b.created_at),
            date_updated: twilio_date(b.updated_at),
            url: format!(
                "{base}/v2/Services/{}/RateLimits/{}/Buckets/{}",
                service.sid, limit.id, b.id
            ),
        }
    }
}

/// The index of the rate limit `sid` (or unique name) in `service`.
fn limit_index(service: &Service, sid: &str) -> TwilioResult<usize> {
    service
        .settings
        .keyed_rate_limits
        .iter()
        .position(|l| l.id == sid || l.unique_name == sid)
        .ok_or_else(|| {
            TwilioError::not_found(format!("/v2/Services/{}/RateLimits/{sid}", service.sid))
        })
}

/// Takes `Max` and `Interval` (required on create, optional on update) and checks them.
fn bucket_numbers(p: &mut Params, current: Option<&KeyedBucket>) -> TwilioResult<(u32, u32)> {
    let max = p.take_parsed::<u32>("Max")?;
    let interval = p.take_parsed::<u32>("Interval")?;
    let (max, interval) = match current {
        Some(b) => (max.unwrap_or(b.max), interval.unwrap_or(b.interval_seconds)),
        None => (
            max.ok_or_else(|| TwilioError::invalid("Missing required parameter Max"))?,
            interval.ok_or_else(|| TwilioError::invalid("Missing required parameter Interval"))?,
        ),
    };
    validate_bucket(max, interval)?;
    Ok((max, interval))
}

/// Create a rate limit.
#[utoipa::path(
    post, path = "/v2/Services/{ServiceSid}/RateLimits", tag = "twilio-compatible",
    params(("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name")),
    request_body(content_type = "application/x-www-form-urlencoded", description = "`UniqueName` (required: 1–64 of letters, digits, `_`, `-`, `.`), `Description`.", example = json!("UniqueName=end_user_ip&Description=Per%20end%20user")),
    responses(
        (status = 201, description = "Created", body = TwRateLimit),
        (status = "4XX", description = "Refused (60200; 60207 at 100 limits; 20409 a taken name)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath(service_sid): TwPath<String>,
    form: TwilioForm,
) -> TwilioResult<(StatusCode, Json<TwRateLimit>)> {
    let mut p = form.params;
    let unique_name = p.required("UniqueName")?;
    let description = p.take("Description");
    p.finish(&[])?;
    validate_unique_name(&unique_name)?;
    if let Some(d) = &description {
        otpd_core::text::one_line("Description", d, keyed::MAX_NAME)?;
    }
    let mut service = find(&state, &service_sid).await?;
    let limits = &mut service.settings.keyed_rate_limits;
    if limits.iter().any(|l| l.unique_name == unique_name) {
        return Err(TwilioError::new(
            StatusCode::CONFLICT,
            super::errors::code::CONFLICT,
            format!("A rate limit named '{unique_name}' already exists in this service"),
        ));
    }
    if limits.len() >= MAX_LIMITS {
        return Err(TwilioError::new(
            StatusCode::BAD_REQUEST,
            MAX_RATE_LIMITS_CODE,
            format!("Max rate limits reached: a service has at most {MAX_LIMITS}"),
        ));
    }
    let now = state.clock.now();
    let limit = KeyedLimit {
        id: format!("RK{}", otpd_core::ids::new_hex()),
        unique_name,
        description,
        buckets: Vec::new(),
        created_at: now,
        updated_at: now,
    };
    limits.push(limit.clone());
    save_settings(&state, &mut service).await?;
    let base = base_url(&state.config, &headers);
    Ok((
        StatusCode::CREATED,
        Json(TwRateLimit::of(&limit, &service, &base)),
    ))
}

/// List a service's rate limits (key `rate_limits`).
#[utoipa::path(
    get, path = "/v2/Services/{ServiceSid}/RateLimits", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u64>, Query, description = "Page number, from 0"),
        ("PageToken" = Option<String>, Query, description = "Token from `next_page_url`"),
    ),
    responses(
        (status = 200, description = "A page of rate limits (`rate_limits`, `meta`)", body = Object),
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
    let url = format!("{base}/v2/Services/{}/RateLimits", service.sid);
    Ok(Json(paged(
        &service.settings.keyed_rate_limits,
        |l| TwRateLimit::of(l, &service, &base),
        &paging,
        "rate_limits",
        url,
    )))
}

/// Fetch a rate limit (by `RK…` sid or unique name).
#[utoipa::path(
    get, path = "/v2/Services/{ServiceSid}/RateLimits/{Sid}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Sid" = String, Path, description = "Rate limit SID (`RK…`) or unique name"),
    ),
    responses(
        (status = 200, description = "The rate limit", body = TwRateLimit),
        (status = 404, description = "No such rate limit (20404)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn fetch(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath((service_sid, sid)): TwPath<(String, String)>,
    RawQuery(query): RawQuery,
) -> TwilioResult<Json<TwRateLimit>> {
    Params::from_query(query.as_deref())?.finish(&[])?;
    let service = find(&state, &service_sid).await?;
    let i = limit_index(&service, &sid)?;
    let base = base_url(&state.config, &headers);
    Ok(Json(TwRateLimit::of(
        &service.settings.keyed_rate_limits[i],
        &service,
        &base,
    )))
}

/// Update a rate limit's description.
#[utoipa::path(
    post, path = "/v2/Services/{ServiceSid}/RateLimits/{Sid}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Sid" = String, Path, description = "Rate limit SID (`RK…`) or unique name"),
    ),
    request_body(content_type = "application/x-www-form-urlencoded", description = "`Description`.", example = json!("Description=Per%20session")),
    responses(
        (status = 200, description = "Updated", body = TwRateLimit),
        (status = "4XX", description = "Refused or not found", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath((service_sid, sid)): TwPath<(String, String)>,
    form: TwilioForm,
) -> TwilioResult<Json<TwRateLimit>> {
    let mut p = form.params;
    let description = p.take("Description");
    p.finish(&[])?;
    if let Some(d) = &description {
        otpd_core::text::one_line("Description", d, keyed::MAX_NAME)?;
    }
    let mut service = find(&state, &service_sid).await?;
    let i = limit_index(&service, &sid)?;
    let now = state.clock.now();
    let limit = &mut service.settings.keyed_rate_limits[i];
    if description.is_some() {
        limit.description = description;
    }
    limit.updated_at = now;
    let limit = limit.clone();
    save_settings(&state, &mut service).await?;
    let base = base_url(&state.config, &headers);
    Ok(Json(TwRateLimit::of(&limit, &service, &base)))
}

/// Delete a rate limit and its buckets.
#[utoipa::path(
    delete, path = "/v2/Services/{ServiceSid}/RateLimits/{Sid}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("Sid" = String, Path, description = "Rate limit SID (`RK…`) or unique name"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such rate limit (20404)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    TwPath((service_sid, sid)): TwPath<(String, String)>,
) -> TwilioResult<StatusCode> {
    let mut service = find(&state, &service_sid).await?;
    let i = limit_index(&service, &sid)?;
    service.settings.keyed_rate_limits.remove(i);
    save_settings(&state, &mut service).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The index of bucket `sid` in rate limit `limit` of `service`.
fn bucket_index(service: &Service, limit: usize, sid: &str) -> TwilioResult<usize> {
    let l = &service.settings.keyed_rate_limits[limit];
    l.buckets.iter().position(|b| b.id == sid).ok_or_else(|| {
        TwilioError::not_found(format!(
            "/v2/Services/{}/RateLimits/{}/Buckets/{sid}",
            service.sid, l.id
        ))
    })
}

/// Create a bucket.
#[utoipa::path(
    post, path = "/v2/Services/{ServiceSid}/RateLimits/{RateLimitSid}/Buckets", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("RateLimitSid" = String, Path, description = "Rate limit SID (`RK…`) or unique name"),
    ),
    request_body(content_type = "application/x-www-form-urlencoded", description = "`Max` (required, 1–1,000,000) sends per `Interval` (required, 1–86,400 seconds) for one key.", example = json!("Max=5&Interval=60")),
    responses(
        (status = 201, description = "Created", body = TwBucket),
        (status = "4XX", description = "Refused (60200; 60210 at 10 buckets)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn create_bucket(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath((service_sid, limit_sid)): TwPath<(String, String)>,
    form: TwilioForm,
) -> TwilioResult<(StatusCode, Json<TwBucket>)> {
    let mut p = form.params;
    let (max, interval) = bucket_numbers(&mut p, None)?;
    p.finish(&[])?;
    let mut service = find(&state, &service_sid).await?;
    let i = limit_index(&service, &limit_sid)?;
    let now = state.clock.now();
    let limit = &mut service.settings.keyed_rate_limits[i];
    if limit.buckets.len() >= MAX_BUCKETS {
        return Err(TwilioError::new(
            StatusCode::BAD_REQUEST,
            MAX_BUCKETS_CODE,
            format!("Max buckets reached: a rate limit has at most {MAX_BUCKETS}"),
        ));
    }
    let bucket = KeyedBucket {
        id: format!("BL{}", otpd_core::ids::new_hex()),
        max,
        interval_seconds: interval,
        created_at: now,
        updated_at: now,
    };
    limit.buckets.push(bucket.clone());
    limit.updated_at = now;
    let limit = limit.clone();
    save_settings(&state, &mut service).await?;
    let base = base_url(&state.config, &headers);
    Ok((
        StatusCode::CREATED,
        Json(TwBucket::of(&bucket, &limit, &service, &base)),
    ))
}

/// List a rate limit's buckets (key `buckets`).
#[utoipa::path(
    get, path = "/v2/Services/{ServiceSid}/RateLimits/{RateLimitSid}/Buckets", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("RateLimitSid" = String, Path, description = "Rate limit SID (`RK…`) or unique name"),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u64>, Query, description = "Page number, from 0"),
        ("PageToken" = Option<String>, Query, description = "Token from `next_page_url`"),
    ),
    responses(
        (status = 200, description = "A page of buckets (`buckets`, `meta`)", body = Object),
        (status = "4XX", description = "Refused or not found", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn list_buckets(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath((service_sid, limit_sid)): TwPath<(String, String)>,
    RawQuery(query): RawQuery,
) -> TwilioResult<Json<Value>> {
    let mut p = Params::from_query(query.as_deref())?;
    let paging = Paging::take(&mut p)?;
    p.finish(&[])?;
    let service = find(&state, &service_sid).await?;
    let limit = &service.settings.keyed_rate_limits[limit_index(&service, &limit_sid)?];
    let base = base_url(&state.config, &headers);
    let url = format!(
        "{base}/v2/Services/{}/RateLimits/{}/Buckets",
        service.sid, limit.id
    );
    Ok(Json(paged(
        &limit.buckets,
        |b| TwBucket::of(b, limit, &service, &base),
        &paging,
        "buckets",
        url,
    )))
}

/// Fetch a bucket.
#[utoipa::path(
    get, path = "/v2/Services/{ServiceSid}/RateLimits/{RateLimitSid}/Buckets/{Sid}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("RateLimitSid" = String, Path, description = "Rate limit SID (`RK…`) or unique name"),
        ("Sid" = String, Path, description = "Bucket SID (`BL…`)"),
    ),
    responses(
        (status = 200, description = "The bucket", body = TwBucket),
        (status = 404, description = "No such bucket (20404)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn fetch_bucket(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath((service_sid, limit_sid, sid)): TwPath<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> TwilioResult<Json<TwBucket>> {
    Params::from_query(query.as_deref())?.finish(&[])?;
    let service = find(&state, &service_sid).await?;
    let i = limit_index(&service, &limit_sid)?;
    let j = bucket_index(&service, i, &sid)?;
    let limit = &service.settings.keyed_rate_limits[i];
    let base = base_url(&state.config, &headers);
    Ok(Json(TwBucket::of(
        &limit.buckets[j],
        limit,
        &service,
        &base,
    )))
}

/// Update a bucket's `Max` or `Interval`.
#[utoipa::path(
    post, path = "/v2/Services/{ServiceSid}/RateLimits/{RateLimitSid}/Buckets/{Sid}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("RateLimitSid" = String, Path, description = "Rate limit SID (`RK…`) or unique name"),
        ("Sid" = String, Path, description = "Bucket SID (`BL…`)"),
    ),
    request_body(content_type = "application/x-www-form-urlencoded", description = "`Max`, `Interval` (each optional).", example = json!("Max=10")),
    responses(
        (status = 200, description = "Updated", body = TwBucket),
        (status = "4XX", description = "Refused or not found", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn update_bucket(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    headers: HeaderMap,
    TwPath((service_sid, limit_sid, sid)): TwPath<(String, String, String)>,
    form: TwilioForm,
) -> TwilioResult<Json<TwBucket>> {
    let mut service = find(&state, &service_sid).await?;
    let i = limit_index(&service, &limit_sid)?;
    let j = bucket_index(&service, i, &sid)?;
    let mut p = form.params;
    let (max, interval) = bucket_numbers(
        &mut p,
        Some(&service.settings.keyed_rate_limits[i].buckets[j]),
    )?;
    p.finish(&[])?;
    let now = state.clock.now();
    let limit = &mut service.settings.keyed_rate_limits[i];
    let bucket = &mut limit.buckets[j];
    bucket.max = max;
    bucket.interval_seconds = interval;
    bucket.updated_at = now;
    let bucket = bucket.clone();
    let limit = limit.clone();
    save_settings(&state, &mut service).await?;
    let base = base_url(&state.config, &headers);
    Ok(Json(TwBucket::of(&bucket, &limit, &service, &base)))
}

/// Delete a bucket.
#[utoipa::path(
    delete, path = "/v2/Services/{ServiceSid}/RateLimits/{RateLimitSid}/Buckets/{Sid}", tag = "twilio-compatible",
    params(
        ("ServiceSid" = String, Path, description = "Service SID (`VA…`) or native name"),
        ("RateLimitSid" = String, Path, description = "Rate limit SID (`RK…`) or unique name"),
        ("Sid" = String, Path, description = "Bucket SID (`BL…`)"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such bucket (20404)", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn delete_bucket(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    TwPath((service_sid, limit_sid, sid)): TwPath<(String, String, String)>,
) -> TwilioResult<StatusCode> {
    let mut service = find(&state, &service_sid).await?;
    let i = limit_index(&service, &limit_sid)?;
    let j = bucket_index(&service, i, &sid)?;
    let limit = &mut service.settings.keyed_rate_limits[i];
    limit.buckets.remove(j);
    limit.updated_at = state.clock.now();
    save_settings(&state, &mut service).await?;
    Ok(StatusCode::NO_CONTENT)
}
