//! The capabilities Redis does not hold: passed to the durable store, after a read
//! barrier where the journal's earlier writes must be seen first. Those passed as they are
//! are listed by signature only ([`forward_to_durable!`]); the methods written out are the
//! ones Redis does something more in.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use otpd_core::apikey::ApiKey;
use otpd_core::audit::WriteContext;
use otpd_core::channel::Channel;
use otpd_core::event::Event;
use otpd_core::guards::proof_of_work::Challenge;
use otpd_core::service::Service;
use otpd_core::store::*;

use otpd_core::totp::challenge::FactorChallenge;

use super::RedisHot;

/// Implements a capability for `RedisHot<D>`: each method listed by its signature calls
/// the durable store's method of the same name with the same arguments; the methods
/// written out after the list (what Redis does more than pass on) are kept as they are.
macro_rules! forward_to_durable {
    (impl $capability:ident {
        $(fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;)*
    } $($own:tt)*) => {
        #[async_trait]
        impl<D: Store + JournalSink + ?Sized + 'static> $capability for RedisHot<D> {
            $(async fn $name(&self $(, $arg: $ty)*) -> $ret {
                self.durable().$name($($arg),*).await
            })*
            $($own)*
        }
    };
}
pub(super) use forward_to_durable;

forward_to_durable! {
    impl ServiceStore {
        fn create_service(
            &self,
            service: &Service,
            sealed_webhook_secret: Option<Vec<u8>>
        ) -> StoreResult<()>;
        fn find_service(&self, name_id_or_sid: &str) -> StoreResult<Option<Service>>;
        fn list_services(&self) -> StoreResult<Vec<Service>>;
        fn delete_service(&self, id: &str) -> StoreResult<bool>;
        fn sealed_webhook_secret(&self, id: &str) -> StoreResult<Option<Vec<u8>>>;
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
}

forward_to_durable! {
    impl KeyStore {
        fn insert_key(&self, key: &ApiKey, digest: &[u8]) -> StoreResult<()>;
        fn find_key(&self, digest: &[u8]) -> StoreResult<Option<ApiKey>>;
        fn list_keys(&self) -> StoreResult<Vec<ApiKey>>;
        fn revoke_key(&self, id: &str, now: DateTime<Utc>) -> StoreResult<bool>;
        fn count_live_keys(&self) -> StoreResult<u64>;
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

forward_to_durable! {
    impl ChallengeStore {
        fn create_challenge(&self, challenge: &Challenge) -> StoreResult<()>;
        fn get_challenge(&self, id: &str) -> StoreResult<Option<Challenge>>;
        fn spend_challenge(
            &self,
            id: &str,
            spender: Option<&str>,
            now: DateTime<Utc>
        ) -> StoreResult<Spend>;
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

forward_to_durable! {
    impl SessionStore {
        fn create_session(
            &self,
            digest: &[u8],
            session: &DashboardSession,
            now: DateTime<Utc>
        ) -> StoreResult<()>;
        fn find_session(
            &self,
            digest: &[u8],
            now: DateTime<Utc>
        ) -> StoreResult<Option<DashboardSession>>;
        fn delete_session(&self, digest: &[u8]) -> StoreResult<bool>;
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

forward_to_durable! {
    impl WebhookStore {
        fn finish_webhook(
            &self,
            job: &WebhookJob,
            result: WebhookResult,
            now: DateTime<Utc>
        ) -> StoreResult<bool>;
        fn list_dead_letters(&self, filter: &DeadLetterFilter) -> StoreResult<Vec<DeadLetter>>;
        fn get_dead_letter(&self, id: &str) -> StoreResult<Option<DeadLetter>>;
        fn replay_dead_letter(&self, id: &str, now: DateTime<Utc>) -> StoreResult<bool>;
        fn replay_dead_letters(&self, service_id: &str, now: DateTime<Utc>) -> StoreResult<u64>;
    }

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
    async fn next_webhook_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        self.barrier().await;
        self.durable().next_webhook_due().await
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

forward_to_durable! {
    impl SafeListStore {
        fn add_safe_number(&self, number: &SafeNumber) -> StoreResult<SafeNumber>;
        fn safe_number(&self, phone_number: &str) -> StoreResult<Option<SafeNumber>>;
        fn remove_safe_number(&self, phone_number: &str) -> StoreResult<bool>;
    }
}

forward_to_durable! {
    impl FactorChallengeStore {
        fn create_factor_challenge(&self, challenge: &FactorChallenge, ctx: &WriteContext) -> StoreResult<()>;
        fn get_factor_challenge(&self, id: &str) -> StoreResult<Option<FactorChallenge>>;
        fn list_factor_challenges(
            &self,
            filter: &FactorChallengeFilter
        ) -> StoreResult<Vec<FactorChallenge>>;
        fn approve_factor_challenge(&self, id: &str, now: DateTime<Utc>, ctx: &WriteContext) -> StoreResult<bool>;
    }
}
