//! `POST /v1/erasures`: a data-subject request — erase every record of one phone number or
//! email address (admin keys). The audit record of the erasure holds the recipient masked.

use axum::Json;
use axum::extract::State;
use otpd_core::apikey::Principal;
use otpd_core::audit::WriteContext;
use otpd_core::mask::mask_recipient;
use otpd_core::recipient::{EmailAddress, PhoneNumber};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiResult, Problem};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Whose records to erase.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureBody {
    /// Phone number (any common format) or email address.
    pub to: String,
    /// ISO 3166 region for numbers written without `+`.
    pub country: Option<String>,
}

/// What was erased.
#[derive(Serialize, ToSchema)]
pub struct ErasureView {
    /// The recipient, masked (`+1******2671`).
    pub to: String,
    /// Rows deleted per table (tables with none are left out).
    #[schema(value_type = Object)]
    pub deleted: otpd_core::store::RowCounts,
}

/// The normalized form a recipient is stored under. Any structurally possible number is
/// accepted (an erasure must work for numbers whose range metadata has since changed).
fn stored_form(to: &str, country: Option<&str>) -> ApiResult<String> {
    if to.contains('@') {
        return Ok(EmailAddress::parse(to)?.as_str().to_string());
    }
    Ok(PhoneNumber::parse_possible(to, country)?.e164().to_string())
}

/// Erase every record of a recipient: verifications (with their deliveries and recorded
/// messages), send log, guard decisions, lockouts, rate-limit state and idempotency
/// records, in every service. Events keep only masked recipients and stay (the audit
/// trail); an `erasure.completed` event records the request.
#[utoipa::path(
    post, path = "/v1/erasures", tag = "events",
    request_body = ErasureBody,
    responses(
        (status = 200, description = "Erased", body = ErasureView),
        (status = 400, description = "Not a phone number or email address", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
pub async fn erase(
    State(state): State<AppState>,
    ctx: WriteContext,
    _principal: Principal,
    body: ApiJson<ErasureBody>,
) -> ApiResult<Json<ErasureView>> {
    let body = body.value;
    let to = stored_form(&body.to, body.country.as_deref())?;
    let masked = mask_recipient(&to);
    let deleted = state
        .store
        .erase_recipient(&to, &masked, state.clock.now(), &ctx)
        .await?;
    tracing::info!(to = %masked, rows = deleted.values().sum::<u64>(), "recipient erased");
    Ok(Json(ErasureView {
        to: masked,
        deleted,
    }))
}
