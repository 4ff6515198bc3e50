//! Authenticator-app factors and backup codes in SQLite. A check is one transaction on the
//! writer: lockout first, then the caller's matcher on each candidate factor, the matched
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
use rusqlite::{Connection, Row, params};
use serde_json::json;

use super::{SqlResult, SqliteStore, collect, lockout, ms, record_event, time};

const COLUMNS: &str = "f.id, f.service_id, s.name AS service_name, f.entity, f.kind, f.algorithm, \
    f.digits, f.period, f.tolerance, f.label, f.issuer, f.sealed_secret, f.status, \
    f.last_used_step, f.created_at, f.verified_at, f.last_used_at";

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("factor record: {what}"))
}

fn row_to_factor(row: &Row<'_>) -> SqlResult<Factor> {
    let last_used: i64 = row.get("last_used_step")?;
    let kind: String = row.get("kind")?;
    let algorithm: String = row.get("algorithm")?;
    let status: String = row.get("status")?;
    Ok(Factor {
        id: row.get("id")?,
        service_id: row.get("service_id")?,
        service_name: row.get("service_name")?,
        entity: row.get("entity")?,
        params: FactorParams {
            kind: FactorKind::parse(&kind).ok_or_else(|| corrupt("kind"))?,
            algorithm: Algorithm::parse(&algorithm).ok_or_else(|| corrupt("algorithm"))?,
            digits: u8::try_from(row.get::<_, i64>("digits")?).map_err(|_| corrupt("digits"))?,
            period: u32::try_from(row.get::<_, i64>("period")?).map_err(|_| corrupt("period"))?,
            tolerance: u32::try_from(row.get::<_, i64>("tolerance")?)
                .map_err(|_| corrupt("tolerance"))?,
        },
        label: row.get("label")?,
        issuer: row.get("issuer")?,
        sealed_secret: row.get("sealed_secret")?,
        status: FactorStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        last_used: u64::try_from(last_used).ok(),
        created_at: time(row.get("created_at")?),
        verified_at: row.get::<_, Option<i64>>("verified_at")?.map(time),
        last_used_at: row.get::<_, Option<i64>>("last_used_at")?.map(time),
    })
}

/// Loads a factor (inside a transaction when the caller needs one snapshot).
fn load(conn: &Connection, id: &str) -> SqlResult<Option<Factor>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM totp_factors f JOIN services s ON s.id = f.service_id WHERE f.id = ?"
    ))?;
    Ok(collect(&mut stmt, [id], row_to_factor)?.pop())
}

/// The backup codes of an entity not spent yet.
fn unused_backup_codes(conn: &Connection, service_id: &str, entity: &str) -> SqlResult<u32> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM backup_codes WHERE service_id = ? AND entity = ? AND used_at IS NULL",
        )?
        .query_row(params![service_id, entity], |r| r.get(0))?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Records `step` as used if it is after the stored one (and activates the factor).
fn spend_step(tx: &Connection, id: &str, step: u64, now: DateTime<Utc>) -> SqlResult<bool> {
    let step = i64::try_from(step).map_err(|_| corrupt("step out of range"))?;
    let done = tx
        .prepare_cached(
            "UPDATE totp_factors SET last_used_step = ?, last_used_at = ?, status = 'active', \
             verified_at = COALESCE(verified_at, ?) WHERE id = ? AND last_used_step < ?",
        )?
        .execute(params![step, ms(now), ms(now), id, step])?;
    Ok(done == 1)
}

/// Spends an unused backup code with this hash.
fn spend_backup_code(
    tx: &Connection,
    service_id: &str,
    entity: &str,
    hash: &[u8],
    now: DateTime<Utc>,
) -> SqlResult<bool> {
    let done = tx
        .prepare_cached(
            "UPDATE backup_codes SET used_at = ? \
             WHERE service_id = ? AND entity = ? AND code_hash = ? AND used_at IS NULL",
        )?
        .execute(params![ms(now), service_id, entity, hash])?;
    Ok(done == 1)
}

/// The work of [`FactorStore::check_factor`] inside the caller's transaction: the
/// candidates, the lockout, the matched step or spent backup code, the failure or its
/// clearing, and the events.
fn check_in(
    tx: &Connection,
    target: FactorTarget,
    matcher: FactorMatcher<'_>,
    backup: BackupHasher<'_>,
    now: DateTime<Utc>,
    ctx: &WriteContext,
) -> SqlResult<FactorCheckOutcome> {
    let activation = matches!(target, FactorTarget::Activate(_));
    // The factors to try, the one named by the request, and whose codes these are.
    let (candidates, named, service_id, entity) = match target {
        FactorTarget::Activate(id) | FactorTarget::Factor(id) => {
            let Some(f) = load(tx, &id)? else {
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
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM totp_factors f JOIN services s ON s.id = f.service_id \
                 WHERE f.service_id = ? AND f.entity = ? AND f.status = 'active' ORDER BY f.created_at, f.id"
            ))?;
            let factors = collect(&mut stmt, params![service_id, entity], row_to_factor)?;
            if factors.is_empty() && unused_backup_codes(tx, &service_id, &entity)? == 0 {
                return Ok(FactorCheckOutcome::NotFound);
            }
            (factors, None, service_id, entity)
        }
    };
    let subjects = [Subject::Entity(entity.clone())];
    lockout::ensure_unlocked(tx, &service_id, &subjects, now)?;

    let mut method = None;
    let mut matched_id = None;
    for f in &candidates {
        if let Some(step) = matcher(f)
            && spend_step(tx, &f.id, step, now)?
        {
            method = Some(FactorMethod::Code(f.params.kind));
            matched_id = Some(f.id.clone());
            break;
        }
    }
    if method.is_none()
        && !activation
        && let Some(hash) = backup(&service_id, &entity)
        && spend_backup_code(tx, &service_id, &entity, &hash, now)?
    {
        method = Some(FactorMethod::BackupCode);
    }

    let factor_id = matched_id.or_else(|| named.as_ref().map(|f| f.id.clone()));
    let Some(method) = method else {
        record_event(
            tx,
            EventType::FactorCheckFailed,
            None,
            Some(&service_id),
            json!({"factor_id": factor_id, "entity": entity, "activation": activation}),
            now,
            ctx,
        )?;
        let policy = lockout::policy(tx, &service_id)?;
        lockout::record_failures(tx, &service_id, &subjects, &policy, now, ctx)?;
        return Ok(FactorCheckOutcome::Rejected {
            factor: named.map(Box::new),
        });
    };

    lockout::clear(tx, &service_id, &subjects)?;
    let (kind, method_name) = match method {
        _ if activation => (EventType::FactorVerified, "code"),
        FactorMethod::Code(_) => (EventType::FactorApproved, "code"),
        FactorMethod::BackupCode => (EventType::FactorApproved, "backup_code"),
    };
    record_event(
        tx,
        kind,
        None,
        Some(&service_id),
        json!({"factor_id": factor_id, "entity": entity, "method": method_name}),
        now,
        ctx,
    )?;
    let factor = match &factor_id {
        Some(id) => load(tx, id)?.map(Box::new),
        None => None,
    };
    let backup_codes_remaining = unused_backup_codes(tx, &service_id, &entity)?;
    Ok(FactorCheckOutcome::Approved {
        factor,
        method,
        backup_codes_remaining,
    })
}

#[async_trait]
impl FactorStore for SqliteStore {
    async fn create_factor(&self, f: &Factor, ctx: &WriteContext) -> StoreResult<()> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO totp_factors (id, service_id, entity, kind, algorithm, digits, period, tolerance, label, issuer, sealed_secret, status, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![
                f.id,
                f.service_id,
                f.entity,
                f.params.kind.as_str(),
                f.params.algorithm.as_str(),
                i64::from(f.params.digits),
                i64::from(f.params.period),
                i64::from(f.params.tolerance),
                f.label,
                f.issuer,
                f.sealed_secret,
                f.status.as_str(),
                ms(f.created_at),
            ])?;
            record_event(
                tx,
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
        })
        .await
    }

    async fn get_factor(&self, id: &str) -> StoreResult<Option<Factor>> {
        self.read(|c| load(c, id)).await
    }

    async fn list_factors(&self, service_id: &str, entity: &str) -> StoreResult<Vec<Factor>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM totp_factors f JOIN services s ON s.id = f.service_id \
                 WHERE f.service_id = ? AND f.entity = ? ORDER BY f.created_at, f.id"
            ))?;
            collect(&mut stmt, params![service_id, entity], row_to_factor)
        })
        .await
    }

    async fn delete_factor(
        &self,
        id: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<bool> {
        self.write(|tx| {
            let Some(f) = load(tx, id)? else {
                return Ok(false);
            };
            tx.prepare_cached("DELETE FROM totp_factors WHERE id = ?")?
                .execute([id])?;
            record_event(
                tx,
                EventType::FactorDeleted,
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

    async fn check_factor(
        &self,
        target: FactorTarget,
        matcher: FactorMatcher<'_>,
        backup: BackupHasher<'_>,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<FactorCheckOutcome> {
        self.write(move |tx| check_in(tx, target, matcher, backup, now, ctx))
            .await
    }

    async fn replace_backup_codes(
        &self,
        service_id: &str,
        entity: &str,
        hashes: &[Vec<u8>],
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<()> {
        self.write(|tx| {
            tx.prepare_cached("DELETE FROM backup_codes WHERE service_id = ? AND entity = ?")?
                .execute(params![service_id, entity])?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO backup_codes (service_id, entity, code_hash, created_at) VALUES (?, ?, ?, ?)",
            )?;
            for hash in hashes {
                insert.execute(params![service_id, entity, hash, ms(now)])?;
            }
            record_event(
                tx,
                EventType::BackupCodesCreated,
                None,
                Some(service_id),
                json!({"entity": entity, "count": hashes.len()}),
                now,
                ctx,
            )
        })
        .await
    }

    async fn count_backup_codes(&self, service_id: &str, entity: &str) -> StoreResult<u32> {
        self.read(|c| unused_backup_codes(c, service_id, entity))
            .await
    }

    async fn list_factor_entities(
        &self,
        service_id: &str,
        offset: u64,
        limit: u32,
    ) -> StoreResult<Vec<(String, DateTime<Utc>)>> {
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT entity, MIN(created_at) AS first_at FROM totp_factors WHERE service_id = ? \
                 GROUP BY entity ORDER BY first_at, entity LIMIT ? OFFSET ?",
            )?;
            collect(
                &mut stmt,
                params![service_id, i64::from(limit), offset],
                |r| Ok((r.get::<_, String>(0)?, time(r.get(1)?))),
            )
        })
        .await
    }

    async fn update_factor(
        &self,
        id: &str,
        label: &str,
        params: Option<FactorParams>,
    ) -> StoreResult<bool> {
        self.write(|tx| {
            if let Some(p) = params {
                let done = tx
                    .prepare_cached(
                        "UPDATE totp_factors SET algorithm = ?, digits = ?, period = ?, tolerance = ? \
                         WHERE id = ? AND status = 'unverified'",
                    )?
                    .execute(params![
                        p.algorithm.as_str(),
                        i64::from(p.digits),
                        i64::from(p.period),
                        i64::from(p.tolerance),
                        id
                    ])?;
                if done == 0 {
                    return Ok(false);
                }
            }
            let done = tx
                .prepare_cached("UPDATE totp_factors SET label = ? WHERE id = ?")?
                .execute(params![label, id])?;
            Ok(done == 1)
        })
        .await
    }
}
