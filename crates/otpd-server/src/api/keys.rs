//! `/v1/keys`: mint, list and revoke API keys (admin keys).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use otpd_core::apikey::{Principal, Role, mint};
use serde::Deserialize;
use utoipa::ToSchema;

use super::views::{KeyList, KeyView};
use crate::auth::require_admin;
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
    require_admin(&principal)?;
    let body = body.value;
    if body.name.trim().is_empty() || body.name.chars().count() > 100 {
        return Err(ApiError::invalid("name must be 1-100 characters"));
    }
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
    let new = mint(
        &body.name,
        body.role.unwrap_or(Role::Verify),
        body.test,
        services,
        Utc::now(),
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
    require_admin(&principal)?;
    let keys = state.store.list_keys().await?;
    Ok(Json(KeyList {
        keys: keys.iter().map(|k| KeyView::of(k, None)).collect(),
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
    require_admin(&principal)?;
    if state.store.revoke_key(&id, Utc::now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("key"))
    }
}
