//! Dashboard aggregates in SQLite: one SQL aggregate per view over a recent window, read
//! from the reader pool (never holds up the writer).

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use otpd_core::guards::budget::Period;
use otpd_core::store::{
    CountryStats, ProviderStats, RecentVerification, SpendRow, Stats, StatsStore, StoreResult,
};
use rusqlite::params;

use super::events::{EVENT_COLUMNS, event_of};
use super::{SqliteStore, collect, ms, time};

/// Event kinds shown as alerts (besides every `alert.*`).
const ALERT_KINDS: &str = "'provider.circuit_opened', 'budget.threshold'";

/// A non-negative count from SQLite's signed integers.
fn n(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[async_trait]
impl StatsStore for SqliteStore {
    async fn stats(
        &self,
        since: DateTime<Utc>,
        bucket: Duration,
        recent: u32,
        now: DateTime<Utc>,
    ) -> StoreResult<Stats> {
        let since_ms = ms(since);
        let bucket_ms = bucket.num_milliseconds().max(1);

        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT (at / ?1) * ?1 AS b, COUNT(*) AS n FROM sends WHERE at >= ?2 GROUP BY b ORDER BY b",
            )?;
            let sends = collect(&mut stmt, params![bucket_ms, since_ms], |r| {
                Ok((time(r.get("b")?), n(r.get("n")?)))
            })?;

            // The provider a delivery is at (or ended at, when its chain ran out).
            let mut stmt = c.prepare_cached(
                "SELECT COALESCE(json_extract(providers, '$[' || provider_index || ']'), \
                                 json_extract(providers, '$[#-1]'), '?') AS provider, \
                        SUM(status IN ('sent', 'delivered', 'failed')) AS attempted, \
                        SUM(status = 'delivered') AS delivered, SUM(status = 'failed') AS failed, \
                        AVG(CASE WHEN status = 'delivered' THEN updated_at - created_at END) AS mean_ms, \
                        MAX(CASE WHEN status = 'delivered' THEN updated_at - created_at END) AS max_ms \
                 FROM deliveries WHERE created_at >= ? GROUP BY provider ORDER BY provider",
            )?;
            let providers = collect(&mut stmt, [since_ms], |r| {
                Ok(ProviderStats {
                    provider: r.get("provider")?,
                    attempted: n(r.get("attempted")?),
                    delivered: n(r.get("delivered")?),
                    failed: n(r.get("failed")?),
                    mean_latency_ms: r.get("mean_ms")?,
                    max_latency_ms: r.get("max_ms")?,
                })
            })?;

            let mut stmt = c.prepare_cached(
                "SELECT COALESCE(country, '??') AS country, COUNT(*) AS started, \
                        SUM(status = 'approved') AS approved \
                 FROM verifications WHERE created_at >= ? GROUP BY 1 ORDER BY started DESC, country",
            )?;
            let countries = collect(&mut stmt, [since_ms], |r| {
                Ok(CountryStats {
                    country: r.get("country")?,
                    started: n(r.get("started")?),
                    approved: n(r.get("approved")?),
                })
            })?;

            let mut stmt = c.prepare_cached(
                "SELECT COALESCE(guard, '?') AS guard, COUNT(*) AS n FROM guard_decisions \
                 WHERE allowed = 0 AND created_at >= ? GROUP BY 1 ORDER BY n DESC, guard",
            )?;
            let blocked = collect(&mut stmt, [since_ms], |r| {
                Ok((r.get("guard")?, n(r.get("n")?)))
            })?;

            let mut stmt = c.prepare_cached(
                "SELECT service_id, period, spent FROM budget_spend WHERE period IN (?, ?) \
                 ORDER BY service_id, period",
            )?;
            let periods = params![Period::Day.key(now), Period::Month.key(now)];
            let spend = collect(&mut stmt, periods, |r| {
                Ok(SpendRow {
                    service_id: r.get("service_id")?,
                    period: r.get("period")?,
                    spent_micros: r.get("spent")?,
                })
            })?;

            let mut stmt = c.prepare_cached(
                "SELECT id, service_id, to_addr, channel, created_at, \
                        CASE WHEN status = 'pending' AND expires_at <= ? THEN 'expired' ELSE status END AS status \
                 FROM verifications ORDER BY created_at DESC, rowid DESC LIMIT ?",
            )?;
            let recent_list = collect(&mut stmt, params![ms(now), i64::from(recent)], |r| {
                Ok(RecentVerification {
                    id: r.get("id")?,
                    service_id: r.get("service_id")?,
                    to: r.get("to_addr")?,
                    channel: r.get("channel")?,
                    status: r.get("status")?,
                    created_at: time(r.get("created_at")?),
                })
            })?;

            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events \
                 WHERE (kind LIKE 'alert.%' OR kind IN ({ALERT_KINDS})) AND created_at >= ? \
                 ORDER BY seq DESC LIMIT ?"
            ))?;
            let alerts = collect(&mut stmt, params![since_ms, i64::from(recent)], event_of)?;

            Ok(Stats {
                sends,
                providers,
                countries,
                blocked,
                spend,
                recent: recent_list,
                alerts,
            })
        })
        .await
    }
}
