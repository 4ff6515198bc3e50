//! Proof-of-work challenges in SQLite: issued rows, spent by one conditional `UPDATE`
//! (the single writer connection serializes spends, so two sends never both win).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::guards::proof_of_work::{Challenge, MAX_CHALLENGE_TTL_SECONDS};
use otpd_core::store::{ChallengeStore, Spend, StoreResult};
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;

/// Seconds an expired challenge is kept before it may be purged (a late replay of it is
/// then still told "already used" or "expired" rather than "unknown").
const KEEP_EXPIRED_SECONDS: i64 = 3600;
/// Expired challenges purged per issue, so purging never makes one request slow.
const PURGE_BATCH: i64 = 16;

#[async_trait]
impl ChallengeStore for SqliteStore {
    async fn create_challenge(&self, c: &Challenge) -> StoreResult<()> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO pow_challenges (id, service_id, salt, difficulty, expires_at) \
                 VALUES (?, ?, ?, ?, ?)",
            )?
            .execute(params![
                c.id,
                c.service_id,
                c.salt,
                i64::from(c.difficulty),
                c.expires_at,
            ])?;
            tx.prepare_cached(
                "DELETE FROM pow_challenges WHERE id IN \
                 (SELECT id FROM pow_challenges WHERE expires_at < ? ORDER BY expires_at LIMIT ?)",
            )?
            .execute(params![
                // A new challenge expires at most MAX_CHALLENGE_TTL_SECONDS from now, so
                // this cut-off lies at least KEEP_EXPIRED_SECONDS in the past.
                c.expires_at - i64::from(MAX_CHALLENGE_TTL_SECONDS) - KEEP_EXPIRED_SECONDS,
                PURGE_BATCH,
            ])?;
            Ok(())
        })
        .await
    }

    async fn get_challenge(&self, id: &str) -> StoreResult<Option<Challenge>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT id, service_id, salt, difficulty, expires_at FROM pow_challenges WHERE id = ?",
            )?
            .query_row([id], |r| {
                Ok(Challenge {
                    id: r.get("id")?,
                    service_id: r.get("service_id")?,
                    salt: r.get("salt")?,
                    difficulty: u8::try_from(r.get::<_, i64>("difficulty")?).unwrap_or(u8::MAX),
                    expires_at: r.get("expires_at")?,
                })
            })
            .optional()?)
        })
        .await
    }

    async fn spend_challenge(
        &self,
        id: &str,
        spender: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<Spend> {
        self.write(|tx| {
            let spent = tx
                .prepare_cached(
                    "UPDATE pow_challenges SET spent_at = ?, spent_by = ? \
                     WHERE id = ? AND spent_at IS NULL",
                )?
                .execute(params![now.timestamp(), spender, id])?
                == 1;
            let outcome = if spent {
                Spend::Spent
            } else {
                let earlier: Option<Option<String>> = tx
                    .prepare_cached("SELECT spent_by FROM pow_challenges WHERE id = ?")?
                    .query_row([id], |r| r.get(0))
                    .optional()?;
                match (earlier.flatten(), spender) {
                    (Some(by), Some(me)) if by == me => Spend::Retried,
                    _ => Spend::AlreadySpent,
                }
            };
            Ok(outcome)
        })
        .await
    }
}
