//! `/v1/events`: the event log, filtered and paged with a cursor (admin keys).

use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use otpd_core::apikey::Principal;
use otpd_core::store::EventFilter;
use serde::Deserialize;
use utoipa::IntoParams;

use super::verifications::normalize_id;
use super::views::{EventList, EventView};
use crate::auth::require_admin;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;

/// Default page size.
const DEFAULT_LIMIT: u32 = 100;
/// Largest page size.
const MAX_LIMIT: u32 = 1_000;

/// Event filters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only this verification's events (id or SID).
    pub verification: Option<String>,
    /// Only this type, e.g. `verification.approved`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// Events after this one (`evt_…`) or at/after this RFC 3339 time.
    pub since: Option<String>,
    /// Cursor from a previous page's `next_cursor`.
    pub after: Option<String>,
    /// Page size (1–1000, default 100).
    pub limit: Option<u32>,
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
    require_admin(&principal)?;
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1-1000"));
    }
    let mut filter = EventFilter {
        verification_id: q.verification.as_deref().map(normalize_id),
        kind: q.kind,
        limit,
        ..EventFilter::default()
    };
    if let Some(after) = q.after {
        filter.after_seq = Some(
            after
                .parse()
                .map_err(|_| ApiError::invalid("after must be a cursor from next_cursor"))?,
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
            let t = DateTime::parse_from_rfc3339(&since)
                .map_err(|_| ApiError::invalid("since must be an event id or an RFC 3339 time"))?;
            filter.since = Some(t.with_timezone(&Utc));
        }
    }
    let events = state.store.list_events(&filter).await?;
    let next_cursor = (events.len() as u32 == limit)
        .then(|| events.last().map(|e| e.seq.to_string()))
        .flatten();
    Ok(Json(EventList {
        events: events.iter().map(EventView::of).collect(),
        next_cursor,
    }))
}
