//! End-to-end tests of otpd's security surface: authentication and roles, input validation
//! (always a `application/problem+json` 4xx, never a 5xx, never a half-written
//! verification), test keys that never reach a provider, and unknown routes.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::time::Duration;

use common::{
    Config, DELIVERY_TIMEOUT, Method, OtpdProcess, SendReply, Sink, TestDir, extract_code,
    random_hex, start_with_sink,
};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_roles() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let to = "+14155550140";
    let body = json!({"to": to});

    otpd.anonymous(Method::POST, "/v1/verifications")
        .json(&body)
        .reply()
        .await
        .assert_problem(401, "unauthorized", "no Authorization header");

    let made_up = format!("otpd_live_{}", random_hex(16));
    otpd.post_as(&made_up, "/v1/verifications", &body)
        .await
        .assert_problem(401, "unauthorized", "made-up key");

    let created = otpd.create_key_reply("frontend", "verify", false).await;
    assert_eq!(created.str("role"), "verify", "{created:?}");
    assert_eq!(created.body["test"], false, "{created:?}");
    let verify_key = created.str("key").to_owned();
    assert!(verify_key.starts_with("otpd_live_"), "{created:?}");

    otpd.post_as(&verify_key, "/v1/services", &json!({"name": "nope"}))
        .await
        .assert_problem(403, "forbidden", "verify key creating a service");
    otpd.get_as(&verify_key, "/v1/events").await.assert_problem(
        403,
        "forbidden",
        "verify key reading events",
    );

    // …but it may send and check.
    let sent = otpd.post_as(&verify_key, "/v1/verifications", &body).await;
    sent.assert_status(201, "send with a verify key");
    let code = sink.code_for(to).await;
    let checked = otpd
        .post_as(
            &verify_key,
            "/v1/verifications/check",
            &json!({"to": to, "code": code}),
        )
        .await;
    checked.assert_status(200, "check with a verify key");
    assert_eq!(checked.str("status"), "approved", "{checked:?}");
    assert_eq!(checked.str("id"), sent.str("id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_clean_problem_and_writes_nothing() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let path = "/v1/verifications";

    otpd.post_raw(path, "application/json", r#"{"to": "+14155550123", "#)
        .await
        .assert_problem(400, "invalid_request", "malformed JSON");

    otpd.send(&json!({"to": "+14155550123", "bogus": 1}))
        .await
        .assert_problem(400, "invalid_request", "unknown field");

    // Well-formed JSON, but larger than the 64 KiB body limit.
    let oversized = json!({"to": "+14155550123", "metadata": {"pad": "x".repeat(70 * 1024)}});
    otpd.send(&oversized)
        .await
        .assert_problem(413, "invalid_request", "body over 64 KiB");

    for bad in ["+1 555", "hello"] {
        otpd.send(&json!({"to": bad})).await.assert_problem(
            400,
            "invalid_phone_number",
            &format!("bad number {bad:?}"),
        );
    }

    otpd.send(&json!({"to": "+14155550123", "channel": "fax"}))
        .await
        .assert_problem_in(
            400,
            &["unsupported_channel", "invalid_request"],
            "channel fax",
        );

    // None of it left anything behind: no verification was created…
    let events = otpd.get("/v1/events").await;
    events.assert_status(200, "read events");
    assert!(
        !events.text.contains("verification.created"),
        "a rejected request created a verification: {events:?}"
    );
    // …and nothing was handed to the provider, nor can be: no delivery job is queued or
    // in a worker's hands.
    otpd.wait_outbox_empty().await;
    assert!(sink.attempts().is_empty(), "{:#?}", sink.attempts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_keys_record_messages_instead_of_delivering() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let to = "+14155550141";

    let created = otpd.create_key_reply("ci", "verify", true).await;
    assert_eq!(created.body["test"], true, "{created:?}");
    let test_key = created.str("key").to_owned();
    assert!(test_key.starts_with("otpd_test_"), "{created:?}");

    let sent = otpd
        .post_as(&test_key, "/v1/verifications", &json!({"to": to}))
        .await;
    sent.assert_status(201, "send with a test key");
    let id = sent.id();
    let messages_path = format!("/v1/verifications/{id}/messages");

    let recorded = otpd.get_as(&test_key, &messages_path).await;
    recorded.assert_status(200, "read recorded messages");
    let messages: &Vec<Value> = recorded.body["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no `messages` array: {recorded:?}"));
    assert_eq!(messages.len(), 1, "{recorded:?}");
    let message = &messages[0];
    assert_eq!(message["to"], to, "{message}");
    assert_eq!(message["channel"], "sms", "{message}");
    let code = extract_code(message["body"].as_str().expect("message body"))
        .unwrap_or_else(|| panic!("no code in recorded message {message}"));

    let checked = otpd
        .post_as(
            &test_key,
            "/v1/verifications/check",
            &json!({"id": id, "code": code}),
        )
        .await;
    checked.assert_status(200, "check with the recorded code");
    assert_eq!(checked.str("status"), "approved", "{checked:?}");
    assert_eq!(checked.body["valid"], true, "{checked:?}");

    // A live key may not read recorded messages.
    let live = otpd.get(&messages_path).await;
    assert!(live.status < 500, "{live:?}");
    assert!(
        [403, 404].contains(&live.status),
        "a live key read test messages: {live:?}"
    );
    assert!(
        live.content_type().starts_with("application/problem+json"),
        "{live:?}"
    );

    // The provider never saw the message, nor can it: the verification's one delivery is
    // the recorded message (never queued), and no delivery job is queued or in a
    // worker's hands.
    let v = otpd
        .get_as(&test_key, &format!("/v1/verifications/{id}"))
        .await;
    v.assert_status(200, "read the test verification");
    let deliveries = v.body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{v:?}");
    assert_eq!(
        (&deliveries[0]["provider"], &deliveries[0]["status"]),
        (&json!("test"), &json!("sent")),
        "{v:?}"
    );
    otpd.wait_outbox_empty().await;
    assert!(
        sink.attempts().is_empty(),
        "a test key reached the provider: {:#?}",
        sink.attempts()
    );

    // Sanity: the sink does work, so its silence above is meaningful.
    otpd.send_ok(&json!({"to": "+14155550142"})).await;
    sink.wait_for(1, DELIVERY_TIMEOUT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_is_a_problem_404() {
    let (_dir, _sink, otpd) = start_with_sink().await;

    otpd.get("/v1/no-such-thing")
        .await
        .assert_problem(404, "not_found", "unknown route");
    otpd.post("/v1/verifications/ver_doesnotexist/cancel", &json!({}))
        .await
        .assert_problem(404, "not_found", "unknown verification");
}

/// The example configuration shipped in `examples/` passes `otpd config check`, and a
/// broken one fails with a clear message and a non-zero exit.
#[test]
fn config_check_accepts_the_example_and_rejects_nonsense() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/otpd.toml");
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_otpd"))
        .args(["--config", example, "config", "check"])
        .env_remove("OTPD_CONFIG")
        .output()
        .expect("run otpd config check");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("configuration OK"));

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[providers]]\nname = \"x\"\nkind = \"carrier-pigeon\"\n",
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_otpd"))
        .args([
            "--config",
            bad.to_str().expect("utf-8 path"),
            "config",
            "check",
        ])
        .env_remove("OTPD_CONFIG")
        .output()
        .expect("run otpd config check");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown kind 'carrier-pigeon'"));
}

/// Security review, finding 1 (high): a test key learned a live code. A live send and a
/// test send to the same number shared one pending verification, so the test key read the
/// code from its recorded messages and the live check approved it. Test and live are
/// separate worlds on both faces: the test send makes its own verification with its own
/// code, and neither world can see, check or resend the other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_key_never_learns_or_touches_a_live_code() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let to = "+14155550143";
    let live_key = otpd.create_key("app", "verify", false).await;
    let test_key = otpd.create_key("ci", "verify", true).await;

    let live = otpd
        .post_as(&live_key, "/v1/verifications", &json!({"to": to}))
        .await;
    live.assert_status(201, "live send");
    let live_id = live.id();
    let live_code = sink.code_for(to).await;

    // The test send to the same number is no resend of the live verification.
    let test = otpd
        .post_as(&test_key, "/v1/verifications", &json!({"to": to}))
        .await;
    test.assert_status(201, "test send");
    let test_id = test.id();
    assert_ne!(
        test_id, live_id,
        "the test send resent the live verification"
    );
    let recorded = otpd
        .get_as(&test_key, &format!("/v1/verifications/{test_id}/messages"))
        .await;
    recorded.assert_status(200, "test messages");
    let messages = recorded.body["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{recorded:?}");
    let test_code = extract_code(messages[0]["body"].as_str().unwrap()).unwrap();

    // The test key cannot see, read messages of, check, or cancel the live verification.
    for path in [
        format!("/v1/verifications/{live_id}"),
        format!("/v1/verifications/{live_id}/messages"),
    ] {
        otpd.get_as(&test_key, &path)
            .await
            .assert_problem(404, "not_found", &path);
    }
    otpd.post_as(
        &test_key,
        "/v1/verifications/check",
        &json!({"id": live_id, "code": live_code}),
    )
    .await
    .assert_problem(404, "not_found", "test key checking the live id");
    otpd.post_as(
        &test_key,
        &format!("/v1/verifications/{live_id}/cancel"),
        &json!({}),
    )
    .await
    .assert_problem(404, "not_found", "test key canceling the live id");
    // Nor the reverse: the live key does not see the test verification.
    otpd.get_as(&live_key, &format!("/v1/verifications/{test_id}"))
        .await
        .assert_problem(404, "not_found", "live key reading the test id");

    // The test code does not approve the live verification (a check by number finds the
    // live key's own verification, and the code is not its code).
    let wrong = otpd
        .post_as(
            &live_key,
            "/v1/verifications/check",
            &json!({"to": to, "code": test_code}),
        )
        .await;
    wrong.assert_status(200, "live check with the test code");
    assert_eq!(wrong.body["valid"], false, "{wrong:?}");
    assert_eq!(wrong.str("id"), live_id);

    // A second live send resends the live verification (one message, the same code) and
    // a test send the test one: a resend never crosses worlds.
    let resent = otpd
        .post_as(&live_key, "/v1/verifications", &json!({"to": to}))
        .await;
    resent.assert_status(201, "live resend");
    assert_eq!(resent.id(), live_id);
    let codes = sink
        .wait_for_to(to, 2, DELIVERY_TIMEOUT)
        .await
        .iter()
        .filter_map(|m| extract_code(m["body"].as_str()?))
        .collect::<Vec<_>>();
    assert_eq!(codes, vec![live_code.clone(), live_code.clone()]);
    let retest = otpd
        .post_as(&test_key, "/v1/verifications", &json!({"to": to}))
        .await;
    assert_eq!(retest.id(), test_id);

    // The Twilio face: the test key's send and fetch by number are its own world's.
    let tw = |key: &str, method: Method, path: &str| {
        otpd.anonymous(method, path).basic_auth("otpd", Some(key))
    };
    let sid = tw(
        &test_key,
        Method::POST,
        "/v2/Services/default/Verifications",
    )
    .form(&[("To", to), ("Channel", "sms")])
    .reply()
    .await;
    sid.assert_status(201, "twilio test send");
    let fetched = tw(
        &test_key,
        Method::GET,
        &format!(
            "/v2/Services/default/Verifications/{}",
            to.replace('+', "%2B")
        ),
    )
    .reply()
    .await;
    fetched.assert_status(200, "twilio fetch by To");
    assert_eq!(fetched.str("sid"), sid.str("sid"));
    let tw_check = tw(
        &test_key,
        Method::POST,
        "/v2/Services/default/VerificationCheck",
    )
    .form(&[("To", to), ("Code", live_code.as_str())])
    .reply()
    .await;
    tw_check.assert_status(200, "twilio test check with the live code");
    assert_eq!(tw_check.str("status"), "pending", "{tw_check:?}");

    // The live code still works for the live key, once.
    let approved = otpd
        .post_as(
            &live_key,
            "/v1/verifications/check",
            &json!({"to": to, "code": live_code}),
        )
        .await;
    approved.assert_status(200, "live check");
    assert_eq!(approved.str("status"), "approved", "{approved:?}");
    assert_eq!(approved.str("id"), live_id);
}

/// The `api.request` events of the log, counted.
async fn api_requests(otpd: &OtpdProcess) -> usize {
    let r = otpd.get("/v1/events?type=api.request&limit=1000").await;
    r.assert_status(200, "api.request events");
    r.body["events"].as_array().expect("events").len()
}

/// Security review, finding 4: every refused request was stored as an `api.request` event,
/// kept forever, so anyone could fill the disk. A request refused for want of a valid key
/// is counted in `/metrics` and logged now and then, never stored; a known key's calls are
/// still audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_counted_not_stored() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    let before = api_requests(&otpd).await;
    let made_up = format!("otpd_live_{}", random_hex(16));
    for i in 0..60 {
        let r = if i % 2 == 0 {
            otpd.anonymous(Method::POST, "/v1/services")
                .json(&json!({"name": format!("s{i}")}))
                .reply()
                .await
        } else {
            otpd.post_as(&made_up, "/v1/keys", &json!({"name": "k"}))
                .await
        };
        r.assert_problem(401, "unauthorized", "a refused credential");
    }
    assert_eq!(
        api_requests(&otpd).await,
        before,
        "refused requests were stored"
    );
    let metrics = otpd.anonymous(Method::GET, "/metrics").reply().await.text;
    assert!(
        metrics.lines().any(|l| l == "otpd_auth_refusals_total 60"),
        "no refusal count in /metrics:\n{metrics}"
    );
    let logged = otpd
        .output()
        .iter()
        .filter(|l| l.contains("refused for want of a valid API key"))
        .count();
    assert!(
        (1..=2).contains(&logged),
        "{logged} log lines for 60 refusals"
    );
    // A known key's change without a domain event is still in the audit trail.
    otpd.create_key("audited", "verify", false).await;
    assert_eq!(api_requests(&otpd).await, before + 1);
}

/// Security review, finding 9: a `friendly_name` with CR/LF went into console output and
/// email subjects. Every text that reaches a message, a header or a log refuses control
/// characters, on both faces; a name can be cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_never_reach_messages_headers_or_logs() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    let patch = |body: Value| {
        otpd.request(Method::PATCH, "/v1/services/default")
            .json(&body)
            .reply()
    };
    for bad in [
        json!({"friendly_name": "Acme\r\nBcc: victim@example.com"}),
        json!({"friendly_name": "Acme\u{1b}[2J"}),
        json!({"friendly_name": "Acme\u{2028}Bank"}),
        json!({"templates": {"email_subject:en": "Your code\r\nBcc: x@example.com"}}),
        json!({"templates": {"en": "Code {code}\r\n\u{1b}[31m"}}),
    ] {
        patch(bad.clone())
            .await
            .assert_problem(400, "invalid_request", &bad.to_string());
    }
    otpd.post("/v1/keys", &json!({"name": "ci\nkey", "role": "verify"}))
        .await
        .assert_problem(400, "invalid_request", "key name with a newline");
    let twilio = otpd
        .anonymous(Method::POST, "/v2/Services")
        .basic_auth("otpd", Some(otpd.master_key()))
        .form(&[("FriendlyName", "Acme\r\nX")])
        .reply()
        .await;
    assert_eq!(twilio.status, 400, "{twilio:?}");
    // Nothing was changed; a template may still break lines with \n; a name is cleared
    // with "".
    let service = otpd.get("/v1/services/default").await;
    assert!(service.body["friendly_name"].is_null(), "{service:?}");
    patch(json!({"friendly_name": "Acme", "templates": {"en": "Code {code}\n\n@example.com #{code}"}}))
        .await
        .assert_status(200, "a clean name and a two-line template");
    let cleared = patch(json!({"friendly_name": ""})).await;
    cleared.assert_status(200, "clearing the name");
    assert!(cleared.body["friendly_name"].is_null(), "{cleared:?}");
}

/// Security review, finding 10: the data directory was 0755 and the SQLite files 0644. A
/// directory otpd creates is 0700, and its database, log and index files are 0600, also
/// when an earlier version left them readable.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_and_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let data = dir.path().join("fresh/data");
    let db = data.join("otpd.db");
    let url = format!("sqlite://{}", db.display());
    let otpd = OtpdProcess::start_with_env(
        &dir,
        &Config::for_sink(&sink),
        &[("OTPD_DATABASE_URL", &url)],
    )
    .await;
    otpd.send_ok(&json!({"to": "+14155550160"})).await;
    assert_eq!(mode(&dir.path().join("fresh")), 0o700);
    assert_eq!(mode(&data), 0o700);
    for name in ["otpd.db", "otpd.db-wal", "otpd.db-shm"] {
        let file = data.join(name);
        assert!(file.exists(), "{name} missing");
        assert_eq!(mode(&file), 0o600, "{name}");
    }
    drop(otpd);
    // Files left readable by an earlier version are narrowed at the next start.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let otpd = OtpdProcess::start_with_env(
        &dir,
        &Config::for_sink(&sink),
        &[("OTPD_DATABASE_URL", &url)],
    )
    .await;
    otpd.get("/readyz").await.assert_status(200, "restarted");
    assert_eq!(mode(&db), 0o600);
}

/// Security review, finding 13: dashboard sign-in had no throttling, and the master key
/// could be 16 characters. Sign-in attempts are limited per client (429 with Retry-After,
/// for right keys too once the client is over), and a master key needs 32 characters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_sign_in_is_throttled_and_the_master_key_is_long() {
    let (dir, sink, otpd) = start_with_sink().await;
    let sign_in = |key: String| {
        otpd.anonymous(Method::POST, "/dashboard/session")
            .json(&json!({"key": key}))
            .reply()
    };
    for _ in 0..10 {
        sign_in(format!("otpd_live_{}", random_hex(16)))
            .await
            .assert_problem(401, "unauthorized", "a guessed key");
    }
    let over = sign_in(format!("otpd_live_{}", random_hex(16))).await;
    over.assert_problem(429, "rate_limited", "the 11th guess");
    assert!(over.header("retry-after").is_some(), "{over:?}");
    sign_in(otpd.master_key().to_string()).await.assert_problem(
        429,
        "rate_limited",
        "even the right key, while over",
    );

    // A short master key is refused at start and by `config check`, naming the rule
    // (never the key).
    drop(otpd);
    let short = "otpd_live_short_key_0123456789"; // 30 characters
    for args in [&["serve"][..], &["config", "check"][..]] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_otpd"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("OTPD_CONFIG")
            .env("OTPD_LISTEN", "127.0.0.1:0")
            .env("OTPD_DATABASE_URL", dir.database_url())
            .env("OTPD_MASTER_KEY", short)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn otpd");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "{args:?} did not exit"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            !out.status.success(),
            "{args:?} accepted a short master key"
        );
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            output.contains("at least 32 characters"),
            "{args:?}: {output}"
        );
        assert!(!output.contains(short), "the key was printed: {output}");
    }
    drop(sink);
}
