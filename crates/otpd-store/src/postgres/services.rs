//! Services in PostgreSQL: one row each, settings as a JSON document.

use async_trait::async_trait;
use otpd_core::ids::Kind;
use otpd_core::service::{Service, ServiceSettings};
use otpd_core::store::{ServiceStore, StoreError, StoreResult};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PostgresStore, db, ms, time};

const COLUMNS: &str = "id, name, settings, created_at, updated_at";

fn row_to_service(row: &PgRow) -> StoreResult<Service> {
    let id: String = row.get("id");
    let settings: String = row.get("settings");
    let settings: ServiceSettings = serde_json::from_str(&settings)
        .map_err(|e| StoreError::Corrupt(format!("settings of service {id}: {e}")))?;
    Ok(Service {
        sid: Kind::Service.sid_of(&id),
        name: row.get("name"),
        settings,
        webhook_secret: None,
        created_at: time(row.get("created_at")),
        updated_at: time(row.get("updated_at")),
        id,
    })
}

fn settings_json(s: &Service) -> String {
    serde_json::to_string(&s.settings).expect("settings serialize")
}

#[async_trait]
impl ServiceStore for PostgresStore {
    async fn create_service(
        &self,
        s: &Service,
        sealed_webhook_secret: Option<Vec<u8>>,
    ) -> StoreResult<()> {
        let result = sqlx::query(
            "INSERT INTO services (id, name, settings, webhook_secret, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.id)
        .bind(&s.name)
        .bind(settings_json(s))
        .bind(sealed_webhook_secret)
        .bind(ms(s.created_at))
        .bind(ms(s.updated_at))
        .execute(&self.pool)
        .await;
        // A name can also be looked up as an id or SID: nothing found earlier may stand.
        self.lookups.services.forget_all();
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Conflict(format!("service '{}'", s.name)))
            }
            Err(e) => Err(db(e)),
        }
    }

    async fn find_service(&self, key: &str) -> StoreResult<Option<Service>> {
        let load = || async {
            let id = Kind::Service
                .id_of_sid(key)
                .unwrap_or_else(|| key.to_string());
            let row = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM services WHERE name = $1 OR id = $2 LIMIT 1"
            ))
            .bind(key)
            .bind(&id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
            row.as_ref().map(row_to_service).transpose()
        };
        self.lookups.services.get_or_load(key, load).await
    }

    async fn list_services(&self) -> StoreResult<Vec<Service>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM services ORDER BY name"))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(row_to_service).collect()
    }

    async fn update_service(
        &self,
        s: &Service,
        sealed_webhook_secret: Option<Option<Vec<u8>>>,
    ) -> StoreResult<()> {
        let mut q = String::from("UPDATE services SET settings = $1, updated_at = $2");
        if sealed_webhook_secret.is_some() {
            q.push_str(", webhook_secret = $3");
        }
        q.push_str(if sealed_webhook_secret.is_some() {
            " WHERE id = $4"
        } else {
            " WHERE id = $3"
        });
        let mut query = sqlx::query(&q)
            .bind(settings_json(s))
            .bind(ms(s.updated_at));
        if let Some(secret) = sealed_webhook_secret {
            query = query.bind(secret);
        }
        let updated = query.bind(&s.id).execute(&self.pool).await;
        self.lookups.services.forget_all();
        updated.map_err(db)?;
        Ok(())
    }

    async fn delete_service(&self, id: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM services WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await;
        self.lookups.services.forget_all();
        Ok(done.map_err(db)?.rows_affected() == 1)
    }

    async fn sealed_webhook_secret(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT webhook_secret FROM services WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.and_then(|r| r.get::<Option<Vec<u8>>, _>("webhook_secret")))
    }
}
