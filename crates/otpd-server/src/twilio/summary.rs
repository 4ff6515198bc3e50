//! `GET /v2/Attempts/Summary`: Twilio's totals of verification attempts (otpd's
//! deliveries) and how many converted (their verification was approved), with the spec's
//! filters: `VerifyServiceSid`, `DateCreatedAfter`/`Before`, `Country`, `Channel`,
//! `DestinationPrefix` (admin keys, like `/v2/Attempts`).

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use otpd_core::recipient::PhoneNumber;
use otpd_core::store::{DeliveryFilter, DeliveryRecord};
use otpd_core::verification::Status;
use serde::Serialize;

use super::attempts::{attempt_channel, date};
use super::errors::{TwilioError, TwilioErrorBody, TwilioResult};
use super::form::Params;
use super::views::base_url;
use super::{MAX_PAGE_SIZE, TwilioPrincipal};
use crate::auth::scoped_service_filter;
use crate::state::AppState;

/// Most attempts one summary reads; past that, the caller is asked to narrow the dates.
const MAX_SCANNED: u64 = 1_000_000;

/// The summary (`verify.v2.verification_attempts_summary`).
#[derive(Serialize, utoipa::ToSchema, Debug, PartialEq)]
pub struct TwAttemptsSummary {
    /// Attempts matching the filters.
    pub total_attempts: u64,
    /// Of which converted (the verification was approved).
    pub total_converted: u64,
    /// Of which not converted.
    pub total_unconverted: u64,
    /// `total_converted / total_attempts * 100` as a decimal string (Twilio's form), null
    /// when there is no attempt.
    pub conversion_rate_percentage: Option<String>,
    /// This resource's absolute URL.
    pub url: String,
}

/// Filters applied after the store's (the store does not know countries or prefixes).
struct Narrowing {
    country: Option<String>,
    prefix: Option<String>,
}

impl Narrowing {
    fn keeps(&self, r: &DeliveryRecord) -> bool {
        if let Some(prefix) = &self.prefix
            && !r.to.starts_with(prefix.as_str())
        {
            return false;
        }
        if let Some(country) = &self.country {
            let region = PhoneNumber::parse_possible(&r.to, None)
                .ok()
                .and_then(|p| p.region().map(str::to_string));
            if region.as_deref() != Some(country.as_str()) {
                return false;
            }
        }
        true
    }
}

/// Totals of records, converted ones counted at `now`'s status.
fn totals(records: &[DeliveryRecord], narrowing: &Narrowing) -> (u64, u64) {
    let mut total = 0;
    let mut converted = 0;
    for r in records.iter().filter(|r| narrowing.keeps(r)) {
        total += 1;
        if r.verification_status == Status::Approved {
            converted += 1;
        }
    }
    (total, converted)
}

/// `converted / total * 100` with Twilio's nine decimals, trailing zeros kept short.
fn rate(total: u64, converted: u64) -> Option<String> {
    if total == 0 {
        return None;
    }
    let pct = converted as f64 * 100.0 / total as f64;
    let text = format!("{pct:.9}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    Some(text.to_string())
}

/// Summarize verification attempts.
#[utoipa::path(
    get, path = "/v2/Attempts/Summary", tag = "twilio-compatible",
    params(
        ("VerifyServiceSid" = Option<String>, Query, description = "Service SID (an unknown one matches nothing)"),
        ("DateCreatedAfter" = Option<String>, Query, description = "ISO 8601"),
        ("DateCreatedBefore" = Option<String>, Query, description = "ISO 8601"),
        ("Country" = Option<String>, Query, description = "ISO 3166 region of the recipient number, e.g. `CO`"),
        ("Channel" = Option<String>, Query, description = "`sms`, `call`, `email`, `whatsapp`, `rbm` (otpd never sends over `rbm`)"),
        ("DestinationPrefix" = Option<String>, Query, description = "E.164 prefix of the recipient, e.g. `+34`"),
    ),
    responses(
        (status = 200, description = "Totals", body = TwAttemptsSummary),
        (status = "4XX", description = "Refused", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn fetch(
    State(state): State<AppState>,
    TwilioPrincipal(principal): TwilioPrincipal,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> TwilioResult<Json<TwAttemptsSummary>> {
    let mut p = Params::from_query(query.as_deref())?;
    let created_after = date("DateCreatedAfter", p.take("DateCreatedAfter").as_deref())?;
    let created_before = date("DateCreatedBefore", p.take("DateCreatedBefore").as_deref())?;
    let channel = match p.take("Channel") {
        None => None,
        Some(c) => Some(attempt_channel(&c)?),
    };
    let country = p.take("Country").map(|c| c.to_ascii_uppercase());
    if let Some(c) = &country
        && !(c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return Err(TwilioError::invalid(
            "Invalid parameter Country: an ISO 3166 two-letter code",
        ));
    }
    let prefix = p.take("DestinationPrefix");
    if let Some(prefix) = &prefix
        && !(prefix.len() >= 2
            && prefix.len() <= 16
            && prefix.starts_with('+')
            && prefix[1..].bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(TwilioError::invalid(
            "Invalid parameter DestinationPrefix: a + and digits, e.g. +34",
        ));
    }
    let service_sid = p.take("VerifyServiceSid");
    p.finish(&[])?;
    let service = match &service_sid {
        Some(sid) => Some(state.store.find_service(sid).await?.map(|s| s.id)),
        None => None,
    };
    let service_id = match &service {
        Some(Some(id)) => scoped_service_filter(&state, &principal, Some(id)).await?,
        Some(None) => None,
        None => scoped_service_filter(&state, &principal, None).await?,
    };
    let url = format!("{}/v2/Attempts/Summary", base_url(&state.config, &headers));
    let matches_nothing = matches!(service, Some(None)) || matches!(channel, Some(None));
    let narrowing = Narrowing { country, prefix };
    let (mut total, mut converted) = (0, 0);
    if !matches_nothing {
        let mut filter = DeliveryFilter {
            service_id,
            verification_id: None,
            channel: channel.flatten(),
            to: None,
            created_after,
            created_before,
            converted: None,
            offset: 0,
            limit: MAX_PAGE_SIZE,
        };
        loop {
            let records = state.store.list_deliveries(&filter).await?;
            let (t, c) = totals(&records, &narrowing);
            total += t;
            converted += c;
            filter.offset += records.len() as u64;
            if records.len() < MAX_PAGE_SIZE as usize {
                break;
            }
            if filter.offset >= MAX_SCANNED {
                return Err(TwilioError::invalid(format!(
                    "more than {MAX_SCANNED} attempts match: narrow DateCreatedAfter/DateCreatedBefore"
                )));
            }
        }
    }
    Ok(Json(TwAttemptsSummary {
        total_attempts: total,
        total_converted: converted,
        total_unconverted: total - converted,
        conversion_rate_percentage: rate(total, converted),
        url,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_a_short_decimal_string() {
        assert_eq!(rate(0, 0), None);
        assert_eq!(rate(11, 9).as_deref(), Some("81.818181818"));
        assert_eq!(rate(4, 1).as_deref(), Some("25"));
        assert_eq!(rate(2, 2).as_deref(), Some("100"));
        assert_eq!(rate(3, 0).as_deref(), Some("0"));
    }
}
