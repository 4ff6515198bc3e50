//! The audit layer: gives every request an id (the caller's `x-request-id` when it is a
//! sane token, else a new UUID), echoes it in the response, makes the request's write
//! context ([`WriteContext`], with the id and the peer's address) and hands it to the
//! handlers as a request extension (they take it as an extractor and pass it to the
//! engine and the stores), and makes sure every
//! state-changing call leaves a record: the events it caused carry its key, request id and
//! end-user IP; a call that caused none (a refused one, or an admin change with no domain
//! event) is recorded as an `api.request` event with its method, route and status. A call
//! refused for want of a valid credential (401) is not stored (anyone could fill the disk
//! with them): it is counted (`otpd_auth_refusals_total`) and logged, at most once per
//! [`AUTH_REFUSAL_LOG_INTERVAL`] with the number since the last line.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use otpd_core::audit::{Actor, WriteContext};
use otpd_core::event::EventType;
use serde_json::json;

use crate::state::AppState;

/// Shortest time between two log lines about refused credentials.
pub const AUTH_REFUSAL_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Refused credentials since the last log line, and when that line was written.
static AUTH_REFUSALS: std::sync::Mutex<(u64, Option<std::time::Instant>)> =
    std::sync::Mutex::new((0, None));

/// Counts a refused credential and logs now and then (never the credential).
fn note_auth_refusal(state: &AppState, route: Option<&str>, now: std::time::Instant) {
    state.telemetry.auth_refused();
    let Ok(mut seen) = AUTH_REFUSALS.lock() else {
        return;
    };
    seen.0 += 1;
    if seen
        .1
        .is_none_or(|last| now.duration_since(last) >= AUTH_REFUSAL_LOG_INTERVAL)
    {
        tracing::warn!(
            refused = seen.0,
            route = route.unwrap_or("-"),
            "requests refused for want of a valid API key (not stored; see otpd_auth_refusals_total)"
        );
        *seen = (0, Some(now));
    }
}

/// The request id header, read and echoed.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest caller-given request id kept (longer ones are replaced).
const MAX_REQUEST_ID: usize = 128;

/// The caller's request id if it is a short token of `[A-Za-z0-9._:-]`, else a new one.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_REQUEST_ID
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// Whether a method changes state (everything but reads).
fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The route template a request matched (`/v1/services/{name}`), never its raw path:
/// paths can hold phone numbers (`/v2/Services/{sid}/Verifications/{To}`).
pub fn route_of(req: &Request) -> Option<String> {
    req.extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
}

/// The middleware (installed with `axum::middleware::from_fn_with_state`).
pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let id = request_id(&req);
    let header = HeaderValue::from_str(&id).expect("a request id is a visible ASCII token");
    req.headers_mut().insert(REQUEST_ID, header.clone());
    let actor = Actor {
        key_id: None,
        request_id: Some(id),
        client_ip: req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string()),
    };
    let ctx = WriteContext::new(actor);
    req.extensions_mut().insert(ctx.clone());
    let method = req.method().clone();
    let route = route_of(&req);
    let mut response = next.run(req).await;
    if response.status() == axum::http::StatusCode::UNAUTHORIZED {
        note_auth_refusal(&state, route.as_deref(), std::time::Instant::now());
    } else if let Some(route) = route.filter(|_| changes_state(&method))
        && ctx.events_written() == 0
    {
        let data = json!({
            "method": method.as_str(),
            "route": route,
            "status": response.status().as_u16(),
        });
        if let Err(e) = state
            .store
            .append_event(EventType::ApiRequest, data, state.clock.now(), &ctx)
            .await
        {
            tracing::error!(error = %e, "could not record the audit event of a request");
        }
    }
    response.headers_mut().insert(REQUEST_ID, header);
    response
}

/// The write context the audit layer gave a request; one with no actor when there is
/// none (a router built without the layer).
pub fn context_of(extensions: &Extensions) -> WriteContext {
    extensions
        .get::<WriteContext>()
        .cloned()
        .unwrap_or_default()
}

/// A handler's write context: what it passes to the engine and the stores.
impl FromRequestParts<AppState> for WriteContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(context_of(&parts.extensions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_request_ids_are_kept() {
        let with = |v: &str| {
            let req = Request::builder()
                .header("x-request-id", v)
                .body(axum::body::Body::empty())
                .unwrap();
            request_id(&req)
        };
        assert_eq!(with("abc-123_x.y:z"), "abc-123_x.y:z");
        for bad in ["", "has space", "ünï", &"x".repeat(129)] {
            let got = with(bad);
            assert_ne!(got, bad);
            assert!(uuid::Uuid::parse_str(&got).is_ok(), "{got}");
        }
    }
}
