//! Guard state in PostgreSQL: GCRA arrival times per rate-limit key, and the decision log.
//!
//! Tokens are taken in one transaction holding an advisory lock per bucket key, so
//! concurrent requests (on any node) never both take the last token.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::event::EventType;
use otpd_core::guards::budget::{self, BudgetGuard, Money, Period};
use otpd_core::guards::rate::{self, Bucket};
use otpd_core::guards::{Action, DecisionRecord, GuardName, Mode, Refusal};
use otpd_core::mask::mask_recipient;
use otpd_core::store::{
    GuardStore, PUMPING_LOG_KEEP_SECONDS, PumpingEvent, StoreResult, StoredDecision,
};
use serde_json::json;
use sqlx::Row;

use super::{PostgresStore, db, insert_event, lock_key, ms, time};

/// Most decision records listed at once.
const MAX_LIST: u32 = 1_000;

/// A pumping log row (`seq, at, approval, recipient, country`).
fn pumping_row(row: &sqlx::postgres::PgRow) -> Result<(i64, PumpingEvent), sqlx::Error> {
    Ok((
        row.try_get(0)?,
        PumpingEvent {
            at: row.try_get(1)?,
            approval: row.try_get(2)?,
            to: row.try_get(3)?,
            country: row.try_get(4)?,
        },
    ))
}

#[async_trait]
impl GuardStore for PostgresStore {
    async fn take_tokens(
        &self,
        buckets: &[Bucket],
        now: DateTime<Utc>,
    ) -> StoreResult<Result<(), Refusal>> {
        if buckets.is_empty() {
            return Ok(Ok(()));
        }
        let mut tx = self.write_tx().await?;
        // Each bucket's key is locked (sorted, so two requests sharing buckets never
        // deadlock) until commit: across nodes, no two requests both take the last token.
        let mut keys: Vec<&str> = buckets.iter().map(|b| b.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            lock_key(&mut tx, "rate", key).await?;
        }
        let mut tats = Vec::with_capacity(buckets.len());
        for b in buckets {
            let tat: Option<i64> =
                sqlx::query_scalar("SELECT tat_ms FROM rate_buckets WHERE key = $1")
                    .bind(&b.key)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            tats.push(tat);
        }
        let next = match rate::take(buckets, &tats, ms(now)) {
            Ok(next) => next,
            Err(refusal) => return Ok(Err(refusal)),
        };
        for (b, tat) in buckets.iter().zip(next) {
            sqlx::query(
                "INSERT INTO rate_buckets (key, tat_ms) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET tat_ms = excluded.tat_ms",
            )
            .bind(&b.key)
            .bind(tat)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        // Keys whose arrival time has passed are as good as absent: forget a few.
        sqlx::query(
            "DELETE FROM rate_buckets WHERE key IN \
             (SELECT key FROM rate_buckets WHERE tat_ms < $1 LIMIT 16 FOR UPDATE SKIP LOCKED)",
        )
        .bind(ms(now))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Ok(()))
    }

    async fn append_pumping(
        &self,
        service_id: &str,
        event: &PumpingEvent,
        after: i64,
    ) -> StoreResult<(i64, Vec<(i64, PumpingEvent)>)> {
        let mut tx = self.write_tx().await?;
        // One service's appends hold its lock until commit: positions commit in order, so
        // a reader that saw one has seen every earlier one.
        lock_key(&mut tx, "pumping", service_id).await?;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO pumping_log (service_id, at, approval, recipient, country) \
             VALUES ($1, $2, $3, $4, $5) RETURNING seq",
        )
        .bind(service_id)
        .bind(event.at)
        .bind(event.approval)
        .bind(&event.to)
        .bind(&event.country)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let rows = sqlx::query(
            "SELECT seq, at, approval, recipient, country FROM pumping_log \
             WHERE service_id = $1 AND seq > $2 AND seq < $3 ORDER BY seq",
        )
        .bind(service_id)
        .bind(after)
        .bind(seq)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let between = rows
            .iter()
            .map(pumping_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(db)?;
        if seq % 16 == 0 {
            // Forget a few entries past the log's day and an hour.
            sqlx::query(
                "DELETE FROM pumping_log WHERE seq IN (SELECT seq FROM pumping_log \
                 WHERE service_id = $1 AND at < $2 ORDER BY seq LIMIT 64)",
            )
            .bind(service_id)
            .bind(event.at - PUMPING_LOG_KEEP_SECONDS)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok((seq, between))
    }

    async fn pumping_log(
        &self,
        service_id: &str,
        after: i64,
        since: i64,
        limit: u32,
    ) -> StoreResult<Vec<(i64, PumpingEvent)>> {
        let rows = sqlx::query(
            "SELECT seq, at, approval, recipient, country FROM pumping_log \
             WHERE service_id = $1 AND seq > $2 AND at >= $3 ORDER BY seq LIMIT $4",
        )
        .bind(service_id)
        .bind(after)
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(db)?;
        rows.iter()
            .map(pumping_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(db)
    }

    async fn record_decision(
        &self,
        r: &DecisionRecord,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let shadow = serde_json::to_string(&r.shadow).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO guard_decisions (service_id, action, recipient, client_ip, \
             verification_id, allowed, guard, reason, retry_after, shadow, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&r.service_id)
        .bind(r.action.as_str())
        .bind(&r.to)
        .bind(&r.client_ip)
        .bind(&r.verification_id)
        .bind(r.allowed)
        .bind(r.blocked.as_ref().map(|b| b.guard.as_str()))
        .bind(r.blocked.as_ref().map(|b| b.reason.as_str()))
        .bind(
            r.blocked
                .as_ref()
                .and_then(|b| b.retry_after_secs)
                .and_then(|s| i64::try_from(s).ok()),
        )
        .bind(shadow)
        .bind(ms(now))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        // A lock raised its own event when it began; refusals under it are only logged here.
        if let Some(b) = r.blocked.as_ref().filter(|b| b.guard != GuardName::Lockout) {
            insert_event(
                &mut tx,
                EventType::Blocked,
                r.verification_id.as_deref(),
                Some(&r.service_id),
                json!({
                    "reason": b.guard.as_str(),
                    "guard": b.guard.as_str(),
                    "detail": b.reason,
                    "action": r.action.as_str(),
                    "to": mask_recipient(&r.to),
                    "retry_after": b.retry_after_secs,
                }),
                now,
                ctx,
            )
            .await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn charge_budget(
        &self,
        service_id: &str,
        guard: &BudgetGuard,
        cost: Money,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<Result<(), Refusal>> {
        let mut tx = self.write_tx().await?;
        let mut spent = Vec::new();
        let mut verdict = Ok(());
        for period in [Period::Day, Period::Month] {
            let key = period.key(now);
            // The period's row, created if need be, stays locked until commit: charges of
            // one service from many nodes are applied one after the other.
            sqlx::query(
                "INSERT INTO budget_spend (service_id, period, spent, alerted) VALUES ($1, $2, 0, 0) \
                 ON CONFLICT (service_id, period) DO NOTHING",
            )
            .bind(service_id)
            .bind(&key)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            let row: Option<(i64, i64)> = sqlx::query_as(
                "SELECT spent, alerted FROM budget_spend WHERE service_id = $1 AND period = $2 FOR UPDATE",
            )
            .bind(service_id)
            .bind(&key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            let (s, alerted) = row.unwrap_or((0, 0));
            let s = Money(u64::try_from(s).unwrap_or(0));
            let limit = guard
                .limits()
                .into_iter()
                .find_map(|(p, l)| (p == period).then_some(l));
            if let Some(limit) = limit
                && verdict.is_ok()
            {
                verdict = budget::fits(period, limit, s, cost);
            }
            spent.push((period, key, s, u8::try_from(alerted).unwrap_or(100), limit));
        }
        let refused = verdict.is_err() && guard.mode == Mode::Enforce;
        for (period, key, before, alerted, limit) in spent {
            let after = if refused {
                before
            } else {
                Money(before.0 + cost.0)
            };
            let mut percents = limit.map_or_else(Vec::new, |l| budget::alerts(l, after, alerted));
            // A refusal means the budget is used up: say so once, even below 100%.
            if refused && limit.is_some() && alerted < 100 && !percents.contains(&100) {
                let fits_alone =
                    limit.is_some_and(|l| budget::fits(period, l, before, cost).is_ok());
                if !fits_alone {
                    percents.push(100);
                }
            }
            let new_alerted = percents
                .iter()
                .copied()
                .max()
                .unwrap_or(alerted)
                .max(alerted);
            sqlx::query(
                "INSERT INTO budget_spend (service_id, period, spent, alerted) VALUES ($1, $2, $3, $4)                  ON CONFLICT (service_id, period) DO UPDATE SET spent = excluded.spent,                  alerted = excluded.alerted",
            )
            .bind(service_id)
            .bind(&key)
            .bind(i64::try_from(after.0).unwrap_or(i64::MAX))
            .bind(i64::from(new_alerted))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            for percent in percents {
                insert_event(
                    &mut tx,
                    EventType::BudgetThreshold,
                    None,
                    Some(service_id),
                    json!({
                        "period": period.as_str(),
                        "percent": percent,
                        "spent": after.as_decimal(),
                        "limit": limit.map(Money::as_decimal),
                    }),
                    now,
                    ctx,
                )
                .await?;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(verdict)
    }

    async fn refund_budget(
        &self,
        service_id: &str,
        cost: Money,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        for period in [Period::Day, Period::Month] {
            sqlx::query(
                "UPDATE budget_spend SET spent = GREATEST(0, spent - $1) WHERE service_id = $2 AND period = $3",
            )
            .bind(i64::try_from(cost.0).unwrap_or(i64::MAX))
            .bind(service_id)
            .bind(period.key(now))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn list_decisions(
        &self,
        service_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<StoredDecision>> {
        let rows = sqlx::query(
            "SELECT seq, service_id, action, recipient, client_ip, verification_id, allowed, \
             guard, reason, retry_after, shadow, created_at FROM guard_decisions \
             WHERE service_id = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(service_id)
        .bind(i64::from(limit.min(MAX_LIST)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .iter()
            .map(|row| {
                let guard: Option<String> = row.get("guard");
                let blocked = guard.and_then(|g| {
                    Some(Refusal {
                        guard: serde_json::from_value::<GuardName>(json!(g)).ok()?,
                        reason: row.get::<Option<String>, _>("reason").unwrap_or_default(),
                        retry_after_secs: row
                            .get::<Option<i64>, _>("retry_after")
                            .and_then(|s| u64::try_from(s).ok()),
                    })
                });
                let action = if row.get::<&str, _>("action") == "check" {
                    Action::Check
                } else {
                    Action::Send
                };
                StoredDecision {
                    seq: row.get("seq"),
                    record: DecisionRecord {
                        service_id: row.get("service_id"),
                        action,
                        to: row.get("recipient"),
                        client_ip: row.get("client_ip"),
                        verification_id: row.get("verification_id"),
                        allowed: row.get("allowed"),
                        blocked,
                        shadow: serde_json::from_str(row.get::<&str, _>("shadow"))
                            .unwrap_or_default(),
                    },
                    created_at: time(row.get("created_at")),
                }
            })
            .collect())
    }
}
