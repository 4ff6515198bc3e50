//! Services in SQLite: one row each, settings as a JSON document.

use async_trait::async_trait;
use otpd_core::ids::Kind;
use otpd_core::service::{Service, ServiceSettings};
use otpd_core::store::{ServiceStore, StoreError, StoreResult};
use rusqlite::{OptionalExtension, Row, ffi, params};

use super::{SqlResult, SqliteStore, collect, ms, time};

const COLUMNS: &str = "id, name, settings, created_at, updated_at";

fn row_to_service(row: &Row<'_>) -> SqlResult<Service> {
    let id: String = row.get("id")?;
    let settings: String = row.get("settings")?;
    let settings: ServiceSettings = serde_json::from_str(&settings)
        .map_err(|e| StoreError::Corrupt(format!("settings of service {id}: {e}")))?;
    Ok(Service {
        sid: Kind::Service.sid_of(&id),
        name: row.get("name")?,
        settings,
        webhook_secret: None,
        created_at: time(row.get("created_at")?),
        updated_at: time(row.get("updated_at")?),
        id,
    })
}

fn settings_json(s: &Service) -> String {
    serde_json::to_string(&s.settings).expect("settings serialize")
}

/// Whether SQLite refused a row for a duplicate key (a unique index or the primary key).
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

#[async_trait]
impl ServiceStore for SqliteStore {
    async fn create_service(
        &self,
        s: &Service,
        sealed_webhook_secret: Option<Vec<u8>>,
    ) -> StoreResult<()> {
        let created = self.write(|tx| {
            let result = tx
                .prepare_cached(
                    "INSERT INTO services (id, name, settings, webhook_secret, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                )?
                .execute(params![
                    s.id,
                    s.name,
                    settings_json(s),
                    sealed_webhook_secret,
                    ms(s.created_at),
                    ms(s.updated_at),
                ]);
            match result {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => {
                    Err(StoreError::Conflict(format!("service '{}'", s.name)).into())
                }
                Err(e) => Err(e.into()),
            }
        })
        .await;
        // A name can also be looked up as an id or SID: nothing found earlier may stand.
        self.lookups.services.forget_all();
        created
    }

    async fn find_service(&self, key: &str) -> StoreResult<Option<Service>> {
        let load = || {
            let id = Kind::Service
                .id_of_sid(key)
                .unwrap_or_else(|| key.to_string());
            self.read(move |c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM services WHERE name = ? OR id = ? LIMIT 1"
                ))?;
                Ok(collect(&mut stmt, params![key, id], row_to_service)?.pop())
            })
        };
        self.lookups.services.get_or_load(key, load).await
    }

    async fn list_services(&self) -> StoreResult<Vec<Service>> {
        self.read(|c| {
            let mut stmt =
                c.prepare_cached(&format!("SELECT {COLUMNS} FROM services ORDER BY name"))?;
            collect(&mut stmt, [], row_to_service)
        })
        .await
    }

    async fn update_service(
        &self,
        s: &Service,
        sealed_webhook_secret: Option<Option<Vec<u8>>>,
    ) -> StoreResult<()> {
        let updated = self.write(|tx| {
            match sealed_webhook_secret {
                Some(secret) => tx
                    .prepare_cached(
                        "UPDATE services SET settings = ?, updated_at = ?, webhook_secret = ? WHERE id = ?",
                    )?
                    .execute(params![settings_json(s), ms(s.updated_at), secret, s.id])?,
                None => tx
                    .prepare_cached("UPDATE services SET settings = ?, updated_at = ? WHERE id = ?")?
                    .execute(params![settings_json(s), ms(s.updated_at), s.id])?,
            };
            Ok(())
        })
        .await;
        self.lookups.services.forget_all();
        updated
    }

    async fn delete_service(&self, id: &str) -> StoreResult<bool> {
        let deleted = self
            .write(|tx| {
                let done = tx
                    .prepare_cached("DELETE FROM services WHERE id = ?")?
                    .execute([id])?;
                Ok(done == 1)
            })
            .await;
        self.lookups.services.forget_all();
        deleted
    }

    async fn sealed_webhook_secret(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        self.read(|c| {
            let secret: Option<Option<Vec<u8>>> = c
                .prepare_cached("SELECT webhook_secret FROM services WHERE id = ?")?
                .query_row([id], |r| r.get("webhook_secret"))
                .optional()?;
            Ok(secret.flatten())
        })
        .await
    }
}
