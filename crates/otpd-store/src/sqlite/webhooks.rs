//! Outbound webhooks in SQLite: `webhook_messages` rows (one per event and service
//! endpoint, queued by the `events_to_webhooks` trigger in the event's own transaction),
//! leased to a sender with `lease_owner`/`lease_until` like the delivery outbox; and the
//! figures `/metrics` reads (queue sizes, a receipt's wait).

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use otpd_core::channel::Channel;
use otpd_core::store::{
    DeadLetter, DeadLetterFilter, QueueStats, StoreResult, TelemetryStore, WebhookJob,
    WebhookResult, WebhookStore,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::events::{event_columns_of, event_of};
use super::verifications::parse_channel;
use super::{Query, SqlResult, SqliteStore, collect, ms, time};

/// The columns of a [`DeadLetter`].
const DEAD_SELECT: &str = "SELECT w.seq, w.id, w.service_id, w.endpoint, w.event_id, e.kind, w.attempts, \
     w.last_error, w.last_status, e.created_at AS event_at, w.updated_at \
     FROM webhook_messages w JOIN events e ON e.id = w.event_id WHERE w.status = 'dead'";

fn dead_letter(r: &Row<'_>) -> SqlResult<DeadLetter> {
    Ok(DeadLetter {
        seq: r.get("seq")?,
        id: r.get("id")?,
        service_id: r.get("service_id")?,
        endpoint: Some(r.get::<_, String>("endpoint")?).filter(|e| !e.is_empty()),
        event_id: r.get("event_id")?,
        event_type: r.get("kind")?,
        attempts: r.get::<_, i64>("attempts")? as u32,
        last_error: r.get("last_error")?,
        last_status: r
            .get::<_, Option<i64>>("last_status")?
            .and_then(|s| u16::try_from(s).ok()),
        event_at: time(r.get("event_at")?),
        dead_at: time(r.get("updated_at")?),
    })
}

/// A queue's size from `SELECT COUNT(*), MIN(created_at) …`.
fn stats(c: &Connection, sql: &str) -> SqlResult<QueueStats> {
    Ok(c.prepare_cached(sql)?.query_row([], |r| {
        Ok(QueueStats {
            depth: r.get::<_, i64>(0)?.max(0) as u64,
            oldest: r.get::<_, Option<i64>>(1)?.map(time),
        })
    })?)
}

/// Puts the dead letters whose `column` (`id` or `service_id`) is `value` back in the
/// queue, due now, with a fresh retry window. Returns how many.
async fn requeue_dead(
    store: &SqliteStore,
    column: &'static str,
    value: &str,
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    store
        .write(|tx| {
            let n = tx
                .prepare_cached(&format!(
                    "UPDATE webhook_messages SET status = 'pending', attempts = 0, window_start = ?, \
                     next_attempt_at = ?, updated_at = ? WHERE {column} = ? AND status = 'dead'"
                ))?
                .execute(params![ms(now), ms(now), ms(now), value])?;
            Ok(n as u64)
        })
        .await
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn claim_webhook(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> StoreResult<Option<WebhookJob>> {
        self.write(|tx| {
            let seq: Option<i64> = tx
                .prepare_cached(
                    "UPDATE webhook_messages SET lease_owner = ?, lease_until = ? WHERE seq = (\
                       SELECT seq FROM webhook_messages WHERE status = 'pending' AND next_attempt_at <= ? \
                       AND (lease_until IS NULL OR lease_until <= ?) ORDER BY next_attempt_at, seq LIMIT 1) \
                     RETURNING seq",
                )?
                .query_row(params![owner, ms(now + lease), ms(now), ms(now)], |r| {
                    r.get(0)
                })
                .optional()?;
            let Some(seq) = seq else { return Ok(None) };
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT w.id AS wid, w.service_id AS wservice, w.endpoint AS wendpoint, w.attempts, w.window_start, \
                     {} FROM webhook_messages w JOIN events e ON e.id = w.event_id WHERE w.seq = ?",
                event_columns_of("e")
            ))?;
            let mut rows = stmt.query([seq])?;
            let r = rows.next()?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            Ok(Some(WebhookJob {
                id: r.get("wid")?,
                service_id: r.get("wservice")?,
                endpoint: Some(r.get::<_, String>("wendpoint")?).filter(|e| !e.is_empty()),
                attempts: r.get::<_, i64>("attempts")? as u32,
                window_start: time(r.get("window_start")?),
                lease_owner: owner.to_string(),
                event: event_of(r)?,
            }))
        })
        .await
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
        self.write(|tx| {
            let done = tx
                .prepare_cached(
                    "UPDATE webhook_messages SET status = ?, attempts = attempts + 1, next_attempt_at = ?, \
                     last_error = ?, last_status = ?, lease_owner = NULL, lease_until = NULL, updated_at = ? \
                     WHERE id = ? AND lease_owner = ? AND status = 'pending'",
                )?
                .execute(params![
                    status,
                    ms(next),
                    error.map(|e| e.chars().take(500).collect::<String>()),
                    code.map(i64::from),
                    ms(now),
                    job.id,
                    job.lease_owner,
                ])?;
            Ok(done == 1)
        })
        .await
    }

    async fn next_webhook_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let at: Option<i64> = self
            .read(|c| {
                Ok(c.prepare_cached(
                    "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, 0))) FROM webhook_messages WHERE status = 'pending'",
                )?
                .query_row([], |r| r.get(0))?)
            })
            .await?;
        Ok(at.map(time))
    }

    async fn list_dead_letters(&self, f: &DeadLetterFilter) -> StoreResult<Vec<DeadLetter>> {
        let mut q = Query::new(DEAD_SELECT);
        if let Some(s) = &f.service_id {
            q.push(" AND w.service_id = ").bind(s.clone());
        }
        if let Some(before) = f.before_seq {
            q.push(" AND w.seq < ").bind(before);
        }
        q.push(" ORDER BY w.seq DESC LIMIT ")
            .bind(i64::from(f.limit));
        self.read(|c| q.fetch(c, dead_letter)).await
    }

    async fn get_dead_letter(&self, id: &str) -> StoreResult<Option<DeadLetter>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!("{DEAD_SELECT} AND w.id = ?"))?;
            Ok(collect(&mut stmt, [id], dead_letter)?.pop())
        })
        .await
    }

    async fn replay_dead_letter(&self, id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        Ok(requeue_dead(self, "id", id, now).await? == 1)
    }

    async fn replay_dead_letters(&self, service_id: &str, now: DateTime<Utc>) -> StoreResult<u64> {
        requeue_dead(self, "service_id", service_id, now).await
    }

    async fn webhook_stats(&self) -> StoreResult<(QueueStats, u64)> {
        self.read(|c| {
            let waiting = stats(
                c,
                "SELECT COUNT(*), MIN(created_at) FROM webhook_messages WHERE status = 'pending'",
            )?;
            let dead: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM webhook_messages WHERE status = 'dead'")?
                .query_row([], |r| r.get(0))?;
            Ok((waiting, dead.max(0) as u64))
        })
        .await
    }
}

#[async_trait]
impl TelemetryStore for SqliteStore {
    async fn outbox_stats(&self) -> StoreResult<QueueStats> {
        self.read(|c| {
            stats(
                c,
                "SELECT COUNT(*), MIN(created_at) FROM deliveries WHERE status = 'queued'",
            )
        })
        .await
    }

    async fn receipt_wait(
        &self,
        provider: &str,
        message_id: &str,
    ) -> StoreResult<Option<(Channel, Option<DateTime<Utc>>)>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT channel, providers, provider_index, status, receipt_deadline, updated_at \
                 FROM deliveries WHERE (id = ? OR provider_message_id = ?) \
                 AND json_extract(providers, '$[' || provider_index || ']') = ? LIMIT 1",
            )?;
            let mut rows = stmt.query(params![message_id, message_id, provider])?;
            let Some(r) = rows.next()? else {
                return Ok(None);
            };
            let providers: String = r.get("providers")?;
            let providers: Vec<String> = serde_json::from_str(&providers).unwrap_or_default();
            let index = r.get::<_, i64>("provider_index")? as usize;
            if providers.get(index).map(String::as_str) != Some(provider) {
                return Ok(None);
            }
            let channel: String = r.get("channel")?;
            let channel = parse_channel(&channel)?;
            // A `sent` message still waiting for its receipt was last changed when it was
            // handed to the provider.
            let status: String = r.get("status")?;
            let waiting =
                status == "sent" && r.get::<_, Option<i64>>("receipt_deadline")?.is_some();
            let updated_at = if waiting {
                Some(time(r.get("updated_at")?))
            } else {
                None
            };
            Ok(Some((channel, updated_at)))
        })
        .await
    }
}
