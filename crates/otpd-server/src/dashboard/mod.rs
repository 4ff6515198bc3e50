//! The operator dashboard: one page built into the binary (no CDN), its bundled chart
//! library, the sign-in session ([`session`]) and the statistics it polls ([`stats`]).

mod alert_text;
pub mod factors;
pub mod lookup;
pub mod session;
pub mod stats;

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

/// The page.
const PAGE: &str = include_str!("../../assets/dashboard.html");
/// uPlot (MIT), from the npm package, unchanged (see `assets/vendor/uplot/README.md`).
const UPLOT_JS: &str = include_str!("../../assets/vendor/uplot/uPlot.iife.min.js");
/// uPlot's stylesheet.
const UPLOT_CSS: &str = include_str!("../../assets/vendor/uplot/uPlot.min.css");
/// The page's content security policy: nothing from elsewhere, no inline script.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";
/// The page's script (kept apart from the HTML so the CSP can forbid inline scripts).
const SCRIPT: &str = include_str!("../../assets/dashboard.js");

/// A static asset, cacheable for an hour.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The operator dashboard (sign in with an admin key).
#[utoipa::path(get, path = "/dashboard", tag = "operations", responses((status = 200, description = "HTML page", content_type = "text/html")))]
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(PAGE),
    )
        .into_response()
}

/// The dashboard's script.
#[utoipa::path(get, path = "/dashboard/assets/dashboard.js", tag = "operations", responses((status = 200, description = "JavaScript", content_type = "text/javascript")))]
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The bundled chart library (uPlot).
#[utoipa::path(get, path = "/dashboard/assets/uplot.js", tag = "operations", responses((status = 200, description = "JavaScript", content_type = "text/javascript")))]
pub async fn uplot_js() -> Response {
    asset("text/javascript; charset=utf-8", UPLOT_JS)
}

/// The chart library's stylesheet.
#[utoipa::path(get, path = "/dashboard/assets/uplot.css", tag = "operations", responses((status = 200, description = "CSS", content_type = "text/css")))]
pub async fn uplot_css() -> Response {
    asset("text/css; charset=utf-8", UPLOT_CSS)
}
