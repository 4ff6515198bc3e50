//! `GET /v1/stats`: what the dashboard shows, computed from the store over a recent window
//! (SQL aggregates) plus the providers' circuit states held in this process. Admin keys
//! or a dashboard session may read it.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use chrono::{Duration, Utc};
use otpd_core::guards::budget::{Money, Period};
use otpd_core::mask::mask_recipient;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::session::Operator;
use crate::api::views::{EventView, timestamp};
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;

/// Default window.
const DEFAULT_WINDOW_MINUTES: u32 = 60;
/// Longest window (a week).
const MAX_WINDOW_MINUTES: u32 = 10_080;
/// Points in the send-volume series (the bucket is the window divided by this).
const SERIES_POINTS: i64 = 60;
/// Latest verifications and alerts listed.
const RECENT: u32 = 20;

/// The window.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Minutes back from now (1–10080, default 60).
    pub window_minutes: Option<u32>,
}

/// Sends in one time bucket.
#[derive(Serialize, ToSchema)]
pub struct SendPoint {
    /// Bucket start (Unix seconds).
    pub t: i64,
    /// Sends accepted (resends included).
    pub n: u64,
}

/// One provider's deliveries.
#[derive(Serialize, ToSchema)]
pub struct ProviderView {
    /// Provider name.
    pub provider: String,
    /// Deliveries handed to it.
    pub attempted: u64,
    /// Confirmed delivered.
    pub delivered: u64,
    /// Failed.
    pub failed: u64,
    /// delivered / attempted (null with none).
    pub delivery_rate: Option<f64>,
    /// Mean queue-to-receipt time of delivered messages, in ms.
    pub mean_latency_ms: Option<f64>,
    /// Longest such time, in ms.
    pub max_latency_ms: Option<i64>,
    /// Circuit: `closed`, `open`, `half_open` (null for `test`).
    pub circuit: Option<&'static str>,
}

/// Conversion in one region.
#[derive(Serialize, ToSchema)]
pub struct CountryView {
    /// ISO 3166 region (`??`: unknown, e.g. email).
    pub country: String,
    /// Verifications started.
    pub started: u64,
    /// Approved.
    pub approved: u64,
    /// approved / started.
    pub conversion: f64,
}

/// Refusals by one guard.
#[derive(Serialize, ToSchema)]
pub struct BlockedView {
    /// The guard (`geo`, `rate_limit`, `fraud`, `budget`, `lockout`, `number_type`).
    pub reason: String,
    /// Refused sends and checks.
    pub count: u64,
}

/// A service's spend in its current budget periods.
#[derive(Serialize, ToSchema)]
pub struct SpendView {
    /// Service name.
    pub service: String,
    /// `day` or `month`.
    pub period: &'static str,
    /// Spent (price-table currency).
    pub spent: f64,
    /// The budget limit, if one is set.
    pub limit: Option<f64>,
    /// spent / limit in percent.
    pub percent: Option<f64>,
}

/// A recent verification (recipient masked).
#[derive(Serialize, ToSchema)]
pub struct RecentView {
    /// `ver_…`
    pub id: String,
    /// Service name.
    pub service: String,
    /// Masked recipient.
    pub to: String,
    /// Channel.
    pub channel: String,
    /// Current status.
    pub status: String,
    /// Created.
    pub created_at: String,
}

/// Totals of the window.
#[derive(Serialize, ToSchema)]
pub struct Totals {
    /// Sends accepted.
    pub sends: u64,
    /// Verifications started.
    pub started: u64,
    /// Verifications approved.
    pub approved: u64,
    /// Deliveries confirmed.
    pub delivered: u64,
    /// Deliveries failed.
    pub failed: u64,
    /// Sends and checks refused by a guard.
    pub blocked: u64,
}

/// The dashboard's data.
#[derive(Serialize, ToSchema)]
pub struct StatsView {
    /// The window, in minutes back from `generated_at`.
    pub window_minutes: u32,
    /// When computed.
    pub generated_at: String,
    /// Width of a send-volume bucket, in seconds.
    pub bucket_seconds: i64,
    /// Totals.
    pub totals: Totals,
    /// Send volume over the window.
    pub sends: Vec<SendPoint>,
    /// Delivery rate and latency per provider.
    pub providers: Vec<ProviderView>,
    /// Conversion per country.
    pub countries: Vec<CountryView>,
    /// Refusals by guard.
    pub blocked: Vec<BlockedView>,
    /// Spend against budget.
    pub spend: Vec<SpendView>,
    /// Every provider's circuit.
    pub circuits: BTreeMap<String, &'static str>,
    /// The latest verifications.
    pub recent: Vec<RecentView>,
    /// The latest alerts (circuit opened, budget thresholds, `alert.*`).
    pub alerts: Vec<EventView>,
}

/// Every bucket from `since` to `now`, empty ones as 0 (so a chart's time axis spans the
/// whole window).
fn dense_series(
    counts: &[(chrono::DateTime<Utc>, u64)],
    since: chrono::DateTime<Utc>,
    now: chrono::DateTime<Utc>,
    bucket: Duration,
) -> Vec<SendPoint> {
    let step = bucket.num_milliseconds().max(1);
    let by_start: BTreeMap<i64, u64> = counts
        .iter()
        .map(|(t, n)| (t.timestamp_millis(), *n))
        .collect();
    let first = since.timestamp_millis().div_euclid(step) * step;
    (first..=now.timestamp_millis())
        .step_by(step as usize)
        .map(|start| SendPoint {
            t: start / 1000,
            n: by_start.get(&start).copied().unwrap_or(0),
        })
        .collect()
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Dashboard statistics over a recent window.
#[utoipa::path(
    get, path = "/v1/stats", tag = "operations",
    params(StatsQuery),
    responses(
        (status = 200, description = "Aggregates of the window", body = StatsView),
        (status = 401, description = "No admin key and no dashboard session", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn stats(
    State(state): State<AppState>,
    _operator: Operator,
    query: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<StatsView>> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let window_minutes = q.window_minutes.unwrap_or(DEFAULT_WINDOW_MINUTES);
    if !(1..=MAX_WINDOW_MINUTES).contains(&window_minutes) {
        return Err(ApiError::invalid("window_minutes must be 1-10080"));
    }
    let now = state.clock.now();
    let window = Duration::minutes(i64::from(window_minutes));
    let bucket = Duration::seconds((window.num_seconds() / SERIES_POINTS).max(1));
    let s = state.store.stats(now - window, bucket, RECENT, now).await?;
    let services: BTreeMap<String, otpd_core::service::Service> = state
        .store
        .list_services()
        .await?
        .into_iter()
        .map(|svc| (svc.id.clone(), svc))
        .collect();
    let name_of = |id: &str| {
        services
            .get(id)
            .map_or_else(|| id.to_string(), |svc| svc.name.clone())
    };
    let circuits: BTreeMap<String, &'static str> = state
        .router
        .breakers()
        .states(std::time::Instant::now())
        .into_iter()
        .map(|(name, c)| (name, c.as_str()))
        .collect();

    let providers: Vec<ProviderView> = s
        .providers
        .iter()
        .map(|p| ProviderView {
            provider: p.provider.clone(),
            attempted: p.attempted,
            delivered: p.delivered,
            failed: p.failed,
            delivery_rate: ratio(p.delivered, p.attempted),
            mean_latency_ms: p.mean_latency_ms,
            max_latency_ms: p.max_latency_ms,
            circuit: circuits.get(&p.provider).copied(),
        })
        .collect();
    let spend = s
        .spend
        .iter()
        .filter_map(|row| {
            let budget = &services.get(&row.service_id)?.settings.guards.budget;
            let (period, limit) = if row.period == Period::Day.key(now) {
                (Period::Day, budget.daily_limit)
            } else {
                (Period::Month, budget.monthly_limit)
            };
            let spent = Money(u64::try_from(row.spent_micros).unwrap_or(0));
            Some(SpendView {
                service: name_of(&row.service_id),
                period: period.as_str(),
                spent: spent.as_decimal(),
                limit: limit.map(Money::as_decimal),
                percent: limit.and_then(|l| ratio(spent.0, l.0)).map(|r| r * 100.0),
            })
        })
        .collect();
    let totals = Totals {
        sends: s.sends.iter().map(|(_, n)| n).sum(),
        started: s.countries.iter().map(|c| c.started).sum(),
        approved: s.countries.iter().map(|c| c.approved).sum(),
        delivered: s.providers.iter().map(|p| p.delivered).sum(),
        failed: s.providers.iter().map(|p| p.failed).sum(),
        blocked: s.blocked.iter().map(|(_, n)| n).sum(),
    };
    Ok(Json(StatsView {
        window_minutes,
        generated_at: timestamp(now),
        bucket_seconds: bucket.num_seconds(),
        totals,
        sends: dense_series(&s.sends, now - window, now, bucket),
        providers,
        countries: s
            .countries
            .iter()
            .map(|c| CountryView {
                country: c.country.clone(),
                started: c.started,
                approved: c.approved,
                conversion: ratio(c.approved, c.started).unwrap_or(0.0),
            })
            .collect(),
        blocked: s
            .blocked
            .iter()
            .map(|(reason, count)| BlockedView {
                reason: reason.clone(),
                count: *count,
            })
            .collect(),
        spend,
        circuits,
        recent: s
            .recent
            .iter()
            .map(|v| RecentView {
                id: v.id.clone(),
                service: name_of(&v.service_id),
                to: mask_recipient(&v.to),
                channel: v.channel.clone(),
                status: v.status.clone(),
                created_at: timestamp(v.created_at),
            })
            .collect(),
        alerts: s.alerts.iter().map(EventView::of).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_series_covers_the_window_with_zeros() {
        let now = chrono::DateTime::from_timestamp(1_000_000, 0).unwrap();
        let bucket = Duration::seconds(60);
        let since = now - Duration::minutes(10);
        let at = chrono::DateTime::from_timestamp(999_960, 0).unwrap();
        let series = dense_series(&[(at, 3)], since, now, bucket);
        assert_eq!(series.len(), 11);
        assert_eq!(series.iter().map(|p| p.n).sum::<u64>(), 3);
        assert_eq!(series.iter().find(|p| p.n == 3).unwrap().t, 999_960);
        assert!(series.windows(2).all(|w| w[1].t - w[0].t == 60));
    }
}
