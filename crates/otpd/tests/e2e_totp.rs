//! End-to-end tests of authenticator-app factors (`/v1/totp`) against the real binary:
//! enrolment, activation, checks with the window and replay protection, HOTP look-ahead,
//! backup codes, the lockout shared with sent-code checks, bad input, secrets at rest and in
//! logs, and interoperability with an independent implementation (pyotp, a QR reader).
//!
//! The server runs on the wall clock. The tests here use the default window (a code of
//! the step before or after the current one is accepted too), so a step boundary passing
//! during a test changes none of their outcomes; the interoperability test, whose checks
//! tell steps apart, runs again when a boundary cut through it. Behaviour at a boundary
//! (the window's edge) is tested in otpd-server's in-process tests, with a clock the test
//! moves.
//!
//! Interoperability needs a Python interpreter with the packages of
//! `tests/requirements-test.txt`, named by `OTPD_PY`. Without it those tests print
//! "skipped: …" and pass, unless `OTPD_REQUIRE_INTEROP=1` (as in `.ci/run`) makes them fail.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{
    Method, OtpdProcess, Reply, SendReply, contains_bytes, contains_delimited_digits,
    start_with_sink, wrong_code,
};
use otpd_core::totp::{Algorithm, FactorKind, FactorParams, FactorSecret};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// A factor created through the API, with what its app knows.
struct Enrolled {
    id: String,
    secret: FactorSecret,
    params: FactorParams,
    created: Reply,
}

impl Enrolled {
    /// The app's code at a time step (TOTP) or counter (HOTP).
    fn code(&self, step: u64) -> String {
        self.params.code_at(&self.secret, step)
    }

    /// The current TOTP step.
    fn step_now(&self) -> u64 {
        unix_now() as u64 / u64::from(self.params.period)
    }

    /// A code of the right length that no step within ±3 of `step` produces.
    fn wrong(&self, step: u64) -> String {
        let near: Vec<String> = (step.saturating_sub(3)..=step + 3)
            .map(|s| self.code(s))
            .collect();
        let mut candidate = self.code(step);
        while near.contains(&candidate) {
            candidate = wrong_code(&candidate);
        }
        candidate
    }
}

/// `POST /v1/totp/factors`; asserts 201 and reads the parameters back.
async fn enrol(otpd: &OtpdProcess, body: Value) -> Enrolled {
    let created = otpd.post("/v1/totp/factors", &body).await;
    created.assert_status(201, &format!("create factor {body}"));
    let b = &created.body;
    let kind = match b["type"].as_str() {
        Some("hotp") => FactorKind::Hotp,
        _ => FactorKind::Totp,
    };
    let params = FactorParams {
        kind,
        algorithm: Algorithm::parse(created.str("algorithm")).expect("algorithm"),
        digits: b["digits"].as_u64().expect("digits") as u8,
        period: b["period"].as_u64().unwrap_or(30) as u32,
        tolerance: b["window"]
            .as_u64()
            .or(b["look_ahead"].as_u64())
            .expect("window or look_ahead") as u32,
    };
    Enrolled {
        id: created.id(),
        secret: FactorSecret::from_base32(created.str("secret")).expect("base32 secret"),
        params,
        created,
    }
}

/// `POST /v1/totp/factors/{id}/verify`; asserts 200 and returns `valid`.
async fn activate(otpd: &OtpdProcess, id: &str, code: &str) -> bool {
    let r = otpd
        .post(
            &format!("/v1/totp/factors/{id}/verify"),
            &json!({"code": code}),
        )
        .await;
    r.assert_status(200, "activate");
    r.body["valid"].as_bool().expect("valid")
}

/// `POST /v1/totp/check`; asserts 200 and returns the reply.
async fn check(otpd: &OtpdProcess, body: Value) -> Reply {
    let r = otpd.post("/v1/totp/check", &body).await;
    r.assert_status(200, &format!("check {body}"));
    r
}

async fn check_valid(otpd: &OtpdProcess, body: Value) -> bool {
    check(otpd, body).await.body["valid"]
        .as_bool()
        .expect("valid")
}

/// Asserts a 429 `rate_limited` with a `Retry-After` within the lock duration.
#[track_caller]
fn assert_locked(r: &Reply, context: &str) {
    r.assert_problem(429, "rate_limited", context);
    let secs: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{context}: no numeric Retry-After: {r:?}"));
    assert!((1..=900).contains(&secs), "{context}: Retry-After {secs}");
}

// ---------------------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_activate_check_replay_list_delete() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    let f = enrol(
        &otpd,
        json!({"entity": "user-1", "label": "alice@example.com", "issuer": "Acme"}),
    )
    .await;
    let c = &f.created;
    assert!(f.id.starts_with("tf_"), "{c:?}");
    assert_eq!(c.str("status"), "unverified");
    assert_eq!(c.str("type"), "totp");
    assert_eq!(
        (c.str("algorithm"), &c.body["digits"], &c.body["period"]),
        ("SHA1", &json!(6), &json!(30))
    );
    assert_eq!(c.body["window"], 1, "{c:?}");
    assert_eq!(f.secret.bytes().len(), 20, "160-bit secret");
    assert_eq!(
        c.str("otpauth_uri"),
        format!(
            "otpauth://totp/Acme:alice%40example.com?secret={}&issuer=Acme&algorithm=SHA1&digits=6&period=30",
            c.str("secret")
        )
    );
    assert!(c.str("qr_svg").starts_with("<svg"), "{c:?}");

    // The PNG QR code is there while unverified.
    let png = otpd
        .request(Method::GET, &format!("/v1/totp/factors/{}/qr.png", f.id))
        .send()
        .await
        .unwrap();
    assert_eq!(png.status(), 200);
    assert_eq!(png.headers()["content-type"], "image/png");
    assert!(png.bytes().await.unwrap().starts_with(b"\x89PNG"));

    // Not active yet: checks are refused.
    let step = f.step_now();
    otpd.post(
        "/v1/totp/check",
        &json!({"factor": f.id, "code": f.code(step)}),
    )
    .await
    .assert_problem(409, "verification_not_pending", "check before activation");
    otpd.post(
        "/v1/totp/check",
        &json!({"entity": "user-1", "code": f.code(step)}),
    )
    .await
    .assert_problem(404, "not_found", "entity without an active factor");

    assert!(!activate(&otpd, &f.id, &f.wrong(step)).await);
    assert!(activate(&otpd, &f.id, &f.code(step)).await);
    otpd.post(
        &format!("/v1/totp/factors/{}/verify", f.id),
        &json!({"code": f.code(step + 1)}),
    )
    .await
    .assert_problem(409, "verification_not_pending", "second activation");
    otpd.get(&format!("/v1/totp/factors/{}/qr.png", f.id))
        .await
        .assert_problem(409, "verification_not_pending", "QR after activation");

    // The activation code is spent; the next step's code works once.
    assert!(!check_valid(&otpd, json!({"factor": f.id, "code": f.code(step)})).await);
    let ok = check(&otpd, json!({"entity": "user-1", "code": f.code(step + 1)})).await;
    assert_eq!(ok.body["valid"], true, "{ok:?}");
    assert_eq!(ok.str("factor"), f.id);
    assert_eq!(ok.str("method"), "totp");
    assert!(!check_valid(&otpd, json!({"entity": "user-1", "code": f.code(step + 1)})).await);

    let listed = otpd.get("/v1/totp/factors?entity=user-1").await;
    listed.assert_status(200, "list");
    let factors = listed.body["factors"].as_array().unwrap();
    assert_eq!(factors.len(), 1, "{listed:?}");
    assert_eq!(factors[0]["status"], "active");
    assert!(factors[0].get("secret").is_none(), "{listed:?}");
    assert!(factors[0]["verified_at"].is_string(), "{listed:?}");
    let one = otpd.get(&format!("/v1/totp/factors/{}", f.id)).await;
    one.assert_status(200, "get");
    assert!(one.body.get("secret").is_none() && one.body.get("otpauth_uri").is_none());

    let deleted = otpd
        .request(Method::DELETE, &format!("/v1/totp/factors/{}", f.id))
        .reply()
        .await;
    deleted.assert_status(204, "delete");
    otpd.post(
        "/v1/totp/check",
        &json!({"factor": f.id, "code": f.code(step + 1)}),
    )
    .await
    .assert_problem(404, "not_found", "check of a deleted factor");

    let events = otpd.get("/v1/events?limit=1000").await;
    let kinds: Vec<&str> = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    for kind in [
        "factor.created",
        "factor.verified",
        "factor.approved",
        "factor.check_failed",
        "factor.deleted",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hotp_resynchronizes_within_the_look_ahead() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    let f = enrol(
        &otpd,
        json!({"entity": "hotp-user", "type": "hotp", "digits": 8, "algorithm": "SHA256"}),
    )
    .await;
    assert_eq!(f.created.body["look_ahead"], 10, "{:?}", f.created);
    assert!(f.created.body.get("period").is_none());
    assert!(f.created.str("otpauth_uri").ends_with("&counter=0"));
    assert!(activate(&otpd, &f.id, &f.code(0)).await);
    let by_id = |c: u64| json!({"factor": f.id, "code": f.code(c)});
    // The device was pressed four times without use: counter 5 is found, and the counter
    // moves there.
    let ok = check(&otpd, by_id(5)).await;
    assert_eq!(
        (ok.body["valid"].as_bool(), ok.str("method")),
        (Some(true), "hotp")
    );
    assert!(!check_valid(&otpd, by_id(3)).await, "behind the counter");
    assert!(!check_valid(&otpd, by_id(5)).await, "replay");
    assert!(
        !check_valid(&otpd, by_id(17)).await,
        "beyond the look-ahead"
    );
    assert!(
        check_valid(&otpd, by_id(16)).await,
        "at the look-ahead's end"
    );
}

// ---------------------------------------------------------------------------------------
// Lockout and backup codes
// ---------------------------------------------------------------------------------------

/// One lockout for every kind of check: wrong SMS codes of a verification started for an
/// entity and wrong TOTP codes of that entity add up; then right codes of both kinds are
/// refused with 429 and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_totp_and_sms_codes_share_one_lockout() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let to = "+14155550170";
    let entity = "user-lock";
    let sent = otpd.send_ok(&json!({"to": to, "entity": entity})).await;
    assert_eq!(sent.str("entity"), entity);
    let sms_code = sink.code_for(to).await;
    let f = enrol(&otpd, json!({"entity": entity})).await;
    let step = f.step_now();
    // (A right code clears the entity's failures, so the factor is activated first.)
    assert!(activate(&otpd, &f.id, &f.code(step)).await);

    for _ in 0..2 {
        let r = otpd
            .check(&json!({"to": to, "code": wrong_code(&sms_code)}))
            .await;
        r.assert_status(200, "wrong SMS code");
    }
    for _ in 0..3 {
        assert!(!check_valid(&otpd, json!({"entity": entity, "code": f.wrong(step)})).await);
    }

    let right_totp = json!({"entity": entity, "code": f.code(step + 1)});
    assert_locked(
        &otpd.post("/v1/totp/check", &right_totp).await,
        "right TOTP code while locked",
    );
    assert_locked(
        &otpd.check(&json!({"to": to, "code": sms_code})).await,
        "right SMS code while the entity is locked",
    );
    // Nothing changed: the verification is pending with its two counted attempts.
    let v = otpd.verification(&sent.id()).await;
    assert_eq!(v.str("status"), "pending", "{v:?}");
    assert_eq!(v.body["check_attempts"], 2, "{v:?}");
    // Another entity is not affected.
    let other = enrol(&otpd, json!({"entity": "someone-else"})).await;
    assert!(activate(&otpd, &other.id, &other.code(other.step_now())).await);

    let blocked = otpd.get("/v1/events?type=verification.blocked").await;
    let events = blocked.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{blocked:?}");
    assert_eq!(events[0]["data"]["subject"], "entity:user-lock");
    assert_eq!(events[0]["data"]["reason"], "lockout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_to_a_locked_recipient_are_refused() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let to = "+14155550171";
    otpd.send_ok(&json!({"to": to})).await;
    let code = sink.code_for(to).await;
    for _ in 0..4 {
        otpd.check(&json!({"to": to, "code": wrong_code(&code)}))
            .await
            .assert_status(200, "wrong code");
    }
    otpd.check(&json!({"to": to, "code": wrong_code(&code)}))
        .await
        .assert_problem(429, "max_attempts_reached", "fifth wrong code");
    assert_locked(
        &otpd.send(&json!({"to": to})).await,
        "send to a locked `to`",
    );
    // Another recipient still gets codes.
    otpd.send_ok(&json!({"to": "+14155550172"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_codes_are_single_use_and_replaced_as_a_set() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    let entity = "user-backup";
    let made = otpd
        .post("/v1/totp/backup-codes", &json!({"entity": entity}))
        .await;
    made.assert_status(201, "backup codes");
    let codes: Vec<String> = made.body["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    let mut unique = codes.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 10, "{codes:?}");
    assert!(
        codes
            .iter()
            .all(|c| c.len() == 11 && c.as_bytes()[5] == b'-'),
        "{codes:?}"
    );

    let ok = check(&otpd, json!({"entity": entity, "code": codes[0]})).await;
    assert_eq!(ok.body["valid"], true, "{ok:?}");
    assert_eq!(ok.str("method"), "backup_code");
    assert_eq!(ok.body["backup_codes_remaining"], 9);
    assert!(ok.body["factor"].is_null(), "{ok:?}");
    assert!(!check_valid(&otpd, json!({"entity": entity, "code": codes[0]})).await);
    // Typed in capitals and without the dash, still the same code.
    let typed = codes[1].replace('-', "").to_uppercase();
    assert!(check_valid(&otpd, json!({"entity": entity, "code": typed})).await);
    let listed = otpd.get(&format!("/v1/totp/factors?entity={entity}")).await;
    assert_eq!(listed.body["backup_codes_remaining"], 8, "{listed:?}");

    // A new set replaces the old one.
    let fresh = otpd
        .post("/v1/totp/backup-codes", &json!({"entity": entity}))
        .await;
    fresh.assert_status(201, "new set");
    assert!(!check_valid(&otpd, json!({"entity": entity, "code": codes[2]})).await);
    let new_code = fresh.body["codes"][0].as_str().unwrap();
    assert!(check_valid(&otpd, json!({"entity": entity, "code": new_code})).await);
}

// ---------------------------------------------------------------------------------------
// Bad input and secrets
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_factor_input_is_a_clean_problem_and_writes_nothing() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    for (body, why) in [
        (json!({}), "no entity"),
        (json!({"entity": ""}), "empty entity"),
        (json!({"entity": "u", "digits": 7}), "7 digits"),
        (json!({"entity": "u", "period": 45}), "period 45"),
        (
            json!({"entity": "u", "algorithm": "MD5"}),
            "unknown algorithm",
        ),
        (
            json!({"entity": "u", "algorithm": "sha1"}),
            "lower-case algorithm",
        ),
        (json!({"entity": "u", "window": 3}), "window 3"),
        (json!({"entity": "u", "type": "sms"}), "unknown type"),
        (
            json!({"entity": "u", "look_ahead": 5}),
            "look_ahead on totp",
        ),
        (
            json!({"entity": "u", "type": "hotp", "window": 1}),
            "window on hotp",
        ),
        (
            json!({"entity": "u", "type": "hotp", "look_ahead": 51}),
            "look_ahead 51",
        ),
        (json!({"entity": "u", "issuer": "a:b"}), "colon in issuer"),
        (
            json!({"entity": "u", "label": "x".repeat(129)}),
            "long label",
        ),
        (
            json!({"entity": "u", "secret": "JBSWY3DPEHPK3PXP"}),
            "caller secret",
        ),
        (json!({"entity": "u", "digits": "6"}), "digits as a string"),
    ] {
        otpd.post("/v1/totp/factors", &body)
            .await
            .assert_problem(400, "invalid_request", why);
    }
    otpd.post(
        "/v1/totp/factors",
        &json!({"entity": "u", "service": "nope"}),
    )
    .await
    .assert_problem(404, "not_found", "unknown service");
    let listed = otpd.get("/v1/totp/factors?entity=u").await;
    assert_eq!(listed.body["factors"], json!([]), "{listed:?}");
    let events = otpd.get("/v1/events?type=factor.created").await;
    assert_eq!(events.body["events"], json!([]), "{events:?}");
    otpd.get("/v1/totp/factors").await.assert_problem(
        400,
        "invalid_request",
        "list without entity",
    );

    let f = enrol(&otpd, json!({"entity": "u"})).await;
    let verify = format!("/v1/totp/factors/{}/verify", f.id);
    for (code, why) in [("12345", "5 digits"), ("12345a", "letters"), ("", "empty")] {
        otpd.post(&verify, &json!({"code": code}))
            .await
            .assert_problem(400, "invalid_request", why);
    }
    for (body, why) in [
        (json!({"code": "123456"}), "neither factor nor entity"),
        (
            json!({"code": "123456", "factor": f.id, "entity": "u"}),
            "both factor and entity",
        ),
        (
            json!({"code": "123456", "factor": f.id, "service": "default"}),
            "service with factor",
        ),
        (json!({"entity": "u", "code": "12-34"}), "not a code"),
    ] {
        otpd.post("/v1/totp/check", &body)
            .await
            .assert_problem(400, "invalid_request", why);
    }
    otpd.post(
        "/v1/totp/check",
        &json!({"factor": "tf_00000000000000000000000000000000", "code": "123456"}),
    )
    .await
    .assert_problem(404, "not_found", "unknown factor");
    otpd.get("/v1/totp/factors/tf_nope/qr.png")
        .await
        .assert_problem(404, "not_found", "QR of an unknown factor");

    // A key limited to another service neither sees nor uses this factor.
    otpd.create_service(&json!({"name": "other"})).await;
    let limited = otpd
        .post(
            "/v1/keys",
            &json!({"name": "other-app", "role": "verify", "services": ["other"]}),
        )
        .await;
    limited.assert_status(201, "limited key");
    let key = limited.str("key");
    otpd.get_as(key, &format!("/v1/totp/factors/{}", f.id))
        .await
        .assert_problem(404, "not_found", "factor of another service");
    otpd.post_as(
        key,
        "/v1/totp/check",
        &json!({"factor": f.id, "code": "123456"}),
    )
    .await
    .assert_problem(404, "not_found", "check of another service's factor");
    otpd.post_as(key, "/v1/totp/factors", &json!({"entity": "u"}))
        .await
        .assert_problem(403, "forbidden", "create in a service the key may not use");
    let mine = otpd
        .post_as(
            key,
            "/v1/totp/factors",
            &json!({"entity": "u", "service": "other"}),
        )
        .await;
    mine.assert_status(201, "create in its own service");
    assert_eq!(mine.str("service"), "other");
    assert_eq!(
        mine.str("issuer"),
        "other",
        "issuer defaults to the service"
    );
}

/// The secret is shown once: never again in a reply, an event, a log line or the database
/// (sealed there), and codes never appear in logs or events either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_codes_never_leave_after_creation() {
    let (dir, _sink, otpd) = start_with_sink().await;
    let f = enrol(
        &otpd,
        json!({"entity": "user-secret", "algorithm": "SHA256", "digits": 8}),
    )
    .await;
    let secret_b32 = f.created.str("secret").to_owned();
    let step = f.step_now();
    let codes = [f.code(step), f.wrong(step), f.code(step + 1)];
    assert!(activate(&otpd, &f.id, &codes[0]).await);
    assert!(!check_valid(&otpd, json!({"factor": f.id, "code": codes[1]})).await);
    assert!(check_valid(&otpd, json!({"entity": "user-secret", "code": codes[2]})).await);
    let backup = otpd
        .post("/v1/totp/backup-codes", &json!({"entity": "user-secret"}))
        .await;
    let backup_code = backup.body["codes"][0].as_str().unwrap().to_owned();
    assert!(check_valid(&otpd, json!({"entity": "user-secret", "code": backup_code})).await);

    let mut replies = vec![
        otpd.get(&format!("/v1/totp/factors/{}", f.id)).await,
        otpd.get("/v1/totp/factors?entity=user-secret").await,
        otpd.get("/v1/events?limit=1000").await,
    ];
    replies.push(otpd.get("/v1/events?type=factor.approved").await);
    for r in &replies {
        r.assert_status(200, "read back");
        assert!(!r.text.contains(&secret_b32), "secret in {r:?}");
        for code in &codes {
            assert!(!r.text.contains(code.as_str()), "code in {r:?}");
        }
        assert!(!r.text.contains(&backup_code), "backup code in {r:?}");
    }

    let output = otpd.output().join("\n");
    assert!(!output.contains(&secret_b32), "secret in the server output");
    assert!(
        !output.contains(&backup_code),
        "backup code in the server output"
    );
    for code in &codes {
        assert!(
            !contains_delimited_digits(output.as_bytes(), code),
            "code {code} in the server output"
        );
    }

    for (path, bytes) in dir.database_files() {
        let shown = path.display();
        assert!(
            !contains_bytes(&bytes, secret_b32.as_bytes()),
            "base32 secret in {shown}"
        );
        assert!(
            !contains_bytes(&bytes, f.secret.bytes()),
            "raw secret in {shown}"
        );
        assert!(
            !contains_bytes(&bytes, backup_code.replace('-', "").as_bytes()),
            "backup code in {shown}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Interoperability with an independent implementation
// ---------------------------------------------------------------------------------------

fn interop_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/totp_interop.py")
}

/// The interpreter named by `OTPD_PY` if it has the interop packages; otherwise `None`
/// after printing why ("skipped: …"), or a failure when `OTPD_REQUIRE_INTEROP=1`.
fn interop_python() -> Option<String> {
    let required = std::env::var("OTPD_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
    let skip = |why: String| {
        if required {
            panic!("interop required (OTPD_REQUIRE_INTEROP=1) but {why}");
        }
        eprintln!(
            "skipped: {why}; set OTPD_PY to a python with crates/otpd/tests/requirements-test.txt installed"
        );
        None
    };
    let py = match std::env::var("OTPD_PY") {
        Ok(py) if !py.is_empty() => py,
        _ => return skip("OTPD_PY is not set".into()),
    };
    match Command::new(&py)
        .arg(interop_script())
        .arg("--check")
        .output()
    {
        Ok(out) if out.status.success() => Some(py),
        Ok(out) => skip(format!(
            "{py} lacks the interop packages: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => skip(format!("{py} cannot be run: {e}")),
    }
}

/// Runs the interop script with one request; returns its reply.
fn run_interop(py: &str, request: &Value) -> Value {
    let mut child = Command::new(py)
        .arg(interop_script())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the interop script");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write the request");
    let out = child.wait_with_output().expect("run the interop script");
    assert!(
        out.status.success(),
        "interop script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("interop reply is JSON")
}

/// Codes made by pyotp from the `otpauth://` URI (parsed by pyotp to the same parameters)
/// are accepted at the right time steps and refused outside the window, for SHA1, SHA256
/// and SHA512; the SVG and PNG QR codes decode back to the URI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_pyotp_codes_uri_and_qr_codes() {
    let Some(py) = interop_python() else { return };
    let (dir, _sink, otpd) = start_with_sink().await;
    for (algorithm, digits, period) in [("SHA1", 6, 30), ("SHA256", 8, 60), ("SHA512", 6, 30)] {
        // The checks tell the steps around `t` apart, so they must all fall in the step of
        // `t`. A run that a step boundary cut through (a step is 30 s or more, a run well
        // under a second) is done again with a new factor, instead of waiting for a step to
        // begin: its outcomes are only looked at when the clock, read after the last
        // check, is still in the step of `t`.
        let mut run = 0;
        loop {
            run += 1;
            let entity = format!("interop-{algorithm}-{run}");
            let t = unix_now() as u64;
            let f = enrol(
                &otpd,
                json!({"entity": entity, "label": "alice@example.com", "issuer": "Acme Interop",
                       "algorithm": algorithm, "digits": digits, "period": period}),
            )
            .await;
            let uri = f.created.str("otpauth_uri");
            let png = otpd
                .request(Method::GET, &format!("/v1/totp/factors/{}/qr.png", f.id))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let png_path = dir.path().join(format!("{}.png", f.id));
            std::fs::write(&png_path, &png).unwrap();
            let times: Vec<u64> = (-2i64..=2)
                .map(|k| (t as i64 + k * period as i64) as u64)
                .collect();
            let reply = run_interop(
                &py,
                &json!({"uri": uri, "times": times, "qr_svg": f.created.str("qr_svg"),
                        "qr_png_path": png_path}),
            );
            assert_eq!(
                reply["parsed"],
                json!({"type": "totp", "secret": f.created.str("secret"), "issuer": "Acme Interop",
                       "name": "alice@example.com", "digits": digits, "algorithm": algorithm,
                       "period": period}),
                "pyotp parses the URI to the same parameters"
            );
            assert_eq!(
                reply["qr_svg_text"], uri,
                "the SVG QR code decodes to the URI"
            );
            assert_eq!(
                reply["qr_png_text"], uri,
                "the PNG QR code decodes to the URI"
            );
            let code = |k: usize| {
                reply["codes_at_times"][times[k].to_string()]
                    .as_str()
                    .unwrap()
                    .to_owned()
            };
            let by_id = |c: String| json!({"factor": f.id, "code": c});

            // (what, valid, expected)
            let outcomes = [
                (
                    "previous step",
                    activate(&otpd, &f.id, &code(1)).await,
                    true,
                ),
                (
                    "two steps back",
                    check_valid(&otpd, by_id(code(0))).await,
                    false,
                ),
                (
                    "two steps ahead",
                    check_valid(&otpd, by_id(code(4))).await,
                    false,
                ),
                (
                    "current step",
                    check_valid(&otpd, by_id(code(2))).await,
                    true,
                ),
                ("replay", check_valid(&otpd, by_id(code(2))).await, false),
                ("next step", check_valid(&otpd, by_id(code(3))).await, true),
            ];
            if unix_now() as u64 / period != t / period {
                assert!(
                    run < 3,
                    "{algorithm}: step boundaries cut through {run} runs in a row"
                );
                continue;
            }
            for (what, valid, expected) in outcomes {
                assert_eq!(valid, expected, "{algorithm}: {what}");
            }
            break;
        }
    }

    // HOTP: pyotp's counter codes, with the look-ahead.
    let f = enrol(
        &otpd,
        json!({"entity": "interop-hotp", "type": "hotp", "issuer": "Acme", "label": "bob"}),
    )
    .await;
    let uri = f.created.str("otpauth_uri");
    let reply = run_interop(&py, &json!({"uri": uri, "counters": [0, 2, 3, 4, 20]}));
    assert_eq!(
        reply["parsed"],
        json!({"type": "hotp", "secret": f.created.str("secret"), "issuer": "Acme",
               "name": "bob", "digits": 6, "algorithm": "SHA1", "counter": 0})
    );
    let code = |n: u64| {
        reply["codes_at_counters"][n.to_string()]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(activate(&otpd, &f.id, &code(0)).await);
    let by_id = |c: String| json!({"factor": f.id, "code": c});
    assert!(
        check_valid(&otpd, by_id(code(3))).await,
        "look-ahead over 1 and 2"
    );
    assert!(
        !check_valid(&otpd, by_id(code(2))).await,
        "behind the counter"
    );
    assert!(check_valid(&otpd, by_id(code(4))).await, "the next counter");
    assert!(
        !check_valid(&otpd, by_id(code(20))).await,
        "beyond the look-ahead"
    );
}
