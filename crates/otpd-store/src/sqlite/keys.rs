//! API keys in SQLite, found by the SHA-256 digest of the presented key.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::apikey::{ApiKey, Role};
use otpd_core::store::{KeyStore, StoreError, StoreResult};
use rusqlite::{Row, params};

use super::{SqlResult, SqliteStore, collect, ms, time};

const COLUMNS: &str = "id, name, role, test, services, hint, created_at, revoked_at";

fn row_to_key(row: &Row<'_>) -> SqlResult<ApiKey> {
    let role: String = row.get("role")?;
    let services: Option<String> = row.get("services")?;
    Ok(ApiKey {
        id: row.get("id")?,
        name: row.get("name")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown role {role}")))?,
        test: row.get::<_, i64>("test")? != 0,
        services: services.and_then(|s| serde_json::from_str(&s).ok()),
        hint: row.get("hint")?,
        created_at: time(row.get("created_at")?),
        revoked_at: row.get::<_, Option<i64>>("revoked_at")?.map(time),
    })
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert_key(&self, key: &ApiKey, digest: &[u8]) -> StoreResult<()> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO api_keys (id, name, role, test, services, digest, hint, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![
                key.id,
                key.name,
                key.role.as_str(),
                key.test as i64,
                key.services
                    .as_ref()
                    .map(|s| serde_json::to_string(s).expect("list serializes")),
                digest,
                key.hint,
                ms(key.created_at),
            ])?;
            Ok(())
        })
        .await
    }

    async fn find_key(&self, digest: &[u8]) -> StoreResult<Option<ApiKey>> {
        let load = || {
            self.read(|c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM api_keys WHERE digest = ? AND revoked_at IS NULL"
                ))?;
                Ok(collect(&mut stmt, [digest], row_to_key)?.pop())
            })
        };
        self.lookups.keys.get_or_load(digest, load).await
    }

    async fn list_keys(&self) -> StoreResult<Vec<ApiKey>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM api_keys ORDER BY created_at DESC, id DESC"
            ))?;
            collect(&mut stmt, [], row_to_key)
        })
        .await
    }

    async fn revoke_key(&self, id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let revoked = self
            .write(|tx| {
                let done = tx
                    .prepare_cached(
                        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                    )?
                    .execute(params![ms(now), id])?;
                Ok(done == 1)
            })
            .await;
        self.lookups.keys.forget_all();
        revoked
    }

    async fn count_live_keys(&self) -> StoreResult<u64> {
        self.read(|c| {
            let n: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL")?
                .query_row([], |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }
}
