//! Rate limits in Redis: GCRA arrival times, one script per hash tag.
//!
//! A bucket key names its service (`send:ip:<svc>:<ip>`, `send:to:<svc>:<to>`,
//! `send:service:<svc>`) or its API key (`send:key:<key>`); that third part is the hash
//! tag. A call's buckets usually share one tag and are taken by one script, all or none.
//! When they span two tags (a per-key limit beside per-service ones) the groups are taken
//! in turn and, if a later group refuses, the earlier groups' tokens are given back
//! (two-phase: take, then refund).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::guards::budget::{BudgetGuard, Money};
use otpd_core::guards::rate::{self, Bucket};
use otpd_core::guards::{DecisionRecord, GuardName, Refusal};
use otpd_core::store::{
    GuardStore, JournalSink, PUMPING_LOG_KEEP_SECONDS, PumpingEvent, Store, StoreResult,
    StoredDecision,
};
use redis::AsyncCommands;

use super::scripts::{GCRA, GCRA_REFUND, PUMPING_APPEND};
use super::{Clock, RedisHot, rerr};

/// The hash tag of a bucket: its service or API key.
fn tag_of(key: &str) -> &str {
    key.split(':').nth(2).unwrap_or(key)
}

impl<D: ?Sized> RedisHot<D> {
    fn gcra_invocation<'a>(
        &self,
        script: &'a redis::Script,
        group: &[&Bucket],
        now: DateTime<Utc>,
    ) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for b in group {
            inv.key(self.bucket_key(tag_of(&b.key), &b.key));
        }
        match self.inner.clock {
            Clock::Server => inv.arg(""),
            Clock::Caller => inv.arg(now.timestamp_millis()),
        };
        for b in group {
            let period = i64::from(b.limit.period_seconds) * 1000;
            let interval = (period / i64::from(b.limit.count.max(1))).max(1);
            inv.arg(interval).arg(period);
        }
        inv
    }
}

/// A pumping log member: `seq TAB at TAB a|s TAB country TAB to` (`-`: no country).
fn pumping_member(event: &PumpingEvent) -> String {
    format!(
        "{}\t{}\t{}\t{}",
        event.at,
        if event.approval { "a" } else { "s" },
        event.country.as_deref().unwrap_or("-"),
        event.to
    )
}

fn parse_member(member: &str) -> Option<(i64, PumpingEvent)> {
    let mut f = member.splitn(5, '\t');
    let seq = f.next()?.parse().ok()?;
    let at = f.next()?.parse().ok()?;
    let approval = f.next()? == "a";
    let country = Some(f.next()?).filter(|c| *c != "-").map(str::to_string);
    let to = f.next()?.to_string();
    Some((
        seq,
        PumpingEvent {
            at,
            approval,
            to,
            country,
        },
    ))
}

impl<D: ?Sized> RedisHot<D> {
    /// The pumping log's keys (position counter, log), in the service's own hash tag.
    fn pumping_keys(&self, service_id: &str) -> (String, String) {
        let base = format!("{}:{{p.{service_id}}}:pumping", self.inner.prefix);
        (format!("{base}:seq"), format!("{base}:log"))
    }
}

#[async_trait]
impl<D: Store + JournalSink + ?Sized + 'static> GuardStore for RedisHot<D> {
    async fn append_pumping(
        &self,
        service_id: &str,
        event: &PumpingEvent,
        after: i64,
    ) -> StoreResult<(i64, Vec<(i64, PumpingEvent)>)> {
        let (seq_key, log_key) = self.pumping_keys(service_id);
        let (seq, between): (i64, Vec<String>) = PUMPING_APPEND
            .key(seq_key)
            .key(log_key)
            .arg(pumping_member(event))
            .arg(after)
            .arg(event.at - PUMPING_LOG_KEEP_SECONDS)
            .invoke_async(&mut self.conn())
            .await
            .map_err(rerr)?;
        Ok((
            seq,
            between.iter().filter_map(|m| parse_member(m)).collect(),
        ))
    }

    async fn pumping_log(
        &self,
        service_id: &str,
        after: i64,
        since: i64,
        limit: u32,
    ) -> StoreResult<Vec<(i64, PumpingEvent)>> {
        let (_, log_key) = self.pumping_keys(service_id);
        let mut out = Vec::new();
        let mut from = after;
        // Pages by position; entries older than `since` are skipped (the log is in
        // position order, and positions and times rise together up to clock skew).
        while out.len() < limit as usize {
            let page: Vec<String> = self
                .conn()
                .zrangebyscore_limit(&log_key, format!("({from}"), "+inf", 0, 1_000)
                .await
                .map_err(rerr)?;
            let Some(last) = page.last().and_then(|m| parse_member(m)) else {
                break;
            };
            from = last.0;
            let done = page.len() < 1_000;
            out.extend(
                page.iter()
                    .filter_map(|m| parse_member(m))
                    .filter(|(_, e)| e.at >= since),
            );
            if done {
                break;
            }
        }
        out.truncate(limit as usize);
        Ok(out)
    }

    async fn take_tokens(
        &self,
        buckets: &[Bucket],
        now: DateTime<Utc>,
    ) -> StoreResult<Result<(), Refusal>> {
        let mut groups: Vec<(&str, Vec<&Bucket>)> = Vec::new();
        for b in buckets {
            let tag = tag_of(&b.key);
            match groups.iter_mut().find(|(t, _)| *t == tag) {
                Some((_, g)) => g.push(b),
                None => groups.push((tag, vec![b])),
            }
        }
        let mut conn = self.conn();
        for (i, (_, group)) in groups.iter().enumerate() {
            let reply: Vec<i64> = self
                .gcra_invocation(&GCRA, group, now)
                .invoke_async(&mut conn)
                .await
                .map_err(rerr)?;
            if reply.first() == Some(&1) {
                continue;
            }
            for (_, taken) in &groups[..i] {
                self.gcra_invocation(&GCRA_REFUND, taken, now)
                    .invoke_async::<i64>(&mut conn)
                    .await
                    .map_err(rerr)?;
            }
            let index = reply.get(1).copied().unwrap_or(1).max(1) as usize - 1;
            let wait = reply.get(2).copied().unwrap_or(1000);
            let bucket = group.get(index).copied().unwrap_or(group[0]);
            // The same wording as the pure rules give (`rate::take`).
            let refusal = rate::take(std::slice::from_ref(bucket), &[Some(i64::MAX / 4)], 0)
                .err()
                .map(|r| Refusal {
                    retry_after_secs: Some(rate::retry_after_secs(wait)),
                    ..r
                })
                .unwrap_or(Refusal {
                    guard: GuardName::RateLimit,
                    reason: "rate limit".into(),
                    retry_after_secs: Some(rate::retry_after_secs(wait)),
                });
            return Ok(Err(refusal));
        }
        Ok(Ok(()))
    }

    async fn record_decision(
        &self,
        record: &DecisionRecord,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<()> {
        self.durable().record_decision(record, now, ctx).await
    }

    async fn charge_budget(
        &self,
        service_id: &str,
        guard: &BudgetGuard,
        cost: Money,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<Result<(), Refusal>> {
        self.durable()
            .charge_budget(service_id, guard, cost, now, ctx)
            .await
    }

    async fn refund_budget(
        &self,
        service_id: &str,
        cost: Money,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.durable().refund_budget(service_id, cost, now).await
    }

    async fn list_decisions(
        &self,
        service_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<StoredDecision>> {
        self.durable().list_decisions(service_id, limit).await
    }
}
