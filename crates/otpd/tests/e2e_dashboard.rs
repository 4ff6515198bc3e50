//! The operator dashboard end to end: the session cookie's flags, CSRF and Origin checks,
//! the statistics of a scripted run, and the page itself in a real headless browser
//! (Debian's chromium driven by playwright-core, `tests/browser/dashboard.test.mjs`).
//!
//! The browser part needs `node`, `crates/otpd/tests/browser/node_modules` (`npm ci`
//! there) and `/usr/bin/chromium` (or `CHROMIUM`); without them it prints "skipped",
//! unless `OTPD_REQUIRE_BROWSER=1` (CI) makes that a failure.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Config, Method, OtpdProcess, Reply, SendReply, Sink, TestDir, wrong_code};
use serde_json::json;

/// The session cookie's `name=value` from a sign-in reply.
fn session_cookie(reply: &Reply) -> (String, String) {
    let set = reply
        .header("set-cookie")
        .expect("a Set-Cookie header")
        .to_owned();
    let pair = set.split(';').next().unwrap().to_owned();
    (pair, set)
}

/// Starts otpd, makes a scripted run and returns what it did (as the dashboard must show).
async fn scripted_run(otpd: &OtpdProcess, sink: &Sink) -> serde_json::Value {
    otpd.create_service(&json!({"name": "gb-only", "allowed_countries": ["GB"]}))
        .await;
    let numbers = ["+14155550181", "+14155550182", "+14155550183"];
    for to in numbers {
        otpd.send_ok(&json!({"to": to})).await;
    }
    for to in &numbers[..2] {
        let code = sink.code_for(to).await;
        otpd.check(&json!({"to": to, "code": wrong_code(&code)}))
            .await
            .assert_status(200, "wrong");
        let ok = otpd.check(&json!({"to": to, "code": code})).await;
        assert_eq!(ok.body["status"], "approved", "{ok:?}");
    }
    otpd.send(&json!({"to": "+14155550184", "service": "gb-only"}))
        .await
        .assert_problem(403, "geo_blocked", "geo");
    sink.wait_for(3, std::time::Duration::from_secs(10)).await;
    json!({
        "sends": 3, "started": 3, "approved": 2, "blocked": 1,
        "masked": "+1******0183", "full": "+14155550183",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_sessions_are_cookie_bound_and_csrf_safe() {
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.extra_toml = "[[prices]]\nchannel = \"sms\"\nprice = 0.05\n".into();
    let otpd = OtpdProcess::start(&dir, &config).await;
    let expect = scripted_run(&otpd, &sink).await;
    otpd.create_service(&json!({"name": "budgeted", "guards": {"budget": {"daily_limit": 1}}}))
        .await;
    otpd.send_ok(&json!({"to": "+14155550185", "service": "budgeted"}))
        .await;

    // Stats by admin key.
    let stats = otpd.get("/v1/stats?window_minutes=60").await;
    stats.assert_status(200, "stats");
    for k in ["approved", "blocked"] {
        assert_eq!(stats.body["totals"][k], expect[k], "{k}: {stats:?}");
    }
    assert_eq!(stats.body["totals"]["sends"], 4, "{stats:?}");
    let spend = stats.body["spend"].as_array().unwrap();
    let day = spend
        .iter()
        .find(|r| r["service"] == "budgeted" && r["period"] == "day")
        .unwrap_or_else(|| panic!("no spend row of the budgeted service: {spend:?}"));
    assert_eq!(day["spent"], 0.05, "{day}");
    assert_eq!(day["limit"], 1.0, "{day}");
    assert!(
        (day["percent"].as_f64().unwrap() - 5.0).abs() < 1e-9,
        "{day}"
    );
    assert_eq!(stats.body["countries"][0]["country"], "US");
    assert_eq!(stats.body["blocked"][0]["reason"], "geo");
    assert_eq!(stats.body["providers"][0]["provider"], "sink");
    assert_eq!(stats.body["circuits"]["sink"], "closed");
    assert!(!stats.text.contains("+14155550183"), "numbers are masked");
    let verify = otpd.create_key("app", "verify", false).await;
    otpd.get_as(&verify, "/v1/stats")
        .await
        .assert_problem(403, "forbidden", "verify key");
    otpd.anonymous(Method::GET, "/v1/stats")
        .reply()
        .await
        .assert_problem(401, "unauthorized", "nobody");
    otpd.get("/v1/stats?window_minutes=0")
        .await
        .assert_problem(400, "invalid_request", "window");

    // Sign-in: wrong key, verify key, then the admin key.
    let sign_in = |key: &str| {
        otpd.anonymous(Method::POST, "/dashboard/session")
            .json(&json!({"key": key}))
    };
    sign_in("otpd_live_nope")
        .reply()
        .await
        .assert_problem(401, "unauthorized", "wrong key");
    sign_in(&verify)
        .reply()
        .await
        .assert_problem(403, "forbidden", "verify key");
    sign_in(otpd.master_key())
        .header("origin", "https://evil.example")
        .reply()
        .await
        .assert_problem(403, "forbidden", "cross-origin sign-in");
    let signed = sign_in(otpd.master_key()).reply().await;
    signed.assert_status(200, "sign in");
    let (cookie, set) = session_cookie(&signed);
    assert!(cookie.starts_with("otpd_session="), "{set}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(set.contains(flag), "{flag} missing: {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: not Secure: {set}");
    assert!(!signed.text.contains(otpd.master_key()));
    let csrf = signed.str("csrf_token").to_owned();
    // Behind a TLS proxy: Secure, with the __Host- prefix.
    let tls = sign_in(otpd.master_key())
        .header("x-forwarded-proto", "https")
        .reply()
        .await;
    let (_, tls_set) = session_cookie(&tls);
    assert!(
        tls_set.starts_with("__Host-otpd_session=") && tls_set.contains("; Secure"),
        "{tls_set}"
    );

    // The cookie reads stats and the session; it is no key for the API.
    let with_cookie =
        |m: Method, path: &str| otpd.anonymous(m, path).header("cookie", cookie.clone());
    with_cookie(Method::GET, "/v1/stats")
        .reply()
        .await
        .assert_status(200, "stats by session");
    let current = with_cookie(Method::GET, "/dashboard/session").reply().await;
    assert_eq!(current.str("key_id"), "master");
    assert_eq!(current.str("csrf_token"), csrf);
    with_cookie(Method::GET, "/v1/events")
        .reply()
        .await
        .assert_problem(401, "unauthorized", "cookie on the API");

    // Sign-out needs the CSRF token and a same-origin request.
    with_cookie(Method::DELETE, "/dashboard/session")
        .reply()
        .await
        .assert_problem(403, "forbidden", "no csrf");
    with_cookie(Method::DELETE, "/dashboard/session")
        .header("x-csrf-token", "forged")
        .reply()
        .await
        .assert_problem(403, "forbidden", "wrong csrf");
    with_cookie(Method::DELETE, "/dashboard/session")
        .header("x-csrf-token", &csrf)
        .header("origin", "https://evil.example")
        .reply()
        .await
        .assert_problem(403, "forbidden", "cross-origin sign-out");
    let out = with_cookie(Method::DELETE, "/dashboard/session")
        .header("x-csrf-token", &csrf)
        .reply()
        .await;
    out.assert_status(204, "sign out");
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    with_cookie(Method::GET, "/v1/stats")
        .reply()
        .await
        .assert_problem(401, "unauthorized", "after sign-out");

    // Sign-in and sign-out are in the audit trail; a sign-in refused for a wrong key is
    // counted, never stored (security review, finding 4).
    let events = otpd.get("/v1/events?type=api.request&limit=1000").await;
    let routes: Vec<_> = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["route"] == "/dashboard/session")
        .map(|e| {
            (
                e["data"]["method"].as_str().unwrap().to_owned(),
                e["data"]["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        !routes.contains(&("POST".into(), 401)) && routes.contains(&("POST".into(), 200)),
        "{routes:?}"
    );
    assert!(routes.contains(&("DELETE".into(), 204)), "{routes:?}");
}

/// Whether the browser test can run here; `Err` says what is missing.
fn browser_ready(dir: &std::path::Path, chromium: &str) -> Result<(), String> {
    if !std::path::Path::new(chromium).exists() {
        return Err(format!("{chromium} not found (apt-get install chromium)"));
    }
    if !dir.join("node_modules/playwright-core").is_dir() {
        return Err(format!(
            "no playwright-core in {} (npm ci there)",
            dir.display()
        ));
    }
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err("node not found".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_headless_browser() {
    let browser_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if let Err(why) = browser_ready(&browser_dir, &chromium) {
        assert!(
            std::env::var("OTPD_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "OTPD_REQUIRE_BROWSER=1 but the browser test cannot run: {why}"
        );
        eprintln!("skipped: dashboard browser test: {why}");
        return;
    }
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let otpd = OtpdProcess::start(&dir, &Config::for_sink(&sink)).await;
    let expect = scripted_run(&otpd, &sink).await;
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&shots).unwrap();
    let output = tokio::task::spawn_blocking({
        let (url, key, shots) = (
            otpd.base_url().to_owned(),
            otpd.master_key().to_owned(),
            shots.clone(),
        );
        move || {
            Command::new("node")
                .arg("dashboard.test.mjs")
                .current_dir(&browser_dir)
                .env("OTPD_URL", url)
                .env("OTPD_ADMIN_KEY", key)
                .env("OTPD_EXPECT", expect.to_string())
                .env("OTPD_SCREENSHOT_DIR", &shots)
                .env("CHROMIUM", chromium)
                .output()
                .expect("run node")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    let png = std::fs::read(shots.join("dashboard.png")).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    println!("screenshots in {}", shots.display());
}
