//! Dashboard aggregates in SQLite: one SQL aggregate per view over a recent window, read
//! from the reader pool (never holds up the writer).

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use otpd_core::guards::budget::Period;
use otpd_core::store::{
    CountryStats, ProviderStats, RecentVerification, SpendRow, Stats, StatsStore, StoreResult,
};
use sqlx::Row;

use super::events::EVENT_COLUMNS;
use super::legacy::event_of;
use super::{SqliteStore, db, ms, time};

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
        let db_ = &self.reader;

        let sends = sqlx::query(
            "SELECT (at / ?1) * ?1 AS b, COUNT(*) AS n FROM sends WHERE at >= ?2 GROUP BY b ORDER BY b",
        )
        .bind(bucket_ms)
        .bind(since_ms)
        .fetch_all(db_)
        .await
        .map_err(db)?
        .iter()
        .map(|r| (time(r.get("b")), n(r.get("n"))))
        .collect();

        // The provider a delivery is at (or ended at, when its chain ran out).
        let providers = sqlx::query(
            "SELECT COALESCE(json_extract(providers, '$[' || provider_index || ']'), \
                             json_extract(providers, '$[#-1]'), '?') AS provider, \
                    SUM(status IN ('sent', 'delivered', 'failed')) AS attempted, \
                    SUM(status = 'delivered') AS delivered, SUM(status = 'failed') AS failed, \
                    AVG(CASE WHEN status = 'delivered' THEN updated_at - created_at END) AS mean_ms, \
                    MAX(CASE WHEN status = 'delivered' THEN updated_at - created_at END) AS max_ms \
             FROM deliveries WHERE created_at >= ? GROUP BY provider ORDER BY provider",
        )
        .bind(since_ms)
        .fetch_all(db_)
        .await
        .map_err(db)?
        .iter()
        .map(|r| ProviderStats {
            provider: r.get("provider"),
            attempted: n(r.get("attempted")),
            delivered: n(r.get("delivered")),
            failed: n(r.get("failed")),
            mean_latency_ms: r.get("mean_ms"),
            max_latency_ms: r.get("max_ms"),
        })
        .collect();

        let countries = sqlx::query(
            "SELECT COALESCE(country, '??') AS country, COUNT(*) AS started, \
                    SUM(status = 'approved') AS approved \
             FROM verifications WHERE created_at >= ? GROUP BY 1 ORDER BY started DESC, country",
        )
        .bind(since_ms)
        .fetch_all(db_)
        .await
        .map_err(db)?
        .iter()
        .map(|r| CountryStats {
            country: r.get("country"),
            started: n(r.get("started")),
            approved: n(r.get("approved")),
        })
        .collect();

        let blocked = sqlx::query(
            "SELECT COALESCE(guard, '?') AS guard, COUNT(*) AS n FROM guard_decisions \
             WHERE allowed = 0 AND created_at >= ? GROUP BY 1 ORDER BY n DESC, guard",
        )
        .bind(since_ms)
        .fetch_all(db_)
        .await
        .map_err(db)?
        .iter()
        .map(|r| (r.get("guard"), n(r.get("n"))))
        .collect();

        let spend = sqlx::query(
            "SELECT service_id, period, spent FROM budget_spend WHERE period IN (?, ?) \
             ORDER BY service_id, period",
        )
        .bind(Period::Day.key(now))
        .bind(Period::Month.key(now))
        .fetch_all(db_)
        .await
        .map_err(db)?
        .iter()
        .map(|r| SpendRow {
            service_id: r.get("service_id"),
            period: r.get("period"),
            spent_micros: r.get("spent"),
        })
        .collect();

        let recent_rows = sqlx::query(
            "SELECT id, service_id, to_addr, channel, created_at, \
                    CASE WHEN status = 'pending' AND expires_at <= ? THEN 'expired' ELSE status END AS status \
             FROM verifications ORDER BY created_at DESC, rowid DESC LIMIT ?",
        )
        .bind(ms(now))
        .bind(i64::from(recent))
        .fetch_all(db_)
        .await
        .map_err(db)?;
        let recent_list = recent_rows
            .iter()
            .map(|r| RecentVerification {
                id: r.get("id"),
                service_id: r.get("service_id"),
                to: r.get("to_addr"),
                channel: r.get("channel"),
                status: r.get("status"),
                created_at: time(r.get("created_at")),
            })
            .collect();

        let alerts = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE (kind LIKE 'alert.%' OR kind IN ({ALERT_KINDS})) AND created_at >= ? \
             ORDER BY seq DESC LIMIT ?"
        ))
        .bind(since_ms)
        .bind(i64::from(recent))
        .fetch_all(db_)
        .await
        .map_err(db)?
        .iter()
        .map(event_of)
        .collect();

        Ok(Stats {
            sends,
            providers,
            countries,
            blocked,
            spend,
            recent: recent_list,
            alerts,
        })
    }
}
