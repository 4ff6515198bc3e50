//! `/v1/keys`: mint, list and revoke API keys (admin keys).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use otpd_core::apikey::{Principal, Role, mint};
use serde::Deserialize;
use utoipa::ToSchema;

use super::views::{KeyList, KeyView};
use crate::auth::key_within_scope;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use crate::state::AppState;

/// A new key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    /// Label (1–100 characters).
    pub name: String,
    /// `verify` (default) or `admin`.
    pub role: Option<Role>,
    /// A test key records messages instead of delivering them.
    #[serde(default)]
    pub test: bool,
    /// Service names or SIDs the key is limited to; all when absent.
    pub services: Option<Vec<String>>,
}

/// Mint a key; its secret is in this reply only.
#[utoipa::path(
    post, path = "/v1/keys", tag = "keys",
    request_body = CreateKeyBody,
    responses(
        (status = 201, description = "Created; `key` is shown once", body = KeyView),
        (status = "4XX", description = "Refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    body: ApiJson<CreateKeyBody>,
) -> ApiResult<(StatusCode, Json<KeyView>)> {
    let body = body.value;
    if body.name.trim().is_empty() {
        return Err(ApiError::invalid("name must be 1-100 characters"));
    }
    otpd_core::text::one_line("name", &body.name, 100)?;
    let services = match body.services {
        None => None,
        Some(names) => {
            let mut ids = Vec::with_capacity(names.len());
            for n in names {
                let s = state
                    .store
                    .find_service(&n)
                    .await?
                    .ok_or_else(|| ApiError::invalid("services names an unknown service"))?;
                ids.push(s.id);
            }
            Some(ids)
        }
    };
    if !key_within_scope(&principal, services.as_deref(), body.test) {
        return Err(ApiError::forbidden(
            "a new key's scope must lie inside the creating key's: its services among yours, \
             and a test key only if you hold one",
        ));
    }
    let new = mint(
        &body.name,
        body.role.unwrap_or(Role::Verify),
        body.test,
        services,
        state.clock.now(),
    );
    state.store.insert_key(&new.record, &new.digest).await?;
    Ok((
        StatusCode::CREATED,
        Json(KeyView::of(&new.record, Some(new.secret.to_string()))),
    ))
}

/// List keys (never their secrets).
#[utoipa::path(
    get, path = "/v1/keys", tag = "keys",
    responses((status = 200, description = "Every key, newest first", body = KeyList)),
    security(("bearer" = []))
)]
pub async fn list(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<KeyList>> {
    let keys = state.store.list_keys().await?;
    Ok(Json(KeyList {
        keys: keys
            .iter()
            .filter(|k| key_within_scope(&principal, k.services.as_deref(), k.test))
            .map(|k| KeyView::of(k, None))
            .collect(),
    }))
}

/// Revoke a key.
#[utoipa::path(
    delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id (`key_…`)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such live key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let reachable = state
        .store
        .list_keys()
        .await?
        .iter()
        .any(|k| k.id == id && key_within_scope(&principal, k.services.as_deref(), k.test));
    if reachable && state.store.revoke_key(&id, state.clock.now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("key"))
    }
}
