//! Dashboard aggregates in PostgreSQL: one SQL aggregate per view over a recent window, plain
//! reads that take no locks (never hold up sends or checks).

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use otpd_core::guards::budget::Period;
use otpd_core::store::{
    CountryStats, ProviderStats, RecentVerification, SpendRow, Stats, StatsStore, StoreResult,
};
use sqlx::Row;

use super::events::{EVENT_COLUMNS, event_of};
use super::{PostgresStore, db, ms, time};

/// Event kinds shown as alerts (besides every `alert.*`).
const ALERT_KINDS: &str = "'provider.circuit_opened', 'budget.threshold'";

/// The `LIKE` pattern of a delivery failure's error when the provider was skipped for its
/// open circuit.
fn skipped_like() -> String {
    format!("%{}", otpd_core::event::SKIPPED_FOR_OPEN_CIRCUIT)
}

/// A non-negative count from PostgreSQL's signed integers.
fn n(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[async_trait]
impl StatsStore for PostgresStore {
    async fn stats(
        &self,
        since: DateTime<Utc>,
        bucket: Duration,
        recent: u32,
        now: DateTime<Utc>,
    ) -> StoreResult<Stats> {
        let since_ms = ms(since);
        let bucket_ms = bucket.num_milliseconds().max(1);
        let db_ = &self.pool;

        let sends = sqlx::query(
            "SELECT (at / $1) * $1 AS b, COUNT(*) AS n FROM sends WHERE at >= $2 GROUP BY b ORDER BY b",
        )
        .bind(bucket_ms)
        .bind(since_ms)
        .fetch_all(db_)
        .await
        .map_err(db)?
        .iter()
        .map(|r| (time(r.get("b")), n(r.get("n"))))
        .collect();

        // Every hand-off per provider, from the delivery events (as /metrics counts them):
        // accepted, delivered, failed (retried or not), skipped for an open circuit, and
        // receipt waits that ended with a failover. Test sends are no hand-off.
        let mut providers: Vec<ProviderStats> = sqlx::query(
            "SELECT d ->> 'provider' AS provider, \
                    COUNT(*) FILTER (WHERE kind = 'verification.delivery_sent') AS sent, \
                    COUNT(*) FILTER (WHERE kind = 'verification.delivered') AS delivered, \
                    COUNT(*) FILTER (WHERE kind = 'verification.delivery_failed' \
                        AND d -> 'receipt' IS NULL AND d -> 'receipt_timeout' IS NULL \
                        AND COALESCE(d ->> 'error', '') NOT LIKE $2) AS failed, \
                    COUNT(*) FILTER (WHERE kind = 'verification.delivery_failed' \
                        AND d -> 'receipt' IS NULL \
                        AND COALESCE(d ->> 'error', '') LIKE $2) AS skipped, \
                    COUNT(*) FILTER (WHERE kind = 'verification.delivery_failed' \
                        AND d ->> 'receipt_timeout' = 'true') AS timeouts \
             FROM (SELECT kind, data::jsonb AS d FROM events \
                   WHERE created_at >= $1 \
                     AND kind IN ('verification.delivery_sent', 'verification.delivered', \
                                  'verification.delivery_failed')) e \
             WHERE d -> 'test' IS NULL AND COALESCE(d ->> 'provider', '') <> '' \
             GROUP BY 1 ORDER BY 1",
        )
        .bind(since_ms)
        .bind(skipped_like())
        .fetch_all(db_)
        .await
        .map_err(db)?
        .iter()
        .map(|r| ProviderStats {
            provider: r.get("provider"),
            sent: n(r.get("sent")),
            delivered: n(r.get("delivered")),
            failed: n(r.get("failed")),
            skipped: n(r.get("skipped")),
            receipt_timeouts: n(r.get("timeouts")),
            mean_latency_ms: None,
            max_latency_ms: None,
        })
        .collect();
        // Queue-to-delivery time of the messages each provider delivered.
        let latencies = sqlx::query(
            "SELECT providers::jsonb ->> provider_index::int AS provider, \
                    AVG(updated_at - created_at)::FLOAT8 AS mean_ms, \
                    MAX(updated_at - created_at) AS max_ms \
             FROM deliveries WHERE created_at >= $1 AND status = 'delivered' GROUP BY 1",
        )
        .bind(since_ms)
        .fetch_all(db_)
        .await
        .map_err(db)?;
        for r in &latencies {
            let provider: Option<String> = r.get("provider");
            if let Some(p) = providers
                .iter_mut()
                .find(|p| Some(&p.provider) == provider.as_ref())
            {
                p.mean_latency_ms = r.get("mean_ms");
                p.max_latency_ms = r.get("max_ms");
            }
        }

        let countries = sqlx::query(
            "SELECT COALESCE(country, 'ZZ') AS country, COUNT(*) AS started, \
                    COUNT(*) FILTER (WHERE status = 'approved') AS approved, \
                    COUNT(*) FILTER (WHERE status = 'pending' AND expires_at > $2) AS pending \
             FROM verifications WHERE created_at >= $1 GROUP BY 1 ORDER BY 2 DESC, 1",
        )
        .bind(since_ms)
        .bind(ms(now))
        .fetch_all(db_)
        .await
        .map_err(db)?
        .iter()
        .map(|r| CountryStats {
            country: r.get("country"),
            started: n(r.get("started")),
            approved: n(r.get("approved")),
            pending: n(r.get("pending")),
        })
        .collect();

        // Approvals and delivery failures (failed hand-offs and receipt waits that ended
        // undelivered, as the providers' counts) per bucket, and refusals.
        let rows = sqlx::query(
            "SELECT (created_at / $1) * $1 AS b, kind, COUNT(*) AS n FROM events \
             WHERE created_at >= $2 \
               AND (kind = 'verification.approved' \
                    OR (kind = 'verification.delivery_failed' \
                        AND data::jsonb -> 'receipt' IS NULL \
                        AND data::jsonb -> 'test' IS NULL \
                        AND COALESCE(data::jsonb ->> 'error', '') NOT LIKE $3)) \
             GROUP BY 1, 2 ORDER BY 1",
        )
        .bind(bucket_ms)
        .bind(since_ms)
        .bind(skipped_like())
        .fetch_all(db_)
        .await
        .map_err(db)?;
        let mut approvals = Vec::new();
        let mut failures = Vec::new();
        for r in &rows {
            let point = (time(r.get("b")), n(r.get("n")));
            if r.get::<String, _>("kind") == "verification.approved" {
                approvals.push(point);
            } else {
                failures.push(point);
            }
        }
        let blocks = sqlx::query(
            "SELECT (created_at / $1) * $1 AS b, COUNT(*) AS n FROM guard_decisions \
             WHERE NOT allowed AND created_at >= $2 GROUP BY 1 ORDER BY 1",
        )
        .bind(bucket_ms)
        .bind(since_ms)
        .fetch_all(db_)
        .await
        .map_err(db)?
        .iter()
        .map(|r| (time(r.get("b")), n(r.get("n"))))
        .collect();

        let blocked = sqlx::query(
            "SELECT COALESCE(guard, '?') AS guard, COUNT(*) AS n FROM guard_decisions \
             WHERE NOT allowed AND created_at >= $1 GROUP BY 1 ORDER BY 2 DESC, 1",
        )
        .bind(since_ms)
        .fetch_all(db_)
        .await
        .map_err(db)?
        .iter()
        .map(|r| (r.get("guard"), n(r.get("n"))))
        .collect();

        let spend = sqlx::query(
            "SELECT service_id, period, spent FROM budget_spend WHERE period IN ($1, $2) \
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
            "SELECT id, service_id, to_addr, channel, created_at, COALESCE(country, 'ZZ') AS country, \
                    CASE WHEN status = 'pending' AND expires_at <= $1 THEN 'expired' ELSE status END AS status \
             FROM verifications ORDER BY created_at DESC, id DESC LIMIT $2",
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
                country: r.get("country"),
                channel: r.get("channel"),
                status: r.get("status"),
                created_at: time(r.get("created_at")),
            })
            .collect();

        let alerts = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE (kind LIKE 'alert.%' OR kind IN ({ALERT_KINDS})) AND created_at >= $1 \
             ORDER BY seq DESC LIMIT $2"
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
    }
}
