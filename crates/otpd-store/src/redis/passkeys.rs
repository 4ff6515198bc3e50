//! Passkeys stay in the durable store, like authenticator factors; their sign-ins share the
//! entity's lockout with sent codes through Redis: a sign-in is refused while Redis holds a
//! lock on the entity, and a failed one counts there too (the durable store still counts
//! its own).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::lockout::retry_after_secs;
use otpd_core::passkey::{PasskeyCeremony, PasskeyFactor};
use otpd_core::store::{
    JournalSink, PasskeyFailure, PasskeyStore, PasskeyUse, PasskeyUseOutcome, Store, StoreError,
    StoreResult,
};

use super::RedisHot;

#[async_trait]
impl<D: Store + JournalSink + ?Sized + 'static> PasskeyStore for RedisHot<D> {
    async fn create_passkey_ceremony(&self, ceremony: &PasskeyCeremony) -> StoreResult<()> {
        self.durable().create_passkey_ceremony(ceremony).await
    }

    async fn get_passkey_ceremony(&self, id: &str) -> StoreResult<Option<PasskeyCeremony>> {
        self.durable().get_passkey_ceremony(id).await
    }

    async fn take_passkey_ceremony(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<PasskeyCeremony>> {
        self.durable().take_passkey_ceremony(id, now).await
    }

    async fn register_passkey(
        &self,
        factor: &PasskeyFactor,
        ctx: &WriteContext,
    ) -> StoreResult<bool> {
        self.durable().register_passkey(factor, ctx).await
    }

    async fn get_passkey(&self, id: &str) -> StoreResult<Option<PasskeyFactor>> {
        self.durable().get_passkey(id).await
    }

    async fn find_passkey_by_credential(
        &self,
        service_id: &str,
        credential_id: &str,
    ) -> StoreResult<Option<PasskeyFactor>> {
        self.durable()
            .find_passkey_by_credential(service_id, credential_id)
            .await
    }

    async fn list_passkeys(
        &self,
        service_id: &str,
        entity: &str,
    ) -> StoreResult<Vec<PasskeyFactor>> {
        self.durable().list_passkeys(service_id, entity).await
    }

    async fn delete_passkey(
        &self,
        id: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<bool> {
        self.durable().delete_passkey(id, now, ctx).await
    }

    async fn use_passkey(
        &self,
        used: &PasskeyUse,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<PasskeyUseOutcome> {
        let owner = self.durable().get_passkey(&used.factor_id).await?;
        if let Some(f) = &owner
            && let Some(until) = self.entity_lock(&f.service_id, &f.entity, now).await?
        {
            return Err(StoreError::Locked {
                retry_after_secs: retry_after_secs(until, now),
            });
        }
        let outcome = self.durable().use_passkey(used, now, ctx).await?;
        if let (PasskeyUseOutcome::CounterRegressed, Some(f)) = (&outcome, &owner) {
            self.entity_failure(&f.service_id, &f.entity, now, ctx)
                .await?;
        }
        Ok(outcome)
    }

    async fn passkey_failed(
        &self,
        failure: &PasskeyFailure,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<()> {
        self.durable().passkey_failed(failure, now, ctx).await?;
        if let Some(entity) = &failure.entity {
            self.entity_failure(&failure.service_id, entity, now, ctx)
                .await?;
        }
        Ok(())
    }

    async fn entity_locked_until(
        &self,
        service_id: &str,
        entity: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let hot = self.entity_lock(service_id, entity, now).await?;
        let durable = self
            .durable()
            .entity_locked_until(service_id, entity, now)
            .await?;
        Ok(hot.max(durable))
    }
}
