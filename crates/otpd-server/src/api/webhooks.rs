//! `/v1/webhooks/dead-letters`: webhook messages given up on after their retry window
//! (admin keys), and replaying them (same event, same `webhook-id`, a fresh window).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use otpd_core::apikey::Principal;
use otpd_core::store::{DeadLetter, DeadLetterFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::views::timestamp;
use crate::auth::{scoped_service_filter, usable_service};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Default page size.
const DEFAULT_LIMIT: u32 = 100;
/// Largest page size.
const MAX_LIMIT: u32 = 1_000;

/// Dead-letter filters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Only this service's (name or SID).
    pub service: Option<String>,
    /// Cursor from a previous page's `next_cursor`.
    pub before: Option<String>,
    /// Page size (1–1000, default 100).
    pub limit: Option<u32>,
}

/// A webhook message given up on.
#[derive(Serialize, ToSchema)]
pub struct DeadLetterView {
    /// `whk_…`
    pub id: String,
    /// The service (name) whose endpoint refused it.
    pub service: String,
    /// That endpoint: null for the service's `webhook_url`, else the sid (`YW…`) of one of
    /// its factor webhooks (Twilio-style, managed on `/v2`).
    pub endpoint: Option<String>,
    /// The event (`evt_…`), also the message's `webhook-id`.
    pub event_id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// POSTs made.
    pub attempts: u32,
    /// The receiver's last HTTP status, if it answered.
    pub last_status: Option<u16>,
    /// Why the last POST failed.
    pub last_error: Option<String>,
    /// When the event happened.
    pub event_at: String,
    /// When it was given up on.
    pub dead_at: String,
}

/// A page of dead letters.
#[derive(Serialize, ToSchema)]
pub struct DeadLetterList {
    /// Newest first.
    pub dead_letters: Vec<DeadLetterView>,
    /// Pass as `before` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

/// How many messages went back into the queue.
#[derive(Serialize, ToSchema)]
pub struct Replayed {
    /// Messages queued again (due now).
    pub replayed: u64,
}

/// Which service's dead letters to replay.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// The service (name or SID).
    pub service: String,
}

/// The views of dead letters, with their services' names.
async fn views(state: &AppState, letters: &[DeadLetter]) -> ApiResult<Vec<DeadLetterView>> {
    let names: HashMap<String, String> = state
        .store
        .list_services()
        .await?
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect();
    Ok(letters
        .iter()
        .map(|d| DeadLetterView {
            id: d.id.clone(),
            service: names.get(&d.service_id).cloned().unwrap_or_default(),
            endpoint: d.endpoint.clone(),
            event_id: d.event_id.clone(),
            kind: d.event_type.clone(),
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            event_at: timestamp(d.event_at),
            dead_at: timestamp(d.dead_at),
        })
        .collect())
}

/// List dead letters, newest first.
#[utoipa::path(
    get, path = "/v1/webhooks/dead-letters", tag = "webhooks",
    params(DeadLetterQuery),
    responses(
        (status = 200, description = "A page of dead letters", body = DeadLetterList),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<DeadLetterQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<DeadLetterList>> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1-1000"));
    }
    let mut filter = DeadLetterFilter {
        limit,
        ..DeadLetterFilter::default()
    };
    filter.service_id = scoped_service_filter(&state, &principal, q.service.as_deref()).await?;
    if let Some(before) = &q.before {
        filter.before_seq = Some(
            before
                .parse()
                .map_err(|_| ApiError::invalid("before must be a cursor from next_cursor"))?,
        );
    }
    let letters = state.store.list_dead_letters(&filter).await?;
    let next_cursor = (letters.len() as u32 == limit)
        .then(|| letters.last().map(|d| d.seq.to_string()))
        .flatten();
    Ok(Json(DeadLetterList {
        dead_letters: views(&state, &letters).await?,
        next_cursor,
    }))
}

/// Replay one dead letter: it is POSTed again now (same body type, same `webhook-id`),
/// with a fresh retry window.
#[utoipa::path(
    post, path = "/v1/webhooks/dead-letters/{id}/replay", tag = "webhooks",
    params(("id" = String, Path, description = "The dead letter (`whk_…`)")),
    responses(
        (status = 202, description = "Queued again", body = Replayed),
        (status = 404, description = "No such dead letter (delivered, waiting, or unknown)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn replay(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(axum::http::StatusCode, Json<Replayed>)> {
    let reachable = state
        .store
        .get_dead_letter(&id)
        .await?
        .is_some_and(|d| principal.may_use_service(&d.service_id));
    if !reachable
        || !state
            .store
            .replay_dead_letter(&id, state.clock.now())
            .await?
    {
        return Err(ApiError::not_found("dead letter"));
    }
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(Replayed { replayed: 1 }),
    ))
}

/// Replay every dead letter of a service.
#[utoipa::path(
    post, path = "/v1/webhooks/dead-letters/replay", tag = "webhooks",
    request_body = ReplayBody,
    responses(
        (status = 202, description = "Queued again (possibly none)", body = Replayed),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn replay_all(
    State(state): State<AppState>,
    principal: Principal,
    body: ApiJson<ReplayBody>,
) -> ApiResult<(axum::http::StatusCode, Json<Replayed>)> {
    let id = usable_service(&state, &principal, Some(&body.value.service))
        .await?
        .id;
    let replayed = state
        .store
        .replay_dead_letters(&id, state.clock.now())
        .await?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(Replayed { replayed }),
    ))
}
