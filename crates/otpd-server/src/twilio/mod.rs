//! The Twilio Verify v2–compatible API under `/v2`, so that applications written against
//! Twilio Verify (and its official SDKs) move to otpd by changing the base URL and the
//! credential: form-encoded PascalCase parameters ([`form`]), Twilio's JSON shapes
//! ([`views`]), its error bodies and codes ([`errors`]), and status callbacks signed with
//! `X-Twilio-Signature` ([`callbacks`]).
//!
//! The handlers ([`services`], [`verifications`], [`attempts`]) only translate: every rule
//! (normalization, test numbers, guards, send limits, idempotency, test keys, the atomic
//! check) is the native API's, called through `api::verifications`, on the same store — a
//! verification started on `/v2` can be checked on `/v1` and back.

pub mod attempts;
pub mod callbacks;
pub mod challenges;
pub mod entities;
pub mod errors;
pub mod factor_views;
pub mod factors;
pub mod form;
pub mod messaging_configurations;
pub mod passkeys;
pub mod rate_limits;
pub mod safe_list;
pub mod services;
pub mod summary;
pub mod templates;
pub mod verifications;
pub mod views;
pub mod webhook_messages;
pub mod webhooks;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use otpd_core::apikey::Principal;
use serde::de::DeserializeOwned;
use utoipa::Modify;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;
use errors::{TwilioError, TwilioResult};
use form::Params;

/// Default page size of lists (Twilio's).
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Largest page size (Twilio's).
pub const MAX_PAGE_SIZE: u32 = 1_000;

/// The `/v2` routes with their OpenAPI operations (tag `twilio-compatible`).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(services::create, services::list))
        .routes(routes!(services::fetch, services::update, services::delete))
        .routes(routes!(verifications::create))
        .routes(routes!(verifications::fetch, verifications::update))
        .routes(routes!(verifications::check))
        .routes(routes!(attempts::list))
        .routes(routes!(attempts::fetch))
        .routes(routes!(rate_limits::create, rate_limits::list))
        .routes(routes!(
            rate_limits::fetch,
            rate_limits::update,
            rate_limits::delete
        ))
        .routes(routes!(
            rate_limits::create_bucket,
            rate_limits::list_buckets
        ))
        .routes(routes!(
            rate_limits::fetch_bucket,
            rate_limits::update_bucket,
            rate_limits::delete_bucket
        ))
        .routes(routes!(
            messaging_configurations::create,
            messaging_configurations::list
        ))
        .routes(routes!(
            messaging_configurations::fetch,
            messaging_configurations::update,
            messaging_configurations::delete
        ))
        .routes(routes!(summary::fetch))
        .routes(routes!(templates::list))
        .routes(routes!(safe_list::create))
        .routes(routes!(safe_list::fetch, safe_list::delete))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::fetch, webhooks::update, webhooks::delete))
        .merge(factor_routes())
}

/// The authenticator-app routes: Entities, Factors and Challenges.
fn factor_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(entities::create, entities::list))
        .routes(routes!(entities::fetch, entities::delete))
        .routes(routes!(factors::create, factors::list))
        .routes(routes!(factors::fetch, factors::update, factors::delete))
        .routes(routes!(challenges::create, challenges::list))
        .routes(routes!(challenges::fetch, challenges::update))
        .routes(routes!(passkeys::create_factor))
        .routes(routes!(passkeys::verify_factor))
        .routes(routes!(passkeys::create_challenge))
        .routes(routes!(passkeys::approve_challenge))
}

/// Adds the HTTP Basic scheme of the `/v2` operations to the document.
pub struct BasicAuth;

impl Modify for BasicAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "HTTP Basic: any user name (an SDK's account SID slot), an otpd API key as the password",
                    ))
                    .build(),
            ),
        );
    }
}

/// The caller, authenticated as on `/v1` (HTTP Basic with the API key as the password, or
/// Bearer), with failures answered in Twilio's form (20003).
pub struct TwilioPrincipal(pub Principal);

impl FromRequestParts<AppState> for TwilioPrincipal {
    type Rejection = TwilioError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Principal::from_request_parts(parts, state)
            .await
            .map(TwilioPrincipal)
            .map_err(TwilioError::from)
    }
}

/// Path parameters, with malformed ones answered in Twilio's form.
pub struct TwPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for TwPath<T> {
    type Rejection = TwilioError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| TwPath(v))
            .map_err(|e| TwilioError::invalid(format!("Invalid path: {}", e.body_text())))
    }
}

/// Largest list offset a page may start at (the store counts in SQL integers).
const MAX_OFFSET: u64 = 1 << 40;

/// Paging parameters: `PageSize` (1–1000, default 50), `Page` (from 0), and `PageToken`
/// (otpd's own tokens, as its `next_page_url` carries them; they win over `Page`).
pub struct Paging {
    /// Page number (for `meta.page`).
    pub page: u64,
    /// Page size.
    pub page_size: u32,
    /// Offset of the page's first item.
    pub offset: u64,
}

impl Paging {
    /// Takes the paging parameters from `params`.
    pub fn take(params: &mut Params) -> TwilioResult<Paging> {
        let page_size = params
            .take_parsed::<u32>("PageSize")?
            .unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(TwilioError::invalid(
                "Invalid parameter PageSize: must be 1-1000",
            ));
        }
        let page = params.take_parsed::<u64>("Page")?.unwrap_or(0);
        let offset = match params.take("PageToken") {
            Some(token) => views::page_token_offset(&token).ok_or_else(|| {
                TwilioError::invalid("Invalid parameter PageToken: not a token otpd issued")
            })?,
            None => page.saturating_mul(u64::from(page_size)),
        };
        // Offsets reach the store as SQL integers (i64); nothing real is that far anyway.
        if offset > MAX_OFFSET {
            return Err(TwilioError::invalid(
                "Invalid parameter Page: the page is beyond the end of any list",
            ));
        }
        Ok(Paging {
            page,
            page_size,
            offset,
        })
    }
}
