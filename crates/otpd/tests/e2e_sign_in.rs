//! The sign-in component `<otpd-verify>` (served at `/sdk/otpd-verify.js`) end to end: the
//! example backend (`examples/sign-in/server.mjs`, the page and the two routes an
//! integrator writes) in front of the real otpd binary with a test key, driven in Debian's
//! chromium by `tests/browser/sign_in.test.mjs` (keyboard only, a 390 px screen, WebOTP,
//! locales, otpd's errors, axe-core).
//!
//! Needs `node`, `tests/browser/node_modules` (`npm ci` there) and chromium; without them it
//! prints "skipped", unless `OTPD_REQUIRE_BROWSER=1` (CI) makes that a failure.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::browser::{browser_can_run, run_browser_script};
use common::{Config, Method, OtpdProcess, Sink, TestDir};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Starts `examples/sign-in/server.mjs` on a free port; its URL and the child (killed on
/// drop).
async fn example_backend(
    otpd: &OtpdProcess,
    key: &str,
    service: &str,
) -> (String, tokio::process::Child) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sign-in/server.mjs");
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .env("OTPD_URL", otpd.base_url())
        .env("OTPD_API_KEY", key)
        .env("OTPD_SERVICE", service)
        .env("OTPD_PASSKEYS", "1")
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the example backend");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("the example backend starts")
        .unwrap()
        .expect("its ready line");
    let url = ready
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {ready}"))
        .to_owned();
    (url, child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_component_in_a_headless_browser() {
    if !browser_can_run("sign-in component") {
        return;
    }
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let otpd = OtpdProcess::start(&dir, &Config::for_sink(&sink)).await;
    // The integrator's service refuses landlines (to show one of otpd's errors), and its
    // backend holds a test key: messages are recorded, and the test reads the codes back.
    otpd.create_service(&json!({"name": "shop", "skip_sms_to_landlines": true}))
        .await;
    let key = otpd.create_key("sign-in page", "verify", true).await;
    let (app, _backend) = example_backend(&otpd, &key, "shop").await;
    // Its relying party for "Use a passkey": the page at `localhost` (not an IP address).
    let origin = app.replace("127.0.0.1", "localhost");
    let patched = otpd
        .request(Method::PATCH, "/v1/services/shop")
        .json(&json!({"passkeys": {"rp_id": "localhost", "rp_name": "Shop", "origins": [origin]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200, "{:?}", patched.text().await);

    let script = otpd
        .request(Method::GET, "/sdk/otpd-verify.js")
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let pinned = otpd
        .request(Method::GET, "/sdk/otpd-verify@1.0.0.js")
        .send()
        .await
        .unwrap();
    assert!(
        pinned.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sign-in");
    std::fs::create_dir_all(&shots).unwrap();
    run_browser_script(
        "sign_in.test.mjs",
        &[
            ("OTPD_URL", otpd.base_url().to_owned()),
            ("OTPD_TEST_KEY", key.clone()),
            ("APP_URL", app),
            ("OTPD_ADMIN_KEY", otpd.master_key().to_owned()),
            ("OTPD_SERVICE", "shop".to_owned()),
            ("OTPD_SCREENSHOT_DIR", shots.display().to_string()),
        ],
    )
    .await;
    // Nothing reached a provider: the test key's messages were only recorded.
    assert!(sink.messages().is_empty(), "a test key delivers nothing");
}
