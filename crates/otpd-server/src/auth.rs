//! Authentication: `Authorization: Bearer <api key>` (and HTTP Basic with the key as the
//! password, for Twilio-style clients) → a [`Principal`].

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use otpd_core::apikey::{Principal, Role, digest};
use otpd_core::audit::WriteContext;
use otpd_core::service::Service;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Longest Authorization header considered.
const MAX_AUTH_HEADER: usize = 512;

fn unauthorized() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorized,
        "a valid API key is required (Authorization: Bearer <key>)",
    )
}

/// The key presented in the Authorization header.
fn presented_key(parts: &Parts) -> Option<String> {
    key_of_headers(&parts.headers)
}

/// The key presented in the Authorization header (Bearer, or Basic with the key as the
/// password).
fn key_of_headers(headers: &axum::http::HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    if value.len() > MAX_AUTH_HEADER {
        return None;
    }
    let (scheme, rest) = value.split_once(' ')?;
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some(rest.trim().to_string()),
        "basic" => {
            let decoded = STANDARD.decode(rest.trim()).ok()?;
            let text = String::from_utf8(decoded).ok()?;
            text.split_once(':')
                .map(|(_, password)| password.to_string())
        }
        _ => None,
    }
}

/// The API key as presented, for the one use that needs it in clear: signing Twilio-style
/// status callbacks (`X-Twilio-Signature` is keyed by the caller's credential, and otpd
/// stores keys only as digests). Never logged; zeroed on drop.
pub struct PresentedKey(pub Zeroizing<String>);

impl std::fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PresentedKey(<redacted>)")
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PresentedKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        presented_key(parts)
            .filter(|k| !k.is_empty())
            .map(|k| PresentedKey(Zeroizing::new(k)))
            .ok_or_else(unauthorized)
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Resolved once by the access layer for the routes that need a key.
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        let ctx = crate::audit::context_of(&parts.extensions);
        principal_from_headers(state, &parts.headers, &ctx).await
    }
}

/// The principal of the key in a request's Authorization header (401 without one).
pub async fn principal_from_headers(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    ctx: &WriteContext,
) -> Result<Principal, ApiError> {
    let key = Zeroizing::new(
        key_of_headers(headers)
            .filter(|k| !k.is_empty())
            .ok_or_else(unauthorized)?,
    );
    principal_of_key(state, &key, ctx).await
}

/// The principal an API key stands for (the master key, or a live stored key); records
/// it in `ctx` as the request's acting key.
pub async fn principal_of_key(
    state: &AppState,
    key: &str,
    ctx: &WriteContext,
) -> Result<Principal, ApiError> {
    let d = digest(key);
    if let Some(master) = &state.master_key_digest
        && bool::from(master.as_ref().ct_eq(&d))
    {
        ctx.set_key_id("master");
        return Ok(Principal {
            key_id: "master".into(),
            role: Role::Admin,
            test: false,
            services: None,
        });
    }
    let found = state.store.find_key(&d).await?.ok_or_else(unauthorized)?;
    ctx.set_key_id(&found.id);
    Ok(Principal {
        key_id: found.id,
        role: found.role,
        test: found.test,
        services: found.services,
    })
}

/// Refuses callers that are not admins.
pub fn require_admin(p: &Principal) -> Result<(), ApiError> {
    if p.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::forbidden("this needs an admin key"))
    }
}

/// Refuses callers that are not admins of every service: changes and reads that reach
/// beyond one service (creating services, erasing a recipient everywhere, the dashboard).
pub fn require_global_admin(p: &Principal) -> Result<(), ApiError> {
    require_admin(p)?;
    if p.services.is_some() {
        return Err(ApiError::forbidden(
            "this needs an admin key that is not limited to services",
        ));
    }
    Ok(())
}

/// The service an admin read is limited to: the one named (which must lie in the caller's
/// scope), or with none named every service for an unscoped key (`None`), the only service
/// of a key scoped to one, and a refusal for a key scoped to several.
pub async fn scoped_service_filter(
    state: &AppState,
    p: &Principal,
    named: Option<&str>,
) -> Result<Option<String>, ApiError> {
    if let Some(name) = named {
        return Ok(Some(usable_service(state, p, Some(name)).await?.id));
    }
    match p.services.as_deref() {
        None => Ok(None),
        Some([only]) => Ok(Some(only.clone())),
        Some(_) => Err(ApiError::forbidden(
            "this key is limited to some services: name one with `service`",
        )),
    }
}

/// Whether a key with this scope and world lies inside the caller's: what a key may create,
/// list or revoke. A scoped caller reaches only keys scoped to some of its own services,
/// and a test key only test keys.
pub fn key_within_scope(p: &Principal, services: Option<&[String]>, test: bool) -> bool {
    let services_inside = match (&p.services, services) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(own), Some(theirs)) => theirs.iter().all(|s| own.contains(s)),
    };
    services_inside && (test || !p.test)
}

/// Finds a service the caller may use, by name, id or SID (`default` when `None`).
pub async fn usable_service(
    state: &AppState,
    p: &Principal,
    name: Option<&str>,
) -> Result<Service, ApiError> {
    let name = name.unwrap_or(otpd_core::service::DEFAULT_SERVICE);
    let service = state
        .store
        .find_service(name)
        .await?
        .ok_or_else(|| ApiError::not_found("service"))?;
    if !p.may_use_service(&service.id) {
        return Err(ApiError::forbidden("this key may not use that service"));
    }
    Ok(service)
}
