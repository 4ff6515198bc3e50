//! Operations endpoints: liveness, readiness, the OpenAPI document and the API reference
//! page (built into the binary: no CDN; the dashboard is in `crate::dashboard`).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ErrorCode;
use crate::state::AppState;

/// The API reference page (renders `/openapi.json` in the browser).
const DOCS_HTML: &str = include_str!("../../assets/docs.html");
/// The markdown renderer of the reference page (the document's descriptions are CommonMark).
const MARKED_JS: &str = include_str!("../../assets/vendor/marked/marked.umd.js");

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
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI document", content_type = "application/json", example = json!({"openapi": "3.1.0", "info": {"title": "otpd", "version": "0.1.0"}, "paths": {"/v1/verifications": {"post": {"summary": "Send a code (or resend the pending one)"}}}}))))]
pub async fn openapi(State(state): State<AppState>) -> Response {
    let _ = &state;
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::api::OPENAPI_JSON.get().cloned().unwrap_or_default(),
    )
        .into_response()
}

/// The error reference: every problem `code`, its status, cause and fix (each problem's
/// `type` links to its entry here).
#[utoipa::path(get, path = "/docs/errors", tag = "operations", responses((status = 200, description = "HTML page", content_type = "text/html")))]
pub async fn errors() -> Html<String> {
    Html(errors_page())
}

/// The error reference page, built from [`ErrorCode`]'s own texts.
fn errors_page() -> String {
    let mut html = String::from(ERRORS_HEAD);
    html.push_str("<nav>");
    for code in ErrorCode::ALL {
        let name = code.as_str();
        html.push_str(&format!("<a href=\"#{name}\"><code>{name}</code></a> "));
    }
    html.push_str("</nav>");
    for code in ErrorCode::ALL {
        let name = code.as_str();
        html.push_str(&format!(
            "<section id=\"{name}\"><h2><code>{name}</code> <span class=\"status\">{status}</span> \
             {title}</h2><p><b>Cause.</b> {cause}</p><p><b>Fix.</b> {fix}</p></section>",
            status = code.status().as_u16(),
            title = escape_html(code.title()),
            cause = inline_code(code.cause()),
            fix = inline_code(code.fix()),
        ));
    }
    html.push_str("</main></body></html>\n");
    html
}

const ERRORS_HEAD: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>otpd errors</title>\
<style>body{margin:0;font:15px/1.55 system-ui,-apple-system,\"Segoe UI\",Roboto,Arial,sans-serif;color:#1f2328}\
main{max-width:820px;margin:0 auto;padding:24px 20px 80px}code{font-family:ui-monospace,Menlo,Consolas,monospace;\
font-size:.9em;background:#f6f8fa;border-radius:4px;padding:0 3px}nav{margin:8px 0 24px;line-height:2}\
nav a{margin-right:6px;color:#0969da;text-decoration:none}section{border-top:1px solid #d8dee4;padding:8px 0}\
section:target{background:#fff8c5}h2{font-size:18px;margin:10px 0 4px}.status{font-size:13px;color:#636c76}</style>\
</head><body><main><h1>otpd errors</h1><p>Every error of the <a href=\"/docs\">API</a> is an \
<code>application/problem+json</code> body whose <code>code</code> is one of these, and whose \
<code>type</code> links here. The <code>/v2</code> (Twilio) face answers with Twilio's error codes instead.</p>";

/// Escapes text for HTML.
fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Escapes text for HTML and renders its `backtick` spans as `<code>`.
fn inline_code(s: &str) -> String {
    escape_html(s)
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{part}</code>")
            } else {
                part.to_string()
            }
        })
        .collect()
}

/// The markdown renderer of `/docs` (marked, built in: no CDN).
#[utoipa::path(get, path = "/docs/assets/marked.js", tag = "operations", responses((status = 200, description = "JavaScript", content_type = "text/javascript")))]
pub async fn marked_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        MARKED_JS,
    )
        .into_response()
}

/// The API reference page.
#[utoipa::path(get, path = "/docs", tag = "operations", responses((status = 200, description = "HTML page", content_type = "text/html")))]
pub async fn docs() -> Html<&'static str> {
    Html(DOCS_HTML)
}
