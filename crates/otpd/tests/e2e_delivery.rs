//! Delivery end to end: receipts (synchronous and pushed), provider failover along a
//! route (on errors and on missing receipts), circuit breakers, and channel fallback,
//! through the real binary and local HTTP sinks. The failover tests print the measured
//! time from the first provider's attempt to the next provider's message.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn event_types(events: &Reply) -> Vec<String> {
    events.body["events"]
        .as_array()
        .expect("events array")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_reply_is_a_synchronous_receipt() {
    let (_dir, sink, otpd) = start_with_sink().await;
    sink.set_reply(json!({"status": "delivered"}));
    let sent = otpd.send_ok(&json!({"to": "+14155550161"})).await;
    let id = sent.id();
    wait_verification(&otpd, &id, "delivered", |v| {
        v["deliveries"][0]["status"] == "delivered"
    })
    .await;
    let events = otpd.get(&format!("/v1/events?verification={id}")).await;
    let types = event_types(&events);
    assert!(
        types.contains(&"verification.delivered".to_string()),
        "{types:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_pushed_later_mark_the_delivery() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let sent = otpd.send_ok(&json!({"to": "+14155550162"})).await;
    let id = sent.id();
    let messages = sink.wait_for(1, DELIVERY_TIMEOUT).await;
    let message_id = messages[0]["message_id"]
        .as_str()
        .expect("message_id")
        .to_string();
    assert_eq!(messages[0]["verification_id"], id.as_str());
    assert_eq!(messages[0]["locale"], "en");
    wait_verification(&otpd, &id, "sent", |v| {
        v["deliveries"][0]["status"] == "sent"
    })
    .await;

    // Bad receipts change nothing and get clean errors.
    otpd.anonymous(Method::POST, "/v1/receipts/nope")
        .bearer_auth(SINK_RECEIPT_TOKEN)
        .json(&json!({"message_id": message_id, "status": "delivered"}))
        .reply()
        .await
        .assert_problem(404, "not_found", "unknown provider");
    otpd.sink_receipt(&json!({"message_id": message_id, "status": "read"}))
        .reply()
        .await
        .assert_problem(400, "invalid_request", "unknown status");
    otpd.sink_receipt(
        &json!({"message_id": "dlv_00000000000000000000000000000000", "status": "delivered"}),
    )
    .reply()
    .await
    .assert_problem(404, "not_found", "unknown message");
    assert_eq!(
        otpd.verification(&id).await.body["deliveries"][0]["status"],
        "sent"
    );

    otpd.sink_receipt(&json!({"message_id": message_id, "status": "delivered"}))
        .reply()
        .await
        .assert_status(200, "receipt");
    let v = otpd.verification(&id).await;
    assert_eq!(
        v.body["deliveries"][0]["status"], "delivered",
        "{:?}",
        v.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_fails_over_to_the_next_on_the_route() {
    let dir = TestDir::new();
    let primary = Sink::start().await;
    let backup = Sink::start().await;
    primary.set_status(400); // permanent: no retries with this provider
    let mut config = Config::for_sink(&primary);
    config.extra_toml = format!(
        "[[providers]]\nname = \"backup\"\nkind = \"http\"\nurl = {:?}\nchannels = [\"sms\"]\n\n\
         [[routes]]\nchannel = \"sms\"\nproviders = [\"sink\", \"backup\"]\n",
        backup.url()
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    let sent = otpd.send_ok(&json!({"to": "+14155550163"})).await;
    let id = sent.id();
    let got = backup.wait_for(1, DELIVERY_TIMEOUT).await;
    assert_eq!(got[0]["verification_id"], id.as_str());
    assert_eq!(
        primary.attempts().len(),
        1,
        "a permanent failure is not retried on the same provider"
    );
    let v = wait_verification(&otpd, &id, "sent by backup", |v| {
        v["deliveries"][0]["status"] == "sent"
    })
    .await;
    assert_eq!(v["deliveries"][0]["provider"], "backup");
    let code = extract_code(got[0]["body"].as_str().unwrap()).unwrap();
    otpd.check(&json!({"id": id, "code": code}))
        .await
        .assert_status(200, "check");
    let types = event_types(&otpd.get(&format!("/v1/events?verification={id}")).await);
    assert_eq!(
        types,
        [
            "verification.created",
            "verification.delivery_failed",
            "verification.delivery_sent",
            "verification.approved"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fallback_channel_is_used_when_the_first_fails() {
    let dir = TestDir::new();
    let sms = Sink::start().await;
    let voice = Sink::start().await;
    sms.set_status(400);
    let mut config = Config::for_sink(&sms);
    config.channels = vec!["sms".into()];
    config.extra_toml = format!(
        "[[providers]]\nname = \"voicebox\"\nkind = \"http\"\nurl = {:?}\nchannels = [\"voice\"]\n",
        voice.url()
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    let sent = otpd
        .send_ok(&json!({"to": "+14155550164", "channels": ["sms", "voice"]}))
        .await;
    assert_eq!(sent.body["channel"], "sms");
    let id = sent.id();
    let got = voice.wait_for(1, DELIVERY_TIMEOUT).await;
    assert_eq!(got[0]["channel"], "voice");
    let v = wait_verification(&otpd, &id, "voice delivery", |v| {
        v["deliveries"].as_array().is_some_and(|d| d.len() == 2)
            && v["deliveries"][1]["status"] == "sent"
    })
    .await;
    assert_eq!(v["channel"], "voice");
    assert_eq!(v["deliveries"][0]["status"], "failed");
    assert_eq!(v["status"], "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_fails_when_no_provider_can_deliver() {
    let (_dir, sink, otpd) = start_with_sink().await;
    sink.set_status(422);
    let id = otpd.send_ok(&json!({"to": "+14155550165"})).await.id();
    let v = wait_verification(&otpd, &id, "failed", |v| v["status"] == "failed").await;
    assert_eq!(v["deliveries"][0]["status"], "failed");
    assert!(
        v["deliveries"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("422"),
        "{v}"
    );
    // A failed verification is not pending: a new send starts a new one.
    sink.set_status(200);
    let again = otpd.send_ok(&json!({"to": "+14155550165"})).await;
    assert_ne!(again.id(), id);
}

/// The second provider of a route, with its sink answering synchronous receipts.
fn backup_provider(name: &str, sink: &Sink, channels: &str) -> String {
    format!(
        "[[providers]]\nname = {name:?}\nkind = \"http\"\nurl = {:?}\nchannels = [{channels}]\n\n",
        sink.url()
    )
}

/// Milliseconds from the first provider's last attempt to the next provider's message.
fn failover_ms(first: &Sink, next: &Sink) -> u128 {
    let a = first
        .attempts()
        .last()
        .expect("first provider was tried")
        .at;
    let b = next.attempts().first().expect("next provider was tried").at;
    b.duration_since(a).as_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_fails_over_to_the_next_provider_with_the_same_code() {
    let dir = TestDir::new();
    let primary = Sink::start().await;
    let backup = Sink::start().await;
    primary.set_status(500);
    backup.set_reply(json!({"status": "delivered"}));
    let mut config = Config::for_sink(&primary);
    config.delivery.max_attempts = 2; // one retry on the same provider, then the next
    config.extra_toml = format!(
        "{}[[routes]]\nchannel = \"sms\"\nproviders = [\"sink\", \"backup\"]\n",
        backup_provider("backup", &backup, "\"sms\"")
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    let id = otpd.send_ok(&json!({"to": "+14155550171"})).await.id();
    let got = backup.wait_for(1, DELIVERY_TIMEOUT).await;
    assert_eq!(primary.attempts().len(), 2, "a 500 is retried once, then B");
    println!(
        "measured: provider A answered 500 → B got the message {} ms after A's last attempt",
        failover_ms(&primary, &backup)
    );
    let v = wait_verification(&otpd, &id, "delivered by backup", |v| {
        v["deliveries"][0]["status"] == "delivered"
    })
    .await;
    assert_eq!(v["deliveries"][0]["provider"], "backup");
    let code = extract_code(got[0]["body"].as_str().unwrap()).unwrap();
    otpd.check(&json!({"id": id, "code": code}))
        .await
        .assert_status(200, "check")
        .assert_success("approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_receipt_in_time_hands_the_same_code_to_the_next_provider() {
    let dir = TestDir::new();
    let primary = Sink::start().await; // accepts, never sends a receipt
    let backup = Sink::start().await;
    backup.set_reply(json!({"status": "delivered"}));
    let mut config = Config::for_sink(&primary);
    config.extra_toml = format!(
        "{}[[routes]]\nchannel = \"sms\"\nproviders = [\"sink\", \"backup\"]\nreceipt_timeout_seconds = 1\n",
        backup_provider("backup", &backup, "\"sms\"")
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    let started = Instant::now();
    let id = otpd.send_ok(&json!({"to": "+14155550172"})).await.id();
    let first = primary.wait_for(1, DELIVERY_TIMEOUT).await;
    let second = backup.wait_for(1, DELIVERY_TIMEOUT).await;
    let waited = failover_ms(&primary, &backup);
    println!(
        "measured: no receipt from A (timeout 1 s) → B got the same code {waited} ms after A \
         accepted it ({} ms after the send)",
        started.elapsed().as_millis()
    );
    assert!((1000..3000).contains(&waited), "failover after {waited} ms");
    let code_a = extract_code(first[0]["body"].as_str().unwrap()).unwrap();
    let code_b = extract_code(second[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(code_a, code_b, "the same code");
    assert_ne!(first[0]["message_id"], second[0]["message_id"]);
    let v = wait_verification(&otpd, &id, "delivered by backup", |v| {
        v["deliveries"].as_array().is_some_and(|d| d.len() == 2)
            && v["deliveries"][1]["status"] == "delivered"
    })
    .await;
    assert_eq!(v["deliveries"][0]["provider"], "sink");
    assert_eq!(v["deliveries"][0]["status"], "sent");
    assert_eq!(v["deliveries"][1]["provider"], "backup");
    let events = otpd.get(&format!("/v1/events?verification={id}")).await;
    let timeout = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "verification.delivery_failed")
        .cloned()
        .expect("a delivery_failed event for the timeout");
    assert_eq!(timeout["data"]["receipt_timeout"], true, "{timeout}");
    assert_eq!(timeout["data"]["next_provider"], "backup");
    // Only once: nothing is left that could send a third message. The first delivery's
    // receipt wait is over (the timeout above was recorded as it ended: it names that
    // delivery), the second is delivered (no receipt to wait for), and no job is queued.
    assert_eq!(timeout["data"]["delivery_id"], v["deliveries"][0]["id"]);
    otpd.wait_outbox_empty().await;
    let v = otpd.verification(&id).await.body;
    let deliveries = v["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "{v}");
    assert_eq!(deliveries[0]["status"], "sent", "{v}");
    assert_eq!(deliveries[1]["status"], "delivered", "{v}");
    let events = otpd.get(&format!("/v1/events?verification={id}")).await;
    let timeouts = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["receipt_timeout"] == true)
        .count();
    assert_eq!(timeouts, 1, "one receipt timeout");
    assert_eq!(primary.attempts().len() + backup.attempts().len(), 2);
    otpd.check(&json!({"id": id, "code": code_a}))
        .await
        .assert_status(200, "check")
        .assert_success("approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sms_receipt_in_time_falls_back_to_voice() {
    let dir = TestDir::new();
    let sms = Sink::start().await; // accepts, never receipts
    let voice = Sink::start().await;
    let mut config = Config::for_sink(&sms);
    config.channels = vec!["sms".into()];
    config.extra_toml = format!(
        "{}[[routes]]\nchannel = \"sms\"\nproviders = [\"sink\"]\nreceipt_timeout_seconds = 1\n",
        backup_provider("voicebox", &voice, "\"voice\"")
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    let id = otpd
        .send_ok(&json!({"to": "+14155550173", "channels": ["sms", "voice"]}))
        .await
        .id();
    let first = sms.wait_for(1, DELIVERY_TIMEOUT).await;
    let call = voice.wait_for(1, DELIVERY_TIMEOUT).await;
    println!(
        "measured: no SMS receipt (timeout 1 s) → voice call message {} ms after the SMS",
        failover_ms(&sms, &voice)
    );
    assert_eq!(call[0]["channel"], "voice");
    // The voice script reads the same code digit by digit, twice.
    let code = extract_code(first[0]["body"].as_str().unwrap()).unwrap();
    let spoken = code
        .chars()
        .map(String::from)
        .collect::<Vec<_>>()
        .join(", ");
    let script = call[0]["body"].as_str().unwrap();
    assert_eq!(script.matches(&spoken).count(), 2, "{script:?}");
    let v = wait_verification(&otpd, &id, "voice", |v| v["channel"] == "voice").await;
    assert_eq!(v["status"], "pending");
}

/// `/readyz`'s circuit state of a provider.
async fn circuit(otpd: &OtpdProcess, provider: &str) -> String {
    let r = otpd.anonymous(Method::GET, "/readyz").reply().await;
    r.body["circuits"][provider]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failures_open_the_circuit_until_a_half_open_probe() {
    let dir = TestDir::new();
    let primary = Sink::start().await;
    let backup = Sink::start().await;
    primary.set_status(500);
    backup.set_reply(json!({"status": "delivered"}));
    let mut config = Config::for_sink(&primary);
    config.delivery.max_attempts = 1; // each 500 moves that message to the backup
    // Keys before the first table header still belong to `[delivery]`.
    config.extra_toml = format!(
        "breaker_open_seconds = 2\n\n{}[[routes]]\nchannel = \"sms\"\nproviders = [\"sink\", \"backup\"]\n",
        backup_provider("backup", &backup, "\"sms\"")
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    assert_eq!(circuit(&otpd, "sink").await, "closed");
    for i in 0..5 {
        let to = format!("+1415555018{i}");
        otpd.send_ok(&json!({"to": to})).await;
        backup.wait_for_to(&to, 1, DELIVERY_TIMEOUT).await;
    }
    assert_eq!(primary.attempts().len(), 5);
    assert_eq!(circuit(&otpd, "sink").await, "open");
    assert_eq!(circuit(&otpd, "backup").await, "closed");
    let opened_at = Instant::now();

    // While open, A is skipped: B gets the message at once.
    otpd.send_ok(&json!({"to": "+14155550186"})).await;
    backup
        .wait_for_to("+14155550186", 1, DELIVERY_TIMEOUT)
        .await;
    assert_eq!(primary.attempts().len(), 5, "an open circuit is not called");

    // A recovers; after the open period one probe goes to A and closes the circuit.
    primary.set_status(200);
    primary.set_reply(json!({"status": "delivered"}));
    let deadline = Instant::now() + Duration::from_secs(10);
    while circuit(&otpd, "sink").await != "half_open" {
        assert!(Instant::now() < deadline, "circuit never half-open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(opened_at.elapsed() >= Duration::from_millis(1500));
    otpd.send_ok(&json!({"to": "+14155550187"})).await;
    primary
        .wait_for_to("+14155550187", 1, DELIVERY_TIMEOUT)
        .await;
    assert_eq!(primary.attempts().len(), 6);
    // The worker records the probe's success after the sink has answered it.
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while circuit(&otpd, "sink").await != "closed" {
        assert!(
            Instant::now() < deadline,
            "circuit never closed after the probe"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kinds: Vec<String> = ["opened", "half_open", "closed"]
        .iter()
        .map(|k| format!("provider.circuit_{k}"))
        .collect();
    for kind in &kinds {
        let events = otpd.get(&format!("/v1/events?type={kind}")).await;
        let list = events.body["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(list.len(), 1, "{kind}: {:?}", events.body);
        assert_eq!(list[0]["data"]["provider"], "sink");
    }
}

/// A provider health endpoint answering `GET` with a status the test switches.
async fn health_endpoint() -> (String, std::sync::Arc<std::sync::atomic::AtomicU16>) {
    use std::sync::atomic::{AtomicU16, Ordering};
    let status = std::sync::Arc::new(AtomicU16::new(500));
    let app = axum::Router::new()
        .route(
            "/health",
            axum::routing::get(
                |axum::extract::State(s): axum::extract::State<std::sync::Arc<AtomicU16>>| async move {
                    axum::http::StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap()
                },
            ),
        )
        .with_state(status.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, status)
}

/// Waits until `/readyz` shows `provider`'s circuit in `state`; returns how long it took.
async fn wait_circuit(otpd: &OtpdProcess, provider: &str, state: &str) -> Duration {
    let start = Instant::now();
    while circuit(otpd, provider).await != state {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{provider} never {state}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_health_check_opens_the_circuit_and_a_passing_one_lets_the_probe_through() {
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let primary = Sink::start().await;
    let backup = Sink::start().await;
    primary.set_reply(json!({"status": "delivered"}));
    backup.set_reply(json!({"status": "delivered"}));
    let (health_url, health) = health_endpoint().await;
    let mut config = Config::for_sink(&sink);
    config.channels = vec!["email".into()];
    // Two failed checks open the circuit; only a passing check (not the 60 s open
    // period) can half-open it within this test.
    config.extra_toml = format!(
        "breaker_failures = 2\nbreaker_open_seconds = 60\n\n\
         [[providers]]\nname = \"a\"\nkind = \"http\"\nurl = {:?}\nchannels = [\"sms\"]\n\
         health_check_url = {health_url:?}\nhealth_check_interval_seconds = 1\n\n{}\
         [[routes]]\nchannel = \"sms\"\nproviders = [\"a\", \"backup\"]\n",
        primary.url(),
        backup_provider("backup", &backup, "\"sms\"")
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    let opened = wait_circuit(&otpd, "a", "open").await;
    println!("measured: circuit opened by failing health checks {opened:?} after start");
    otpd.send_ok(&json!({"to": "+14155550190"})).await;
    backup
        .wait_for_to("+14155550190", 1, DELIVERY_TIMEOUT)
        .await;
    assert!(
        primary.attempts().is_empty(),
        "an open circuit is not called"
    );

    use std::sync::atomic::Ordering;
    health.store(200, Ordering::SeqCst);
    let half = wait_circuit(&otpd, "a", "half_open").await;
    println!("measured: half-open {half:?} after the health endpoint recovered (interval 1 s)");
    assert!(half < Duration::from_secs(3));
    otpd.send_ok(&json!({"to": "+14155550191"})).await;
    primary
        .wait_for_to("+14155550191", 1, DELIVERY_TIMEOUT)
        .await;
    wait_circuit(&otpd, "a", "closed").await;
    assert!(backup.messages_to("+14155550191").is_empty());
    for kind in ["opened", "half_open", "closed"] {
        let events = otpd
            .get(&format!("/v1/events?type=provider.circuit_{kind}"))
            .await;
        let list = events.body["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(list.len(), 1, "{kind}: {:?}", events.body);
        assert_eq!(list[0]["data"]["provider"], "a");
    }
}
