//! `/v1/events`: the event log — every state change, and the audit record of every
//! state-changing call — filtered, paged with an opaque cursor, or exported as JSON lines
//! (admin keys).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use otpd_core::apikey::Principal;
use otpd_core::store::EventFilter;
use serde::Deserialize;
use utoipa::IntoParams;

use super::views::{EventList, EventView};
use crate::auth::scoped_service_filter;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;
use otpd_engine::normalize_id;

/// Default page size.
const DEFAULT_LIMIT: u32 = 100;
/// Largest page size.
const MAX_LIMIT: u32 = 1_000;
/// Events read per store call while exporting (the export streams page by page, so its
/// memory stays bounded however long the log is).
const EXPORT_BATCH: u32 = 500;
/// What an opaque cursor encodes before the position.
const CURSOR_TAG: &str = "evt-seq:";

/// Event filters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only this verification's events (id or SID).
    pub verification: Option<String>,
    /// Only this type, e.g. `verification.approved` or `api.request`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// Only this service's events (name, id or SID).
    pub service: Option<String>,
    /// Only events caused by this API key (`key_…`, or `master`).
    pub key: Option<String>,
    /// Only events of this request (its `x-request-id`).
    pub request: Option<String>,
    /// Events after this one (`evt_…`) or at/after this RFC 3339 time.
    pub since: Option<String>,
    /// Only events before this RFC 3339 time.
    pub until: Option<String>,
    /// Cursor from a previous page's `next_cursor`.
    pub after: Option<String>,
    /// Page size (1–1000, default 100; ignored by the export).
    pub limit: Option<u32>,
}

/// The opaque cursor of a position in the log.
fn cursor_of(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_TAG}{seq}"))
}

/// The position of a cursor (older clients' plain positions are still accepted).
fn seq_of(cursor: &str) -> Option<i64> {
    if let Ok(seq) = cursor.parse() {
        return Some(seq);
    }
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    text.strip_prefix(CURSOR_TAG)?.parse().ok()
}

fn rfc3339(name: &str, value: &str) -> ApiResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ApiError::invalid(format!("{name} must be an RFC 3339 time")))
}

/// The store filter of a query (page size aside), kept to the caller's services.
async fn filter_of(state: &AppState, p: &Principal, q: EventQuery) -> ApiResult<EventFilter> {
    let service_id = scoped_service_filter(state, p, q.service.as_deref()).await?;
    let mut filter = EventFilter {
        verification_id: q.verification.as_deref().map(normalize_id),
        kind: q.kind,
        service_id,
        key_id: q.key,
        request_id: q.request,
        until: q
            .until
            .as_deref()
            .map(|u| rfc3339("until", u))
            .transpose()?,
        ..EventFilter::default()
    };
    if let Some(after) = q.after {
        filter.after_seq = Some(
            seq_of(&after)
                .ok_or_else(|| ApiError::invalid("after must be a cursor from next_cursor"))?,
        );
    }
    if let Some(since) = q.since {
        if since.starts_with("evt_") {
            let seq = state
                .store
                .event_seq(&since)
                .await?
                .ok_or_else(|| ApiError::invalid("since names an unknown event"))?;
            filter.after_seq = Some(filter.after_seq.map_or(seq, |a| a.max(seq)));
        } else {
            filter.since = Some(rfc3339("since (an event id or a time)", &since)?);
        }
    }
    Ok(filter)
}

/// List events, oldest first.
#[utoipa::path(
    get, path = "/v1/events", tag = "events",
    params(EventQuery),
    responses(
        (status = 200, description = "A page of events", body = EventList),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<EventList>> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1-1000"));
    }
    let filter = EventFilter {
        limit,
        ..filter_of(&state, &principal, q).await?
    };
    let events = state.store.list_events(&filter).await?;
    let next_cursor = (events.len() as u32 == limit)
        .then(|| events.last().map(|e| cursor_of(e.seq)))
        .flatten();
    Ok(Json(EventList {
        events: events.iter().map(EventView::of).collect(),
        next_cursor,
    }))
}

/// Export every matching event as JSON lines (`application/x-ndjson`, one event object per
/// line, oldest first), streamed.
#[utoipa::path(
    get, path = "/v1/events/export", tag = "events",
    params(EventQuery),
    responses(
        (status = 200, description = "One event per line", content_type = "application/x-ndjson", body = EventView),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn export(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let first = EventFilter {
        limit: EXPORT_BATCH,
        ..filter_of(&state, &principal, q).await?
    };
    // Each step reads one batch after the last position sent; a store failure mid-way
    // ends the stream with an error (the client sees a truncated body, never a silent end).
    let pages = futures_util::stream::try_unfold(Some(first), move |filter| {
        let store = state.store.clone();
        async move {
            let Some(filter) = filter else {
                return Ok(None);
            };
            let events = store.list_events(&filter).await?;
            let next = (events.len() as u32 == filter.limit).then(|| EventFilter {
                after_seq: events.last().map(|e| e.seq),
                ..filter.clone()
            });
            if events.is_empty() {
                return Ok(None);
            }
            let mut chunk = Vec::new();
            for e in &events {
                serde_json::to_writer(&mut chunk, &EventView::of(e)).map_err(|e| {
                    otpd_core::store::StoreError::Unavailable(otpd_core::store::Cause::of(e))
                })?;
                chunk.push(b'\n');
            }
            Ok::<_, otpd_core::store::StoreError>(Some((Bytes::from(chunk), next)))
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(pages),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_opaque_and_round_trip() {
        let c = cursor_of(42);
        assert!(!c.contains("42"), "{c}");
        assert_eq!(seq_of(&c), Some(42));
        assert_eq!(seq_of("17"), Some(17));
        assert_eq!(seq_of("bm9wZQ"), None);
        assert_eq!(seq_of("%%"), None);
    }
}
