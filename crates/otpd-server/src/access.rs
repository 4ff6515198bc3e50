//! Who may call which route: one table ([`access_of`]) gives every route of the router its
//! [`Access`], and one layer ([`enforce`]) applies it before any handler runs. A route
//! missing from the table is refused (and fails the test that walks the route table), so a
//! route added later cannot go out without a decision.
//!
//! The layer checks the role, and the service scope of a key created with `services`
//! wherever the route names its service in the path. Routes that name their service in the
//! body or reach it through an object (a verification, a factor, a key) are [`Access::Key`]
//! or [`Access::Admin`]: their handlers resolve the service through the scope functions of
//! [`crate::auth`] (`usable_service`, `scoped_service_filter`, `ensure_key_within_scope`),
//! the only places the scope rule is written.

use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use otpd_core::apikey::Principal;

use crate::auth::{principal_from_headers, require_admin, require_global_admin, usable_service};
use crate::dashboard::session::Operator;
use crate::error::ApiError;
use crate::state::AppState;
use crate::twilio::errors::TwilioError;

/// What a route asks of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No API key: health, documents, static pages, and provider callbacks that carry their
    /// own proof (a signature or a per-provider token, checked by their handlers).
    Public,
    /// The dashboard's readers: an unscoped admin key or a dashboard session.
    Operator,
    /// Any key, role `verify` or `admin`; the service is resolved from the body or through
    /// the object the route names, with the caller's scope and world.
    Key,
    /// An admin key; the handler keeps to the key's services (lists filtered, objects and
    /// new keys inside the scope).
    Admin,
    /// An admin key whose scope holds the service named by this path parameter.
    AdminOfService(&'static str),
    /// An admin key with no service restriction: the change or read reaches beyond any one
    /// service (new services, erasure of a recipient everywhere).
    AdminGlobal,
}

/// The access of every route, by method and route template (as the router and the
/// OpenAPI document name it). `None`: not a route of otpd's (refused).
pub fn access_of(method: &Method, path: &str) -> Option<Access> {
    use Access::*;
    let m = method.as_str();
    Some(match (m, path) {
        // Operations, documents, pages.
        (
            "GET",
            "/healthz"
            | "/readyz"
            | "/openapi.json"
            | "/docs"
            | "/docs/errors"
            | "/docs/assets/marked.js",
        ) => Public,
        // `/metrics` has its own bearer token (metrics.bearer_token), checked by its handler.
        ("GET", "/metrics") => Public,
        (
            "GET",
            "/dashboard"
            | "/dashboard/assets/dashboard.js"
            | "/dashboard/assets/uplot.js"
            | "/dashboard/assets/uplot.css"
            | "/v1/challenges/solver.js"
            | "/sdk/otpd-verify.js"
            | "/sdk/otpd-verify@1.0.0.js",
        ) => Public,
        // The sign-in form takes a key in its body (an unscoped admin's, checked there).
        ("GET" | "POST" | "DELETE", "/dashboard/session") => Public,
        ("GET", "/v1/stats" | "/v1/stats/verifications" | "/v1/stats/verifications/{id}") => {
            Operator
        }
        // Provider callbacks: signatures or receipt tokens, per provider.
        ("GET" | "POST", "/v1/receipts/{provider}") => Public,
        ("POST", "/v1/ussd/{provider}") => Public,
        ("POST", "/v1/voice/{provider}") => Public,
        // A proof-of-work challenge is asked for before a send, by the end user's browser.
        ("POST", "/v1/challenges") => Public,

        // Sending and checking codes, authenticator factors: any key, scoped by service.
        ("POST", "/v1/verifications" | "/v1/verifications/check") => Key,
        ("GET", "/v1/verifications/{id}" | "/v1/verifications/{id}/messages") => Key,
        ("POST", "/v1/verifications/{id}/cancel") => Key,
        ("GET" | "POST", "/v1/totp/factors") => Key,
        ("GET" | "DELETE", "/v1/totp/factors/{id}") => Key,
        ("GET", "/v1/totp/factors/{id}/qr.png") => Key,
        ("POST", "/v1/totp/factors/{id}/verify" | "/v1/totp/check" | "/v1/totp/backup-codes") => {
            Key
        }
        // Passkeys: any key; the service is resolved from the body or through the ceremony
        // or passkey the path names.
        (
            "POST",
            "/v1/passkeys/registrations"
            | "/v1/passkeys/registrations/{id}/verify"
            | "/v1/passkeys/authentications"
            | "/v1/passkeys/authentications/{id}/verify",
        ) => Key,
        ("GET", "/v1/passkeys/factors") => Key,
        ("DELETE", "/v1/passkeys/factors/{id}") => Key,
        ("POST", "/v2/Services/{ServiceSid}/Verifications") => Key,
        ("GET" | "POST", "/v2/Services/{ServiceSid}/Verifications/{Sid}") => Key,
        ("POST", "/v2/Services/{ServiceSid}/VerificationCheck") => Key,
        // Twilio's authenticator-app API: otpd's factors, scoped by the service in the path.
        ("GET" | "POST", "/v2/Services/{ServiceSid}/Entities") => Key,
        ("GET" | "DELETE", "/v2/Services/{ServiceSid}/Entities/{Identity}") => Key,
        (
            "GET" | "POST",
            "/v2/Services/{ServiceSid}/Entities/{Identity}/Factors"
            | "/v2/Services/{ServiceSid}/Entities/{Identity}/Challenges"
            | "/v2/Services/{ServiceSid}/Entities/{Identity}/Challenges/{Sid}",
        ) => Key,
        (
            "GET" | "POST" | "DELETE",
            "/v2/Services/{ServiceSid}/Entities/{Identity}/Factors/{Sid}",
        ) => Key,
        // Twilio's passkeys: otpd's passkeys, scoped by the service in the path.
        (
            "POST",
            "/v2/Services/{ServiceSid}/Passkeys/Factors"
            | "/v2/Services/{ServiceSid}/Passkeys/VerifyFactor"
            | "/v2/Services/{ServiceSid}/Passkeys/Challenges"
            | "/v2/Services/{ServiceSid}/Passkeys/ApproveChallenge",
        ) => Key,

        // Services.
        ("POST", "/v1/services" | "/v2/Services") => AdminGlobal,
        ("GET", "/v1/services" | "/v2/Services") => Admin,
        ("GET" | "PATCH" | "DELETE", "/v1/services/{name}") => AdminOfService("name"),
        ("POST", "/v1/services/{name}/webhook-secret") => AdminOfService("name"),
        ("GET", "/v1/services/{name}/decisions") => AdminOfService("name"),
        ("GET" | "POST" | "DELETE", "/v2/Services/{Sid}") => AdminOfService("Sid"),
        // A service's keyed rate limits, per-country senders and factor webhooks: its settings.
        (
            "GET" | "POST",
            "/v2/Services/{ServiceSid}/RateLimits"
            | "/v2/Services/{ServiceSid}/RateLimits/{RateLimitSid}/Buckets"
            | "/v2/Services/{ServiceSid}/MessagingConfigurations"
            | "/v2/Services/{ServiceSid}/Webhooks",
        ) => AdminOfService("ServiceSid"),
        (
            "GET" | "POST" | "DELETE",
            "/v2/Services/{ServiceSid}/RateLimits/{Sid}"
            | "/v2/Services/{ServiceSid}/RateLimits/{RateLimitSid}/Buckets/{Sid}"
            | "/v2/Services/{ServiceSid}/MessagingConfigurations/{Country}"
            | "/v2/Services/{ServiceSid}/Webhooks/{Sid}",
        ) => AdminOfService("ServiceSid"),

        // Keys: new keys inside the creator's scope, lists and revocation inside it too.
        ("GET" | "POST", "/v1/keys") => Admin,
        ("DELETE", "/v1/keys/{id}") => Admin,

        // The event log, dead letters, attempts: filtered to the key's services.
        ("GET", "/v1/events" | "/v1/events/export") => Admin,
        ("GET", "/v1/webhooks/dead-letters") => Admin,
        ("POST", "/v1/webhooks/dead-letters/replay" | "/v1/webhooks/dead-letters/{id}/replay") => {
            Admin
        }
        ("GET", "/v2/Attempts" | "/v2/Attempts/{Sid}" | "/v2/Attempts/Summary") => Admin,
        // Twilio parity (issue 24): the built-in templates any key may choose; the safe
        // list is one for every service.
        ("GET", "/v2/Templates") => Key,
        ("POST", "/v2/SafeList/Numbers") => AdminGlobal,
        ("GET" | "DELETE", "/v2/SafeList/Numbers/{PhoneNumber}") => AdminGlobal,
        // Erasing a recipient's records reaches every service.
        ("POST", "/v1/erasures") => AdminGlobal,
        _ => return None,
    })
}

/// Applies [`access_of`] to every request that reached a route: resolves the caller once
/// (handlers then find it in the request's extensions) and refuses what its role or scope
/// does not allow, in the face's own error form (problem+json, or Twilio's body on `/v2`).
pub async fn enforce(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let twilio = req.uri().path().starts_with("/v2/");
    match admit(&state, req).await {
        Ok(req) => next.run(req).await,
        Err(e) if twilio => TwilioError::from(e).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Whether the table knows a route by any method.
fn route_is_known(path: &str) -> bool {
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ]
    .iter()
    .any(|m| access_of(m, path).is_some())
}

async fn admit(state: &AppState, req: Request) -> Result<Request, ApiError> {
    let Some(route) = req.extensions().get::<MatchedPath>().cloned() else {
        // No route matched: the router's fallbacks answer.
        return Ok(req);
    };
    let Some(access) = access_of(req.method(), route.as_str()) else {
        if route_is_known(route.as_str()) {
            // A method the route does not serve: the router answers 405.
            return Ok(req);
        }
        return Err(ApiError::forbidden("this route has no access rule"));
    };
    let (mut parts, body) = req.into_parts();
    match access {
        Access::Public => {}
        Access::Operator => {
            use axum::extract::FromRequestParts;
            Operator::from_request_parts(&mut parts, state).await?;
        }
        Access::Key | Access::Admin | Access::AdminOfService(_) | Access::AdminGlobal => {
            let ctx = crate::audit::context_of(&parts.extensions);
            let principal = principal_from_headers(state, &parts.headers, &ctx).await?;
            match access {
                Access::Admin => require_admin(&principal)?,
                Access::AdminGlobal => require_global_admin(&principal)?,
                Access::AdminOfService(param) => {
                    require_admin(&principal)?;
                    use axum::extract::FromRequestParts;
                    let params = RawPathParams::from_request_parts(&mut parts, state)
                        .await
                        .map_err(|_| ApiError::invalid("invalid path"))?;
                    let named = params
                        .iter()
                        .find(|(k, _)| *k == param)
                        .map(|(_, v)| v.to_string())
                        .ok_or_else(|| ApiError::invalid("invalid path"))?;
                    usable_service(state, &principal, Some(&named)).await?;
                }
                Access::Key | Access::Public | Access::Operator => {}
            }
            parts.extensions.insert::<Principal>(principal);
        }
    }
    Ok(Request::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route of the router (the OpenAPI document is built from the same table, so it
    /// cannot miss one) has an access rule: a route added without a decision fails here.
    #[test]
    fn every_route_has_an_access_rule() {
        let doc = crate::api::openapi();
        let mut missing = Vec::new();
        let mut count = 0;
        for (path, item) in &doc.paths.paths {
            let methods = [
                (Method::GET, item.get.is_some()),
                (Method::POST, item.post.is_some()),
                (Method::PUT, item.put.is_some()),
                (Method::PATCH, item.patch.is_some()),
                (Method::DELETE, item.delete.is_some()),
            ];
            for (method, served) in methods {
                if served {
                    count += 1;
                    if access_of(&method, path).is_none() {
                        missing.push(format!("{method} {path}"));
                    }
                }
            }
        }
        assert!(count > 50, "only {count} routes found");
        assert!(
            missing.is_empty(),
            "routes without an access rule: {missing:?}"
        );
    }

    #[test]
    fn unknown_routes_have_no_rule() {
        assert_eq!(access_of(&Method::GET, "/v1/nope"), None);
        assert_eq!(access_of(&Method::PUT, "/v1/services/{name}"), None);
    }
}
