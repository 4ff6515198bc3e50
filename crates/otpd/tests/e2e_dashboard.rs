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

use common::browser::{browser_can_run, run_browser_script};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_headless_browser() {
    if !browser_can_run("dashboard") {
        return;
    }
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.extra_toml =
        "[[prices]]\nchannel = \"sms\"\nprice = 0.05\n\n[dashboard]\ncurrency = \"EUR\"\n".into();
    let otpd = OtpdProcess::start(&dir, &config).await;
    let mut expect = scripted_run(&otpd, &sink).await;
    // Two budgets: one 5% spent (green), one spent to its limit (red, with its alert).
    otpd.create_service(&json!({"name": "roomy", "guards": {"budget": {"daily_limit": 1}}}))
        .await;
    otpd.send_ok(&json!({"to": "+14155550186", "service": "roomy"}))
        .await;
    otpd.create_service(&json!({"name": "tight", "guards": {"budget": {"daily_limit": 0.05}}}))
        .await;
    otpd.send_ok(&json!({"to": "+14155550187", "service": "tight"}))
        .await;
    sink.wait_for(5, std::time::Duration::from_secs(10)).await;
    // Five started, two approved, three pending: pending codes are not lost, so the
    // conversion is 2 of 2 decided, not 2 of 5.
    expect["sends"] = json!(5);
    expect["started"] = json!(5);
    expect["conversion"] = json!("100%");
    expect["budget_alert"] =
        json!("Service tight: 100% of its daily budget spent (EUR 0.05 of EUR 0.05).");
    // The first number was sent a code, then checked wrong, then right.
    expect["search"] = json!("+1 415-555-0181");
    expect["search_masked"] = json!("+1******0181");
    expect["timeline"] = json!([
        "created, to be sent by sms",
        "sent via sink",
        "wrong code (check 1)",
        "approved: the right code",
    ]);
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&shots).unwrap();
    run_browser_script(
        "dashboard.test.mjs",
        &[
            ("OTPD_URL", otpd.base_url().to_owned()),
            ("OTPD_ADMIN_KEY", otpd.master_key().to_owned()),
            ("OTPD_EXPECT", expect.to_string()),
            ("OTPD_SCREENSHOT_DIR", shots.display().to_string()),
        ],
    )
    .await;
    let png = std::fs::read(shots.join("dashboard.png")).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    println!("screenshots in {}", shots.display());
}

/// The samples of an OpenMetrics text: (name, labels, value).
fn samples(text: &str) -> Vec<(String, std::collections::BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                .collect();
            Some((name.to_owned(), labels, value.parse().ok()?))
        })
        .collect()
}

// Issue 23: with a primary that failed every attempt and had its circuit opened, the
// dashboard listed only the fallback and its "failed" tile said 0, while /metrics counted
// the failures (the stats read each delivery's final provider, not each hand-off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_counts_every_hand_off_as_the_metrics_do() {
    // `sink` fails every message (503, one attempt each; three failures open its
    // circuit); `backup` delivers; `slow` accepts voice calls and never sends a receipt.
    let primary = Sink::start().await;
    primary.set_status(503);
    let backup = Sink::start().await;
    backup.set_reply(json!({"status": "delivered"}));
    let slow = Sink::start().await;
    let dir = TestDir::new();
    let mut config = Config::for_sink(&primary);
    config.channels = vec!["sms".into()];
    config.delivery.max_attempts = 1;
    config.extra_toml = format!(
        "[[providers]]\nname = \"backup\"\nkind = \"http\"\nurl = {backup:?}\nchannels = [\"sms\", \"voice\"]\n\n\
         [[providers]]\nname = \"slow\"\nkind = \"http\"\nurl = {slow:?}\nchannels = [\"voice\"]\n\n\
         [[routes]]\nchannel = \"sms\"\nproviders = [\"sink\", \"backup\"]\n\n\
         [[routes]]\nchannel = \"voice\"\nproviders = [\"slow\", \"backup\"]\nreceipt_timeout_seconds = 1\n",
        backup = backup.url(),
        slow = slow.url(),
    );
    let otpd = OtpdProcess::start_with_env(
        &dir,
        &config,
        &[
            ("OTPD_DELIVERY__BREAKER_FAILURES", "3"),
            ("OTPD_DELIVERY__BREAKER_WINDOW_SECONDS", "600"),
            ("OTPD_DELIVERY__BREAKER_OPEN_SECONDS", "600"),
        ],
    )
    .await;
    for n in 0..6 {
        let to = format!("+1415555{:04}", 200 + n);
        otpd.send_ok(&json!({"to": to})).await;
        backup
            .wait_for_to(&to, 1, std::time::Duration::from_secs(10))
            .await;
    }
    let to = "+14155550299";
    otpd.send_ok(&json!({"to": to, "channel": "voice"})).await;
    slow.wait_for_to(to, 1, std::time::Duration::from_secs(10))
        .await;
    backup
        .wait_for_to(to, 1, std::time::Duration::from_secs(10))
        .await;

    let stats = otpd.get("/v1/stats?window_minutes=60").await;
    stats.assert_status(200, "stats");
    let metrics = otpd
        .anonymous(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = samples(&metrics);
    let metric = |name: &str, provider: &str, label: (&str, &str)| -> u64 {
        samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && l.get("provider").map(String::as_str) == Some(provider)
                    && (label.0.is_empty() || l.get(label.0).map(String::as_str) == Some(label.1))
            })
            .map(|(_, _, v)| *v as u64)
            .sum()
    };
    let expected = [
        // provider, sent, delivered, failed, skipped, receipt timeouts
        ("backup", 7, 7, 0, 0, 0),
        ("sink", 0, 0, 3, 3, 0),
        ("slow", 1, 0, 0, 0, 1),
    ];
    let rows = stats.body["providers"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "every provider is listed: {stats:?}");
    for (provider, sent, delivered, failed, skipped, timeouts) in expected {
        let row = rows
            .iter()
            .find(|r| r["provider"] == provider)
            .unwrap_or_else(|| panic!("{provider} missing: {stats:?}"));
        let shown = [
            row["sent"].as_u64().unwrap(),
            row["delivered"].as_u64().unwrap(),
            row["failed"].as_u64().unwrap(),
            row["skipped"].as_u64().unwrap(),
            row["receipt_timeouts"].as_u64().unwrap(),
        ];
        assert_eq!(
            shown,
            [sent, delivered, failed, skipped, timeouts],
            "{provider}: {row}"
        );
        let counted = [
            metric("otpd_sends_total", provider, ("outcome", "accepted"))
                + metric("otpd_sends_total", provider, ("outcome", "delivered")),
            metric("otpd_sends_total", provider, ("outcome", "delivered"))
                + metric("otpd_receipts_total", provider, ("status", "delivered")),
            metric("otpd_sends_total", provider, ("outcome", "failed"))
                + metric("otpd_sends_total", provider, ("outcome", "retry")),
            metric("otpd_sends_total", provider, ("outcome", "skipped")),
            metric("otpd_receipt_timeouts_total", provider, ("", "")),
        ];
        assert_eq!(shown, counted, "{provider}: dashboard {row} vs /metrics");
    }
    let sink = rows.iter().find(|r| r["provider"] == "sink").unwrap();
    assert_eq!(sink["circuit"], "open", "{sink}");
    assert_eq!(sink["delivery_rate"], 0.0, "{sink}");
    assert_eq!(
        stats.body["totals"]["failed"], 3,
        "the failed tile: {stats:?}"
    );
    assert_eq!(stats.body["totals"]["delivered"], 7, "{stats:?}");

    // Find a verification by its number, in any common form, and read its timeline.
    let found = otpd
        .get("/v1/stats/verifications?q=%2B1%20415-555-0200")
        .await;
    found.assert_status(200, "search");
    let found = found.body.as_array().unwrap().clone();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["to"], "+1******0200", "masked: {found:?}");
    assert_eq!(found[0]["country"], "US", "{found:?}");
    let id = found[0]["id"].as_str().unwrap().to_owned();
    let by_id = otpd.get(&format!("/v1/stats/verifications?q={id}")).await;
    assert_eq!(by_id.body[0]["id"], id.as_str(), "{by_id:?}");
    otpd.get("/v1/stats/verifications?q=nobody")
        .await
        .assert_problem(400, "invalid_request", "not a number");
    let story = |reply: &Reply| -> Vec<String> {
        reply.body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["text"].as_str().unwrap().to_owned())
            .collect()
    };
    let timeline = otpd.get(&format!("/v1/stats/verifications/{id}")).await;
    timeline.assert_status(200, "timeline");
    assert_eq!(timeline.body["verification"]["country"], "US");
    let steps = story(&timeline);
    let first = |prefix: &str| {
        steps
            .iter()
            .position(|s| s.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {steps:#?}"))
    };
    assert!(
        first("created") < first("failed on sink")
            && first("failed on sink") < first("sent via backup")
            && first("sent via backup") <= first("delivered by backup"),
        "{steps:#?}"
    );
    // Once the circuit opened, the primary is skipped.
    let last = otpd.get("/v1/stats/verifications?q=%2B14155550205").await;
    let id = last.body[0]["id"].as_str().unwrap().to_owned();
    let steps = story(&otpd.get(&format!("/v1/stats/verifications/{id}")).await);
    assert!(
        steps
            .iter()
            .any(|s| s == "skipped sink: its circuit is open"),
        "{steps:#?}"
    );
    otpd.get("/v1/stats/verifications/ver_nothing")
        .await
        .assert_problem(404, "not_found", "no such verification");
}

/// The API reference in a browser: markdown rendered, an example for every JSON operation,
/// schema bounds as the text says, and the error reference (`tests/browser/docs.test.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_in_a_headless_browser() {
    if !browser_can_run("docs") {
        return;
    }
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let otpd = OtpdProcess::start(&dir, &Config::for_sink(&sink)).await;
    run_browser_script("docs.test.mjs", &[("OTPD_URL", otpd.base_url().to_owned())]).await;
}
