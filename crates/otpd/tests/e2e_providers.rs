//! Paid-API adapters through the real binary: the `twilio` provider sends to a local
//! stand-in of Twilio's API, and Twilio-format status callbacks (form body,
//! `X-Twilio-Signature`) reach `POST /v1/receipts/{provider}`: signed ones move the
//! delivery, forged ones are refused and change nothing.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use base64::Engine;
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

const SID: &str = "AC00000000000000000000000000000001";
const TOKEN: &str = "e2e-twilio-auth-token";
const CALLBACK: &str = "https://otp.example.com/v1/receipts/tw";

type Seen = Arc<Mutex<Vec<(String, String)>>>;

async fn fake_twilio_reply(
    State(seen): State<Seen>,
    uri: Uri,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    seen.lock().unwrap().push((
        uri.path().to_string(),
        String::from_utf8_lossy(&body).into_owned(),
    ));
    (
        StatusCode::CREATED,
        axum::Json(json!({"sid": "SMe2e00000000000000000000000000001", "status": "queued"})),
    )
}

/// Twilio's request signature (HMAC-SHA1 over the URL and the sorted parameters).
fn sign(params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(TOKEN.as_bytes()).unwrap();
    mac.update(CALLBACK.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn form(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_sends_and_its_signed_status_callbacks_mark_the_delivery() {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .fallback(fake_twilio_reply)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let twilio_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.channels = vec!["email".into()];
    config.extra_toml = format!(
        "[[providers]]\nname = \"tw\"\nkind = \"twilio\"\nurl = {twilio_url:?}\n\
         account_sid = {SID:?}\nauth_token = {TOKEN:?}\nfrom = \"+15005550006\"\n\
         status_callback_url = {CALLBACK:?}\nchannels = [\"sms\"]\n"
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    let id = otpd.send_ok(&json!({"to": "+14155550191"})).await.id();
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let v = loop {
        let v = otpd.verification(&id).await.body;
        if v["deliveries"][0]["status"] == "sent" {
            break v;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(v["deliveries"][0]["provider"], "tw");
    let (path, body) = seen.lock().unwrap()[0].clone();
    assert_eq!(path, format!("/2010-04-01/Accounts/{SID}/Messages.json"));
    assert!(
        body.contains("StatusCallback=https%3A%2F%2Fotp.example.com"),
        "{body}"
    );
    assert!(
        !otpd.output_contains(TOKEN),
        "the auth token never reaches the logs"
    );

    let msg = "SMe2e00000000000000000000000000001";
    let delivered = [
        ("AccountSid", SID),
        ("MessageSid", msg),
        ("MessageStatus", "delivered"),
    ];
    // Forged: wrong signature, then none. Nothing changes.
    for signature in [Some("bm90IHRoZSBzaWduYXR1cmU="), None] {
        let mut req = otpd
            .anonymous(Method::POST, "/v1/receipts/tw")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&delivered));
        if let Some(s) = signature {
            req = req.header("x-twilio-signature", s);
        }
        req.reply()
            .await
            .assert_problem(403, "forbidden", "forged receipt");
    }
    assert_eq!(
        otpd.verification(&id).await.body["deliveries"][0]["status"],
        "sent"
    );
    // An intermediate status is acknowledged and changes nothing.
    let sent = [("MessageSid", msg), ("MessageStatus", "sent")];
    otpd.anonymous(Method::POST, "/v1/receipts/tw")
        .header("x-twilio-signature", sign(&sent))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&sent))
        .reply()
        .await
        .assert_status(200, "intermediate status");
    assert_eq!(
        otpd.verification(&id).await.body["deliveries"][0]["status"],
        "sent"
    );
    // Signed: delivered.
    otpd.anonymous(Method::POST, "/v1/receipts/tw")
        .header("x-twilio-signature", sign(&delivered))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&delivered))
        .reply()
        .await
        .assert_status(200, "signed receipt");
    assert_eq!(
        otpd.verification(&id).await.body["deliveries"][0]["status"],
        "delivered"
    );
}
