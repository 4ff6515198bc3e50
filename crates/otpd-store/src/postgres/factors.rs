//! Authenticator-app factors and backup codes in PostgreSQL. A check is one
//! transaction: lockout first, then the caller's matcher on each candidate factor, the matched
//! step recorded by a conditional update (replay protection), else a backup code spent by a
//! conditional update, else a lockout failure.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::event::EventType;
use otpd_core::lockout::Subject;
use otpd_core::store::{
    BackupHasher, FactorCheckOutcome, FactorMatcher, FactorMethod, FactorStore, FactorTarget,
    StoreError, StoreResult,
};
use otpd_core::totp::{Algorithm, Factor, FactorKind, FactorParams, FactorStatus};
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, Row, Transaction};

use super::{PostgresStore, db, insert_event, lock_key, lockout, ms, time};

const COLUMNS: &str = "f.id, f.service_id, s.name AS service_name, f.entity, f.kind, f.algorithm, \
    f.digits, f.period, f.tolerance, f.label, f.issuer, f.sealed_secret, f.status, \
    f.last_used_step, f.created_at, f.verified_at, f.last_used_at";

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("factor record: {what}"))
}

fn row_to_factor(row: &PgRow) -> StoreResult<Factor> {
    let last_used: i64 = row.get("last_used_step");
    Ok(Factor {
        id: row.get("id"),
        service_id: row.get("service_id"),
        service_name: row.get("service_name"),
        entity: row.get("entity"),
        params: FactorParams {
            kind: FactorKind::parse(row.get("kind")).ok_or_else(|| corrupt("kind"))?,
            algorithm: Algorithm::parse(row.get("algorithm"))
                .ok_or_else(|| corrupt("algorithm"))?,
            digits: u8::try_from(row.get::<i64, _>("digits")).map_err(|_| corrupt("digits"))?,
            period: u32::try_from(row.get::<i64, _>("period")).map_err(|_| corrupt("period"))?,
            tolerance: u32::try_from(row.get::<i64, _>("tolerance"))
                .map_err(|_| corrupt("tolerance"))?,
        },
        label: row.get("label"),
        issuer: row.get("issuer"),
        sealed_secret: row.get("sealed_secret"),
        status: FactorStatus::parse(row.get("status")).ok_or_else(|| corrupt("status"))?,
        last_used: u64::try_from(last_used).ok(),
        created_at: time(row.get("created_at")),
        verified_at: row.get::<Option<i64>, _>("verified_at").map(time),
        last_used_at: row.get::<Option<i64>, _>("last_used_at").map(time),
    })
}

async fn load(conn: &mut PgConnection, id: &str) -> StoreResult<Option<Factor>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM totp_factors f JOIN services s ON s.id = f.service_id WHERE f.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    row.as_ref().map(row_to_factor).transpose()
}

async fn unused_backup_codes(
    conn: &mut PgConnection,
    service_id: &str,
    entity: &str,
) -> StoreResult<u32> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM backup_codes WHERE service_id = $1 AND entity = $2 AND used_at IS NULL",
    )
    .bind(service_id)
    .bind(entity)
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Records `step` as used if it is after the stored one (and activates the factor).
async fn spend_step(
    tx: &mut Transaction<'static, Postgres>,
    id: &str,
    step: u64,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let step = i64::try_from(step).map_err(|_| corrupt("step out of range"))?;
    let done = sqlx::query(
        "UPDATE totp_factors SET last_used_step = $1, last_used_at = $2, status = 'active', \
         verified_at = COALESCE(verified_at, $3) WHERE id = $4 AND last_used_step < $5",
    )
    .bind(step)
    .bind(ms(now))
    .bind(ms(now))
    .bind(id)
    .bind(step)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(done.rows_affected() == 1)
}

/// Spends an unused backup code with this hash.
async fn spend_backup_code(
    tx: &mut Transaction<'static, Postgres>,
    service_id: &str,
    entity: &str,
    hash: &[u8],
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE backup_codes SET used_at = $1 \
         WHERE service_id = $2 AND entity = $3 AND code_hash = $4 AND used_at IS NULL",
    )
    .bind(ms(now))
    .bind(service_id)
    .bind(entity)
    .bind(hash)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(done.rows_affected() == 1)
}

#[async_trait]
impl FactorStore for PostgresStore {
    async fn create_factor(&self, f: &Factor, ctx: &WriteContext) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO totp_factors (id, service_id, entity, kind, algorithm, digits, period, tolerance, label, issuer, sealed_secret, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&f.id)
        .bind(&f.service_id)
        .bind(&f.entity)
        .bind(f.params.kind.as_str())
        .bind(f.params.algorithm.as_str())
        .bind(i64::from(f.params.digits))
        .bind(i64::from(f.params.period))
        .bind(i64::from(f.params.tolerance))
        .bind(&f.label)
        .bind(&f.issuer)
        .bind(&f.sealed_secret)
        .bind(f.status.as_str())
        .bind(ms(f.created_at))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        insert_event(
            &mut tx,
            EventType::FactorCreated,
            None,
            Some(&f.service_id),
            json!({
                "factor_id": f.id,
                "entity": f.entity,
                "type": f.params.kind,
                "algorithm": f.params.algorithm,
                "digits": f.params.digits,
            }),
            f.created_at,
            ctx,
        )
        .await?;
        tx.commit().await.map_err(db)
    }

    async fn get_factor(&self, id: &str) -> StoreResult<Option<Factor>> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        load(&mut conn, id).await
    }

    async fn list_factors(&self, service_id: &str, entity: &str) -> StoreResult<Vec<Factor>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM totp_factors f JOIN services s ON s.id = f.service_id \
             WHERE f.service_id = $1 AND f.entity = $2 ORDER BY f.created_at, f.id"
        ))
        .bind(service_id)
        .bind(entity)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(row_to_factor).collect()
    }

    async fn delete_factor(
        &self,
        id: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let Some(f) = load(&mut tx, id).await? else {
            return Ok(false);
        };
        let deleted = sqlx::query("DELETE FROM totp_factors WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        if deleted == 0 {
            // Another node deleted it first (and recorded the event).
            return Ok(false);
        }
        insert_event(
            &mut tx,
            EventType::FactorDeleted,
            None,
            Some(&f.service_id),
            json!({"factor_id": f.id, "entity": f.entity}),
            now,
            ctx,
        )
        .await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn check_factor(
        &self,
        target: FactorTarget,
        matcher: FactorMatcher<'_>,
        backup: BackupHasher<'_>,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<FactorCheckOutcome> {
        let mut tx = self.write_tx().await?;
        let activation = matches!(target, FactorTarget::Activate(_));
        // The factors to try, the one named by the request, and whose codes these are.
        let (candidates, named, service_id, entity) = match target {
            FactorTarget::Activate(id) | FactorTarget::Factor(id) => {
                let Some(f) = load(&mut tx, &id).await? else {
                    return Ok(FactorCheckOutcome::NotFound);
                };
                match (activation, f.status) {
                    (true, FactorStatus::Active) => {
                        return Ok(FactorCheckOutcome::AlreadyActive(Box::new(f)));
                    }
                    (false, FactorStatus::Unverified) => {
                        return Ok(FactorCheckOutcome::NotActive(Box::new(f)));
                    }
                    _ => {}
                }
                let (service_id, entity) = (f.service_id.clone(), f.entity.clone());
                (vec![f.clone()], Some(f), service_id, entity)
            }
            FactorTarget::Entity { service_id, entity } => {
                let rows = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM totp_factors f JOIN services s ON s.id = f.service_id \
                     WHERE f.service_id = $1 AND f.entity = $2 AND f.status = 'active' ORDER BY f.created_at, f.id"
                ))
                .bind(&service_id)
                .bind(&entity)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
                let factors = rows
                    .iter()
                    .map(row_to_factor)
                    .collect::<StoreResult<Vec<_>>>()?;
                if factors.is_empty()
                    && unused_backup_codes(&mut tx, &service_id, &entity).await? == 0
                {
                    return Ok(FactorCheckOutcome::NotFound);
                }
                (factors, None, service_id, entity)
            }
        };
        let subjects = [Subject::Entity(entity.clone())];
        lockout::lock_subjects(&mut tx, &service_id, &subjects).await?;
        lockout::ensure_unlocked(&mut tx, &service_id, &subjects, now).await?;

        let mut method = None;
        let mut matched_id = None;
        for f in &candidates {
            if let Some(step) = matcher(f)
                && spend_step(&mut tx, &f.id, step, now).await?
            {
                method = Some(FactorMethod::Code(f.params.kind));
                matched_id = Some(f.id.clone());
                break;
            }
        }
        if method.is_none()
            && !activation
            && let Some(hash) = backup(&service_id, &entity)
            && spend_backup_code(&mut tx, &service_id, &entity, &hash, now).await?
        {
            method = Some(FactorMethod::BackupCode);
        }

        let factor_id = matched_id.or_else(|| named.as_ref().map(|f| f.id.clone()));
        let Some(method) = method else {
            insert_event(
                &mut tx,
                EventType::FactorCheckFailed,
                None,
                Some(&service_id),
                json!({"factor_id": factor_id, "entity": entity, "activation": activation}),
                now,
                ctx,
            )
            .await?;
            let policy = lockout::policy(&mut tx, &service_id).await?;
            lockout::record_failures(&mut tx, &service_id, &subjects, &policy, now, ctx).await?;
            tx.commit().await.map_err(db)?;
            return Ok(FactorCheckOutcome::Rejected {
                factor: named.map(Box::new),
            });
        };

        lockout::clear(&mut tx, &service_id, &subjects).await?;
        let (kind, method_name) = match method {
            _ if activation => (EventType::FactorVerified, "code"),
            FactorMethod::Code(_) => (EventType::FactorApproved, "code"),
            FactorMethod::BackupCode => (EventType::FactorApproved, "backup_code"),
        };
        insert_event(
            &mut tx,
            kind,
            None,
            Some(&service_id),
            json!({"factor_id": factor_id, "entity": entity, "method": method_name}),
            now,
            ctx,
        )
        .await?;
        let factor = match &factor_id {
            Some(id) => load(&mut tx, id).await?.map(Box::new),
            None => None,
        };
        let backup_codes_remaining = unused_backup_codes(&mut tx, &service_id, &entity).await?;
        tx.commit().await.map_err(db)?;
        Ok(FactorCheckOutcome::Approved {
            factor,
            method,
            backup_codes_remaining,
        })
    }

    async fn replace_backup_codes(
        &self,
        service_id: &str,
        entity: &str,
        hashes: &[Vec<u8>],
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        // Two replacements at once (from two nodes) leave one set, not the union of both.
        lock_key(&mut tx, "backup_codes", &format!("{service_id}\n{entity}")).await?;
        sqlx::query("DELETE FROM backup_codes WHERE service_id = $1 AND entity = $2")
            .bind(service_id)
            .bind(entity)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        for hash in hashes {
            sqlx::query(
                "INSERT INTO backup_codes (service_id, entity, code_hash, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(service_id)
            .bind(entity)
            .bind(hash)
            .bind(ms(now))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        insert_event(
            &mut tx,
            EventType::BackupCodesCreated,
            None,
            Some(service_id),
            json!({"entity": entity, "count": hashes.len()}),
            now,
            ctx,
        )
        .await?;
        tx.commit().await.map_err(db)
    }

    async fn count_backup_codes(&self, service_id: &str, entity: &str) -> StoreResult<u32> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        unused_backup_codes(&mut conn, service_id, entity).await
    }

    async fn list_factor_entities(
        &self,
        service_id: &str,
        offset: u64,
        limit: u32,
    ) -> StoreResult<Vec<(String, DateTime<Utc>)>> {
        let rows = sqlx::query(
            "SELECT entity, MIN(created_at) AS first_at FROM totp_factors WHERE service_id = $1 \
             GROUP BY entity ORDER BY first_at, entity LIMIT $2 OFFSET $3",
        )
        .bind(service_id)
        .bind(i64::from(limit))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<String, _>(0), time(r.get::<i64, _>(1))))
            .collect())
    }

    async fn update_factor(
        &self,
        id: &str,
        label: &str,
        params: Option<FactorParams>,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        if let Some(p) = params {
            let done = sqlx::query(
                "UPDATE totp_factors SET algorithm = $1, digits = $2, period = $3, tolerance = $4 \
                 WHERE id = $5 AND status = 'unverified'",
            )
            .bind(p.algorithm.as_str())
            .bind(i64::from(p.digits))
            .bind(i64::from(p.period))
            .bind(i64::from(p.tolerance))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
        }
        let done = sqlx::query("UPDATE totp_factors SET label = $1 WHERE id = $2")
            .bind(label)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(done.rows_affected() == 1)
    }
}
