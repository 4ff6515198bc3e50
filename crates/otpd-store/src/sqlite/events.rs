//! The event log in SQLite: append-only rows, read in order with filters and a cursor.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::event::{Event, EventType};
use otpd_core::store::{EventFilter, EventStore, StoreResult};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{SqliteStore, db, insert_event, ms, time};

#[async_trait]
impl EventStore for SqliteStore {
    async fn list_events(&self, f: &EventFilter) -> StoreResult<Vec<Event>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT seq, id, kind, verification_id, service_id, data, created_at FROM events WHERE 1 = 1",
        );
        if let Some(v) = &f.verification_id {
            q.push(" AND verification_id = ").push_bind(v.clone());
        }
        if let Some(k) = &f.kind {
            q.push(" AND kind = ").push_bind(k.clone());
        }
        if let Some(after) = f.after_seq {
            q.push(" AND seq > ").push_bind(after);
        }
        if let Some(since) = f.since {
            q.push(" AND created_at >= ").push_bind(ms(since));
        }
        q.push(" ORDER BY seq LIMIT ").push_bind(i64::from(f.limit));
        let rows = q.build().fetch_all(&self.reader).await.map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| Event {
                seq: r.get("seq"),
                id: r.get("id"),
                kind: r.get("kind"),
                verification_id: r.get("verification_id"),
                service_id: r.get("service_id"),
                data: serde_json::from_str(r.get::<&str, _>("data")).unwrap_or_default(),
                created_at: time(r.get("created_at")),
            })
            .collect())
    }

    async fn event_seq(&self, id: &str) -> StoreResult<Option<i64>> {
        sqlx::query_scalar("SELECT seq FROM events WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db)
    }

    async fn append_event(
        &self,
        kind: EventType,
        data: serde_json::Value,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        insert_event(&mut tx, kind, None, None, data, now).await?;
        tx.commit().await.map_err(db)
    }
}
