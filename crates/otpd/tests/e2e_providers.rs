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

/// A service's messaging configuration (set on `/v2`, as Twilio Verify's per-country
/// sender) reaches the Twilio adapter: an SMS to that country goes out with the
/// configured `MessagingServiceSid` instead of `From`, one elsewhere with `From`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_messaging_configuration_picks_the_twilio_messaging_service_per_country() {
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
         channels = [\"sms\"]\n"
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    let mg = "MG9752274e9e519418a7406176694466fa";
    otpd.request(Method::POST, "/v2/Services/default/MessagingConfigurations")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("Country", "GB"), ("MessagingServiceSid", mg)]))
        .reply()
        .await
        .assert_status(201, "messaging configuration for GB");
    for to in ["+447400123456", "+14155550192"] {
        let id = otpd.send_ok(&json!({"to": to})).await.id();
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        while otpd.verification(&id).await.body["deliveries"][0]["status"] != "sent" {
            assert!(Instant::now() < deadline, "{to} was not sent");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    let bodies: Vec<Vec<(String, String)>> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, body)| {
            form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .collect()
        })
        .collect();
    let field = |body: &[(String, String)], name: &str| {
        body.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    };
    assert_eq!(field(&bodies[0], "To").as_deref(), Some("+447400123456"));
    assert_eq!(
        field(&bodies[0], "MessagingServiceSid").as_deref(),
        Some(mg)
    );
    assert_eq!(field(&bodies[0], "From"), None);
    assert_eq!(field(&bodies[1], "To").as_deref(), Some("+14155550192"));
    assert_eq!(field(&bodies[1], "From").as_deref(), Some("+15005550006"));
    assert_eq!(field(&bodies[1], "MessagingServiceSid"), None);
}

/// One request a fake provider API received: path, `Authorization`, body.
#[derive(Clone, Debug)]
struct Recorded {
    path: String,
    authorization: String,
    body: String,
}

type Log = Arc<Mutex<Vec<Recorded>>>;

/// A local stand-in of a provider API: records each request and answers `reply`.
async fn recording_api(status: StatusCode, reply: Value) -> (String, Log) {
    let log: Log = Arc::default();
    let seen = log.clone();
    let app = axum::Router::new().fallback(
        move |uri: Uri, headers: axum::http::HeaderMap, body: Bytes| {
            let seen = seen.clone();
            let reply = reply.clone();
            async move {
                seen.lock().unwrap().push(Recorded {
                    path: uri.path().to_string(),
                    authorization: headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                (status, axum::Json(reply))
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, log)
}

/// Waits for `count` recorded requests.
async fn recorded(log: &Log, count: usize) -> Vec<Recorded> {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let got = log.lock().unwrap().clone();
        if got.len() >= count {
            return got;
        }
        assert!(Instant::now() < deadline, "{got:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn form_pairs(body: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn field<'a>(form: &'a [(String, String)], key: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {form:?}"))
}

/// The text of the `<Say>` of otpd's TwiML, unescaped.
fn say_text(twiml: &str) -> String {
    let start = twiml.find("\">").expect("a Say element") + 2;
    let end = twiml.find("</Say>").expect("</Say>");
    twiml[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

// Issue 21, items 1–3, against Twilio's official Python SDK: for the same message, the
// request otpd sends must be the one `twilio.rest.Client` builds (`messages.create` with
// `content_sid`/`content_variables` — Twilio's "Send templates created with the Content
// Template Builder" — and `messaging_service_sid` under an API key; `calls.create` with
// `VoiceResponse.say(voice, language)` per Twilio's <Say> voice list, `timeout` and
// `time_limit`). The comparison runs in tests/sdk/python/twilio_provider_requests.py.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_requests_match_the_official_sdks_for_templates_services_keys_and_calls() {
    let required = std::env::var("OTPD_REQUIRE_SDK").is_ok_and(|v| v == "1");
    let Some(py) = std::env::var("OTPD_PY").ok().filter(|py| {
        std::process::Command::new(py)
            .args(["-c", "import twilio"])
            .status()
            .is_ok_and(|s| s.success())
    }) else {
        assert!(!required, "OTPD_REQUIRE_SDK=1 but OTPD_PY has no twilio");
        println!("skipped: OTPD_PY with the twilio package is not set");
        return;
    };
    let (url, log) = recording_api(
        StatusCode::CREATED,
        json!({"sid": "SMe2e00000000000000000000000000002", "status": "queued"}),
    )
    .await;
    const KEY: &str = "SK2a0747eba6abf96b7e3c3ff0b4530f6e";
    const KEY_SECRET: &str = "e2e-api-key-secret";
    const SERVICE: &str = "MG9752274e9e519418a7406176694466fa";
    const CONTENT: &str = "HXb5b62575e6e4ff6129ad7c8efe1f983e";
    const CONTENT_FR: &str = "HX0000000000000000000000000000f12a";
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.channels = vec!["email".into()];
    config.extra_toml = format!(
        "[[providers]]\nname = \"tw\"\nkind = \"twilio\"\nurl = {url:?}\n\
         account_sid = {SID:?}\nauth_token = {TOKEN:?}\nfrom = \"+15005550006\"\n\
         content_sid = {CONTENT:?}\ncontent_sids = {{ fr = {CONTENT_FR:?} }}\n\
         status_callback_url = {CALLBACK:?}\nchannels = [\"whatsapp\", \"voice\"]\n\n\
         [[providers]]\nname = \"tws\"\nkind = \"twilio\"\nurl = {url:?}\n\
         account_sid = {SID:?}\napi_key = {KEY:?}\napi_secret = {KEY_SECRET:?}\n\
         messaging_service_sid = {SERVICE:?}\nchannels = [\"sms\"]\n\n\
         [[routes]]\nchannel = \"voice\"\nproviders = [\"tw\"]\nreceipt_timeout_seconds = 90\n"
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    let sms = otpd.send_ok(&json!({"to": "+14155550192"})).await.id();
    recorded(&log, 1).await;
    let wa = otpd
        .send_ok(&json!({"to": "+14155550193", "channel": "whatsapp", "locale": "fr-CA"}))
        .await
        .id();
    recorded(&log, 2).await;
    otpd.send_ok(&json!({"to": "+14155550194", "channel": "voice", "locale": "fr-CA"}))
        .await;
    let seen = recorded(&log, 3).await;
    assert!(
        !otpd.output_contains(KEY_SECRET),
        "the API key secret is never logged"
    );

    let sms_form = form_pairs(&seen[0].body);
    let wa_form = form_pairs(&seen[1].body);
    let call_form = form_pairs(&seen[2].body);
    // The WhatsApp code is in ContentVariables {"1": code} only: it must be the real one.
    let vars: Value = serde_json::from_str(field(&wa_form, "ContentVariables")).unwrap();
    let code = vars["1"].as_str().expect("variable 1").to_string();
    otpd.check(&json!({"id": wa, "code": code}))
        .await
        .assert_status(200, "the template's code checks");
    let sms_code = extract_code(field(&sms_form, "Body")).expect("the SMS code");
    otpd.check(&json!({"id": sms, "code": sms_code}))
        .await
        .assert_status(200, "the SMS code checks");

    let spec = json!({"account_sid": SID, "cases": [
        {"name": "sms through a Messaging Service with an API key",
         "path": seen[0].path, "authorization": seen[0].authorization, "form": sms_form,
         "sdk": {"username": KEY, "password": KEY_SECRET, "kind": "message", "kwargs": {
            "to": "+14155550192", "messaging_service_sid": SERVICE,
            "body": field(&sms_form, "Body")}}},
        {"name": "whatsapp Content template for fr (fr-CA)",
         "path": seen[1].path, "authorization": seen[1].authorization, "form": wa_form,
         "sdk": {"username": SID, "password": TOKEN, "kind": "message", "kwargs": {
            "to": "whatsapp:+14155550193", "from_": "whatsapp:+15005550006",
            "content_sid": CONTENT_FR, "content_variables": format!("{{\"1\":\"{code}\"}}"),
            "status_callback": CALLBACK}}},
        {"name": "call with Polly.Chantal/fr-CA, ring 50 s, talk 30 s (receipt wait 90 s)",
         "path": seen[2].path, "authorization": seen[2].authorization, "form": call_form,
         "sdk": {"username": SID, "password": TOKEN, "kind": "call",
            "say": {"text": say_text(field(&call_form, "Twiml")), "voice": "Polly.Chantal", "language": "fr-CA"},
            "kwargs": {"to": "+14155550194", "from_": "+15005550006", "timeout": 50,
                       "time_limit": 30, "status_callback": CALLBACK}}},
    ]});
    let mut child = tokio::process::Command::new(&py)
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/sdk/python/twilio_provider_requests.py"),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the SDK comparison");
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(spec.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.matches("\nok ").count() + usize::from(text.starts_with("ok ")),
        3,
        "{text}"
    );
}

fn hub_signature(secret: &str, body: &str) -> String {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

// Issue 21, item 6: Meta batches webhooks (several statuses per change, several changes per
// entry) and posts other events to the same URL (incoming messages, `value.errors`); the
// payloads follow Meta's "Webhooks payload examples"
// (https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/payload-examples).
// Every status is applied; webhooks without statuses, and statuses of messages otpd did not
// send, are answered 200 (anything else Meta retries for days).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_webhooks_apply_every_batched_status_and_acknowledge_the_rest() {
    let (url, log) = recording_api(StatusCode::OK, json!({"messaging_product": "whatsapp"})).await;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.channels = vec!["email".into()];
    config.extra_toml = format!(
        "[[providers]]\nname = \"meta\"\nkind = \"whatsapp_cloud\"\nurl = {url:?}\n\
         phone_number_id = \"106540352242922\"\naccess_token = \"e2e-meta-token\"\n\
         template = \"otp_auth\"\ntemplate_languages = [\"en_US\", \"fr\"]\n\
         app_secret = \"e2e-app-secret\"\nchannels = [\"whatsapp\"]\n"
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    // Two messages; the fake API names them wamid.1 and wamid.2.
    let mut ids = Vec::new();
    for (i, (to, locale)) in [("+14155550195", "fr-CA"), ("+14155550196", "en")]
        .iter()
        .enumerate()
    {
        log.lock().unwrap().clear();
        // The reply names each message.
        let id = otpd
            .send_ok(&json!({"to": to, "channel": "whatsapp", "locale": locale}))
            .await
            .id();
        let sent = recorded(&log, 1).await;
        let body: Value = serde_json::from_str(&sent[0].body).unwrap();
        if i == 0 {
            assert_eq!(body["template"]["language"]["code"], "fr", "fr-CA → fr");
        }
        ids.push(id);
    }
    // The fake answered every send with no message id: find the deliveries' ids instead
    // through the verification (otpd's own ids are accepted as receipt ids too).
    let mut message_ids = Vec::new();
    for id in &ids {
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        loop {
            let v = otpd.verification(id).await.body;
            if v["deliveries"][0]["status"] == "sent" {
                message_ids.push(v["deliveries"][0]["id"].as_str().unwrap().to_string());
                break;
            }
            assert!(Instant::now() < deadline, "{v}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    let status = |id: &str, st: &str| json!({"id": id, "status": st, "timestamp": "1750263773", "recipient_id": "14155550195"});
    let change = |value: Value| {
        let mut v = json!({"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"}});
        for (k, x) in value.as_object().unwrap() {
            v[k] = x.clone();
        }
        json!({"field": "messages", "value": v})
    };
    let post = |body: Value| {
        let body = body.to_string();
        otpd.anonymous(Method::POST, "/v1/receipts/meta")
            .header("content-type", "application/json")
            .header(
                "x-hub-signature-256",
                hub_signature("e2e-app-secret", &body),
            )
            .body(body)
            .reply()
    };
    let mut failed = status(&message_ids[1], "failed");
    failed["errors"] = json!([{"code": 131026, "title": "Message undeliverable"}]);
    let batch = json!({"object": "whatsapp_business_account", "entry": [
        {"id": "102290129340398", "changes": [change(json!({"statuses": [
            status(&message_ids[0], "sent"), status("wamid.someone-else", "delivered"),
            status(&message_ids[0], "delivered")]}))]},
        {"id": "102290129340398", "changes": [change(json!({"statuses": [failed]}))]},
    ]});
    post(batch).await.assert_status(200, "a batch of statuses");
    let v0 = otpd.verification(&ids[0]).await.body;
    assert_eq!(v0["deliveries"][0]["status"], "delivered", "{v0}");
    let v1 = otpd.verification(&ids[1]).await.body;
    assert_eq!(v1["deliveries"][0]["status"], "failed", "{v1}");
    // An incoming message and a value.errors webhook: 200, nothing changes.
    let incoming = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change(json!({
        "contacts": [{"profile": {"name": "Kerry Fisher"}, "wa_id": "14155550195"}],
        "messages": [{"from": "14155550195", "id": "wamid.in", "timestamp": "1750263773",
                      "text": {"body": "hi"}, "type": "text"}]}))]}]});
    post(incoming)
        .await
        .assert_status(200, "an incoming message");
    let errors = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change(json!({
        "errors": [{"code": 131051, "title": "Message type unknown", "message": "Message type unknown"}]}))]}]});
    post(errors).await.assert_status(200, "value.errors");
    // Still authenticated.
    otpd.anonymous(Method::POST, "/v1/receipts/meta")
        .header("content-type", "application/json")
        .header("x-hub-signature-256", "sha256=00")
        .body("{}")
        .reply()
        .await
        .assert_problem(403, "forbidden", "a forged webhook");
}
