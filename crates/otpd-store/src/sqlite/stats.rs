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

/// The `LIKE` pattern of a delivery failure's error when the provider was skipped for its
/// open circuit.
fn skipped_like() -> String {
    format!("%{}", otpd_core::event::SKIPPED_FOR_OPEN_CIRCUIT)
}

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

            // Every hand-off per provider, from the delivery events (as /metrics counts
            // them): accepted, delivered, failed (retried or not), skipped for an open
            // circuit, and receipt waits that ended with a failover. Test sends are no
            // hand-off.
            let mut stmt = c.prepare_cached(
                "SELECT json_extract(data, '$.provider') AS provider, \
                        SUM(kind = 'verification.delivery_sent') AS sent, \
                        SUM(kind = 'verification.delivered') AS delivered, \
                        SUM(kind = 'verification.delivery_failed' \
                            AND json_extract(data, '$.receipt') IS NULL \
                            AND json_extract(data, '$.receipt_timeout') IS NULL \
                            AND COALESCE(json_extract(data, '$.error'), '') NOT LIKE ?2) AS failed, \
                        SUM(kind = 'verification.delivery_failed' \
                            AND json_extract(data, '$.receipt') IS NULL \
                            AND COALESCE(json_extract(data, '$.error'), '') LIKE ?2) AS skipped, \
                        SUM(kind = 'verification.delivery_failed' \
                            AND IFNULL(json_extract(data, '$.receipt_timeout'), 0) = 1) AS timeouts \
                 FROM events \
                 WHERE created_at >= ?1 \
                   AND kind IN ('verification.delivery_sent', 'verification.delivered', \
                                'verification.delivery_failed') \
                   AND json_extract(data, '$.test') IS NULL \
                   AND COALESCE(json_extract(data, '$.provider'), '') != '' \
                 GROUP BY 1 ORDER BY 1",
            )?;
            let mut providers = collect(&mut stmt, params![since_ms, skipped_like()], |r| {
                Ok(ProviderStats {
                    provider: r.get("provider")?,
                    sent: n(r.get("sent")?),
                    delivered: n(r.get("delivered")?),
                    failed: n(r.get("failed")?),
                    skipped: n(r.get("skipped")?),
                    receipt_timeouts: n(r.get("timeouts")?),
                    mean_latency_ms: None,
                    max_latency_ms: None,
                })
            })?;
            // Queue-to-delivery time of the messages each provider delivered.
            let mut stmt = c.prepare_cached(
                "SELECT json_extract(providers, '$[' || provider_index || ']') AS provider, \
                        AVG(updated_at - created_at) AS mean_ms, MAX(updated_at - created_at) AS max_ms \
                 FROM deliveries WHERE created_at >= ? AND status = 'delivered' GROUP BY 1",
            )?;
            let latencies = collect(&mut stmt, [since_ms], |r| {
                Ok((
                    r.get::<_, Option<String>>("provider")?,
                    r.get::<_, Option<f64>>("mean_ms")?,
                    r.get::<_, Option<i64>>("max_ms")?,
                ))
            })?;
            for (provider, mean, max) in latencies {
                if let Some(p) = providers
                    .iter_mut()
                    .find(|p| Some(&p.provider) == provider.as_ref())
                {
                    p.mean_latency_ms = mean;
                    p.max_latency_ms = max;
                }
            }

            let mut stmt = c.prepare_cached(
                "SELECT COALESCE(country, 'ZZ') AS country, COUNT(*) AS started, \
                        SUM(status = 'approved') AS approved, \
                        SUM(status = 'pending' AND expires_at > ?2) AS pending \
                 FROM verifications WHERE created_at >= ?1 GROUP BY 1 ORDER BY started DESC, country",
            )?;
            let countries = collect(&mut stmt, params![since_ms, ms(now)], |r| {
                Ok(CountryStats {
                    country: r.get("country")?,
                    started: n(r.get("started")?),
                    approved: n(r.get("approved")?),
                    pending: n(r.get("pending")?),
                })
            })?;

            // Approvals and delivery failures (failed hand-offs and receipt waits that
            // ended undelivered, as the providers' counts) per bucket, and refusals.
            let mut stmt = c.prepare_cached(
                "SELECT (created_at / ?1) * ?1 AS b, kind, COUNT(*) AS n FROM events \
                 WHERE created_at >= ?2 \
                   AND (kind = 'verification.approved' \
                        OR (kind = 'verification.delivery_failed' \
                            AND json_extract(data, '$.receipt') IS NULL \
                            AND json_extract(data, '$.test') IS NULL \
                            AND COALESCE(json_extract(data, '$.error'), '') NOT LIKE ?3)) \
                 GROUP BY b, kind ORDER BY b",
            )?;
            let rows = collect(&mut stmt, params![bucket_ms, since_ms, skipped_like()], |r| {
                Ok((time(r.get("b")?), r.get::<_, String>("kind")?, n(r.get("n")?)))
            })?;
            let (approvals, failures): (Vec<_>, Vec<_>) = rows
                .into_iter()
                .partition(|(_, kind, _)| kind == "verification.approved");
            let approvals = approvals.into_iter().map(|(t, _, n)| (t, n)).collect();
            let failures = failures.into_iter().map(|(t, _, n)| (t, n)).collect();
            let mut stmt = c.prepare_cached(
                "SELECT (created_at / ?1) * ?1 AS b, COUNT(*) AS n FROM guard_decisions \
                 WHERE allowed = 0 AND created_at >= ?2 GROUP BY b ORDER BY b",
            )?;
            let blocks = collect(&mut stmt, params![bucket_ms, since_ms], |r| {
                Ok((time(r.get("b")?), n(r.get("n")?)))
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
                "SELECT id, service_id, to_addr, channel, created_at, COALESCE(country, 'ZZ') AS country, \
                        CASE WHEN status = 'pending' AND expires_at <= ? THEN 'expired' ELSE status END AS status \
                 FROM verifications ORDER BY created_at DESC, rowid DESC LIMIT ?",
            )?;
            let recent_list = collect(&mut stmt, params![ms(now), i64::from(recent)], |r| {
                Ok(RecentVerification {
                    id: r.get("id")?,
                    service_id: r.get("service_id")?,
                    to: r.get("to_addr")?,
                    country: r.get("country")?,
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
                approvals,
                blocks,
                failures,
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
