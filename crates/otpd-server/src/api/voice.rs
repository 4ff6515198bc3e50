//! `/v1/voice/{provider}`: what an answered call says, for providers that fetch it when
//! the callee picks up (Plivo's `answer_url`).
//!
//! Stateless and multi-node: the call's text is not stored anywhere for this. The worker
//! sealed it under the server secret into the URL it gave the provider
//! ([`otpd_delivery::call_script`]), so any node can answer. The fetch needs no API key
//! but must carry the provider's signature over that URL
//! ([`otpd_delivery::provider::Provider::answer_call`]); an unsigned or forged fetch is
//! answered 401 `unauthorized`, a token that does not open (altered, moved to another
//! message, sealed under another secret) or whose code has expired 404 `not_found`, and
//! neither changes anything. The answer (Plivo XML with the code) is never logged; the
//! delivery's outcome comes later, from the call's hangup callback to
//! `/v1/receipts/{provider}`.

use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use otpd_delivery::provider::AnswerError;

use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::extract::ProviderCallback;
use crate::state::AppState;

/// Answer a provider's fetch of an answered call's script.
#[utoipa::path(
    post, path = "/v1/voice/{provider}", tag = "receipts",
    params(("provider" = String, Path, description = "The configured provider name")),
    responses(
        (status = 200, description = "The provider's document that speaks the code (Plivo XML)", body = String, content_type = "application/xml"),
        (status = 401, description = "Not signed by the provider", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown provider, one that fetches no scripts, or a script token that does not open or has expired", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn answer(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    callback: ProviderCallback,
) -> ApiResult<Response> {
    let Some(adapter) = state.router.provider(&provider).cloned() else {
        return Err(ApiError::not_found("provider"));
    };
    match adapter.answer_call(&callback.request(), state.secret.sealer()) {
        None => Err(ApiError::not_found("voice provider")),
        Some(Err(AnswerError::Unauthenticated)) => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "the request is not signed by the provider",
        )),
        Some(Err(AnswerError::NotFound)) => Err(ApiError::not_found("call script")),
        Some(Ok(answer)) => Ok((
            [
                (CONTENT_TYPE, answer.content_type),
                (CACHE_CONTROL, "no-store"),
            ],
            answer.body.to_string(),
        )
            .into_response()),
    }
}
