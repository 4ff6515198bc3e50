//! Guard state in SQLite: GCRA arrival times per rate-limit key, and the decision log.
//!
//! Tokens are taken in one write transaction (the single writer connection serializes
//! them), so concurrent requests never both take the last token.

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
use rusqlite::{OptionalExtension, params};
use serde_json::json;

use super::{SqliteStore, collect, ms, record_event, time};

/// Most decision records listed at once.
const MAX_LIST: u32 = 1_000;

/// A pumping log row (`seq, at, approval, recipient, country`).
fn pumping_row(row: &rusqlite::Row<'_>) -> super::conn::SqlResult<(i64, PumpingEvent)> {
    Ok((
        row.get(0)?,
        PumpingEvent {
            at: row.get(1)?,
            approval: row.get::<_, i64>(2)? != 0,
            to: row.get(3)?,
            country: row.get(4)?,
        },
    ))
}

#[async_trait]
impl GuardStore for SqliteStore {
    async fn take_tokens(
        &self,
        buckets: &[Bucket],
        now: DateTime<Utc>,
    ) -> StoreResult<Result<(), Refusal>> {
        if buckets.is_empty() {
            return Ok(Ok(()));
        }
        // Arrival times commit with the writer's next batch: the check or send that
        // follows waits for one commit, not two (a crash may forget the last few).
        self.write_lazily(|tx| {
            let mut tats = Vec::with_capacity(buckets.len());
            let mut tat_of = tx.prepare_cached("SELECT tat_ms FROM rate_buckets WHERE key = ?")?;
            for b in buckets {
                let tat: Option<i64> = tat_of.query_row([&b.key], |r| r.get(0)).optional()?;
                tats.push(tat);
            }
            let next = match rate::take(buckets, &tats, ms(now)) {
                Ok(next) => next,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let mut set = tx.prepare_cached(
                "INSERT INTO rate_buckets (key, tat_ms) VALUES (?, ?) \
                 ON CONFLICT (key) DO UPDATE SET tat_ms = excluded.tat_ms",
            )?;
            for (b, tat) in buckets.iter().zip(next) {
                set.execute(params![b.key, tat])?;
            }
            // Keys whose arrival time has passed are as good as absent: forget a few.
            tx.prepare_cached(
                "DELETE FROM rate_buckets WHERE key IN \
                 (SELECT key FROM rate_buckets WHERE tat_ms < ? LIMIT 16)",
            )?
            .execute([ms(now)])?;
            Ok(Ok(()))
        })
        .await
    }

    async fn append_pumping(
        &self,
        service_id: &str,
        event: &PumpingEvent,
        after: i64,
    ) -> StoreResult<(i64, Vec<(i64, PumpingEvent)>)> {
        // The single writer orders the log. Like arrival times, entries commit with the
        // writer's next batch (a crash may forget the last few).
        self.write_lazily(|tx| {
            tx.prepare_cached(
                "INSERT INTO pumping_log (service_id, at, approval, recipient, country) \
                 VALUES (?, ?, ?, ?, ?)",
            )?
            .execute(params![
                service_id,
                event.at,
                i64::from(event.approval),
                event.to,
                event.country
            ])?;
            let seq = tx.last_insert_rowid();
            let mut between = tx.prepare_cached(
                "SELECT seq, at, approval, recipient, country FROM pumping_log \
                 WHERE service_id = ? AND seq > ? AND seq < ? ORDER BY seq",
            )?;
            let between = collect(&mut between, params![service_id, after, seq], pumping_row)?;
            if seq % 16 == 0 {
                // Forget a few entries past the log's day and an hour.
                tx.prepare_cached(
                    "DELETE FROM pumping_log WHERE seq IN (SELECT seq FROM pumping_log \
                     WHERE service_id = ? AND at < ? ORDER BY seq LIMIT 64)",
                )?
                .execute(params![service_id, event.at - PUMPING_LOG_KEEP_SECONDS])?;
            }
            Ok((seq, between))
        })
        .await
    }

    async fn pumping_log(
        &self,
        service_id: &str,
        after: i64,
        since: i64,
        limit: u32,
    ) -> StoreResult<Vec<(i64, PumpingEvent)>> {
        // The writer sees the entries of its open batch too.
        self.write_lazily(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT seq, at, approval, recipient, country FROM pumping_log \
                 WHERE service_id = ? AND seq > ? AND at >= ? ORDER BY seq LIMIT ?",
            )?;
            collect(
                &mut stmt,
                params![service_id, after, since, i64::from(limit)],
                pumping_row,
            )
        })
        .await
    }

    async fn record_decision(
        &self,
        r: &DecisionRecord,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<()> {
        let shadow = serde_json::to_string(&r.shadow).unwrap_or_else(|_| "[]".into());
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO guard_decisions (service_id, action, recipient, client_ip, \
                 verification_id, allowed, guard, reason, retry_after, shadow, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![
                r.service_id,
                r.action.as_str(),
                r.to,
                r.client_ip,
                r.verification_id,
                r.allowed as i64,
                r.blocked.as_ref().map(|b| b.guard.as_str()),
                r.blocked.as_ref().map(|b| b.reason.as_str()),
                r.blocked
                    .as_ref()
                    .and_then(|b| b.retry_after_secs)
                    .and_then(|s| i64::try_from(s).ok()),
                shadow,
                ms(now),
            ])?;
            // A lock raised its own event when it began; refusals under it are only logged here.
            if let Some(b) = r.blocked.as_ref().filter(|b| b.guard != GuardName::Lockout) {
                record_event(
                    tx,
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
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn charge_budget(
        &self,
        service_id: &str,
        guard: &BudgetGuard,
        cost: Money,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<Result<(), Refusal>> {
        self.write(|tx| {
            let mut spent = Vec::new();
            let mut verdict = Ok(());
            for period in [Period::Day, Period::Month] {
                let key = period.key(now);
                let row: Option<(i64, i64)> = tx
                    .prepare_cached(
                        "SELECT spent, alerted FROM budget_spend WHERE service_id = ? AND period = ?",
                    )?
                    .query_row(params![service_id, key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
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
                let mut percents =
                    limit.map_or_else(Vec::new, |l| budget::alerts(l, after, alerted));
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
                tx.prepare_cached(
                    "INSERT INTO budget_spend (service_id, period, spent, alerted) VALUES (?, ?, ?, ?)                  ON CONFLICT (service_id, period) DO UPDATE SET spent = excluded.spent,                  alerted = excluded.alerted",
                )?
                .execute(params![
                    service_id,
                    key,
                    i64::try_from(after.0).unwrap_or(i64::MAX),
                    i64::from(new_alerted),
                ])?;
                for percent in percents {
                    record_event(
                        tx,
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
                    )?;
                }
            }
            Ok(verdict)
        })
        .await
    }

    async fn refund_budget(
        &self,
        service_id: &str,
        cost: Money,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write(|tx| {
            let mut refund = tx.prepare_cached(
                "UPDATE budget_spend SET spent = MAX(0, spent - ?) WHERE service_id = ? AND period = ?",
            )?;
            for period in [Period::Day, Period::Month] {
                refund.execute(params![
                    i64::try_from(cost.0).unwrap_or(i64::MAX),
                    service_id,
                    period.key(now),
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn list_decisions(
        &self,
        service_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<StoredDecision>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, service_id, action, recipient, client_ip, verification_id, allowed, \
                 guard, reason, retry_after, shadow, created_at FROM guard_decisions \
                 WHERE service_id = ? ORDER BY seq DESC LIMIT ?",
            )?;
            collect(
                &mut stmt,
                params![service_id, i64::from(limit.min(MAX_LIST))],
                |row| {
                    let guard: Option<String> = row.get("guard")?;
                    let reason: Option<String> = row.get("reason")?;
                    let retry_after: Option<i64> = row.get("retry_after")?;
                    let blocked = guard.and_then(|g| {
                        Some(Refusal {
                            guard: serde_json::from_value::<GuardName>(json!(g)).ok()?,
                            reason: reason.unwrap_or_default(),
                            retry_after_secs: retry_after.and_then(|s| u64::try_from(s).ok()),
                        })
                    });
                    let action = if row.get::<_, String>("action")? == "check" {
                        Action::Check
                    } else {
                        Action::Send
                    };
                    let shadow: String = row.get("shadow")?;
                    Ok(StoredDecision {
                        seq: row.get("seq")?,
                        record: DecisionRecord {
                            service_id: row.get("service_id")?,
                            action,
                            to: row.get("recipient")?,
                            client_ip: row.get("client_ip")?,
                            verification_id: row.get("verification_id")?,
                            allowed: row.get::<_, i64>("allowed")? != 0,
                            blocked,
                            shadow: serde_json::from_str(&shadow).unwrap_or_default(),
                        },
                        created_at: time(row.get("created_at")?),
                    })
                },
            )
        })
        .await
    }
}
