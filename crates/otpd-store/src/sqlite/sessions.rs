//! Dashboard sessions in SQLite: one row per signed-in browser, found by the SHA-256 of its
//! cookie token, alive until it expires, is signed out, or its admin key is revoked.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::store::{DashboardSession, SessionStore, StoreResult};
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, ms, time};

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(
        &self,
        digest: &[u8],
        session: &DashboardSession,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write(|tx| {
            tx.prepare_cached("DELETE FROM dashboard_sessions WHERE expires_at <= ?")?
                .execute([ms(now)])?;
            tx.prepare_cached(
                "INSERT INTO dashboard_sessions (digest, key_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
            )?
            .execute(params![
                digest,
                session.key_id,
                ms(session.created_at),
                ms(session.expires_at),
            ])?;
            Ok(())
        })
        .await
    }

    async fn find_session(
        &self,
        digest: &[u8],
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DashboardSession>> {
        // The master key is not in `api_keys`; the server checks it is still configured.
        self.read(|c| {
            let session = c
                .prepare_cached(
                    "SELECT s.key_id, s.created_at, s.expires_at FROM dashboard_sessions s \
                     WHERE s.digest = ? AND s.expires_at > ? AND (s.key_id = 'master' OR EXISTS ( \
                       SELECT 1 FROM api_keys k WHERE k.id = s.key_id AND k.role = 'admin' AND k.revoked_at IS NULL))",
                )?
                .query_row(params![digest, ms(now)], |r| {
                    Ok(DashboardSession {
                        key_id: r.get("key_id")?,
                        created_at: time(r.get("created_at")?),
                        expires_at: time(r.get("expires_at")?),
                    })
                })
                .optional()?;
            Ok(session)
        })
        .await
    }

    async fn delete_session(&self, digest: &[u8]) -> StoreResult<bool> {
        self.write(|tx| {
            let done = tx
                .prepare_cached("DELETE FROM dashboard_sessions WHERE digest = ?")?
                .execute([digest])?;
            Ok(done > 0)
        })
        .await
    }
}
