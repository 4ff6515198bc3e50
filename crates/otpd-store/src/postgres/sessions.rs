//! Dashboard sessions in PostgreSQL: one row per signed-in browser, found by the SHA-256 of its
//! cookie token, alive until it expires, is signed out, or its admin key is revoked.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::store::{DashboardSession, SessionStore, StoreResult};
use sqlx::Row;

use super::{PostgresStore, db, ms, time};

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create_session(
        &self,
        digest: &[u8],
        session: &DashboardSession,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
            .bind(ms(now))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "INSERT INTO dashboard_sessions (digest, key_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(digest)
        .bind(&session.key_id)
        .bind(ms(session.created_at))
        .bind(ms(session.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn find_session(
        &self,
        digest: &[u8],
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DashboardSession>> {
        // The master key is not in `api_keys`; the server checks it is still configured.
        let row = sqlx::query(
            "SELECT s.key_id, s.created_at, s.expires_at FROM dashboard_sessions s \
             WHERE s.digest = $1 AND s.expires_at > $2 AND (s.key_id = 'master' OR EXISTS ( \
               SELECT 1 FROM api_keys k WHERE k.id = s.key_id AND k.role = 'admin' AND k.revoked_at IS NULL))",
        )
        .bind(digest)
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row.map(|r| DashboardSession {
            key_id: r.get("key_id"),
            created_at: time(r.get("created_at")),
            expires_at: time(r.get("expires_at")),
        }))
    }

    async fn delete_session(&self, digest: &[u8]) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM dashboard_sessions WHERE digest = $1")
            .bind(digest)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }
}
