//! Delivery end to end: receipts (synchronous and pushed), provider failover along a
//! route, and channel fallback, through the real binary and local HTTP sinks.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// Polls a verification until `pred` holds (10 s at most).
async fn wait_verification(
    otpd: &OtpdProcess,
    id: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = otpd.verification(id).await;
        if pred(&v.body) {
            return v.body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            v.body
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

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
        .json(&json!({"message_id": message_id, "status": "delivered"}))
        .reply()
        .await
        .assert_problem(404, "not_found", "unknown provider");
    otpd.anonymous(Method::POST, "/v1/receipts/sink")
        .json(&json!({"message_id": message_id, "status": "read"}))
        .reply()
        .await
        .assert_problem(400, "invalid_request", "unknown status");
    otpd.anonymous(Method::POST, "/v1/receipts/sink")
        .json(&json!({"message_id": "dlv_00000000000000000000000000000000", "status": "delivered"}))
        .reply()
        .await
        .assert_problem(404, "not_found", "unknown message");
    assert_eq!(
        otpd.verification(&id).await.body["deliveries"][0]["status"],
        "sent"
    );

    otpd.anonymous(Method::POST, "/v1/receipts/sink")
        .json(&json!({"message_id": message_id, "status": "delivered"}))
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
