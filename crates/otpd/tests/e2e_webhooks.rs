//! Service webhooks end to end: the real binary POSTs every event of a service to a real
//! receiver (`tests/peers/webhook_receiver.py`) that verifies each signature with the
//! Standard Webhooks reference library (`standardwebhooks` from PyPI); a receiver that
//! fails three times gets each event exactly once more; a receiver that stays down gets
//! the messages dead-lettered after the (shortened) retry window, and a replay delivers
//! them with the same `webhook-id`.
//!
//! The receiver runs under the Python named by `OTPD_PY` (with
//! `tests/requirements-test.txt`); without it the tests print "skipped: …" and pass,
//! unless `OTPD_REQUIRE_PEERS=1` (as in `.ci/run`).
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// Fast retries and a 3-second retry window, so a dead letter comes within seconds.
const WEBHOOKS_TOML: &str = "[webhooks]
allow_private_targets = true
retry_base_ms = 100
retry_max_ms = 400
retry_window_seconds = 3
poll_interval_ms = 50
";
/// How long a test waits for webhooks to arrive.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(20);

/// otpd with the sink (answering "delivered") and a webhook receiver.
struct Setup {
    _dir: TestDir,
    sink: Sink,
    otpd: OtpdProcess,
    receiver: PythonPeer,
    receiver_url: String,
    /// Every request the receiver reported so far.
    seen: Vec<Value>,
}

impl Setup {
    /// Starts everything; `extra_toml` is appended to the configuration.
    async fn start(extra_toml: &str) -> Option<Setup> {
        let py = python_with(&["standardwebhooks"])?;
        let port = free_port();
        let receiver = PythonPeer::start(
            &py,
            &peer_script("webhook_receiver.py"),
            &[&port.to_string()],
        )
        .await;
        let dir = TestDir::new();
        let sink = Sink::start().await;
        sink.set_reply(json!({"status": "delivered"}));
        let mut config = Config::for_sink(&sink);
        config.extra_toml = format!("{WEBHOOKS_TOML}\n{extra_toml}");
        let otpd = OtpdProcess::start(&dir, &config).await;
        Some(Setup {
            _dir: dir,
            sink,
            otpd,
            receiver,
            receiver_url: format!("http://127.0.0.1:{port}"),
            seen: Vec::new(),
        })
    }

    /// Creates service `name` with a webhook to the receiver's endpoint `name` answering
    /// per `mode`, and gives the receiver its secret.
    async fn service(&self, name: &str, mode: &str) {
        let service = self
            .otpd
            .create_service(&json!({
                "name": name,
                "webhook_url": format!("{}/hook/{name}", self.receiver_url),
            }))
            .await;
        let secret = service["webhook_secret"]
            .as_str()
            .expect("a webhook secret");
        assert!(secret.starts_with("whsec_"), "{secret}");
        self.set(&format!("_secret/{name}"), secret).await;
        self.set(&format!("_mode/{name}"), mode).await;
    }

    async fn set(&self, path: &str, value: &str) {
        let reply = reqwest::Client::new()
            .put(format!("{}/{path}", self.receiver_url))
            .body(value.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 204);
    }

    /// Sends a code to `to` in `service`, waits until the sink has it and the delivery
    /// is recorded, and returns the verification id and its event ids and types.
    async fn verification(&self, service: &str, to: &str) -> (String, BTreeMap<String, String>) {
        let id = self
            .otpd
            .send_ok(&json!({"to": to, "service": service}))
            .await
            .id();
        self.sink.wait_for_to(to, 1, DELIVERY_TIMEOUT).await;
        let events = self.events_until(&id, "verification.delivered").await;
        (id, events)
    }

    /// The events of a verification (id → type), once one of type `last` is among them.
    async fn events_until(&self, id: &str, last: &str) -> BTreeMap<String, String> {
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        loop {
            let reply = self
                .otpd
                .get(&format!("/v1/events?verification={id}"))
                .await;
            let events: BTreeMap<String, String> = reply.body["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["id"].as_str().unwrap().to_string(),
                        e["type"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            if events.values().any(|t| t == last) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "no {last} event for {id}: {events:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Reads the receiver's reports until `done` holds for those of `endpoint`.
    async fn until(&mut self, endpoint: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + WEBHOOK_TIMEOUT;
        loop {
            let mine: Vec<Value> = self
                .seen
                .iter()
                .filter(|r| r["endpoint"] == endpoint)
                .cloned()
                .collect();
            if done(&mine) {
                return mine;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "webhooks to {endpoint} so far: {mine:#?}");
            if let Some(line) = self.receiver.next_json(left).await {
                self.seen.push(line);
            }
        }
    }

    /// Reads whatever the receiver reports within `quiet` (to see that nothing more came).
    async fn drain(&mut self, quiet: Duration) {
        while let Some(line) = self.receiver.next_json(quiet).await {
            self.seen.push(line);
        }
    }

    /// The receiver's reports for `endpoint`, by webhook-id.
    fn by_id(&self, endpoint: &str) -> BTreeMap<String, Vec<Value>> {
        let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for r in self.seen.iter().filter(|r| r["endpoint"] == endpoint) {
            let id = r["webhook_id"].as_str().unwrap_or_default().to_string();
            out.entry(id).or_default().push(r.clone());
        }
        out
    }
}

/// The webhook-ids answered 2xx in these reports.
fn delivered_ids(reports: &[Value]) -> BTreeSet<String> {
    reports
        .iter()
        .filter(|r| r["answered"] == 204)
        .map(|r| r["webhook_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn ids(events: &BTreeMap<String, String>) -> BTreeSet<String> {
    events.keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_posted_signed_and_verifies_with_the_reference_library() {
    let Some(mut s) = Setup::start("").await else {
        return;
    };
    s.service("hooked", "ok").await;
    let to = "+14155550170";
    let (id, _) = s.verification("hooked", to).await;
    let code = s.sink.code_for(to).await;
    s.otpd
        .check(&json!({"to": to, "code": code, "service": "hooked"}))
        .await
        .assert_status(200, "right code");
    let events = s.events_until(&id, "verification.approved").await;
    let expected = ids(&events);
    let reports = s
        .until("hooked", |r| delivered_ids(r).is_superset(&expected))
        .await;
    s.drain(Duration::from_millis(1500)).await;

    let by_id = s.by_id("hooked");
    assert_eq!(
        by_id.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "exactly the verification's events, by their event ids"
    );
    for (webhook_id, got) in &by_id {
        assert_eq!(got.len(), 1, "{webhook_id} delivered once: {got:#?}");
        let r = &got[0];
        assert_eq!(r["verified"], true, "signature verified: {r}");
        let payload = &r["payload"];
        assert_eq!(payload["type"], events[webhook_id.as_str()], "{r}");
        assert!(payload["timestamp"].as_str().unwrap().ends_with('Z'), "{r}");
        assert_eq!(payload["data"]["id"], id, "{r}");
        assert_eq!(payload["data"]["service"], "hooked", "{r}");
        assert!(payload["data"]["details"].is_object(), "{r}");
    }
    assert!(
        reports
            .iter()
            .any(|r| r["payload"]["type"] == "verification.approved"
                && r["payload"]["data"]["status"] == "approved")
    );
    // A service without a webhook gets nothing: the default service's events stay home.
    s.otpd.send_ok(&json!({"to": "+14155550171"})).await;
    s.drain(Duration::from_millis(1000)).await;
    assert!(s.seen.iter().all(|r| r["endpoint"] == "hooked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_three_times_gets_each_event_exactly_once_more() {
    let Some(mut s) = Setup::start("").await else {
        return;
    };
    s.service("flaky", "flaky:3").await;
    let (_, events) = s.verification("flaky", "+14155550172").await;
    let expected = ids(&events);
    s.until("flaky", |r| delivered_ids(r).is_superset(&expected))
        .await;
    // Long enough for any extra (wrong) retry to show up.
    s.drain(Duration::from_millis(1500)).await;
    let by_id = s.by_id("flaky");
    assert_eq!(by_id.keys().cloned().collect::<BTreeSet<_>>(), expected);
    for (webhook_id, got) in &by_id {
        let answers: Vec<&Value> = got.iter().map(|r| &r["answered"]).collect();
        assert_eq!(
            answers,
            [&json!(503), &json!(503), &json!(503), &json!(204)],
            "{webhook_id}: three refusals, then exactly one delivery"
        );
        assert!(got.iter().all(|r| r["verified"] == true), "{got:#?}");
        assert!(
            got.iter()
                .all(|r| r["payload"]["type"] == events[webhook_id.as_str()])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_retry_window_messages_are_dead_letters_and_a_replay_delivers_them() {
    let Some(mut s) = Setup::start("").await else {
        return;
    };
    s.service("down", "down").await;
    let (_, events) = s.verification("down", "+14155550173").await;
    let expected = ids(&events);

    // The receiver keeps answering 503: after the 3 s window every message is dead.
    let deadline = Instant::now() + WEBHOOK_TIMEOUT;
    let letters = loop {
        let reply = s.otpd.get("/v1/webhooks/dead-letters?service=down").await;
        reply.assert_status(200, "dead letters");
        let letters = reply.body["dead_letters"].as_array().unwrap().clone();
        if letters.len() == expected.len() {
            break letters;
        }
        assert!(
            Instant::now() < deadline,
            "dead letters so far: {letters:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for letter in &letters {
        assert!(
            expected.contains(letter["event_id"].as_str().unwrap()),
            "{letter}"
        );
        assert_eq!(letter["service"], "down");
        assert_eq!(letter["last_status"], 503);
        assert!(letter["attempts"].as_u64().unwrap() >= 2, "{letter}");
        assert_eq!(letter["type"], events[letter["event_id"].as_str().unwrap()]);
    }
    s.drain(Duration::from_millis(300)).await;
    let refused = s.seen.len();
    assert!(
        s.seen
            .iter()
            .all(|r| r["answered"] == 503 && r["verified"] == true)
    );

    // The receiver is fixed; one replay, then the rest of the service's.
    s.set("_mode/down", "ok").await;
    let first = letters[0]["id"].as_str().unwrap();
    let first_event = letters[0]["event_id"].as_str().unwrap().to_string();
    let replay = s
        .otpd
        .post(
            &format!("/v1/webhooks/dead-letters/{first}/replay"),
            &json!({}),
        )
        .await;
    replay.assert_status(202, "replay one");
    assert_eq!(replay.body["replayed"], 1);
    s.until("down", |r| delivered_ids(r).contains(&first_event))
        .await;
    s.otpd
        .post(
            &format!("/v1/webhooks/dead-letters/{first}/replay"),
            &json!({}),
        )
        .await
        .assert_problem(404, "not_found", "no longer a dead letter");

    let all = s
        .otpd
        .post(
            "/v1/webhooks/dead-letters/replay",
            &json!({"service": "down"}),
        )
        .await;
    all.assert_status(202, "replay the service's");
    assert_eq!(all.body["replayed"], expected.len() as u64 - 1);
    s.until("down", |r| delivered_ids(r) == expected).await;
    s.drain(Duration::from_millis(500)).await;
    let after: Vec<&Value> = s.seen[refused..].iter().collect();
    assert_eq!(
        after.len(),
        expected.len(),
        "each replayed once: {after:#?}"
    );
    assert!(
        after
            .iter()
            .all(|r| r["answered"] == 204 && r["verified"] == true)
    );

    let left = s.otpd.get("/v1/webhooks/dead-letters").await;
    assert_eq!(left.body["dead_letters"], json!([]));
    s.otpd
        .post(
            "/v1/webhooks/dead-letters/replay",
            &json!({"service": "nope"}),
        )
        .await
        .assert_problem(404, "not_found", "unknown service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_raises_a_delivery_rate_alert_posted_to_every_webhook() {
    // Judge the delivery rate after two messages, every second.
    let alerts = "[alerts]\ndelivery_min_volume = 2\nevaluate_interval_seconds = 1\n";
    let Some(mut s) = Setup::start(alerts).await else {
        return;
    };
    s.service("ops", "ok").await;
    // The gateway refuses every message (a permanent error): nothing is delivered.
    s.sink.set_status(400);
    for to in ["+14155550174", "+14155550175"] {
        s.otpd.send_ok(&json!({"to": to})).await;
    }
    let reports = s
        .until("ops", |r| {
            r.iter()
                .any(|r| r["payload"]["type"] == "alert.delivery_rate_low")
        })
        .await;
    let alert = reports
        .iter()
        .find(|r| r["payload"]["type"] == "alert.delivery_rate_low")
        .unwrap();
    assert_eq!(alert["verified"], true);
    let data = &alert["payload"]["data"];
    assert_eq!(data["provider"], "sink", "{data}");
    assert_eq!(data["rate_percent"], 0.0, "{data}");
    assert_eq!(data["total"], 2, "{data}");
    assert_eq!(data["threshold_percent"], 90.0, "{data}");
    // The same alert is in the event log, and counted.
    let events = s.otpd.get("/v1/events?type=alert.delivery_rate_low").await;
    assert_eq!(events.body["events"].as_array().unwrap().len(), 1);
    let metrics = s.otpd.anonymous(Method::GET, "/metrics").reply().await;
    assert!(
        metrics
            .text
            .contains(r#"otpd_alerts_total{type="alert.delivery_rate_low"} 1"#),
        "{}",
        metrics.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_url_on_a_private_address_is_refused_by_default() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://10.0.0.8/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost/hook",
    ] {
        let reply = otpd
            .post(
                "/v1/services",
                &json!({"name": "private", "webhook_url": url}),
            )
            .await;
        reply.assert_problem(400, "invalid_request", url);
        assert!(reply.text.contains("webhook_url"), "{}", reply.text);
    }
    otpd.create_service(
        &json!({"name": "public", "webhook_url": "https://hooks.example.com/otpd"}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_urls_that_only_look_public_are_refused_on_create_and_update() {
    // A trailing-dot `localhost`, an IPv4-compatible IPv6 loopback and an IPv6 site-local
    // address: each names this machine or its network as surely as `127.0.0.1` does.
    const SNEAKY: [&str; 3] = [
        "http://localhost./",
        "http://[::127.0.0.1]/",
        "http://[fec0::1]/",
    ];
    let (_dir, _sink, otpd) = start_with_sink().await;
    otpd.create_service(&json!({"name": "shop", "webhook_url": "https://hooks.example.com/a"}))
        .await;
    for url in SNEAKY {
        let reply = otpd
            .post(
                "/v1/services",
                &json!({"name": "sneaky", "webhook_url": url}),
            )
            .await;
        reply.assert_problem(400, "invalid_request", url);
        assert!(reply.text.contains("webhook_url"), "{}", reply.text);
        otpd.request(Method::PATCH, "/v1/services/shop")
            .json(&json!({"webhook_url": url}))
            .reply()
            .await
            .assert_problem(400, "invalid_request", url);
    }
    assert_eq!(
        otpd.get("/v1/services/shop").await.body["webhook_url"],
        "https://hooks.example.com/a",
        "no refused update changed the service"
    );
    otpd.get("/v1/services/sneaky").await.assert_problem(
        404,
        "not_found",
        "no refused create made a service",
    );

    // With private targets allowed (development), the same URLs are taken.
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let otpd = OtpdProcess::start_with_env(
        &dir,
        &Config::for_sink(&sink),
        &[("OTPD_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")],
    )
    .await;
    otpd.create_service(&json!({"name": "dev", "webhook_url": SNEAKY[0]}))
        .await;
    for url in SNEAKY {
        otpd.request(Method::PATCH, "/v1/services/dev")
            .json(&json!({"webhook_url": url}))
            .reply()
            .await
            .assert_status(200, url);
    }
}

/// A stand-in HTTP proxy: counts the connections it gets and answers each 502.
async fn counting_proxy() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let _ = conn
                    .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (url, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_calls_ignore_proxy_settings_in_the_environment() {
    use std::sync::atomic::Ordering;
    let (proxy, proxy_hits) = counting_proxy().await;
    // The webhook receiver: counts the POSTs it gets.
    let hooks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hooks.clone();
    let app = axum::Router::new().fallback(move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            axum::http::StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = TestDir::new();
    let sink = Sink::start().await;
    sink.set_reply(json!({"status": "delivered"}));
    let mut config = Config::for_sink(&sink);
    config.extra_toml = WEBHOOKS_TOML.into();
    let otpd = OtpdProcess::start_with_env(
        &dir,
        &config,
        &[
            ("HTTP_PROXY", &proxy),
            ("http_proxy", &proxy),
            ("HTTPS_PROXY", &proxy),
            ("https_proxy", &proxy),
            ("ALL_PROXY", &proxy),
            ("all_proxy", &proxy),
        ],
    )
    .await;
    otpd.create_service(&json!({"name": "hooked", "webhook_url": receiver}))
        .await;
    let to = "+14155550177";
    otpd.send_ok(&json!({"to": to, "service": "hooked"})).await;
    // The provider call (the `http` sink) and the webhooks reach their hosts directly.
    sink.wait_for_to(to, 1, DELIVERY_TIMEOUT).await;
    let deadline = Instant::now() + WEBHOOK_TIMEOUT;
    while hooks.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no webhook reached the receiver");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        proxy_hits.load(Ordering::SeqCst),
        0,
        "nothing went through the proxy"
    );
}
