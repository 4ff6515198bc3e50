//! Proof-of-work challenges in PostgreSQL: issued rows, spent by one conditional `UPDATE`
//! (`… WHERE spent_at IS NULL`: of two sends on any nodes, the second finds it spent).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::guards::proof_of_work::{Challenge, MAX_CHALLENGE_TTL_SECONDS};
use otpd_core::store::{ChallengeStore, Spend, StoreResult};
use sqlx::Row;

use super::{PostgresStore, db};

/// Seconds an expired challenge is kept before it may be purged (a late replay of it is
/// then still told "already used" or "expired" rather than "unknown").
const KEEP_EXPIRED_SECONDS: i64 = 3600;
/// Expired challenges purged per issue, so purging never makes one request slow.
const PURGE_BATCH: i64 = 16;

#[async_trait]
impl ChallengeStore for PostgresStore {
    async fn create_challenge(&self, c: &Challenge) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO pow_challenges (id, service_id, salt, difficulty, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&c.id)
        .bind(&c.service_id)
        .bind(&c.salt)
        .bind(i64::from(c.difficulty))
        .bind(c.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "DELETE FROM pow_challenges WHERE id IN \
             (SELECT id FROM pow_challenges WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)",
        )
        // A new challenge expires at most MAX_CHALLENGE_TTL_SECONDS from now, so this
        // cut-off lies at least KEEP_EXPIRED_SECONDS in the past.
        .bind(c.expires_at - i64::from(MAX_CHALLENGE_TTL_SECONDS) - KEEP_EXPIRED_SECONDS)
        .bind(PURGE_BATCH)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn get_challenge(&self, id: &str) -> StoreResult<Option<Challenge>> {
        let row = sqlx::query(
            "SELECT id, service_id, salt, difficulty, expires_at FROM pow_challenges WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row.map(|r| Challenge {
            id: r.get("id"),
            service_id: r.get("service_id"),
            salt: r.get("salt"),
            difficulty: u8::try_from(r.get::<i64, _>("difficulty")).unwrap_or(u8::MAX),
            expires_at: r.get("expires_at"),
        }))
    }

    async fn spend_challenge(
        &self,
        id: &str,
        spender: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<Spend> {
        let mut tx = self.write_tx().await?;
        let spent = sqlx::query(
            "UPDATE pow_challenges SET spent_at = $1, spent_by = $2 \
             WHERE id = $3 AND spent_at IS NULL",
        )
        .bind(now.timestamp())
        .bind(spender)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            == 1;
        let outcome = if spent {
            Spend::Spent
        } else {
            let earlier: Option<Option<String>> =
                sqlx::query_scalar("SELECT spent_by FROM pow_challenges WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            match (earlier.flatten(), spender) {
                (Some(by), Some(me)) if by == me => Spend::Retried,
                _ => Spend::AlreadySpent,
            }
        };
        tx.commit().await.map_err(db)?;
        Ok(outcome)
    }
}
