//! Passkeys in PostgreSQL: credentials and ceremonies as rows. A ceremony is taken by one
//! conditional `UPDATE` (of two nodes, one wins); a sign-in is one transaction holding the
//! entity's lockout lock: the lockout, the counter rule of `otpd_core::passkey` applied as
//! a compare-and-set on the stored counter, the lockout cleared or counted, and the event.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::event::EventType;
use otpd_core::lockout::Subject;
use otpd_core::passkey::{CeremonyKind, PasskeyCeremony, PasskeyFactor, counter_accepts};
use otpd_core::store::{
    PasskeyFailure, PasskeyStore, PasskeyUse, PasskeyUseOutcome, StoreError, StoreResult,
};
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

use super::{PostgresStore, db, insert_event, lockout, ms, time};

const FACTOR_COLUMNS: &str = "p.id, p.service_id, s.name AS service_name, p.entity, \
    p.credential_id, p.user_handle, p.user_name, p.credential, p.sign_count, p.created_at, \
    p.last_used_at";

const CEREMONY_COLUMNS: &str =
    "id, kind, service_id, entity, user_name, state, created_at, expires_at";

fn row_to_factor(row: &PgRow) -> StoreResult<PasskeyFactor> {
    Ok(PasskeyFactor {
        id: row.get("id"),
        service_id: row.get("service_id"),
        service_name: row.get("service_name"),
        entity: row.get("entity"),
        credential_id: row.get("credential_id"),
        user_handle: row.get("user_handle"),
        user_name: row.get("user_name"),
        credential: row.get("credential"),
        sign_count: u32::try_from(row.get::<i64, _>("sign_count"))
            .map_err(|_| StoreError::Corrupt("passkey record: sign_count".into()))?,
        created_at: time(row.get("created_at")),
        last_used_at: row.get::<Option<i64>, _>("last_used_at").map(time),
    })
}

fn row_to_ceremony(row: &PgRow) -> StoreResult<PasskeyCeremony> {
    Ok(PasskeyCeremony {
        id: row.get("id"),
        kind: CeremonyKind::parse(row.get("kind"))
            .ok_or_else(|| StoreError::Corrupt("passkey ceremony record: kind".into()))?,
        service_id: row.get("service_id"),
        entity: row.get("entity"),
        user_name: row.get("user_name"),
        state: row.get("state"),
        created_at: time(row.get("created_at")),
        expires_at: time(row.get("expires_at")),
    })
}

fn factor_query(filter: &str) -> String {
    format!(
        "SELECT {FACTOR_COLUMNS} FROM passkey_factors p JOIN services s ON s.id = p.service_id \
         WHERE {filter}"
    )
}

async fn load(
    tx: &mut Transaction<'static, Postgres>,
    id: &str,
) -> StoreResult<Option<PasskeyFactor>> {
    let row = sqlx::query(&factor_query("p.id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    row.as_ref().map(row_to_factor).transpose()
}

async fn failed_in(
    tx: &mut Transaction<'static, Postgres>,
    f: &PasskeyFailure,
    now: DateTime<Utc>,
    ctx: &WriteContext,
) -> StoreResult<()> {
    insert_event(
        tx,
        EventType::PasskeyFailed,
        None,
        Some(&f.service_id),
        json!({"factor_id": f.factor_id, "entity": f.entity, "reason": f.reason}),
        now,
        ctx,
    )
    .await?;
    if let Some(entity) = &f.entity {
        let policy = lockout::policy(tx, &f.service_id).await?;
        lockout::record_failures(
            tx,
            &f.service_id,
            &[Subject::Entity(entity.clone())],
            &policy,
            now,
            ctx,
        )
        .await?;
    }
    Ok(())
}

#[async_trait]
impl PasskeyStore for PostgresStore {
    async fn create_passkey_ceremony(&self, c: &PasskeyCeremony) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        // Ceremonies past their deadline are of no use: swept as new ones start.
        sqlx::query("DELETE FROM passkey_ceremonies WHERE expires_at < $1")
            .bind(ms(c.created_at - otpd_core::passkey::CEREMONY_TTL))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(&format!(
            "INSERT INTO passkey_ceremonies ({CEREMONY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&c.id)
        .bind(c.kind.as_str())
        .bind(&c.service_id)
        .bind(&c.entity)
        .bind(&c.user_name)
        .bind(&c.state)
        .bind(ms(c.created_at))
        .bind(ms(c.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn get_passkey_ceremony(&self, id: &str) -> StoreResult<Option<PasskeyCeremony>> {
        let row = sqlx::query(&format!(
            "SELECT {CEREMONY_COLUMNS} FROM passkey_ceremonies WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(row_to_ceremony).transpose()
    }

    async fn take_passkey_ceremony(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<PasskeyCeremony>> {
        let row = sqlx::query(&format!(
            "UPDATE passkey_ceremonies SET used_at = $2 \
             WHERE id = $1 AND used_at IS NULL AND expires_at > $2 RETURNING {CEREMONY_COLUMNS}"
        ))
        .bind(id)
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(row_to_ceremony).transpose()
    }

    async fn register_passkey(&self, f: &PasskeyFactor, ctx: &WriteContext) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "INSERT INTO passkey_factors (id, service_id, entity, credential_id, user_handle, \
             user_name, credential, sign_count, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (service_id, credential_id) DO NOTHING",
        )
        .bind(&f.id)
        .bind(&f.service_id)
        .bind(&f.entity)
        .bind(&f.credential_id)
        .bind(&f.user_handle)
        .bind(&f.user_name)
        .bind(&f.credential)
        .bind(i64::from(f.sign_count))
        .bind(ms(f.created_at))
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            == 1;
        if done {
            insert_event(
                &mut tx,
                EventType::PasskeyRegistered,
                None,
                Some(&f.service_id),
                json!({"factor_id": f.id, "entity": f.entity}),
                f.created_at,
                ctx,
            )
            .await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(done)
    }

    async fn get_passkey(&self, id: &str) -> StoreResult<Option<PasskeyFactor>> {
        let row = sqlx::query(&factor_query("p.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(row_to_factor).transpose()
    }

    async fn find_passkey_by_credential(
        &self,
        service_id: &str,
        credential_id: &str,
    ) -> StoreResult<Option<PasskeyFactor>> {
        let row = sqlx::query(&factor_query("p.service_id = $1 AND p.credential_id = $2"))
            .bind(service_id)
            .bind(credential_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(row_to_factor).transpose()
    }

    async fn list_passkeys(
        &self,
        service_id: &str,
        entity: &str,
    ) -> StoreResult<Vec<PasskeyFactor>> {
        let rows = sqlx::query(&factor_query(
            "p.service_id = $1 AND p.entity = $2 ORDER BY p.created_at, p.id",
        ))
        .bind(service_id)
        .bind(entity)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(row_to_factor).collect()
    }

    async fn delete_passkey(
        &self,
        id: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let Some(f) = load(&mut tx, id).await? else {
            return Ok(false);
        };
        let done = sqlx::query("DELETE FROM passkey_factors WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected()
            == 1;
        if done {
            insert_event(
                &mut tx,
                EventType::PasskeyDeleted,
                None,
                Some(&f.service_id),
                json!({"factor_id": f.id, "entity": f.entity}),
                now,
                ctx,
            )
            .await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(done)
    }

    async fn use_passkey(
        &self,
        used: &PasskeyUse,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<PasskeyUseOutcome> {
        let mut tx = self.write_tx().await?;
        let Some(f) = load(&mut tx, &used.factor_id).await? else {
            return Ok(PasskeyUseOutcome::NotFound);
        };
        let subjects = [Subject::Entity(f.entity.clone())];
        lockout::lock_subjects(&mut tx, &f.service_id, &subjects).await?;
        lockout::ensure_unlocked(&mut tx, &f.service_id, &subjects, now).await?;
        let accepted = counter_accepts(f.sign_count, used.sign_count)
            && sqlx::query(
                "UPDATE passkey_factors SET sign_count = $1, credential = $2, last_used_at = $3 \
                 WHERE id = $4 AND sign_count = $5",
            )
            .bind(i64::from(used.sign_count))
            .bind(&used.credential)
            .bind(ms(now))
            .bind(&f.id)
            .bind(i64::from(f.sign_count))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected()
                == 1;
        if !accepted {
            let failure = PasskeyFailure {
                service_id: f.service_id.clone(),
                entity: Some(f.entity.clone()),
                factor_id: Some(f.id.clone()),
                reason: otpd_core::store::COUNTER_WENT_BACK.into(),
            };
            failed_in(&mut tx, &failure, now, ctx).await?;
            tx.commit().await.map_err(db)?;
            return Ok(PasskeyUseOutcome::CounterRegressed);
        }
        lockout::clear(&mut tx, &f.service_id, &subjects).await?;
        insert_event(
            &mut tx,
            EventType::PasskeyAuthenticated,
            None,
            Some(&f.service_id),
            json!({"factor_id": f.id, "entity": f.entity}),
            now,
            ctx,
        )
        .await?;
        let after = load(&mut tx, &f.id).await?;
        tx.commit().await.map_err(db)?;
        Ok(after.map_or(PasskeyUseOutcome::NotFound, |f| {
            PasskeyUseOutcome::Accepted(Box::new(f))
        }))
    }

    async fn passkey_failed(
        &self,
        failure: &PasskeyFailure,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        failed_in(&mut tx, failure, now, ctx).await?;
        tx.commit().await.map_err(db)
    }

    async fn entity_locked_until(
        &self,
        service_id: &str,
        entity: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let mut tx = self.write_tx().await?;
        let until =
            lockout::locked_until(&mut tx, service_id, &[Subject::Entity(entity.into())], now)
                .await?;
        tx.commit().await.map_err(db)?;
        Ok(until)
    }
}
