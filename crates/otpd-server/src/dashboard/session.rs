//! Dashboard sign-in: an admin key is exchanged once for a server-side session, held by the
//! browser in a cookie (`HttpOnly`, `SameSite=Strict`, `Secure` behind TLS) that scripts
//! cannot read. Requests that change state also need the session's CSRF token in a header
//! and, when the browser sends one, an `Origin` equal to the page's own.
//!
//! The cookie's token is random (256 bits) and stored only as its SHA-256; the CSRF token
//! is an HMAC of the token under the server secret, so it needs no storage and any node
//! can check it.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{COOKIE, HOST, ORIGIN, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration;
use otpd_core::apikey::{Principal, digest};
use otpd_core::audit::WriteContext;
use otpd_core::store::DashboardSession;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;
use zeroize::Zeroizing;

use crate::api::views::timestamp;
use crate::auth::{principal_of_key, require_global_admin};
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::extract::ApiJson;
use crate::state::AppState;

/// The cookie's name over plain HTTP.
const COOKIE_NAME: &str = "otpd_session";
/// Its name when `Secure`: the `__Host-` prefix makes browsers refuse it without `Secure`,
/// with a `Domain`, or for a path other than `/`.
const SECURE_COOKIE_NAME: &str = "__Host-otpd_session";
/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Random bytes in a session token.
const TOKEN_BYTES: usize = 32;
/// Sign-in attempts one client may make per [`SIGN_IN_PERIOD_SECONDS`] (a burst of this
/// many, then one per period / count): enough for an operator who mistyped a key, far too
/// few to guess one. Shared by every node (the store's rate buckets).
pub const SIGN_IN_ATTEMPTS: u32 = 10;
/// The period of [`SIGN_IN_ATTEMPTS`].
pub const SIGN_IN_PERIOD_SECONDS: u32 = 300;

/// The client a sign-in attempt is counted for: the address the request came from, or
/// behind a TLS-terminating proxy the client that proxy saw (`X-Forwarded-For`, read from
/// the right past the trusted proxies).
fn sign_in_client(state: &AppState, headers: &HeaderMap, ctx: &WriteContext) -> String {
    let forwarded = state
        .config
        .tls
        .terminated_by_proxy
        .then(|| crate::forwarded::forwarded_for(headers))
        .flatten()
        .and_then(|h| {
            crate::forwarded::forwarded_client(
                &h,
                &state.config.http.trusted_proxies,
                state.config.http.trusted_proxy_hops,
            )
        });
    match forwarded {
        Some(ip) => ip.to_string(),
        None => ctx.actor().client_ip.unwrap_or_else(|| "-".into()),
    }
}

/// Takes one of the client's sign-in attempts, or refuses with 429 and `Retry-After`.
async fn throttle_sign_in(
    state: &AppState,
    headers: &HeaderMap,
    ctx: &WriteContext,
) -> ApiResult<()> {
    use otpd_core::guards::rate::{Bucket, Limit};
    let bucket = Bucket {
        key: format!("signin:ip:{}", sign_in_client(state, headers, ctx)),
        limit: Limit::new(SIGN_IN_ATTEMPTS, SIGN_IN_PERIOD_SECONDS),
    };
    match state
        .store
        .take_tokens(&[bucket], state.clock.now())
        .await?
    {
        Ok(()) => Ok(()),
        Err(refusal) => Err(ApiError::new(
            ErrorCode::RateLimited,
            "too many sign-in attempts from this client; try again later",
        )
        .retry_after(refusal.retry_after_secs.unwrap_or(1))),
    }
}

/// Sign in with an admin API key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// An admin API key (`otpd_live_…`) or the master key.
    pub key: String,
}

/// The signed-in session, as the page sees it (never the cookie's token).
#[derive(Serialize, ToSchema)]
pub struct SessionView {
    /// The admin key that signed in (`key_…` or `master`).
    pub key_id: String,
    /// When the session ends.
    pub expires_at: String,
    /// Send in `X-CSRF-Token` with requests that change state (sign-out).
    pub csrf_token: String,
}

/// A request made with a live dashboard session.
pub struct Session {
    /// The session.
    pub session: DashboardSession,
    /// Its cookie token (for the CSRF check).
    token: Zeroizing<String>,
}

/// The session token in the request's cookies, if any.
fn cookie_token(headers: &HeaderMap) -> Option<Zeroizing<String>> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SECURE_COOKIE_NAME || *name == COOKIE_NAME)
        .map(|(_, value)| Zeroizing::new(value.to_string()))
}

/// Whether the browser reached otpd over TLS (directly, through a proxy the operator
/// declared, or as `public_url` says).
fn over_tls(state: &AppState, headers: &HeaderMap) -> bool {
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    state.config.dashboard.behind_tls
        || state.config.is_https()
        || forwarded_https
        || state
            .config
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
}

/// Refuses a cross-site request: a present `Origin` must name this very host.
fn check_origin(headers: &HeaderMap) -> ApiResult<()> {
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    match (origin_host, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err(ApiError::forbidden(
            "cross-origin request refused (Origin does not match Host)",
        )),
    }
}

/// The CSRF token of a session token.
fn csrf_of(state: &AppState, token: &str) -> String {
    URL_SAFE_NO_PAD.encode(state.secret.hasher().hash_text("dashboard-csrf", token))
}

fn view(state: &AppState, session: &DashboardSession, token: &str) -> SessionView {
    SessionView {
        key_id: session.key_id.clone(),
        expires_at: timestamp(session.expires_at),
        csrf_token: csrf_of(state, token),
    }
}

fn signed_out() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorized,
        "not signed in (or the session ended)",
    )
}

impl FromRequestParts<AppState> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = cookie_token(&parts.headers).ok_or_else(signed_out)?;
        let session = state
            .store
            .find_session(&digest(&token), state.clock.now())
            .await?
            .filter(|s| s.key_id != "master" || state.master_key_digest.is_some())
            .ok_or_else(signed_out)?;
        crate::audit::context_of(&parts.extensions).set_key_id(&session.key_id);
        Ok(Session { session, token })
    }
}

impl Session {
    /// Requires the CSRF token header and a same-origin request (for changes).
    fn check_csrf(&self, state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
        check_origin(headers)?;
        let given = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let expected = csrf_of(state, &self.token);
        if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::forbidden("missing or wrong X-CSRF-Token"))
        }
    }
}

/// An admin, by API key (`Authorization`) or by dashboard session cookie: who may read
/// the dashboard's data. Reads only: a session is not a key for changes. Once found, it is
/// kept in the request's extensions (the access layer finds it first; the handler reuses it).
#[derive(Clone, Copy)]
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if parts.extensions.get::<Operator>().is_some() {
            return Ok(Operator);
        }
        if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            let p = Principal::from_request_parts(parts, state).await?;
            require_global_admin(&p)?;
        } else {
            Session::from_request_parts(parts, state).await?;
        }
        parts.extensions.insert(Operator);
        Ok(Operator)
    }
}

/// `Set-Cookie` for `token` (an empty token with `max_age` 0 clears it).
fn set_cookie(secure: bool, token: &str, max_age: i64) -> HeaderValue {
    let (name, flags) = if secure {
        (SECURE_COOKIE_NAME, "; Secure")
    } else {
        (COOKIE_NAME, "")
    };
    let value =
        format!("{name}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{flags}");
    HeaderValue::from_str(&value).expect("a cookie of base64url characters is a valid header")
}

/// Sign in to the dashboard with an admin key: sets the session cookie.
#[utoipa::path(
    post, path = "/dashboard/session", tag = "operations",
    request_body = SignIn,
    responses(
        (status = 200, description = "Signed in; the session cookie is set", body = SessionView),
        (status = 401, description = "Not a valid key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key, or a cross-origin request", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many sign-in attempts from this client (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    ctx: WriteContext,
    body: ApiJson<SignIn>,
) -> ApiResult<Response> {
    check_origin(&headers)?;
    throttle_sign_in(&state, &headers, &ctx).await?;
    let principal = principal_of_key(&state, &body.value.key, &ctx).await?;
    // The dashboard shows every service: an admin key limited to some may not sign in.
    require_global_admin(&principal)?;
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes));
    let now = state.clock.now();
    let minutes = i64::from(state.config.dashboard.session_minutes);
    let session = DashboardSession {
        key_id: principal.key_id,
        created_at: now,
        expires_at: now + Duration::minutes(minutes),
    };
    state
        .store
        .create_session(&digest(&token), &session, now)
        .await?;
    tracing::info!(key_id = %session.key_id, "dashboard sign-in");
    let cookie = set_cookie(over_tls(&state, &headers), &token, minutes * 60);
    let mut response = Json(view(&state, &session, &token)).into_response();
    response.headers_mut().insert(SET_COOKIE, cookie);
    Ok(response)
}

/// The current dashboard session (200) or 401 when signed out.
#[utoipa::path(
    get, path = "/dashboard/session", tag = "operations",
    responses(
        (status = 200, description = "Signed in", body = SessionView),
        (status = 401, description = "Signed out", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn current(State(state): State<AppState>, session: Session) -> Json<SessionView> {
    Json(view(&state, &session.session, &session.token))
}

/// Sign out: ends the session (needs `X-CSRF-Token`) and clears the cookie.
#[utoipa::path(
    delete, path = "/dashboard/session", tag = "operations",
    params(("X-CSRF-Token" = String, Header, description = "The session's CSRF token")),
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Signed out already", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing or wrong CSRF token, or a cross-origin request", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
) -> ApiResult<Response> {
    session.check_csrf(&state, &headers)?;
    state.store.delete_session(&digest(&session.token)).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, set_cookie(over_tls(&state, &headers), "", 0));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; otpd_session=tok; b=2")]);
        assert_eq!(cookie_token(&h).as_deref().map(String::as_str), Some("tok"));
        let h = headers(&[("cookie", "__Host-otpd_session=sec")]);
        assert_eq!(cookie_token(&h).as_deref().map(String::as_str), Some("sec"));
        assert!(cookie_token(&headers(&[("cookie", "otpd_sessionx=1")])).is_none());
    }

    #[test]
    fn origins_must_match_the_host() {
        assert!(check_origin(&headers(&[("host", "a.example:8080")])).is_ok());
        let same = headers(&[
            ("host", "a.example:8080"),
            ("origin", "https://a.example:8080"),
        ]);
        assert!(check_origin(&same).is_ok());
        let other = headers(&[
            ("host", "a.example:8080"),
            ("origin", "https://evil.example"),
        ]);
        assert!(check_origin(&other).is_err());
        assert!(check_origin(&headers(&[("host", "a"), ("origin", "null")])).is_err());
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_behind_tls() {
        let plain = set_cookie(false, "t", 60);
        assert_eq!(
            plain.to_str().unwrap(),
            "otpd_session=t; Path=/; HttpOnly; SameSite=Strict; Max-Age=60"
        );
        let secure = set_cookie(true, "t", 60);
        assert!(
            secure
                .to_str()
                .unwrap()
                .starts_with("__Host-otpd_session=t;")
        );
        assert!(secure.to_str().unwrap().ends_with("; Secure"));
    }
}
