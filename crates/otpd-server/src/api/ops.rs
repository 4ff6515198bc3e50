//! Operations endpoints: liveness, readiness, the OpenAPI document and the API reference
//! page (built into the binary: no CDN; the dashboard is in `crate::dashboard`).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// The API reference page (renders `/openapi.json` in the browser).
const DOCS_HTML: &str = include_str!("../../assets/docs.html");

/// Liveness.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
}

/// Readiness, per dependency.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: &'static str,
    /// `database`: `ok` or the failure.
    pub checks: std::collections::BTreeMap<&'static str, String>,
    /// Each provider's circuit: `closed`, `open` (skipped by the router) or `half_open`
    /// (one probe allowed). Open circuits do not make otpd unready: other providers and
    /// fallback channels may still deliver.
    pub circuits: std::collections::BTreeMap<String, &'static str>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The stores answer.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "A dependency is down", body = Readiness),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let mut checks = std::collections::BTreeMap::new();
    let mut ok = true;
    for (dependency, health) in state.store.dependencies().await {
        match health {
            Ok(()) => {
                checks.insert(dependency, "ok".to_string());
            }
            Err(e) => {
                checks.insert(dependency, e.to_string());
                ok = false;
            }
        }
    }
    let (code, status) = if ok {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    let circuits = state
        .router
        .breakers()
        .states(std::time::Instant::now())
        .into_iter()
        .map(|(name, s)| (name, s.as_str()))
        .collect();
    (
        code,
        Json(Readiness {
            status,
            checks,
            circuits,
        }),
    )
}

/// The OpenAPI 3.1 document of this API (built at startup from the routes themselves).
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI document", content_type = "application/json")))]
pub async fn openapi(State(state): State<AppState>) -> Response {
    let _ = &state;
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::api::OPENAPI_JSON.get().cloned().unwrap_or_default(),
    )
        .into_response()
}

/// The API reference page.
#[utoipa::path(get, path = "/docs", tag = "operations", responses((status = 200, description = "HTML page", content_type = "text/html")))]
pub async fn docs() -> Html<&'static str> {
    Html(DOCS_HTML)
}
