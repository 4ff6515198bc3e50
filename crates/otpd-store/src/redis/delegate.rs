//! The capabilities Redis does not hold: passed to the durable store as they are.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use otpd_core::apikey::ApiKey;
use otpd_core::audit::WriteContext;
use otpd_core::channel::Channel;
use otpd_core::event::Event;
use otpd_core::guards::proof_of_work::Challenge;
use otpd_core::service::Service;
use otpd_core::store::*;

use super::RedisHot;

#[async_trait]
impl<D: Store + JournalSink + ?Sized + 'static> ServiceStore for RedisHot<D> {
    async fn create_service(
        &self,
        service: &Service,
        sealed_webhook_secret: Option<Vec<u8>>,
    ) -> StoreResult<()> {
        self.durable()
            .create_service(service, sealed_webhook_secret)
            .await
    }
    async fn find_service(&self, name_id_or_sid: &str) -> StoreResult<Option<Service>> {
        self.durable().find_service(name_id_or_sid).await
    }
    async fn list_services(&self) -> StoreResult<Vec<Service>> {
        self.durable().list_services().await
    }
    async fn update_service(
        &self,
        service: &Service,
        sealed_webhook_secret: Option<Option<Vec<u8>>>,
    ) -> StoreResult<()> {
        let updated = self
            .durable()
            .update_service(service, sealed_webhook_secret)
            .await;
        self.inner.services.forget_all();
        updated
    }
    async fn delete_service(&self, id: &str) -> StoreResult<bool> {
        self.durable().delete_service(id).await
    }
    async fn sealed_webhook_secret(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        self.durable().sealed_webhook_secret(id).await
    }
}

#[async_trait]
impl<D: Store + JournalSink + ?Sized + 'static> KeyStore for RedisHot<D> {
    async fn insert_key(&self, key: &ApiKey, digest: &[u8]) -> StoreResult<()> {
        self.durable().insert_key(key, digest).await
    }
    async fn find_key(&self, digest: &[u8]) -> StoreResult<Option<ApiKey>> {
        self.durable().find_key(digest).await
    }
    async fn list_keys(&self) -> StoreResult<Vec<ApiKey>> {
        self.durable().list_keys().await
    }
    async fn revoke_key(&self, id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        self.durable().revoke_key(id, now).await
    }
    async fn count_live_keys(&self) -> StoreResult<u64> {
        self.durable().count_live_keys().await
    }
}

#[async_trait]
impl<D: Store + JournalSink + ?Sized + 'static> OutboxStore for RedisHot<D> {
    async fn claim(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> StoreResult<Option<DeliveryJob>> {
        // Read barrier: the jobs of the sends made before this claim are in the outbox.
        self.barrier().await;
        self.durable().claim(owner, now, lease).await
    }
    async fn finish(
        &self,
        job: &DeliveryJob,
        result: AttemptResult,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<()> {
        self.durable().finish(job, result, now, ctx).await?;
        self.sync_from_durable(&job.verification_id).await
    }
    async fn apply_receipt(
        &self,
        receipt: &Receipt,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<bool> {
        let applied = self.durable().apply_receipt(receipt, now, ctx).await?;
        if applied && let Some(d) = self.durable().get_delivery(&receipt.message_id).await? {
            self.sync_from_durable(&d.verification_id).await?;
        }
        Ok(applied)
    }
    async fn held_ussd(
        &self,
        provider: &str,
        to: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DeliveryJob>> {
        self.barrier().await;
        self.durable().held_ussd(provider, to, now).await
    }
    async fn next_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        self.barrier().await;
        self.durable().next_due().await
    }
    async fn overdue_receipts(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryJob>> {
        self.barrier().await;
        self.durable().overdue_receipts(now, limit).await
    }
    async fn receipt_timeout(
        &self,
        job: &DeliveryJob,
        next: Option<NextDelivery>,
        error: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<bool> {
        let done = self
            .durable()
            .receipt_timeout(job, next, error, now, ctx)
            .await?;
        if done {
            self.sync_from_durable(&job.verification_id).await?;
        }
        Ok(done)
    }
}

#[async_trait]
impl<D: Store + JournalSink + ?Sized + 'static> EventStore for RedisHot<D> {
    async fn list_events(&self, filter: &EventFilter) -> StoreResult<Vec<Event>> {
        self.settle().await?;
        self.durable().list_events(filter).await
    }
    async fn event_seq(&self, id: &str) -> StoreResult<Option<i64>> {
        self.settle().await?;
        self.durable().event_seq(id).await
    }
    async fn append_event(
        &self,
        kind: otpd_core::event::EventType,
        data: serde_json::Value,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<()> {
        // The event log keeps the order things happened in: the journal's earlier events
        // first.
        self.barrier().await;
        self.durable().append_event(kind, data, now, ctx).await
    }
}

#[async_trait]
impl<D: Store + JournalSink + ?Sized + 'static> ChallengeStore for RedisHot<D> {
    async fn create_challenge(&self, challenge: &Challenge) -> StoreResult<()> {
        self.durable().create_challenge(challenge).await
    }
    async fn get_challenge(&self, id: &str) -> StoreResult<Option<Challenge>> {
        self.durable().get_challenge(id).await
    }
    async fn spend_challenge(
        &self,
        id: &str,
        spender: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<Spend> {
        self.durable().spend_challenge(id, spender, now).await
    }
}

#[async_trait]
impl<D: Store + JournalSink + ?Sized + 'static> RetentionStore for RedisHot<D> {
    async fn purge(
        &self,
        policy: &RetentionPolicy,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<RowCounts> {
        self.durable().purge(policy, now, ctx).await
    }
    async fn erase_recipient(
        &self,
        to: &str,
        masked: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<RowCounts> {
        // Redis first: a failure leaves the durable records for a retry of the erasure.
        let keys = self.erase_hot(to).await?;
        let mut counts = self.durable().erase_recipient(to, masked, now, ctx).await?;
        counts.insert("redis_keys".into(), keys);
        Ok(counts)
    }
}

#[async_trait]
impl<D: Store + JournalSink + ?Sized + 'static> SessionStore for RedisHot<D> {
    async fn create_session(
        &self,
        digest: &[u8],
        session: &DashboardSession,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.durable().create_session(digest, session, now).await
    }
    async fn find_session(
        &self,
        digest: &[u8],
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DashboardSession>> {
        self.durable().find_session(digest, now).await
    }
    async fn delete_session(&self, digest: &[u8]) -> StoreResult<bool> {
        self.durable().delete_session(digest).await
    }
}

#[async_trait]
impl<D: Store + JournalSink + ?Sized + 'static> StatsStore for RedisHot<D> {
    async fn stats(
        &self,
        since: DateTime<Utc>,
        bucket: Duration,
        recent: u32,
        now: DateTime<Utc>,
    ) -> StoreResult<Stats> {
        self.settle().await?;
        self.durable().stats(since, bucket, recent, now).await
    }
}

#[async_trait]
impl<D: Store + JournalSink + ?Sized + 'static> WebhookStore for RedisHot<D> {
    async fn claim_webhook(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> StoreResult<Option<WebhookJob>> {
        // Read barrier: the webhook messages of the journal's events are queued.
        self.barrier().await;
        self.durable().claim_webhook(owner, now, lease).await
    }
    async fn finish_webhook(
        &self,
        job: &WebhookJob,
        result: WebhookResult,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.durable().finish_webhook(job, result, now).await
    }
    async fn next_webhook_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        self.barrier().await;
        self.durable().next_webhook_due().await
    }
    async fn list_dead_letters(&self, filter: &DeadLetterFilter) -> StoreResult<Vec<DeadLetter>> {
        self.durable().list_dead_letters(filter).await
    }
    async fn get_dead_letter(&self, id: &str) -> StoreResult<Option<DeadLetter>> {
        self.durable().get_dead_letter(id).await
    }
    async fn replay_dead_letter(&self, id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        self.durable().replay_dead_letter(id, now).await
    }
    async fn replay_dead_letters(&self, service_id: &str, now: DateTime<Utc>) -> StoreResult<u64> {
        self.durable().replay_dead_letters(service_id, now).await
    }
    async fn webhook_stats(&self) -> StoreResult<(QueueStats, u64)> {
        self.barrier().await;
        self.durable().webhook_stats().await
    }
}

#[async_trait]
impl<D: Store + JournalSink + ?Sized + 'static> TelemetryStore for RedisHot<D> {
    async fn outbox_stats(&self) -> StoreResult<QueueStats> {
        // After the read barrier, entries still in the journal (a spooler behind or
        // down) may carry jobs not yet in the durable outbox: they count as queued.
        self.settle().await?;
        let mut stats = self.durable().outbox_stats().await?;
        let mut conn = self.conn();
        let first: Vec<super::StreamEntry> = redis::cmd("XRANGE")
            .arg(self.journal_key())
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(super::rerr)?;
        if let Some((id, _)) = first.first() {
            let journal: u64 = redis::cmd("XLEN")
                .arg(self.journal_key())
                .query_async(&mut conn)
                .await
                .map_err(super::rerr)?;
            stats.depth += journal;
            let written = id
                .split('-')
                .next()
                .and_then(|ms| ms.parse::<i64>().ok())
                .and_then(DateTime::from_timestamp_millis);
            stats.oldest = match (stats.oldest, written) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(stats)
    }
    async fn receipt_wait(
        &self,
        provider: &str,
        message_id: &str,
    ) -> StoreResult<Option<(Channel, Option<DateTime<Utc>>)>> {
        self.durable().receipt_wait(provider, message_id).await
    }
}

#[async_trait]
impl<D: Store + JournalSink + ?Sized + 'static> HealthStore for RedisHot<D> {
    async fn ping(&self) -> StoreResult<()> {
        self.ping_redis().await?;
        self.durable().ping().await
    }

    async fn dependencies(&self) -> Vec<(&'static str, StoreResult<()>)> {
        let (db, redis) = tokio::join!(self.durable().ping(), self.ping_redis());
        vec![("database", db), ("redis", redis)]
    }
}

#[async_trait]
impl<D: Store + JournalSink + ?Sized + 'static> SafeListStore for RedisHot<D> {
    async fn add_safe_number(&self, number: &SafeNumber) -> StoreResult<SafeNumber> {
        self.durable().add_safe_number(number).await
    }
    async fn safe_number(&self, phone_number: &str) -> StoreResult<Option<SafeNumber>> {
        self.durable().safe_number(phone_number).await
    }
    async fn remove_safe_number(&self, phone_number: &str) -> StoreResult<bool> {
        self.durable().remove_safe_number(phone_number).await
    }
}

#[async_trait]
impl<D: Store + JournalSink + ?Sized + 'static> FactorChallengeStore for RedisHot<D> {
    async fn create_factor_challenge(
        &self,
        challenge: &otpd_core::totp::challenge::FactorChallenge,
    ) -> StoreResult<()> {
        self.durable().create_factor_challenge(challenge).await
    }
    async fn get_factor_challenge(
        &self,
        id: &str,
    ) -> StoreResult<Option<otpd_core::totp::challenge::FactorChallenge>> {
        self.durable().get_factor_challenge(id).await
    }
    async fn list_factor_challenges(
        &self,
        filter: &FactorChallengeFilter,
    ) -> StoreResult<Vec<otpd_core::totp::challenge::FactorChallenge>> {
        self.durable().list_factor_challenges(filter).await
    }
    async fn approve_factor_challenge(&self, id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        self.durable().approve_factor_challenge(id, now).await
    }
}
