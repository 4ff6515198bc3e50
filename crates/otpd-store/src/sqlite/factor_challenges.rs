//! Challenges of authenticator factors in SQLite: rows written once, approved by one
//! conditional `UPDATE` (pending and before the deadline).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::event::EventType;
use otpd_core::store::{FactorChallengeFilter, FactorChallengeStore, StoreError, StoreResult};
use otpd_core::totp::challenge::{ChallengeStatus, FactorChallenge, approval_data};
use rusqlite::{OptionalExtension, Row, params};

use super::{SqlResult, SqliteStore, collect, ms, record_event, time};

const COLUMNS: &str = "id, service_id, entity, factor_id, status, created_at, updated_at, \
    responded_at, expires_at";

/// The entity's challenges that pass the filter (status judged at `?5`).
const LIST_WHERE: &str = "service_id = ?1 AND entity = ?2 \
    AND (?3 IS NULL OR factor_id = ?3) \
    AND (?4 IS NULL OR (?4 = 'approved' AND status = 'approved') \
         OR (?4 = 'pending' AND status = 'pending' AND expires_at > ?5) \
         OR (?4 = 'expired' AND status = 'pending' AND expires_at <= ?5))";

fn row_to_challenge(row: &Row<'_>) -> SqlResult<FactorChallenge> {
    let status: String = row.get("status")?;
    Ok(FactorChallenge {
        id: row.get("id")?,
        service_id: row.get("service_id")?,
        entity: row.get("entity")?,
        factor_id: row.get("factor_id")?,
        status: ChallengeStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt("factor challenge record: status".into()))?,
        created_at: time(row.get("created_at")?),
        updated_at: time(row.get("updated_at")?),
        responded_at: row.get::<_, Option<i64>>("responded_at")?.map(time),
        expires_at: time(row.get("expires_at")?),
    })
}

#[async_trait]
impl FactorChallengeStore for SqliteStore {
    async fn create_factor_challenge(
        &self,
        c: &FactorChallenge,
        ctx: &WriteContext,
    ) -> StoreResult<()> {
        self.write(|tx| {
            tx.prepare_cached(&format!(
                "INSERT INTO factor_challenges ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))?
            .execute(params![
                c.id,
                c.service_id,
                c.entity,
                c.factor_id,
                c.status.as_str(),
                ms(c.created_at),
                ms(c.updated_at),
                c.responded_at.map(ms),
                ms(c.expires_at),
            ])?;
            // Approved on creation (its code came with it): recorded as an approval.
            if c.status == ChallengeStatus::Approved {
                record_event(
                    tx,
                    EventType::FactorChallengeApproved,
                    None,
                    Some(&c.service_id),
                    approval_data(&c.id, &c.factor_id, &c.entity),
                    c.responded_at.unwrap_or(c.updated_at),
                    ctx,
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn get_factor_challenge(&self, id: &str) -> StoreResult<Option<FactorChallenge>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM factor_challenges WHERE id = ?"
            ))?;
            Ok(collect(&mut stmt, [id], row_to_challenge)?.pop())
        })
        .await
    }

    async fn list_factor_challenges(
        &self,
        f: &FactorChallengeFilter,
    ) -> StoreResult<Vec<FactorChallenge>> {
        let order = if f.newest_first { "DESC" } else { "ASC" };
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM factor_challenges WHERE {LIST_WHERE} \
                 ORDER BY created_at {order}, id {order} LIMIT ?6 OFFSET ?7"
            ))?;
            collect(
                &mut stmt,
                params![
                    f.service_id,
                    f.entity,
                    f.factor_id,
                    f.status.map(ChallengeStatus::as_str),
                    ms(f.now),
                    i64::from(f.limit),
                    i64::try_from(f.offset).unwrap_or(i64::MAX),
                ],
                row_to_challenge,
            )
        })
        .await
    }

    async fn approve_factor_challenge(
        &self,
        id: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<bool> {
        self.write(|tx| {
            let approved: Option<(String, String, String)> = tx
                .prepare_cached(
                    "UPDATE factor_challenges SET status = 'approved', updated_at = ?1, \
                     responded_at = ?1 WHERE id = ?2 AND status = 'pending' AND expires_at > ?1 \
                     RETURNING service_id, entity, factor_id",
                )?
                .query_row(params![ms(now), id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            let Some((service_id, entity, factor_id)) = approved else {
                return Ok(false);
            };
            record_event(
                tx,
                EventType::FactorChallengeApproved,
                None,
                Some(&service_id),
                approval_data(id, &factor_id, &entity),
                now,
                ctx,
            )?;
            Ok(true)
        })
        .await
    }
}
