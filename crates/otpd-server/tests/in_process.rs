//! The application in this process, on port 0, over a temporary SQLite file, with a clock
//! the test moves ([`ManualClock`]): the time-dependent behaviour of sends and checks
//! (expiry, lockout) without waiting for real time to pass. What needs a whole process
//! (SIGKILL, SDKs, deployment files) stays in `crates/otpd/tests`.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use otpd_core::clock::{Clock, ManualClock};
use otpd_core::totp::{Algorithm, FactorKind, FactorParams, FactorSecret};
use otpd_server::{Application, Config};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A running application and what a test needs to talk to it.
struct TestApp {
    base: String,
    clock: Arc<ManualClock>,
    client: reqwest::Client,
    /// A test key: its messages are recorded, so a test reads the codes back.
    key: String,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

const MASTER: &str = "otpd_live_in_process_master_key_0123456789";

impl TestApp {
    async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    /// [`TestApp::spawn`] with the configuration changed by `tune`.
    async fn spawn_with(tune: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            database_url: format!("sqlite://{}", dir.path().join("otpd.db").display()),
            master_key: Some(SecretString::from(MASTER.to_string())),
            ..Config::default()
        };
        tune(&mut config);
        let clock = Arc::new(ManualClock::at(Utc::now()));
        let app = Application::build_with_clock(config, clock.clone())
            .await
            .expect("the application builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("an HTTP client");
        let mut app = TestApp {
            base,
            clock,
            client,
            key: String::new(),
            _dir: dir,
            _stop: stop,
        };
        let created = app
            .post(
                MASTER,
                "/v1/keys",
                json!({"name": "t", "role": "verify", "test": true}),
            )
            .await;
        assert_eq!(created.0, 201, "{created:?}");
        app.key = created.1["key"].as_str().expect("a key").to_string();
        app
    }

    async fn post(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("a reply");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.get_as(&self.key, path).await
    }

    async fn get_as(&self, key: &str, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("a reply");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Sends a code to `to` with the test key (`ttl_seconds`: the service's when `None`);
    /// returns the verification id and its code.
    async fn send(&self, to: &str, ttl_seconds: Option<u32>) -> (String, String) {
        let mut body = json!({"to": to});
        if let Some(ttl) = ttl_seconds {
            body["ttl_seconds"] = json!(ttl);
        }
        let (status, v) = self.post(&self.key, "/v1/verifications", body).await;
        assert_eq!(status, 201, "{v}");
        let id = v["id"].as_str().expect("an id").to_string();
        let (status, m) = self.get(&format!("/v1/verifications/{id}/messages")).await;
        assert_eq!(status, 200, "{m}");
        let body = m["messages"][0]["body"].as_str().expect("a message body");
        let code = body
            .split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)
            .expect("a six-digit code")
            .to_string();
        (id, code)
    }

    async fn check(&self, id: &str, code: &str) -> (u16, Value) {
        self.post(
            &self.key,
            "/v1/verifications/check",
            json!({"id": id, "code": code}),
        )
        .await
    }

    /// Sends a code to `to` and checks it: a finished (approved) verification's id.
    async fn approved(&self, to: &str) -> String {
        let (id, code) = self.send(to, None).await;
        let (status, v) = self.check(&id, &code).await;
        assert_eq!(
            (status, v["status"].as_str()),
            (200, Some("approved")),
            "{v}"
        );
        id
    }

    /// Enrols an authenticator-app factor (`POST /v1/totp/factors`, as admin).
    async fn enrol(&self, body: Value) -> Factor {
        let (status, f) = self.post(MASTER, "/v1/totp/factors", body).await;
        assert_eq!(status, 201, "{f}");
        Factor {
            id: f["id"].as_str().expect("an id").to_string(),
            secret: FactorSecret::from_base32(f["secret"].as_str().expect("a secret"))
                .expect("a base32 secret"),
            params: FactorParams {
                kind: FactorKind::Totp,
                algorithm: Algorithm::parse(f["algorithm"].as_str().expect("an algorithm"))
                    .expect("a known algorithm"),
                digits: f["digits"].as_u64().expect("digits") as u8,
                period: f["period"].as_u64().expect("a period") as u32,
                tolerance: f["window"].as_u64().expect("a window") as u32,
            },
        }
    }

    /// Activates `f` with the code of `step` (`POST …/verify`); returns `valid`.
    async fn activate(&self, f: &Factor, step: u64) -> bool {
        let path = format!("/v1/totp/factors/{}/verify", f.id);
        let (status, v) = self
            .post(MASTER, &path, json!({"code": f.code(step)}))
            .await;
        assert_eq!(status, 200, "{v}");
        v["valid"].as_bool().expect("valid")
    }

    /// Checks the code of `step` (`POST /v1/totp/check`); returns `valid`.
    async fn totp_valid(&self, f: &Factor, step: u64) -> bool {
        let body = json!({"factor": f.id, "code": f.code(step)});
        let (status, v) = self.post(MASTER, "/v1/totp/check", body).await;
        assert_eq!(status, 200, "{v}");
        v["valid"].as_bool().expect("valid")
    }
}

/// An authenticator-app factor: what its app knows.
struct Factor {
    id: String,
    secret: FactorSecret,
    params: FactorParams,
}

impl Factor {
    /// The app's code at a time step.
    fn code(&self, step: u64) -> String {
        self.params.code_at(&self.secret, step)
    }
}

/// A code works until its time to live is up and not after (the default 600 s), by the
/// application's clock; the verification then reads `expired`.
#[tokio::test]
async fn a_code_expires_at_its_ttl_on_the_clock() {
    let app = TestApp::spawn().await;
    let (early, early_code) = app.send("+14155550124", None).await;
    let (late, late_code) = app.send("+14155550125", None).await;
    app.clock.advance(Duration::seconds(599));
    let (status, v) = app.check(&early, &early_code).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("approved")),
        "{v}"
    );
    app.clock.advance(Duration::seconds(2));
    let (status, v) = app.check(&late, &late_code).await;
    assert_eq!((status, v["code"].as_str()), (410, Some("expired")), "{v}");
    let (status, v) = app.get(&format!("/v1/verifications/{late}")).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("expired")),
        "{v}"
    );
}

/// Wrong codes lock the number for the lockout's duration (default: 5 failures, 15 minutes);
/// a right code is refused during the lock and accepted once the clock has passed it.
#[tokio::test]
async fn a_lockout_ends_when_its_time_is_up() {
    let app = TestApp::spawn().await;
    let to = "+14155550126";
    // Four wrong codes on a first verification (it allows five checks), then it is
    // canceled; the fifth wrong code, on a second verification, starts the lock.
    let (first, _) = app.send(to, Some(3600)).await;
    for _ in 0..4 {
        let (status, v) = app.check(&first, "000000").await;
        assert_eq!((status, v["valid"].as_bool()), (200, Some(false)), "{v}");
    }
    let (status, v) = app
        .post(
            &app.key,
            &format!("/v1/verifications/{first}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (id, code) = app.send(to, Some(3600)).await;
    let (status, v) = app.check(&id, "000000").await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = app.check(&id, &code).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (429, Some("rate_limited")),
        "{v}"
    );
    app.clock
        .advance(Duration::minutes(15) + Duration::seconds(1));
    let (status, v) = app.check(&id, &code).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("approved")),
        "{v}"
    );
}

/// The TOTP window at a step boundary, by the application's clock: with window 0 a code
/// of the next step is refused a moment before the boundary and accepted right after it;
/// with window 1 the previous step's code is still accepted right after the boundary.
#[tokio::test]
async fn a_totp_window_ends_at_the_step_boundary_on_the_clock() {
    let app = TestApp::spawn().await;
    // 10 s into a step of 30 s.
    let t = app.clock.now().timestamp() as u64 / 30 + 1;
    let at = |ms: u64| DateTime::from_timestamp_millis(ms as i64).expect("a time");
    app.clock.set(at(t * 30_000 + 10_000));
    let strict = app.enrol(json!({"entity": "edge-0", "window": 0})).await;
    let loose = app.enrol(json!({"entity": "edge-1"})).await;
    assert_eq!((strict.params.tolerance, loose.params.tolerance), (0, 1));
    assert!(app.activate(&strict, t).await);
    assert!(app.activate(&loose, t - 1).await);

    let boundary = (t + 1) * 30_000;
    app.clock.set(at(boundary - 1_500));
    assert!(
        !app.totp_valid(&strict, t + 1).await,
        "window 0: the next step's code before the boundary"
    );
    app.clock.set(at(boundary + 300));
    assert!(
        app.totp_valid(&strict, t + 1).await,
        "window 0: the same code right after the boundary"
    );
    assert!(
        app.totp_valid(&loose, t).await,
        "window 1: the previous step's code right after the boundary"
    );
    assert!(
        !app.totp_valid(&loose, t + 3).await,
        "window 1: two steps ahead"
    );
}

/// The retention purge judges age by the application's clock: once the clock has passed
/// a finished verification's retention it is purged (although hardly any real time has
/// passed), while one finished at the clock's new time is kept.
#[tokio::test]
async fn the_retention_purge_goes_by_the_clock() {
    let app = TestApp::spawn_with(|c| {
        c.retention.verifications_days = 1.0;
        c.retention.interval_seconds = 1;
    })
    .await;
    let old = app.approved("+14155550127").await;
    app.clock.advance(Duration::days(1) + Duration::seconds(1));
    let young = app.approved("+14155550128").await;
    // The purge runs every second (by the runtime's timer): wait for it to take `old`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, v) = app.get(&format!("/v1/verifications/{old}")).await;
        if status == 404 {
            break;
        }
        assert_eq!(status, 200, "{v}");
        assert!(
            std::time::Instant::now() < deadline,
            "the verification past its retention was not purged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, v) = app.get(&format!("/v1/verifications/{young}")).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("approved")),
        "the young one is kept: {v}"
    );
    let (status, events) = app.get_as(MASTER, "/v1/events?type=retention.purged").await;
    assert_eq!(status, 200, "{events}");
    let purged = events["events"].as_array().expect("events");
    assert!(
        purged
            .iter()
            .any(|e| e["data"]["deleted"]["verifications"].as_u64() >= Some(1)),
        "{events}"
    );
}

/// A check by `to` whose latest code has expired answers `expired` (410), as a check by id
/// does; the problem's `type` is that code's entry in the served error reference.
#[tokio::test]
async fn a_check_by_to_on_an_expired_code_answers_expired() {
    let app = TestApp::spawn().await;
    let to = "+14155550129";
    let (_, code) = app.send(to, None).await;
    app.clock.advance(Duration::seconds(601));
    let (status, v) = app
        .post(
            &app.key,
            "/v1/verifications/check",
            json!({"to": to, "code": code}),
        )
        .await;
    assert_eq!((status, v["code"].as_str()), (410, Some("expired")), "{v}");
    assert_eq!(v["type"], "/docs/errors#expired", "{v}");
    // Nothing ever sent to a number is still "not found".
    let (status, v) = app
        .post(
            &app.key,
            "/v1/verifications/check",
            json!({"to": "+14155550130", "code": code}),
        )
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );
}

/// The check that exhausts the attempt limit says what comes next: with the default
/// policies its wrong codes have locked the recipient (Retry-After: the lock's 900 s), so it
/// does not advise a new verification, and a new send is indeed refused; with a code that
/// lives longer than the lockout's window, the lock is not certain and the reply says so.
#[tokio::test]
async fn the_attempt_that_exhausts_the_limit_tells_whether_the_recipient_is_locked() {
    let app = TestApp::spawn().await;
    let exhaust = |id: String| {
        let app = &app;
        async move {
            for _ in 0..4 {
                let (status, v) = app.check(&id, "000000").await;
                assert_eq!((status, v["valid"].as_bool()), (200, Some(false)), "{v}");
            }
            let r = app
                .client
                .post(format!("{}/v1/verifications/check", app.base))
                .bearer_auth(&app.key)
                .json(&json!({"id": id, "code": "000000"}))
                .send()
                .await
                .expect("a reply");
            let retry_after = r
                .headers()
                .get("retry-after")
                .map(|h| h.to_str().expect("ascii").to_string());
            let status = r.status().as_u16();
            let v: Value = r.json().await.expect("a problem");
            assert_eq!(
                (status, v["code"].as_str()),
                (429, Some("max_attempts_reached")),
                "{v}"
            );
            (
                retry_after,
                v["detail"].as_str().expect("a detail").to_string(),
            )
        }
    };

    let locked = "+14155550131";
    let (id, _) = app.send(locked, None).await;
    let (retry_after, detail) = exhaust(id).await;
    assert_eq!(retry_after.as_deref(), Some("900"), "{detail}");
    assert!(
        detail.contains("locked") && detail.contains("15 min"),
        "{detail}"
    );
    assert!(!detail.contains("start a new verification"), "{detail}");
    let (status, v) = app
        .post(&app.key, "/v1/verifications", json!({"to": locked}))
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (429, Some("rate_limited")),
        "{v}"
    );

    let long_lived = "+14155550132";
    let (id, _) = app.send(long_lived, Some(3600)).await;
    let (retry_after, detail) = exhaust(id).await;
    assert_eq!(retry_after, None, "{detail}");
    assert!(detail.contains("unless"), "{detail}");
}

/// `/docs/errors` explains every problem code, at the anchor its `type` names.
#[tokio::test]
async fn the_error_reference_explains_every_code() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .get(format!("{}/docs/errors", app.base))
        .send()
        .await
        .expect("a reply");
    assert_eq!(r.status().as_u16(), 200);
    let page = r.text().await.expect("a page");
    for code in otpd_server::error::ErrorCode::ALL {
        let name = code.as_str();
        assert_eq!(code.type_url(), format!("/docs/errors#{name}"));
        assert!(
            page.contains(&format!("<section id=\"{name}\">")),
            "no entry for {name}"
        );
    }
    assert!(!page.contains('`'), "markdown left unrendered");
}

/// A `/v2` TOTP challenge past its `ExpirationDate` on the application's clock reads
/// `expired`, refuses a right code (403 / 60323) and lists as expired — with the clock
/// moved, not real time waited for.
#[tokio::test]
async fn a_twilio_challenge_expires_at_its_deadline_on_the_clock() {
    let app = TestApp::spawn().await;
    let t = app.clock.now().timestamp() as u64 / 30;
    let factor = app.enrol(json!({"entity": "user-expiry-1"})).await;
    assert!(app.activate(&factor, t).await);
    let factor_sid = format!(
        "YF{}",
        factor.id.strip_prefix("tf_").expect("a native factor id")
    );
    let challenges = format!(
        "{}/v2/Services/default/Entities/user-expiry-1/Challenges",
        app.base
    );
    let deadline = (app.clock.now() + Duration::seconds(60))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let created = app
        .client
        .post(&challenges)
        .basic_auth("ACotpd", Some(MASTER))
        .form(&[
            ("FactorSid", factor_sid.as_str()),
            ("ExpirationDate", &deadline),
        ])
        .send()
        .await
        .expect("a reply");
    assert_eq!(created.status().as_u16(), 201);
    let created: Value = created.json().await.expect("a challenge");
    assert_eq!(created["status"], "pending", "{created}");
    let path = format!("{challenges}/{}", created["sid"].as_str().expect("a sid"));
    let fetch = || async {
        let r = app
            .client
            .get(&path)
            .basic_auth("ACotpd", Some(MASTER))
            .send()
            .await
            .expect("a reply");
        r.json::<Value>().await.expect("a challenge")
    };
    assert_eq!(fetch().await["status"], "pending", "before the deadline");

    app.clock.set(app.clock.now() + Duration::seconds(61));
    assert_eq!(fetch().await["status"], "expired", "after the deadline");
    let step = app.clock.now().timestamp() as u64 / 30;
    let late = app
        .client
        .post(&path)
        .basic_auth("ACotpd", Some(MASTER))
        .form(&[("AuthPayload", factor.code(step).as_str())])
        .send()
        .await
        .expect("a reply");
    assert_eq!(late.status().as_u16(), 403);
    let late: Value = late.json().await.expect("an error");
    assert_eq!(late["code"], 60323, "{late}");
    let expired: Value = app
        .client
        .get(&challenges)
        .basic_auth("ACotpd", Some(MASTER))
        .query(&[("Status", "expired")])
        .send()
        .await
        .expect("a reply")
        .json()
        .await
        .expect("a page");
    assert_eq!(expired["challenges"].as_array().map(Vec::len), Some(1));
}

/// A passkey ceremony lives five minutes on the application's clock: finished at 4:59 it
/// is checked (and a forged credential refused on its merits), at 5:00 it is expired.
#[tokio::test]
async fn a_passkey_ceremony_expires_after_five_minutes_on_the_clock() {
    let app = TestApp::spawn().await;
    let (status, v) = app
        .client
        .patch(format!("{}/v1/services/default", app.base))
        .bearer_auth(MASTER)
        .json(&json!({"passkeys": {"rp_id": "example.com", "origins": ["https://example.com"]}}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .expect("a reply");
    assert_eq!(status, 200, "{v:?}");
    let forged = json!({"credential": {
        "id": "AAAA", "rawId": "AAAA", "type": "public-key",
        "response": {"attestationObject": "o2NmbXRkbm9uZQ", "clientDataJSON": "e30"}}});
    let start = || {
        app.post(
            &app.key,
            "/v1/passkeys/registrations",
            json!({"entity": "user-1", "user_name": "alice"}),
        )
    };

    let (status, open) = start().await;
    assert_eq!(status, 201, "{open}");
    let expected = app.clock.now() + Duration::minutes(5);
    assert_eq!(
        open["expires_at"].as_str(),
        Some(
            expected
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .as_str()
        )
    );
    let (status, late) = start().await;
    assert_eq!(status, 201, "{late}");

    app.clock
        .advance(Duration::minutes(5) - Duration::seconds(1));
    let path = |v: &Value| {
        format!(
            "/v1/passkeys/registrations/{}/verify",
            v["id"].as_str().unwrap_or("")
        )
    };
    let (status, v) = app.post(&app.key, &path(&open), forged.clone()).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap_or("")
            .contains("the credential was refused"),
        "{v}"
    );

    app.clock.advance(Duration::seconds(1));
    let (status, v) = app.post(&app.key, &path(&late), forged).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["detail"].as_str().unwrap_or("").contains("expired"),
        "{v}"
    );
}
