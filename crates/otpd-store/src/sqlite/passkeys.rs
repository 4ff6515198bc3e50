//! Passkeys in SQLite: credentials and ceremonies as rows. A ceremony is taken by one
//! conditional `UPDATE` (unused and before its deadline); a sign-in is one transaction on
//! the writer: the entity's lockout, the counter rule of `otpd_core::passkey` applied as a
//! compare-and-set on the stored counter, the lockout cleared or counted, and the event.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::event::EventType;
use otpd_core::lockout::Subject;
use otpd_core::passkey::{CeremonyKind, PasskeyCeremony, PasskeyFactor, counter_accepts};
use otpd_core::store::{
    PasskeyFailure, PasskeyStore, PasskeyUse, PasskeyUseOutcome, StoreError, StoreResult,
};
use rusqlite::{Connection, Row, params};
use serde_json::json;

use super::{SqlResult, SqliteStore, collect, lockout, ms, record_event, time};

const FACTOR_COLUMNS: &str = "p.id, p.service_id, s.name AS service_name, p.entity, \
    p.credential_id, p.user_handle, p.user_name, p.credential, p.sign_count, p.created_at, \
    p.last_used_at";

const CEREMONY_COLUMNS: &str =
    "id, kind, service_id, entity, user_name, state, created_at, expires_at";

fn row_to_factor(row: &Row<'_>) -> SqlResult<PasskeyFactor> {
    Ok(PasskeyFactor {
        id: row.get("id")?,
        service_id: row.get("service_id")?,
        service_name: row.get("service_name")?,
        entity: row.get("entity")?,
        credential_id: row.get("credential_id")?,
        user_handle: row.get("user_handle")?,
        user_name: row.get("user_name")?,
        credential: row.get("credential")?,
        sign_count: u32::try_from(row.get::<_, i64>("sign_count")?)
            .map_err(|_| StoreError::Corrupt("passkey record: sign_count".into()))?,
        created_at: time(row.get("created_at")?),
        last_used_at: row.get::<_, Option<i64>>("last_used_at")?.map(time),
    })
}

fn row_to_ceremony(row: &Row<'_>) -> SqlResult<PasskeyCeremony> {
    let kind: String = row.get("kind")?;
    Ok(PasskeyCeremony {
        id: row.get("id")?,
        kind: CeremonyKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt("passkey ceremony record: kind".into()))?,
        service_id: row.get("service_id")?,
        entity: row.get("entity")?,
        user_name: row.get("user_name")?,
        state: row.get("state")?,
        created_at: time(row.get("created_at")?),
        expires_at: time(row.get("expires_at")?),
    })
}

fn load(conn: &Connection, id: &str) -> SqlResult<Option<PasskeyFactor>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {FACTOR_COLUMNS} FROM passkey_factors p JOIN services s ON s.id = p.service_id \
         WHERE p.id = ?"
    ))?;
    Ok(collect(&mut stmt, [id], row_to_factor)?.pop())
}

fn load_ceremony(conn: &Connection, id: &str) -> SqlResult<Option<PasskeyCeremony>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CEREMONY_COLUMNS} FROM passkey_ceremonies WHERE id = ?"
    ))?;
    Ok(collect(&mut stmt, [id], row_to_ceremony)?.pop())
}

/// The work of [`PasskeyStore::use_passkey`] inside the caller's transaction.
fn use_in(
    tx: &Connection,
    used: &PasskeyUse,
    now: DateTime<Utc>,
    ctx: &WriteContext,
) -> SqlResult<PasskeyUseOutcome> {
    let Some(f) = load(tx, &used.factor_id)? else {
        return Ok(PasskeyUseOutcome::NotFound);
    };
    let subjects = [Subject::Entity(f.entity.clone())];
    lockout::ensure_unlocked(tx, &f.service_id, &subjects, now)?;
    let accepted = counter_accepts(f.sign_count, used.sign_count)
        && tx
            .prepare_cached(
                "UPDATE passkey_factors SET sign_count = ?, credential = ?, last_used_at = ? \
                 WHERE id = ? AND sign_count = ?",
            )?
            .execute(params![
                i64::from(used.sign_count),
                used.credential,
                ms(now),
                f.id,
                i64::from(f.sign_count)
            ])?
            == 1;
    if !accepted {
        failed_in(
            tx,
            &PasskeyFailure {
                service_id: f.service_id.clone(),
                entity: Some(f.entity.clone()),
                factor_id: Some(f.id.clone()),
                reason: otpd_core::store::COUNTER_WENT_BACK.into(),
            },
            now,
            ctx,
        )?;
        return Ok(PasskeyUseOutcome::CounterRegressed);
    }
    lockout::clear(tx, &f.service_id, &subjects)?;
    record_event(
        tx,
        EventType::PasskeyAuthenticated,
        None,
        Some(&f.service_id),
        json!({"factor_id": f.id, "entity": f.entity}),
        now,
        ctx,
    )?;
    Ok(load(tx, &f.id)?.map_or(PasskeyUseOutcome::NotFound, |f| {
        PasskeyUseOutcome::Accepted(Box::new(f))
    }))
}

/// The work of [`PasskeyStore::passkey_failed`] inside the caller's transaction.
fn failed_in(
    tx: &Connection,
    f: &PasskeyFailure,
    now: DateTime<Utc>,
    ctx: &WriteContext,
) -> SqlResult<()> {
    record_event(
        tx,
        EventType::PasskeyFailed,
        None,
        Some(&f.service_id),
        json!({"factor_id": f.factor_id, "entity": f.entity, "reason": f.reason}),
        now,
        ctx,
    )?;
    if let Some(entity) = &f.entity {
        let policy = lockout::policy(tx, &f.service_id)?;
        lockout::record_failures(
            tx,
            &f.service_id,
            &[Subject::Entity(entity.clone())],
            &policy,
            now,
            ctx,
        )?;
    }
    Ok(())
}

#[async_trait]
impl PasskeyStore for SqliteStore {
    async fn create_passkey_ceremony(&self, c: &PasskeyCeremony) -> StoreResult<()> {
        self.write(|tx| {
            // Ceremonies past their deadline are of no use: swept as new ones start.
            tx.prepare_cached("DELETE FROM passkey_ceremonies WHERE expires_at < ?")?
                .execute([ms(c.created_at - otpd_core::passkey::CEREMONY_TTL)])?;
            tx.prepare_cached(&format!(
                "INSERT INTO passkey_ceremonies ({CEREMONY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ))?
            .execute(params![
                c.id,
                c.kind.as_str(),
                c.service_id,
                c.entity,
                c.user_name,
                c.state,
                ms(c.created_at),
                ms(c.expires_at)
            ])?;
            Ok(())
        })
        .await
    }

    async fn get_passkey_ceremony(&self, id: &str) -> StoreResult<Option<PasskeyCeremony>> {
        self.read(|c| load_ceremony(c, id)).await
    }

    async fn take_passkey_ceremony(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<PasskeyCeremony>> {
        self.write(|tx| {
            let taken = tx
                .prepare_cached(
                    "UPDATE passkey_ceremonies SET used_at = ? \
                     WHERE id = ? AND used_at IS NULL AND expires_at > ?",
                )?
                .execute(params![ms(now), id, ms(now)])?;
            if taken == 1 {
                load_ceremony(tx, id)
            } else {
                Ok(None)
            }
        })
        .await
    }

    async fn register_passkey(&self, f: &PasskeyFactor, ctx: &WriteContext) -> StoreResult<bool> {
        self.write(|tx| {
            let done = tx
                .prepare_cached(
                    "INSERT INTO passkey_factors (id, service_id, entity, credential_id, \
                     user_handle, user_name, credential, sign_count, created_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (service_id, credential_id) DO NOTHING",
                )?
                .execute(params![
                    f.id,
                    f.service_id,
                    f.entity,
                    f.credential_id,
                    f.user_handle,
                    f.user_name,
                    f.credential,
                    i64::from(f.sign_count),
                    ms(f.created_at)
                ])?;
            if done == 1 {
                record_event(
                    tx,
                    EventType::PasskeyRegistered,
                    None,
                    Some(&f.service_id),
                    json!({"factor_id": f.id, "entity": f.entity}),
                    f.created_at,
                    ctx,
                )?;
            }
            Ok(done == 1)
        })
        .await
    }

    async fn get_passkey(&self, id: &str) -> StoreResult<Option<PasskeyFactor>> {
        self.read(|c| load(c, id)).await
    }

    async fn find_passkey_by_credential(
        &self,
        service_id: &str,
        credential_id: &str,
    ) -> StoreResult<Option<PasskeyFactor>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {FACTOR_COLUMNS} FROM passkey_factors p JOIN services s ON s.id = p.service_id \
                 WHERE p.service_id = ? AND p.credential_id = ?"
            ))?;
            Ok(collect(&mut stmt, params![service_id, credential_id], row_to_factor)?.pop())
        })
        .await
    }

    async fn list_passkeys(
        &self,
        service_id: &str,
        entity: &str,
    ) -> StoreResult<Vec<PasskeyFactor>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {FACTOR_COLUMNS} FROM passkey_factors p JOIN services s ON s.id = p.service_id \
                 WHERE p.service_id = ? AND p.entity = ? ORDER BY p.created_at, p.id"
            ))?;
            collect(&mut stmt, params![service_id, entity], row_to_factor)
        })
        .await
    }

    async fn delete_passkey(
        &self,
        id: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<bool> {
        self.write(|tx| {
            let Some(f) = load(tx, id)? else {
                return Ok(false);
            };
            tx.prepare_cached("DELETE FROM passkey_factors WHERE id = ?")?
                .execute([id])?;
            record_event(
                tx,
                EventType::PasskeyDeleted,
                None,
                Some(&f.service_id),
                json!({"factor_id": f.id, "entity": f.entity}),
                now,
                ctx,
            )?;
            Ok(true)
        })
        .await
    }

    async fn use_passkey(
        &self,
        used: &PasskeyUse,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<PasskeyUseOutcome> {
        self.write(|tx| use_in(tx, used, now, ctx)).await
    }

    async fn passkey_failed(
        &self,
        failure: &PasskeyFailure,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<()> {
        self.write(|tx| failed_in(tx, failure, now, ctx)).await
    }

    async fn entity_locked_until(
        &self,
        service_id: &str,
        entity: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        self.read(|c| lockout::locked_until(c, service_id, &[Subject::Entity(entity.into())], now))
            .await
    }
}
