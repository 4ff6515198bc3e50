//! The application in this process, on port 0, over a temporary SQLite file, with a clock
//! the test moves ([`ManualClock`]): the time-dependent behaviour of sends and checks
//! (expiry, lockout) without waiting for real time to pass. What needs a whole process
//! (SIGKILL, SDKs, deployment files) stays in `crates/otpd/tests`.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

use std::sync::Arc;

use chrono::{Duration, Utc};
use otpd_core::clock::ManualClock;
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
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = Config {
            listen: "127.0.0.1:0".into(),
            database_url: format!("sqlite://{}", dir.path().join("otpd.db").display()),
            master_key: Some(SecretString::from(MASTER.to_string())),
            ..Config::default()
        };
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
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
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
