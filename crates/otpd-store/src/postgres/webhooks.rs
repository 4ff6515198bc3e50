//! Outbound webhooks in PostgreSQL: `webhook_messages` rows (one per event and service
//! endpoint, queued by the `events_to_webhooks` trigger in the event's own transaction),
//! claimed with `FOR UPDATE SKIP LOCKED` and leased with `lease_owner`/`lease_until` like
//! the delivery outbox; and the
//! figures `/metrics` reads (queue sizes, a receipt's wait).

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use otpd_core::channel::Channel;
use otpd_core::store::{
    DeadLetter, DeadLetterFilter, QueueStats, StoreResult, TelemetryStore, WebhookJob,
    WebhookResult, WebhookStore,
};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};

use super::events::{event_columns_of, event_of};
use super::verifications::parse_channel;
use super::{PostgresStore, db, ms, time};

/// The columns of a [`DeadLetter`].
const DEAD_SELECT: &str = "SELECT w.seq, w.id, w.service_id, w.endpoint, w.event_id, e.kind, w.attempts, \
     w.last_error, w.last_status, e.created_at AS event_at, w.updated_at \
     FROM webhook_messages w JOIN events e ON e.id = w.event_id WHERE w.status = 'dead'";

fn dead_letter(r: &PgRow) -> DeadLetter {
    DeadLetter {
        seq: r.get("seq"),
        id: r.get("id"),
        service_id: r.get("service_id"),
        endpoint: Some(r.get::<String, _>("endpoint")).filter(|e| !e.is_empty()),
        event_id: r.get("event_id"),
        event_type: r.get("kind"),
        attempts: r.get::<i64, _>("attempts") as u32,
        last_error: r.get("last_error"),
        last_status: r
            .get::<Option<i64>, _>("last_status")
            .and_then(|s| u16::try_from(s).ok()),
        event_at: time(r.get("event_at")),
        dead_at: time(r.get("updated_at")),
    }
}

/// A queue's size from `SELECT COUNT(*), MIN(created_at) …`.
async fn stats(store: &PostgresStore, sql: &str) -> StoreResult<QueueStats> {
    let r = sqlx::query(sql).fetch_one(&store.pool).await.map_err(db)?;
    Ok(QueueStats {
        depth: r.get::<i64, _>(0).max(0) as u64,
        oldest: r.get::<Option<i64>, _>(1).map(time),
    })
}

/// Puts the dead letters whose `column` (`id` or `service_id`) is `value` back in the
/// queue, due now, with a fresh retry window. Returns how many.
async fn requeue_dead(
    store: &PostgresStore,
    column: &'static str,
    value: &str,
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    let n = sqlx::query(&format!(
        "UPDATE webhook_messages SET status = 'pending', attempts = 0, window_start = $1, \
         next_attempt_at = $2, updated_at = $3 WHERE {column} = $4 AND status = 'dead'"
    ))
    .bind(ms(now))
    .bind(ms(now))
    .bind(ms(now))
    .bind(value)
    .execute(&store.pool)
    .await
    .map_err(db)?;
    Ok(n.rows_affected())
}

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn claim_webhook(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> StoreResult<Option<WebhookJob>> {
        let mut tx = self.write_tx().await?;
        let seq: Option<i64> = sqlx::query_scalar(
            "UPDATE webhook_messages SET lease_owner = $1, lease_until = $2 WHERE seq = (\
               SELECT seq FROM webhook_messages WHERE status = 'pending' AND next_attempt_at <= $3 \
               AND (lease_until IS NULL OR lease_until <= $4) ORDER BY next_attempt_at, seq LIMIT 1 \
               FOR UPDATE SKIP LOCKED) \
             RETURNING seq",
        )
        .bind(owner)
        .bind(ms(now + lease))
        .bind(ms(now))
        .bind(ms(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(seq) = seq else { return Ok(None) };
        let r = sqlx::query(&format!(
            "SELECT w.id AS wid, w.service_id AS wservice, w.endpoint AS wendpoint, w.attempts, w.window_start, \
                 {} FROM webhook_messages w JOIN events e ON e.id = w.event_id WHERE w.seq = $1",
            event_columns_of("e")
        ))
        .bind(seq)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Some(WebhookJob {
            id: r.get("wid"),
            service_id: r.get("wservice"),
            endpoint: Some(r.get::<String, _>("wendpoint")).filter(|e| !e.is_empty()),
            attempts: r.get::<i64, _>("attempts") as u32,
            window_start: time(r.get("window_start")),
            lease_owner: owner.to_string(),
            event: event_of(&r),
        }))
    }

    async fn finish_webhook(
        &self,
        job: &WebhookJob,
        result: WebhookResult,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let (status, next, error, code) = match result {
            WebhookResult::Delivered { status } => ("delivered", now, None, Some(status)),
            WebhookResult::Retry { at, error, status } => ("pending", at, Some(error), status),
            WebhookResult::Dead { error, status } => ("dead", now, Some(error), status),
        };
        let done = sqlx::query(
            "UPDATE webhook_messages SET status = $1, attempts = attempts + 1, next_attempt_at = $2, \
             last_error = $3, last_status = $4, lease_owner = NULL, lease_until = NULL, updated_at = $5 \
             WHERE id = $6 AND lease_owner = $7 AND status = 'pending'",
        )
        .bind(status)
        .bind(ms(next))
        .bind(error.map(|e| e.chars().take(500).collect::<String>()))
        .bind(code.map(i64::from))
        .bind(ms(now))
        .bind(&job.id)
        .bind(&job.lease_owner)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn next_webhook_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(GREATEST(next_attempt_at, COALESCE(lease_until, 0))) FROM webhook_messages WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(at.map(time))
    }

    async fn list_dead_letters(&self, f: &DeadLetterFilter) -> StoreResult<Vec<DeadLetter>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(DEAD_SELECT);
        if let Some(s) = &f.service_id {
            q.push(" AND w.service_id = ").push_bind(s.clone());
        }
        if let Some(before) = f.before_seq {
            q.push(" AND w.seq < ").push_bind(before);
        }
        q.push(" ORDER BY w.seq DESC LIMIT ")
            .push_bind(i64::from(f.limit));
        let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
        Ok(rows.iter().map(dead_letter).collect())
    }

    async fn get_dead_letter(&self, id: &str) -> StoreResult<Option<DeadLetter>> {
        let row = sqlx::query(&format!("{DEAD_SELECT} AND w.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.as_ref().map(dead_letter))
    }

    async fn replay_dead_letter(&self, id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        Ok(requeue_dead(self, "id", id, now).await? == 1)
    }

    async fn replay_dead_letters(&self, service_id: &str, now: DateTime<Utc>) -> StoreResult<u64> {
        requeue_dead(self, "service_id", service_id, now).await
    }

    async fn webhook_stats(&self) -> StoreResult<(QueueStats, u64)> {
        let waiting = stats(
            self,
            "SELECT COUNT(*), MIN(created_at) FROM webhook_messages WHERE status = 'pending'",
        )
        .await?;
        let dead: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_messages WHERE status = 'dead'")
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
        Ok((waiting, dead.max(0) as u64))
    }
}

#[async_trait]
impl TelemetryStore for PostgresStore {
    async fn outbox_stats(&self) -> StoreResult<QueueStats> {
        stats(
            self,
            "SELECT COUNT(*), MIN(created_at) FROM deliveries WHERE status = 'queued'",
        )
        .await
    }

    async fn receipt_wait(
        &self,
        provider: &str,
        message_id: &str,
    ) -> StoreResult<Option<(Channel, Option<DateTime<Utc>>)>> {
        let row = sqlx::query(
            "SELECT channel, providers, provider_index, status, receipt_deadline, updated_at \
             FROM deliveries WHERE (id = $1 OR provider_message_id = $2) \
             AND (providers::jsonb ->> provider_index::int) = $3 LIMIT 1",
        )
        .bind(message_id)
        .bind(message_id)
        .bind(provider)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let Some(r) = row else { return Ok(None) };
        let providers: Vec<String> =
            serde_json::from_str(r.get::<&str, _>("providers")).unwrap_or_default();
        let index = r.get::<i64, _>("provider_index") as usize;
        if providers.get(index).map(String::as_str) != Some(provider) {
            return Ok(None);
        }
        let channel = parse_channel(r.get("channel"))?;
        // A `sent` message still waiting for its receipt was last changed when it was
        // handed to the provider.
        let waiting = r.get::<&str, _>("status") == "sent"
            && r.get::<Option<i64>, _>("receipt_deadline").is_some();
        Ok(Some((channel, waiting.then(|| time(r.get("updated_at"))))))
    }
}
