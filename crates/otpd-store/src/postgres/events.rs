//! The event log in PostgreSQL: append-only rows, read in order with filters and a cursor.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use otpd_core::audit::Actor;
use otpd_core::audit::WriteContext;
use otpd_core::event::{Event, EventType};
use otpd_core::store::{EventFilter, EventStore, StoreResult};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};

use super::{PostgresStore, db, insert_event, ms, time};

#[async_trait]
impl EventStore for PostgresStore {
    async fn list_events(&self, f: &EventFilter) -> StoreResult<Vec<Event>> {
        let mut q: QueryBuilder<Postgres> =
            QueryBuilder::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE 1 = 1"));
        let text_filters = [
            ("verification_id", &f.verification_id),
            ("kind", &f.kind),
            ("service_id", &f.service_id),
            ("key_id", &f.key_id),
            ("request_id", &f.request_id),
        ];
        for (column, value) in text_filters {
            if let Some(v) = value {
                q.push(format!(" AND {column} = ")).push_bind(v.clone());
            }
        }
        if let Some(after) = f.after_seq {
            q.push(" AND seq > ").push_bind(after);
        }
        if let Some(since) = f.since {
            q.push(" AND created_at >= ").push_bind(ms(since));
        }
        if let Some(until) = f.until {
            q.push(" AND created_at < ").push_bind(ms(until));
        }
        q.push(" ORDER BY seq LIMIT ").push_bind(i64::from(f.limit));
        let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
        Ok(rows.iter().map(event_of).collect())
    }

    async fn event_seq(&self, id: &str) -> StoreResult<Option<i64>> {
        sqlx::query_scalar("SELECT seq FROM events WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }

    async fn append_event(
        &self,
        kind: EventType,
        data: serde_json::Value,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        insert_event(&mut tx, kind, None, None, data, now, ctx).await?;
        tx.commit().await.map_err(db)
    }
}

/// The columns [`event_of`] reads.
pub(super) const EVENT_COLUMNS: &str =
    "seq, id, kind, verification_id, service_id, data, created_at, key_id, request_id, client_ip";

/// [`EVENT_COLUMNS`] qualified with a table alias (for joins).
pub(super) fn event_columns_of(alias: &str) -> String {
    EVENT_COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An event from a row of [`EVENT_COLUMNS`].
pub(super) fn event_of(r: &PgRow) -> Event {
    Event {
        seq: r.get("seq"),
        id: r.get("id"),
        kind: r.get("kind"),
        verification_id: r.get("verification_id"),
        service_id: r.get("service_id"),
        data: serde_json::from_str(r.get::<&str, _>("data")).unwrap_or_default(),
        created_at: time(r.get("created_at")),
        actor: Actor {
            key_id: r.get("key_id"),
            request_id: r.get("request_id"),
            client_ip: r.get("client_ip"),
        },
    }
}
