//! API keys in PostgreSQL, found by the SHA-256 digest of the presented key.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::apikey::{ApiKey, Role};
use otpd_core::store::{KeyStore, StoreError, StoreResult};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PostgresStore, db, ms, time};

const COLUMNS: &str = "id, name, role, test, services, hint, created_at, revoked_at";

fn row_to_key(row: &PgRow) -> StoreResult<ApiKey> {
    let role: String = row.get("role");
    let services: Option<String> = row.get("services");
    Ok(ApiKey {
        id: row.get("id"),
        name: row.get("name"),
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown role {role}")))?,
        test: row.get::<i64, _>("test") != 0,
        services: services.and_then(|s| serde_json::from_str(&s).ok()),
        hint: row.get("hint"),
        created_at: time(row.get("created_at")),
        revoked_at: row.get::<Option<i64>, _>("revoked_at").map(time),
    })
}

#[async_trait]
impl KeyStore for PostgresStore {
    async fn insert_key(&self, key: &ApiKey, digest: &[u8]) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, role, test, services, digest, hint, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(key.role.as_str())
        .bind(key.test as i64)
        .bind(key.services.as_ref().map(|s| serde_json::to_string(s).expect("list serializes")))
        .bind(digest)
        .bind(&key.hint)
        .bind(ms(key.created_at))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn find_key(&self, digest: &[u8]) -> StoreResult<Option<ApiKey>> {
        let load = || async {
            let row = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM api_keys WHERE digest = $1 AND revoked_at IS NULL"
            ))
            .bind(digest)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
            row.as_ref().map(row_to_key).transpose()
        };
        self.lookups.keys.get_or_load(digest, load).await
    }

    async fn list_keys(&self) -> StoreResult<Vec<ApiKey>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_keys ORDER BY created_at DESC, id DESC"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(row_to_key).collect()
    }

    async fn revoke_key(&self, id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(ms(now))
                .bind(id)
                .execute(&self.pool)
                .await;
        self.lookups.keys.forget_all();
        Ok(done.map_err(db)?.rows_affected() == 1)
    }

    async fn count_live_keys(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(n as u64)
    }
}
