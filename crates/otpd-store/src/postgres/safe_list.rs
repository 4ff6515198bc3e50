//! The safe list in PostgreSQL: `safe_numbers` rows keyed by the E.164 number.

use async_trait::async_trait;
use otpd_core::store::{SafeListStore, SafeNumber, StoreResult};
use sqlx::Row;

use super::{PostgresStore, db, ms, time};

#[async_trait]
impl SafeListStore for PostgresStore {
    async fn add_safe_number(&self, number: &SafeNumber) -> StoreResult<SafeNumber> {
        sqlx::query(
            "INSERT INTO safe_numbers (phone_number, sid, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (phone_number) DO NOTHING",
        )
        .bind(&number.phone_number)
        .bind(&number.sid)
        .bind(ms(number.created_at))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(self
            .safe_number(&number.phone_number)
            .await?
            .unwrap_or_else(|| number.clone()))
    }

    async fn safe_number(&self, phone_number: &str) -> StoreResult<Option<SafeNumber>> {
        let row = sqlx::query(
            "SELECT sid, phone_number, created_at FROM safe_numbers WHERE phone_number = $1",
        )
        .bind(phone_number)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row.map(|r| SafeNumber {
            sid: r.get("sid"),
            phone_number: r.get("phone_number"),
            created_at: time(r.get("created_at")),
        }))
    }

    async fn remove_safe_number(&self, phone_number: &str) -> StoreResult<bool> {
        let n = sqlx::query("DELETE FROM safe_numbers WHERE phone_number = $1")
            .bind(phone_number)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(n.rows_affected() > 0)
    }
}
