//! Authenticator factors stay in the durable store; their checks share the entity's
//! lockout with sent codes through Redis: a check refuses while Redis holds a lock on the
//! entity, and a wrong factor code counts there too (the durable store still counts its
//! own), so guessing cannot move between sent codes and authenticator apps.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::event::EventType;
use otpd_core::ids::Kind;
use otpd_core::lockout::{Subject, retry_after_secs};
use otpd_core::store::{
    BackupHasher, FactorCheckOutcome, FactorMatcher, FactorStore, FactorTarget, JournalEntry,
    JournalEvent, JournalOp, JournalSink, Store, StoreError, StoreResult,
};
use otpd_core::totp::{Factor, FactorParams};
use serde_json::json;

use super::delegate::forward_to_durable;
use super::scripts::FAIL;
use super::{RedisHot, nonce, rerr};

impl<D: Store + JournalSink + ?Sized + 'static> RedisHot<D> {
    /// The end of the entity's lock in Redis, if it is locked at `now`.
    pub(super) async fn entity_lock(
        &self,
        service_id: &str,
        entity: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let mut conn = self.conn();
        let until: Option<i64> = redis::cmd("GET")
            .arg(self.lock_key(service_id, &Subject::Entity(entity.into()).key()))
            .query_async(&mut conn)
            .await
            .map_err(rerr)?;
        Ok(until
            .and_then(DateTime::from_timestamp_millis)
            .filter(|u| *u > now))
    }

    /// Counts a wrong factor code for the entity; a lock it starts is recorded as a
    /// `verification.blocked` event.
    pub(super) async fn entity_failure(
        &self,
        service_id: &str,
        entity: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<()> {
        let policy = self.service_info(service_id).await?.lockout;
        let subject = Subject::Entity(entity.into());
        let mut conn = self.conn();
        let reply: Vec<i64> = FAIL
            .key(format!(
                "{}lf:{service_id}:{}",
                self.inner.hot,
                subject.key()
            ))
            .key(self.lock_key(service_id, &subject.key()))
            .arg(now.timestamp_millis())
            .arg(nonce())
            .arg(policy.max_failures)
            .arg(u64::from(policy.window_seconds) * 1000)
            .arg(u64::from(policy.duration_seconds) * 1000)
            .invoke_async(&mut conn)
            .await
            .map_err(rerr)?;
        let (until, failures) = match reply.as_slice() {
            [u, n] if *u > 0 => (*u, *n),
            _ => return Ok(()),
        };
        let until = DateTime::from_timestamp_millis(until).unwrap_or(now);
        let event = JournalEvent {
            id: Kind::Event.new_id(),
            kind: EventType::Blocked,
            verification_id: None,
            service_id: Some(service_id.into()),
            data: json!({
                "reason": "lockout",
                "subject": subject.display(),
                "failures": failures,
                "locked_until": until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            }),
            at: now,
            actor: ctx.actor(),
        };
        self.durable()
            .apply_journal(&JournalEntry {
                ops: vec![JournalOp::Event(event)],
            })
            .await?;
        ctx.note_event();
        Ok(())
    }
}

forward_to_durable! {
    impl FactorStore {
        fn create_factor(&self, factor: &Factor, ctx: &WriteContext) -> StoreResult<()>;
        fn get_factor(&self, id: &str) -> StoreResult<Option<Factor>>;
        fn list_factors(&self, service_id: &str, entity: &str) -> StoreResult<Vec<Factor>>;
        fn delete_factor(
            &self,
            id: &str,
            now: DateTime<Utc>,
            ctx: &WriteContext
        ) -> StoreResult<bool>;
        fn replace_backup_codes(
            &self,
            service_id: &str,
            entity: &str,
            hashes: &[Vec<u8>],
            now: DateTime<Utc>,
            ctx: &WriteContext
        ) -> StoreResult<()>;
        fn count_backup_codes(&self, service_id: &str, entity: &str) -> StoreResult<u32>;
        fn list_factor_entities(
            &self,
            service_id: &str,
            offset: u64,
            limit: u32
        ) -> StoreResult<Vec<(String, DateTime<Utc>)>>;
        fn update_factor(
            &self,
            id: &str,
            label: &str,
            params: Option<FactorParams>
        ) -> StoreResult<bool>;
    }

    async fn check_factor(
        &self,
        target: FactorTarget,
        matcher: FactorMatcher<'_>,
        backup: BackupHasher<'_>,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<FactorCheckOutcome> {
        let subject = match &target {
            FactorTarget::Entity { service_id, entity } => {
                Some((service_id.clone(), entity.clone()))
            }
            FactorTarget::Activate(id) | FactorTarget::Factor(id) => self
                .durable()
                .get_factor(id)
                .await?
                .map(|f| (f.service_id, f.entity)),
        };
        if let Some((service_id, entity)) = &subject
            && let Some(until) = self.entity_lock(service_id, entity, now).await?
        {
            return Err(StoreError::Locked {
                retry_after_secs: retry_after_secs(until, now),
            });
        }
        let outcome = self
            .durable()
            .check_factor(target, matcher, backup, now, ctx)
            .await?;
        if let (FactorCheckOutcome::Rejected { .. }, Some((service_id, entity))) =
            (&outcome, &subject)
        {
            self.entity_failure(service_id, entity, now, ctx).await?;
        }
        Ok(outcome)
    }
}
