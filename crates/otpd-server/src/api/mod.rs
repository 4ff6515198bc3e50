//! The native HTTP API (`/v1`), operations endpoints, and the OpenAPI document built from
//! the same route table, so the document cannot miss a route.

pub mod challenges;
pub mod erasures;
pub mod events;
pub mod examples;
pub mod keys;
pub mod metrics;
pub mod ops;
pub mod passkeys;
pub mod receipts;
pub mod services;
pub mod totp;
pub mod ussd;
pub mod verifications;
pub mod views;
pub mod voice;
pub mod webhooks;

use std::sync::OnceLock;

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;
use crate::twilio::BasicAuth;

/// The OpenAPI document as JSON, rendered once at startup.
pub(crate) static OPENAPI_JSON: OnceLock<String> = OnceLock::new();

#[derive(OpenApi)]
#[openapi(
    info(
        title = "otpd",
        description = "Self-hosted OTP verification: send a code, check what the user typed. \
            Errors are application/problem+json with a stable `code`.",
    ),
    modifiers(&BearerAuth, &BasicAuth),
    components(schemas(crate::error::ErrorCode)),
    tags(
        (name = "verifications", description = "Send and check codes"),
        (name = "services", description = "Per-application settings (admin)"),
        (name = "totp", description = "Authenticator apps (TOTP, HOTP) and backup codes"),
        (name = "passkeys", description = "Passkeys (WebAuthn): registration and sign-in, with or without a user name"),
        (name = "keys", description = "API keys (admin)"),
        (name = "events", description = "The event log and audit trail, erasure of a recipient's records (admin)"),
        (name = "webhooks", description = "Webhook messages given up on, and their replay (admin)"),
        (name = "receipts", description = "Delivery receipts from providers"),
        (name = "guards", description = "Abuse protection: proof-of-work challenges"),
        (name = "operations", description = "Health, readiness, documents and pages"),
        (name = "twilio-compatible", description = "Twilio Verify v2 shapes under /v2: form-encoded PascalCase parameters, HTTP Basic with an otpd API key as the password, Twilio error bodies {code, message, more_info, status}"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("otpd API key")
                    .description(Some(
                        "`Authorization: Bearer otpd_live_…` (or `otpd_test_…`)",
                    ))
                    .build(),
            ),
        );
    }
}

/// Documents the API's refusals on every operation that takes input (a key, a body or a
/// parameter): any 4xx not listed on its own is an `application/problem+json` body
/// (401 without a valid key, 403, 408, 413, 415, 400 …), or on the Twilio-compatible
/// `/v2` paths Twilio's own JSON error body. Found by schemathesis: those statuses were
/// answered but not documented.
struct ProblemResponses;

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        for (path, item) in openapi.paths.paths.iter_mut() {
            let twilio = path.starts_with("/v2/");
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in operations.into_iter().flatten() {
                let takes_input = op.security.as_ref().is_some_and(|s| !s.is_empty())
                    || op.request_body.is_some()
                    || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                if takes_input && !op.responses.responses.contains_key("4XX") {
                    let (schema, content_type, description) = if twilio {
                        (
                            "TwilioErrorBody",
                            "application/json",
                            "Refused (any other 4xx), as Twilio's error body",
                        )
                    } else {
                        (
                            "Problem",
                            "application/problem+json",
                            "Refused (any other 4xx), as application/problem+json",
                        )
                    };
                    let body = ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(schema)))
                        .build();
                    let response = ResponseBuilder::new()
                        .description(description)
                        .content(content_type, body)
                        .build();
                    op.responses
                        .responses
                        .insert("4XX".into(), RefOr::T(response));
                }
            }
        }
    }
}

/// Every route with its OpenAPI operation.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = documented_routes();
    ProblemResponses.modify(&mut doc);
    (router, doc)
}

fn documented_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    OpenApiRouter::with_openapi(doc)
        .routes(routes!(verifications::start))
        .routes(routes!(verifications::check))
        .routes(routes!(verifications::get))
        .routes(routes!(verifications::cancel))
        .routes(routes!(verifications::messages))
        .routes(routes!(totp::create, totp::list))
        .routes(routes!(totp::get, totp::delete))
        .routes(routes!(totp::qr_png))
        .routes(routes!(totp::verify))
        .routes(routes!(totp::check))
        .routes(routes!(totp::backup_codes))
        .routes(routes!(passkeys::start_registration))
        .routes(routes!(passkeys::finish_registration))
        .routes(routes!(passkeys::start_authentication))
        .routes(routes!(passkeys::finish_authentication))
        .routes(routes!(passkeys::list))
        .routes(routes!(passkeys::delete))
        .routes(routes!(services::create, services::list))
        .routes(routes!(services::get, services::update, services::delete))
        .routes(routes!(services::rotate_webhook_secret))
        .routes(routes!(services::decisions))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::revoke))
        .routes(routes!(events::list))
        .routes(routes!(challenges::create))
        .routes(routes!(challenges::solver))
        .routes(routes!(events::export))
        .routes(routes!(erasures::erase))
        .routes(routes!(webhooks::list))
        .routes(routes!(webhooks::replay))
        .routes(routes!(webhooks::replay_all))
        .routes(routes!(receipts::receive, receipts::subscribe))
        .routes(routes!(ussd::session))
        .routes(routes!(voice::answer))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(metrics::metrics))
        .routes(routes!(ops::openapi))
        .routes(routes!(ops::docs))
        .routes(routes!(ops::errors))
        .routes(routes!(ops::marked_js))
        .routes(routes!(crate::dashboard::page))
        .routes(routes!(crate::dashboard::script))
        .routes(routes!(crate::dashboard::uplot_js))
        .routes(routes!(crate::dashboard::uplot_css))
        .routes(routes!(crate::sdk::component))
        .routes(routes!(crate::sdk::component_versioned))
        .routes(routes!(
            crate::dashboard::session::sign_in,
            crate::dashboard::session::current,
            crate::dashboard::session::sign_out
        ))
        .routes(routes!(crate::dashboard::stats::stats))
        .routes(routes!(crate::dashboard::lookup::search))
        .routes(routes!(crate::dashboard::lookup::timeline))
        .merge(crate::twilio::routes())
        .split_for_parts()
}

/// The OpenAPI document (for `otpd` tooling and tests).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

/// The OpenAPI document as served at `/openapi.json`: [`openapi`] with an example for
/// every request body and JSON success response.
pub fn document(doc: &utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut doc = serde_json::to_value(doc).unwrap_or_default();
    examples::fill(&mut doc);
    doc
}
