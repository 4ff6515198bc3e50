//! Challenges of authenticator factors in PostgreSQL: rows written once, approved by one
//! conditional `UPDATE` (pending and before the deadline; of two nodes, one wins).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::event::EventType;
use otpd_core::store::{FactorChallengeFilter, FactorChallengeStore, StoreError, StoreResult};
use otpd_core::totp::challenge::{ChallengeStatus, FactorChallenge, approval_data};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PostgresStore, db, insert_event, ms, time};

const COLUMNS: &str = "id, service_id, entity, factor_id, status, created_at, updated_at, \
    responded_at, expires_at";

fn row_to_challenge(row: &PgRow) -> StoreResult<FactorChallenge> {
    Ok(FactorChallenge {
        id: row.get("id"),
        service_id: row.get("service_id"),
        entity: row.get("entity"),
        factor_id: row.get("factor_id"),
        status: ChallengeStatus::parse(row.get("status"))
            .ok_or_else(|| StoreError::Corrupt("factor challenge record: status".into()))?,
        created_at: time(row.get("created_at")),
        updated_at: time(row.get("updated_at")),
        responded_at: row.get::<Option<i64>, _>("responded_at").map(time),
        expires_at: time(row.get("expires_at")),
    })
}

#[async_trait]
impl FactorChallengeStore for PostgresStore {
    async fn create_factor_challenge(
        &self,
        c: &FactorChallenge,
        ctx: &WriteContext,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(&format!(
            "INSERT INTO factor_challenges ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&c.id)
        .bind(&c.service_id)
        .bind(&c.entity)
        .bind(&c.factor_id)
        .bind(c.status.as_str())
        .bind(ms(c.created_at))
        .bind(ms(c.updated_at))
        .bind(c.responded_at.map(ms))
        .bind(ms(c.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        // Approved on creation (its code came with it): recorded as an approval.
        if c.status == ChallengeStatus::Approved {
            insert_event(
                &mut tx,
                EventType::FactorChallengeApproved,
                None,
                Some(&c.service_id),
                approval_data(&c.id, &c.factor_id, &c.entity),
                c.responded_at.unwrap_or(c.updated_at),
                ctx,
            )
            .await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn get_factor_challenge(&self, id: &str) -> StoreResult<Option<FactorChallenge>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM factor_challenges WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(row_to_challenge).transpose()
    }

    async fn list_factor_challenges(
        &self,
        f: &FactorChallengeFilter,
    ) -> StoreResult<Vec<FactorChallenge>> {
        let order = if f.newest_first { "DESC" } else { "ASC" };
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM factor_challenges WHERE service_id = $1 AND entity = $2 \
             AND ($3::TEXT IS NULL OR factor_id = $3) \
             AND ($4::TEXT IS NULL OR ($4 = 'approved' AND status = 'approved') \
                  OR ($4 = 'pending' AND status = 'pending' AND expires_at > $5) \
                  OR ($4 = 'expired' AND status = 'pending' AND expires_at <= $5)) \
             ORDER BY created_at {order}, id {order} LIMIT $6 OFFSET $7"
        ))
        .bind(&f.service_id)
        .bind(&f.entity)
        .bind(&f.factor_id)
        .bind(f.status.map(ChallengeStatus::as_str))
        .bind(ms(f.now))
        .bind(i64::from(f.limit))
        .bind(i64::try_from(f.offset).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(row_to_challenge).collect()
    }

    async fn approve_factor_challenge(
        &self,
        id: &str,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let approved = sqlx::query(
            "UPDATE factor_challenges SET status = 'approved', updated_at = $1, \
             responded_at = $1 WHERE id = $2 AND status = 'pending' AND expires_at > $1 \
             RETURNING service_id, entity, factor_id",
        )
        .bind(ms(now))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = approved else {
            return Ok(false);
        };
        let service_id: String = row.get("service_id");
        let factor_id: String = row.get("factor_id");
        let entity: String = row.get("entity");
        let data = approval_data(id, &factor_id, &entity);
        insert_event(
            &mut tx,
            EventType::FactorChallengeApproved,
            None,
            Some(&service_id),
            data,
            now,
            ctx,
        )
        .await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }
}
