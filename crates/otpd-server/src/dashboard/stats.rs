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
use crate::api::views::timestamp;
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

/// Activity in one time bucket.
#[derive(Serialize, ToSchema)]
pub struct SendPoint {
    /// Bucket start (Unix seconds).
    pub t: i64,
    /// Sends accepted (resends included).
    pub n: u64,
    /// Verifications approved.
    pub approved: u64,
    /// Sends and checks refused by a guard.
    pub blocked: u64,
    /// Failed hand-offs and receipt waits that ended undelivered.
    pub failed: u64,
}

/// One provider's hand-offs in the window: every attempt counts, whichever provider ended
/// up delivering (the same counts as `/metrics`: `sent` = `otpd_sends_total` accepted +
/// delivered, `delivered` = that delivered + `otpd_receipts_total` delivered, `failed` =
/// failed + retry, `skipped`, `receipt_timeouts` = `otpd_receipt_timeouts_total`).
#[derive(Serialize, ToSchema)]
pub struct ProviderView {
    /// Provider name.
    pub provider: String,
    /// Messages it accepted.
    pub sent: u64,
    /// Confirmed delivered (in its reply or by a receipt).
    pub delivered: u64,
    /// Hand-offs it refused or failed (retried or not).
    pub failed: u64,
    /// Messages that passed it by because its circuit was open.
    pub skipped: u64,
    /// Receipt waits that ended undelivered (the code went on to the next provider).
    pub receipt_timeouts: u64,
    /// delivered / (sent + failed): the share of hand-offs that reached the user (null
    /// with none).
    pub delivery_rate: Option<f64>,
    /// Mean queue-to-delivery time of the messages it delivered, in ms.
    pub mean_latency_ms: Option<f64>,
    /// Longest such time, in ms.
    pub max_latency_ms: Option<i64>,
    /// Circuit: `closed`, `open`, `half_open` (null for `test`).
    pub circuit: Option<&'static str>,
}

/// Conversion in one region.
#[derive(Serialize, ToSchema)]
pub struct CountryView {
    /// ISO 3166 region (`ZZ`: unknown, e.g. email, as in the metrics).
    pub country: String,
    /// Verifications started.
    pub started: u64,
    /// Approved.
    pub approved: u64,
    /// Still pending (neither won nor lost yet).
    pub pending: u64,
    /// approved / (started − pending): pending codes are not counted as lost (null while
    /// every verification is pending).
    pub conversion: Option<f64>,
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
    /// The price table's currency (`[dashboard] currency`, ISO 4217).
    pub currency: String,
}

/// An alert (circuit opened, budget threshold, `alert.*`), in words.
#[derive(Serialize, ToSchema)]
pub struct AlertView {
    /// `evt_…`
    pub id: String,
    /// Event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// What happened, as a sentence.
    pub text: String,
    /// When.
    pub created_at: String,
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
    /// The recipient's ISO 3166 region (`ZZ`: unknown, e.g. email).
    pub country: String,
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
    /// Messages confirmed delivered (every provider).
    pub delivered: u64,
    /// Hand-offs failed (every provider, every attempt).
    pub failed: u64,
    /// Sends and checks refused by a guard.
    pub blocked: u64,
    /// Verifications still pending.
    pub pending: u64,
    /// approved / (started − pending): the window's conversion, pending codes not counted
    /// as lost (null while every verification is pending).
    pub conversion: Option<f64>,
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
    pub alerts: Vec<AlertView>,
    /// Passkeys and authenticator apps: registrations, sign-ins and failures.
    pub factors: Vec<super::factors::FactorActivity>,
}

/// Every bucket from `since` to `now`, empty ones as 0 (so a chart's time axis spans the
/// whole window), with each series' count.
fn dense_series(
    series: [&[(chrono::DateTime<Utc>, u64)]; 4],
    since: chrono::DateTime<Utc>,
    now: chrono::DateTime<Utc>,
    bucket: Duration,
) -> Vec<SendPoint> {
    let step = bucket.num_milliseconds().max(1);
    let maps = series.map(|counts| {
        counts
            .iter()
            .map(|(t, n)| (t.timestamp_millis(), *n))
            .collect::<BTreeMap<i64, u64>>()
    });
    let at = |i: usize, start: i64| maps[i].get(&start).copied().unwrap_or(0);
    let first = since.timestamp_millis().div_euclid(step) * step;
    (first..=now.timestamp_millis())
        .step_by(step as usize)
        .map(|start| SendPoint {
            t: start / 1000,
            n: at(0, start),
            approved: at(1, start),
            blocked: at(2, start),
            failed: at(3, start),
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

    let mut providers: Vec<ProviderView> = s
        .providers
        .iter()
        .map(|p| ProviderView {
            provider: p.provider.clone(),
            sent: p.sent,
            delivered: p.delivered,
            failed: p.failed,
            skipped: p.skipped,
            receipt_timeouts: p.receipt_timeouts,
            delivery_rate: ratio(p.delivered, p.sent + p.failed),
            mean_latency_ms: p.mean_latency_ms,
            max_latency_ms: p.max_latency_ms,
            circuit: circuits.get(&p.provider).copied(),
        })
        .collect();
    // Every configured provider is listed, the idle ones too.
    for (name, circuit) in &circuits {
        if !providers.iter().any(|p| &p.provider == name) {
            providers.push(ProviderView {
                provider: name.clone(),
                sent: 0,
                delivered: 0,
                failed: 0,
                skipped: 0,
                receipt_timeouts: 0,
                delivery_rate: None,
                mean_latency_ms: None,
                max_latency_ms: None,
                circuit: Some(*circuit),
            });
        }
    }
    providers.sort_by(|a, b| a.provider.cmp(&b.provider));
    let currency = state.config.dashboard.currency.clone();
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
                currency: currency.clone(),
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
        pending: s.countries.iter().map(|c| c.pending).sum(),
        conversion: None,
    };
    let totals = Totals {
        conversion: ratio(
            totals.approved,
            totals.started.saturating_sub(totals.pending),
        ),
        ..totals
    };
    let factors = super::factors::activity(&*state.store, now - window, now).await?;
    Ok(Json(StatsView {
        factors,
        window_minutes,
        generated_at: timestamp(now),
        bucket_seconds: bucket.num_seconds(),
        totals,
        sends: dense_series(
            [
                s.sends.as_slice(),
                s.approvals.as_slice(),
                s.blocks.as_slice(),
                s.failures.as_slice(),
            ],
            now - window,
            now,
            bucket,
        ),
        providers,
        countries: s
            .countries
            .iter()
            .map(|c| CountryView {
                country: c.country.clone(),
                started: c.started,
                approved: c.approved,
                pending: c.pending,
                conversion: ratio(c.approved, c.started.saturating_sub(c.pending)),
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
                country: v.country.clone(),
                channel: v.channel.clone(),
                status: v.status.clone(),
                created_at: timestamp(v.created_at),
            })
            .collect(),
        alerts: s
            .alerts
            .iter()
            .map(|e| AlertView {
                id: e.id.clone(),
                kind: e.kind.clone(),
                text: super::alert_text::alert_text(
                    &e.kind,
                    &e.data,
                    e.service_id.as_deref().map(name_of).as_deref(),
                    &currency,
                ),
                created_at: timestamp(e.created_at),
            })
            .collect(),
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
        let (sends, approved, failed) = ([(at, 3)], [(at, 2)], [(at, 1)]);
        let series = dense_series(
            [&sends[..], &approved[..], &[], &failed[..]],
            since,
            now,
            bucket,
        );
        assert_eq!(series.len(), 11);
        assert_eq!(series.iter().map(|p| p.n).sum::<u64>(), 3);
        assert_eq!(series.iter().map(|p| p.approved).sum::<u64>(), 2);
        assert_eq!(series.iter().map(|p| p.blocked).sum::<u64>(), 0);
        assert_eq!(series.iter().map(|p| p.failed).sum::<u64>(), 1);
        assert_eq!(series.iter().find(|p| p.n == 3).unwrap().t, 999_960);
        assert!(series.windows(2).all(|w| w[1].t - w[0].t == 60));
    }
}
