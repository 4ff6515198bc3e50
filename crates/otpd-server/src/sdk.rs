//! The browser SDK: the `<otpd-verify>` sign-in component (`assets/sdk/otpd-verify.js`),
//! bundled with libphonenumber-js (`assets/vendor/libphonenumber-js`) into one classic
//! script that any page may load from otpd (no CORS needed, no API key in the page).
//! `/sdk/otpd-verify.js` is the current version; `/sdk/otpd-verify@VERSION.js` never
//! changes and is cached for a year. `sdk/otpd-verify/build.mjs` makes the same file for
//! npm from the same parts.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The component's version (also `VERSION` in its source and its npm package's version).
pub const SDK_VERSION: &str = "1.0.0";

/// The bundle: the library in a closure, handed to the component.
const BUNDLE: &str = concat!(
    include_str!("../assets/sdk/bundle-head.js"),
    include_str!("../assets/vendor/libphonenumber-js/libphonenumber-min.js"),
    include_str!("../assets/sdk/bundle-middle.js"),
    include_str!("../assets/sdk/otpd-verify.js"),
    include_str!("../assets/sdk/bundle-tail.js"),
);

fn script(cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, cache),
        ],
        BUNDLE,
    )
        .into_response()
}

/// The sign-in component, current version.
#[utoipa::path(get, path = "/sdk/otpd-verify.js", tag = "operations", responses((status = 200, description = "JavaScript: defines `<otpd-verify>` (docs/sign-in-component.md)", content_type = "text/javascript")))]
pub async fn component() -> Response {
    script("public, max-age=300")
}

/// The sign-in component, this version (unchanging: cached for a year).
#[utoipa::path(get, path = "/sdk/otpd-verify@1.0.0.js", tag = "operations", responses((status = 200, description = "JavaScript: defines `<otpd-verify>`, version 1.0.0", content_type = "text/javascript")))]
pub async fn component_versioned() -> Response {
    script("public, max-age=31536000, immutable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_version_everywhere() {
        let source = include_str!("../assets/sdk/otpd-verify.js");
        assert!(source.contains(&format!("var VERSION = \"{SDK_VERSION}\";")));
        let package = include_str!("../../../sdk/otpd-verify/package.json");
        assert!(package.contains(&format!("\"version\": \"{SDK_VERSION}\"")));
        // The versioned route names this version (utoipa needs it as a literal).
        let routed = include_str!("sdk.rs");
        assert!(routed.contains(&format!("path = \"/sdk/otpd-verify@{SDK_VERSION}.js\"")));
    }

    #[test]
    fn the_library_stays_inside_the_bundles_closure() {
        assert!(BUNDLE.starts_with("/*! otpd-verify"));
        assert!(BUNDLE.trim_end().ends_with("})();"));
        assert!(BUNDLE.contains("})(OTPD_LIBPHONENUMBER);"));
    }
}
