//! `/v1/challenges`: proof-of-work puzzles for services that demand one before a send
//! (`guards.proof_of_work`), and the small JavaScript solver for the customer's page.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::DateTime;
use otpd_core::apikey::Principal;
use otpd_core::guards::proof_of_work::Challenge;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::views::timestamp;
use crate::auth::usable_service;
use crate::error::{ApiResult, Problem};
use crate::extract::ApiJson;
use crate::state::AppState;

/// The solver script (Web Crypto; browsers, workers and Node).
const SOLVER_JS: &str = include_str!("../../assets/pow-solver.js");

/// Ask for a challenge.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeBody {
    /// Service name or SID; default `default`. The solution is good for this service only.
    pub service: Option<String>,
}

/// An issued challenge.
#[derive(Serialize, ToSchema)]
pub struct ChallengeView {
    /// The string to solve; send it back unchanged as `proof_of_work.challenge`.
    pub challenge: String,
    /// Leading zero bits `SHA-256("<challenge>:<nonce>")` must have.
    pub difficulty: u8,
    /// Always `sha256`.
    pub algorithm: &'static str,
    /// When the challenge stops being accepted.
    pub expires_at: String,
    /// Where the solver script is served.
    pub solver_url: &'static str,
}

/// Issue a proof-of-work challenge, to be solved by the end user's browser and presented
/// once with a send (`proof_of_work: {challenge, nonce}`).
#[utoipa::path(
    post, path = "/v1/challenges", tag = "guards",
    request_body = ChallengeBody,
    responses(
        (status = 201, description = "Issued", body = ChallengeView),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A store is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    body: ApiJson<ChallengeBody>,
) -> ApiResult<(StatusCode, Json<ChallengeView>)> {
    let service = usable_service(&state, &principal, body.value.service.as_deref()).await?;
    let now = state.clock.now();
    let challenge = Challenge::issue(
        &service.id,
        &service.settings.guards.proof_of_work,
        now.timestamp(),
    );
    state.store.create_challenge(&challenge).await?;
    let expires_at = DateTime::from_timestamp(challenge.expires_at, 0).unwrap_or(now);
    Ok((
        StatusCode::CREATED,
        Json(ChallengeView {
            challenge: challenge.text(),
            difficulty: challenge.difficulty,
            algorithm: "sha256",
            expires_at: timestamp(expires_at),
            solver_url: "/v1/challenges/solver.js",
        }),
    ))
}

/// The JavaScript solver: `await otpdSolve(challenge, difficulty)` → nonce. Public (no
/// key), so a page can load it directly or the customer can copy it.
#[utoipa::path(
    get, path = "/v1/challenges/solver.js", tag = "guards",
    responses((status = 200, description = "The solver script", content_type = "text/javascript")),
)]
pub async fn solver() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        SOLVER_JS,
    )
}
