//! The providers of issue 22 through the real binary, each against a local stand-in of its
//! API that records the exact request: the request is checked against the provider's
//! official SDK (or its documentation), its receipts are signed as the provider signs them
//! (forgeries refused, nothing changed), a failed receipt fails over to the next provider
//! with the same code, and the provider's price counts against a service's budget.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method as HttpMethod, StatusCode, Uri};
use base64::Engine;
use common::*;
use serde_json::{Value, json};

/// One request the stand-in received.
#[derive(Clone, Debug)]
struct Req {
    method: String,
    path: String,
    query: String,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Req {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A local stand-in of a provider API: records every request, answers the reply set for
/// the next one (or the last one set).
#[derive(Clone)]
struct StandIn {
    url: String,
    log: Arc<Mutex<Vec<Req>>>,
    reply: Arc<Mutex<(u16, Value)>>,
}

impl StandIn {
    async fn start(status: u16, reply: Value) -> StandIn {
        let log: Arc<Mutex<Vec<Req>>> = Arc::default();
        let answer = Arc::new(Mutex::new((status, reply)));
        let (seen, current) = (log.clone(), answer.clone());
        let app = axum::Router::new().fallback(
            move |method: HttpMethod, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (seen, current) = (seen.clone(), current.clone());
                async move {
                    seen.lock().unwrap().push(Req {
                        method: method.to_string(),
                        path: uri.path().to_string(),
                        query: uri.query().unwrap_or_default().to_string(),
                        headers: headers
                            .iter()
                            .map(|(k, v)| {
                                (k.to_string(), v.to_str().unwrap_or_default().to_string())
                            })
                            .collect(),
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    let (status, body) = current.lock().unwrap().clone();
                    (StatusCode::from_u16(status).unwrap(), axum::Json(body))
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        StandIn {
            url,
            log,
            reply: answer,
        }
    }

    fn reply(&self, status: u16, body: Value) {
        *self.reply.lock().unwrap() = (status, body);
    }

    /// Waits for the `n`th request (1-based) and returns it.
    async fn nth(&self, n: usize) -> Req {
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        loop {
            if let Some(r) = self.log.lock().unwrap().get(n - 1) {
                return r.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no request {n} reached the stand-in"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Waits until the first delivery of verification `id` has `status`.
async fn wait_status(otpd: &OtpdProcess, id: &str, index: usize, status: &str) -> Value {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let v = otpd.verification(id).await.body;
        if v["deliveries"][index]["status"] == status {
            return v;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits for the sink to accept a message for `to` and returns its code.
async fn sink_code(sink: &Sink, to: &str) -> String {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    loop {
        if let Some(r) = sink.accepted().into_iter().find(|r| r.to() == Some(to)) {
            return r.code().unwrap();
        }
        assert!(Instant::now() < deadline, "the sink got nothing for {to}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs a checker script of tests/sdk/python with `spec` on stdin; fails on a non-zero exit
/// and returns its output.
async fn run_checker(py: &str, script: &str, spec: &Value) -> String {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(py)
        .arg(format!(
            "{}/tests/sdk/python/{script}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the SDK checker");
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
    text
}

/// The configuration shared by the scenarios: the provider under test (`provider_toml`)
/// first for SMS and the sink second, a price of 0.05 per SMS through the provider, and
/// the sink serving SMS and email only.
fn config_with(sink: &Sink, name: &str, provider_toml: &str) -> Config {
    let mut config = Config::for_sink(sink);
    config.channels = vec!["sms".into(), "email".into()];
    config.extra_toml = format!(
        "{provider_toml}\n\
         [[routes]]\nchannel = \"sms\"\nproviders = [{name:?}, \"sink\"]\n\n\
         [[prices]]\nprovider = {name:?}\nchannel = \"sms\"\nprice = 0.05\n"
    );
    config
}

/// The budget part of every scenario: a service whose day allows two SMS through the
/// provider (0.05 each).
async fn thrifty(otpd: &OtpdProcess) {
    otpd.create_service(&json!({
        "name": "thrifty",
        "guards": {"budget": {"daily_limit": 0.1, "monthly_limit": 2}}
    }))
    .await;
}

// ---------------------------------------------------------------------------------------
// AWS End User Messaging SMS and Voice
// ---------------------------------------------------------------------------------------

const AWS_KEY_ID: &str = "AKIAE2EEXAMPLE000001";
const AWS_SECRET: &str = "e2e/aws/secret/access/key/EXAMPLEKEY01";
const AWS_TOPIC: &str = "arn:aws:sns:us-east-1:111122223333:otpd-sms-events";
const SNS_KEY: &str = include_str!("../../otpd-delivery/testdata/sns-test-key.pem");
const SNS_CERT: &str = include_str!("../../otpd-delivery/testdata/sns-test-cert.pem");

/// A local SNS host serving the test signing certificate (and answering subscribe URLs).
async fn sns_host() -> String {
    let app = axum::Router::new().fallback(|uri: Uri| async move {
        if uri.path().ends_with(".pem") {
            SNS_CERT.to_string()
        } else {
            "<ConfirmSubscriptionResponse/>".to_string()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// An SNS notification of `event`, signed as SNS signs (SignatureVersion 2: RSA PKCS#1 v1.5
/// with SHA-256 over "Message\n…\nMessageId\n…\nTimestamp\n…\nTopicArn\n…\nType\n…\n",
/// per "Verifying the signatures of Amazon SNS messages").
fn sns_notification(host: &str, topic: &str, event: &Value) -> String {
    let message = event.to_string();
    let id = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324";
    let timestamp = "2026-12-07T04:20:00.655Z";
    let text = format!(
        "Message\n{message}\nMessageId\n{id}\nTimestamp\n{timestamp}\nTopicArn\n{topic}\nType\nNotification\n"
    );
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(SNS_KEY.as_bytes()).unwrap();
    let url_safe =
        jsonwebtoken::crypto::sign(text.as_bytes(), &key, jsonwebtoken::Algorithm::RS256).unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(url_safe)
        .unwrap();
    json!({
        "Type": "Notification", "MessageId": id, "TopicArn": topic, "Message": message,
        "Timestamp": timestamp, "SignatureVersion": "2",
        "Signature": base64::engine::general_purpose::STANDARD.encode(raw),
        "SigningCertURL": format!("{host}/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"),
        "UnsubscribeURL": format!("{host}/?Action=Unsubscribe&SubscriptionArn={topic}:1"),
    })
    .to_string()
}

fn aws_event(kind: &str, message_id: &str) -> Value {
    // The shape of "Messaging Events" in the AWS End User Messaging user guide.
    json!({"eventType": kind, "eventVersion": "1.0", "eventTimestamp": 1686975103470_u64,
           "isFinal": true, "originationPhoneNumber": "+12065550152",
           "destinationPhoneNumber": "+14255550156", "messageId": message_id,
           "messageStatus": "X", "messageStatusDescription": "e2e"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sends_signed_requests_and_believes_only_signed_sns_events_of_its_topic() {
    let Some(py) = python_with(&["botocore"]) else {
        return;
    };
    let api = StandIn::start(200, json!({"MessageId": "aws-msg-1"})).await;
    let sns = sns_host().await;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let provider = format!(
        "[[providers]]\nname = \"aws\"\nkind = \"aws_sms_voice\"\nurl = {:?}\n\
         region = \"us-east-1\"\naccess_key_id = {AWS_KEY_ID:?}\nsecret_access_key = {AWS_SECRET:?}\n\
         from = \"+12065550152\"\nconfiguration_set = \"otpd-events\"\n\
         sns_topic_arn = {AWS_TOPIC:?}\nsns_url_prefix = \"{sns}/\"\nchannels = [\"sms\", \"voice\"]\n",
        api.url
    );
    let config = config_with(&sink, "aws", &provider);
    let otpd = OtpdProcess::start(&dir, &config).await;
    thrifty(&otpd).await;
    let send = |to: &str| json!({"to": to, "service": "thrifty"});

    // 1. Delivered: the request is botocore's, the signed event marks it.
    let first = otpd.send_ok(&send("+14255550101")).await.id();
    let sms = api.nth(1).await;
    wait_status(&otpd, &first, 0, "sent").await;
    let post = |body: String| {
        otpd.anonymous(Method::POST, "/v1/receipts/aws")
            .header("content-type", "text/plain; charset=UTF-8")
            .header("x-amz-sns-message-type", "Notification")
            .body(body)
            .reply()
    };
    let delivered = sns_notification(&sns, AWS_TOPIC, &aws_event("TEXT_DELIVERED", "aws-msg-1"));
    let mut tampered: Value = serde_json::from_str(&delivered).unwrap();
    tampered["Message"] = aws_event("TEXT_DELIVERED", "aws-msg-2").to_string().into();
    for (what, forged) in [
        ("tampered", tampered.to_string()),
        (
            "another account's topic, validly signed",
            sns_notification(
                &sns,
                "arn:aws:sns:us-east-1:999999999999:elsewhere",
                &aws_event("TEXT_DELIVERED", "aws-msg-1"),
            ),
        ),
    ] {
        post(forged).await.assert_problem(403, "forbidden", what);
    }
    assert_eq!(
        otpd.verification(&first).await.body["deliveries"][0]["status"],
        "sent"
    );
    post(delivered)
        .await
        .assert_status(200, "a signed delivery event");
    wait_status(&otpd, &first, 0, "delivered").await;
    let code = extract_code(sms.json()["MessageBody"].as_str().unwrap()).unwrap();
    otpd.check(&json!({"id": first, "code": code}))
        .await
        .assert_status(200, "the code sent through AWS checks");

    // 2. Blocked by the carrier: the sink gets the same code.
    api.reply(200, json!({"MessageId": "aws-msg-2"}));
    let second = otpd.send_ok(&send("+14255550102")).await.id();
    let sms2 = api.nth(2).await;
    wait_status(&otpd, &second, 0, "sent").await;
    post(sns_notification(
        &sns,
        AWS_TOPIC,
        &aws_event("TEXT_BLOCKED", "aws-msg-2"),
    ))
    .await
    .assert_status(200, "a signed failure event");
    wait_status(&otpd, &second, 0, "failed").await;
    assert_eq!(
        sink_code(&sink, "+14255550102").await,
        extract_code(sms2.json()["MessageBody"].as_str().unwrap()).unwrap(),
        "the next provider sends the same code"
    );

    // 3. Two SMS through AWS cost the day's 0.10.
    otpd.send(&send("+14255550103")).await.assert_problem(
        403,
        "budget_exceeded",
        "a third SMS through AWS",
    );

    // 4. A call.
    api.reply(200, json!({"MessageId": "aws-call-1"}));
    otpd.send_ok(&json!({"to": "+14255550104", "channel": "voice", "locale": "fr-CA"}))
        .await;
    let call = api.nth(3).await;
    assert_eq!(call.json()["VoiceId"], "CHANTAL");
    assert!(
        !otpd.output_contains(AWS_SECRET),
        "the secret key is never logged"
    );

    let case = |name: &str, op: &str, r: &Req| {
        json!({"name": name, "operation": op, "method": r.method,
               "url": format!("{}{}", api.url, r.path), "headers": r.headers, "body": r.body})
    };
    let spec = json!({"service": "pinpoint-sms-voice-v2", "region": "us-east-1", "access_key": AWS_KEY_ID, "secret_key": AWS_SECRET,
        "cases": [case("SendTextMessage", "SendTextMessage", &sms),
                  case("SendTextMessage (second)", "SendTextMessage", &sms2),
                  case("SendVoiceMessage", "SendVoiceMessage", &call)]});
    let out = run_checker(&py, "aws_provider_requests.py", &spec).await;
    assert_eq!(out.matches("ok ").count(), 3, "{out}");
    assert!(sms.query.is_empty());
}

// ---------------------------------------------------------------------------------------
// Plivo
// ---------------------------------------------------------------------------------------

const PLIVO_ID: &str = "MAE2EXXXXXXXXXXXXXXX";
const PLIVO_TOKEN: &str = "e2e-plivo-auth-token";
const PLIVO_CALLBACK: &str = "https://otp.example.com/v1/receipts/plivo?src=otpd";

/// `X-Plivo-Signature-V3` as Plivo computes it for a form POST (its "Validating requests"
/// V3 scheme): base64 HMAC-SHA256 over the URL without query, `?`, the sorted query
/// (`k=v&…`), `.`, the sorted form parameters as `kv…`, `.`, the nonce.
fn plivo_sign(params: &[(&str, &str)], nonce: &str) -> String {
    use hmac::{Hmac, Mac};
    let (base, query) = PLIVO_CALLBACK.split_once('?').unwrap();
    let mut sorted = params.to_vec();
    sorted.sort();
    let body: String = sorted.iter().map(|(k, v)| format!("{k}{v}")).collect();
    let text = format!("{base}?{query}.{body}.{nonce}");
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(PLIVO_TOKEN.as_bytes()).unwrap();
    mac.update(text.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plivo_sends_the_sdks_request_and_believes_only_v3_signed_callbacks() {
    let Some(py) = python_with(&["plivo"]) else {
        return;
    };
    let api = StandIn::start(
        202,
        json!({"api_id": "a1", "message": "message(s) queued", "message_uuid": ["pl-msg-1"]}),
    )
    .await;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let provider = format!(
        "[[providers]]\nname = \"plivo\"\nkind = \"plivo\"\nurl = {:?}\nauth_id = {PLIVO_ID:?}\n\
         auth_token = {PLIVO_TOKEN:?}\nfrom = \"+14155550000\"\n\
         status_callback_url = {PLIVO_CALLBACK:?}\nchannels = [\"sms\"]\n",
        api.url
    );
    let otpd = OtpdProcess::start(&dir, &config_with(&sink, "plivo", &provider)).await;
    thrifty(&otpd).await;
    let send = |to: &str| json!({"to": to, "service": "thrifty"});
    let post = |params: &[(&str, &str)], signature: Option<String>| {
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let mut req = otpd
            .anonymous(Method::POST, "/v1/receipts/plivo?src=otpd")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-plivo-signature-v3-nonce", "05429567804466091622")
            .body(form);
        if let Some(s) = signature {
            req = req.header("x-plivo-signature-v3", s);
        }
        req.reply()
    };
    let nonce = "05429567804466091622";

    // 1. Delivered.
    let first = otpd.send_ok(&send("+14155550111")).await.id();
    let sms = api.nth(1).await;
    wait_status(&otpd, &first, 0, "sent").await;
    let delivered = [
        ("MessageUUID", "pl-msg-1"),
        ("Status", "delivered"),
        ("To", "14155550111"),
        ("From", "14155550000"),
        ("ErrorCode", "000"),
        ("Units", "1"),
    ];
    let good = plivo_sign(&delivered, nonce);
    let mut tampered = delivered;
    tampered[0] = ("MessageUUID", "pl-msg-2");
    post(&tampered, Some(good.clone())).await.assert_problem(
        403,
        "forbidden",
        "a tampered callback",
    );
    post(&delivered, None)
        .await
        .assert_problem(403, "forbidden", "an unsigned callback");
    assert_eq!(
        otpd.verification(&first).await.body["deliveries"][0]["status"],
        "sent"
    );
    post(&delivered, Some(good.clone()))
        .await
        .assert_status(200, "a signed callback");
    wait_status(&otpd, &first, 0, "delivered").await;
    let code = extract_code(sms.json()["text"].as_str().unwrap()).unwrap();
    otpd.check(&json!({"id": first, "code": code}))
        .await
        .assert_status(200, "the code sent through Plivo checks");

    // 2. Undelivered: the sink gets the same code.
    api.reply(
        202,
        json!({"api_id": "a2", "message": "message(s) queued", "message_uuid": ["pl-msg-2"]}),
    );
    let second = otpd.send_ok(&send("+14155550112")).await.id();
    let sms2 = api.nth(2).await;
    wait_status(&otpd, &second, 0, "sent").await;
    let undelivered = [
        ("MessageUUID", "pl-msg-2"),
        ("Status", "undelivered"),
        ("ErrorCode", "30"),
    ];
    post(&undelivered, Some(plivo_sign(&undelivered, nonce)))
        .await
        .assert_status(200, "a signed failure");
    wait_status(&otpd, &second, 0, "failed").await;
    assert_eq!(
        sink_code(&sink, "+14155550112").await,
        extract_code(sms2.json()["text"].as_str().unwrap()).unwrap()
    );

    // 3. The day's budget: two SMS through Plivo.
    otpd.send(&send("+14155550113")).await.assert_problem(
        403,
        "budget_exceeded",
        "a third SMS through Plivo",
    );
    assert!(!otpd.output_contains(PLIVO_TOKEN));

    let case = |name: &str, r: &Req, to: &str| {
        json!({"name": name, "method": r.method, "path": r.path,
               "authorization": r.headers["authorization"], "body": r.json(),
               "kwargs": {"src": "+14155550000", "dst": to, "text": r.json()["text"],
                          "type_": "sms", "url": PLIVO_CALLBACK, "method": "POST",
                          "log": "false"}})
    };
    let params = |p: &[(&str, &str)]| -> Value {
        p.iter()
            .map(|(k, v)| ((*k).to_string(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let spec = json!({"auth_id": PLIVO_ID, "auth_token": PLIVO_TOKEN,
        "cases": [case("messages.create", &sms, "+14155550111"),
                  case("messages.create (second)", &sms2, "+14155550112")],
        "callbacks": [
            {"name": "delivered callback", "url": PLIVO_CALLBACK, "nonce": nonce,
             "signature": good, "params": params(&delivered), "valid": true},
            {"name": "tampered callback", "url": PLIVO_CALLBACK, "nonce": nonce,
             "signature": plivo_sign(&delivered, nonce), "params": params(&tampered), "valid": false},
            {"name": "undelivered callback", "url": PLIVO_CALLBACK, "nonce": nonce,
             "signature": plivo_sign(&undelivered, nonce), "params": params(&undelivered), "valid": true}]});
    let out = run_checker(&py, "plivo_provider_requests.py", &spec).await;
    assert_eq!(out.matches("ok ").count(), 5, "{out}");
}

const PLIVO_ANSWER: &str = "https://otp.example.com/v1/voice/plivo";

/// `X-Plivo-Signature-V3` of a form POST of `params` to `url` (query included), as Plivo
/// signs its requests: base64 HMAC-SHA256 under the auth token over the URL without its
/// query, `?`, the query's parameters sorted (`k=v&…`), `.`, the form's sorted as `kv…`,
/// `.`, the nonce.
fn plivo_sign_at(url: &str, params: &[(&str, &str)], nonce: &str) -> String {
    use hmac::{Hmac, Mac};
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut query: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    query.sort();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut sorted = params.to_vec();
    sorted.sort();
    let body: String = sorted.iter().map(|(k, v)| format!("{k}{v}")).collect();
    let text = format!("{base}?{}.{body}.{nonce}", query.join("&"));
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(PLIVO_TOKEN.as_bytes()).unwrap();
    mac.update(text.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The parameters Plivo posts to a call's `answer_url` when the callee picks up.
fn plivo_answer_params(to: &'static str) -> [(&'static str, &'static str); 6] {
    [
        ("CallUUID", "a3c2c2c0-58b6-11e1-86da-adf28403fe48"),
        ("RequestUUID", "ignored-by-otpd"),
        ("From", "14155550001"),
        ("To", to),
        ("CallStatus", "in-progress"),
        ("Direction", "outbound"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plivo_calls_fetch_a_sealed_script_by_signed_request_and_a_missed_call_fails_over() {
    let Some(py) = python_with(&["plivo"]) else {
        return;
    };
    let api = StandIn::start(
        201,
        json!({"api_id": "c1", "message": "call fired", "request_uuid": "pl-call-1"}),
    )
    .await;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.channels = vec!["sms".into(), "voice".into()];
    config.extra_toml = format!(
        "[[providers]]\nname = \"plivo\"\nkind = \"plivo\"\nurl = {:?}\nauth_id = {PLIVO_ID:?}\n\
         auth_token = {PLIVO_TOKEN:?}\nfrom = \"+14155550000\"\nvoice_from = \"+14155550001\"\n\
         status_callback_url = {PLIVO_CALLBACK:?}\nanswer_url = {PLIVO_ANSWER:?}\n\
         channels = [\"voice\"]\n\n\
         [[routes]]\nchannel = \"voice\"\nproviders = [\"plivo\", \"sink\"]\n\n\
         [[prices]]\nprovider = \"plivo\"\nchannel = \"voice\"\nprice = 0.05\n",
        api.url
    );
    // Two nodes with the same configuration and server secret but nothing else in common
    // (each its own database): the second never saw the call.
    let secret = [("OTPD_SECRET", "e2e-shared-server-secret-0123456789")];
    let otpd = OtpdProcess::start_with_env(&dir, &config, &secret).await;
    let other_dir = TestDir::new();
    let other = OtpdProcess::start_with_env(&other_dir, &config, &secret).await;
    thrifty(&otpd).await;
    let send =
        |to: &str| json!({"to": to, "channel": "voice", "locale": "en-GB", "service": "thrifty"});
    let nonce = "05429567804466091622";
    // Plivo fetching what to say from `node`: the form of `params` to the call's
    // answer_url, signed (or not) with `signature`.
    let fetch_from = |node: &OtpdProcess,
                      query: String,
                      params: Vec<(&'static str, &'static str)>,
                      signature: Option<String>| {
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let mut req = node
            .anonymous(Method::POST, &format!("/v1/voice/plivo?{query}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-plivo-signature-v3-nonce", nonce)
            .body(form);
        if let Some(s) = signature {
            req = req.header("x-plivo-signature-v3", s);
        }
        req.reply()
    };
    let fetch =
        |query: String, params: Vec<(&'static str, &'static str)>, signature: Option<String>| {
            fetch_from(&otpd, query, params, signature)
        };
    let hangup = |params: Vec<(&'static str, &'static str)>| {
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        otpd.anonymous(Method::POST, "/v1/receipts/plivo?src=otpd")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-plivo-signature-v3-nonce", nonce)
            .header("x-plivo-signature-v3", plivo_sign(&params, nonce))
            .body(form)
            .reply()
    };
    let answer_url = |r: &Req| r.json()["answer_url"].as_str().unwrap().to_string();
    let spoken = |xml: &str| {
        let start = xml.find("loop=\"1\">").unwrap() + "loop=\"1\">".len();
        xml[start..xml.find("</Speak>").unwrap()].to_string()
    };

    // 1. A call: the answer URL carries the script sealed; Plivo's signed fetch gets the
    // XML that speaks the code; unsigned or altered fetches get nothing.
    let first = otpd.send_ok(&send("+14155550131")).await.id();
    let call = api.nth(1).await;
    wait_status(&otpd, &first, 0, "sent").await;
    assert_eq!(call.method, "POST");
    assert_eq!(call.path, format!("/v1/Account/{PLIVO_ID}/Call/"));
    let url = answer_url(&call);
    let query = url
        .strip_prefix(&format!("{PLIVO_ANSWER}?"))
        .unwrap()
        .to_string();
    let params = plivo_answer_params("14155550131").to_vec();
    fetch(query.clone(), params.clone(), None)
        .await
        .assert_problem(401, "unauthorized", "an unsigned fetch of the script");
    let altered = query.replacen("t=", "t=A", 1);
    fetch(
        altered.clone(),
        params.clone(),
        Some(plivo_sign_at(
            &format!("{PLIVO_ANSWER}?{altered}"),
            &params,
            nonce,
        )),
    )
    .await
    .assert_problem(404, "not_found", "a signed fetch of an altered token");
    fetch(
        altered,
        params.clone(),
        Some(plivo_sign_at(&url, &params, nonce)),
    )
    .await
    .assert_problem(401, "unauthorized", "a fetch signed for another URL");
    assert_eq!(
        otpd.verification(&first).await.body["deliveries"][0]["status"],
        "sent"
    );
    let answer_signature = plivo_sign_at(&url, &params, nonce);
    let answered = fetch(
        query.clone(),
        params.clone(),
        Some(answer_signature.clone()),
    )
    .await;
    answered.assert_status(200, "Plivo's signed fetch of the script");
    assert_eq!(answered.header("content-type"), Some("application/xml"));
    let xml = answered.text.clone();
    let text = spoken(&xml);
    let code = extract_code(&text).unwrap();
    // The URL holds the message id, the language and the script sealed: never the text.
    let pairs: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(pairs.keys().collect::<Vec<_>>(), ["l", "m", "t"]);
    assert_eq!(pairs["l"], "en-GB");
    let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&pairs["t"])
        .unwrap();
    assert!(!sealed.windows(code.len()).any(|w| w == code.as_bytes()));
    assert!(!String::from_utf8_lossy(&sealed).contains(&text));
    // Any node answers: the other node, which never saw the call, says the same.
    let elsewhere = fetch_from(
        &other,
        query.clone(),
        params.clone(),
        Some(answer_signature.clone()),
    )
    .await;
    elsewhere.assert_status(200, "the same fetch at another node");
    assert_eq!(elsewhere.text, xml);
    drop(other);
    hangup(vec![
        ("CallUUID", "a3c2c2c0-58b6-11e1-86da-adf28403fe48"),
        ("RequestUUID", "pl-call-1"),
        ("CallStatus", "completed"),
        ("HangupCauseName", "Normal Hangup"),
        ("Duration", "14"),
    ])
    .await
    .assert_status(200, "a signed hangup");
    wait_status(&otpd, &first, 0, "delivered").await;
    otpd.check(&json!({"id": first, "code": code}))
        .await
        .assert_status(200, "the code Plivo's call said checks");

    // 2. A call nobody answers: the sink gets the same code.
    api.reply(
        201,
        json!({"api_id": "c2", "message": "call fired", "request_uuid": "pl-call-2"}),
    );
    let second = otpd.send_ok(&send("+14155550132")).await.id();
    let call2 = api.nth(2).await;
    wait_status(&otpd, &second, 0, "sent").await;
    let url2 = answer_url(&call2);
    let params2 = plivo_answer_params("14155550132").to_vec();
    let query2 = url2
        .strip_prefix(&format!("{PLIVO_ANSWER}?"))
        .unwrap()
        .to_string();
    let xml2 = fetch(
        query2,
        params2.clone(),
        Some(plivo_sign_at(&url2, &params2, nonce)),
    )
    .await;
    xml2.assert_status(200, "the second call's script");
    let code2 = extract_code(&spoken(&xml2.text)).unwrap();
    let missed = vec![
        ("CallUUID", "b3c2c2c0-58b6-11e1-86da-adf28403fe48"),
        ("RequestUUID", "pl-call-2"),
        ("CallStatus", "no-answer"),
        ("HangupCauseName", "No Answer"),
        ("Duration", "0"),
    ];
    hangup(missed.clone())
        .await
        .assert_status(200, "a signed missed call");
    wait_status(&otpd, &second, 0, "failed").await;
    assert_eq!(sink_code(&sink, "+14155550132").await, code2);

    // 3. The day's budget: two calls through Plivo.
    otpd.send(&send("+14155550133")).await.assert_problem(
        403,
        "budget_exceeded",
        "a third call through Plivo",
    );
    assert!(!otpd.output_contains(PLIVO_TOKEN));
    assert!(!otpd.output_contains(&text));

    let case = |name: &str, r: &Req, to: &str| {
        let b = r.json();
        json!({"name": name, "api": "calls", "method": r.method, "path": r.path,
               "authorization": r.headers["authorization"], "body": b,
               "kwargs": {"from_": "+14155550001", "to_": to, "answer_url": b["answer_url"],
                          "answer_method": "POST", "hangup_url": PLIVO_CALLBACK,
                          "hangup_method": "POST", "time_limit": b["time_limit"],
                          "ring_timeout": b["ring_timeout"]}})
    };
    let params_of = |p: &[(&str, &str)]| -> Value {
        p.iter()
            .map(|(k, v)| ((*k).to_string(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let spec = json!({"auth_id": PLIVO_ID, "auth_token": PLIVO_TOKEN,
        "cases": [case("calls.create", &call, "+14155550131"),
                  case("calls.create (second)", &call2, "+14155550132")],
        "callbacks": [
            {"name": "answer fetch", "url": url, "nonce": nonce,
             "signature": answer_signature, "params": params_of(&params), "valid": true},
            {"name": "answer fetch of another call", "url": url2, "nonce": nonce,
             "signature": plivo_sign_at(&url, &params, nonce), "params": params_of(&params), "valid": false},
            {"name": "missed-call hangup", "url": PLIVO_CALLBACK, "nonce": nonce,
             "signature": plivo_sign(&missed, nonce), "params": params_of(&missed), "valid": true}],
        "xml": [{"name": "the call's Plivo XML", "text": text, "language": "en-GB", "voice": "WOMAN",
                 "xml": xml}]});
    let out = run_checker(&py, "plivo_provider_requests.py", &spec).await;
    assert_eq!(out.matches("ok ").count(), 6, "{out}");
}

// ---------------------------------------------------------------------------------------
// Telnyx
// ---------------------------------------------------------------------------------------

const TELNYX_KEY: &str = "KEYE2E0123456789ABCDEF_telnyx";
const TELNYX_PRIVATE: &str = include_str!("../../otpd-delivery/testdata/telnyx-test-key.pem");
/// The public half of `telnyx-test-key.pem`, base64 (as the portal shows Telnyx's).
const TELNYX_PUBLIC: &str = "0YtZmUlkN0n0LIlfL0vnf1OG93QIoqPCrnRDeFVkyto=";
const TELNYX_PROFILE: &str = "40017f8e-49bd-4f16-9e3d-ef103f916228";
const TELNYX_CALLBACK: &str = "https://otp.example.com/v1/receipts/telnyx";

/// A Telnyx messaging webhook (the shape of its `message.finalized` example).
fn telnyx_webhook(event: &str, id: &str, status: &str) -> String {
    json!({"data": {"event_type": event, "id": "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be",
        "occurred_at": "2026-12-07T04:20:00.000+00:00", "record_type": "event",
        "payload": {"id": id, "direction": "outbound", "type": "SMS",
            "to": [{"phone_number": "+18445550100", "status": status}],
            "errors": if status == "delivered" { json!([]) } else { json!([{"code": "40008", "title": "Undeliverable"}]) }}},
        "meta": {"attempt": 1, "delivered_to": TELNYX_CALLBACK}})
    .to_string()
}

/// Telnyx's signature headers for `body` now: Ed25519 over "{timestamp}|{body}".
fn telnyx_sign(body: &str) -> BTreeMap<String, String> {
    let at = chrono::Utc::now().timestamp().to_string();
    let key = jsonwebtoken::EncodingKey::from_ed_pem(TELNYX_PRIVATE.as_bytes()).unwrap();
    let url_safe = jsonwebtoken::crypto::sign(
        format!("{at}|{body}").as_bytes(),
        &key,
        jsonwebtoken::Algorithm::EdDSA,
    )
    .unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(url_safe)
        .unwrap();
    BTreeMap::from([
        (
            "telnyx-signature-ed25519".to_string(),
            base64::engine::general_purpose::STANDARD.encode(raw),
        ),
        ("telnyx-timestamp".to_string(), at),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnyx_sends_the_sdks_request_and_believes_only_ed25519_signed_webhooks() {
    let Some(py) = python_with(&["telnyx", "nacl"]) else {
        return;
    };
    let api = StandIn::start(
        200,
        json!({"data": {"id": "tx-msg-1", "record_type": "message"}}),
    )
    .await;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let provider = format!(
        "[[providers]]\nname = \"telnyx\"\nkind = \"telnyx\"\nurl = {:?}\napi_key = {TELNYX_KEY:?}\n\
         from = \"+18445550001\"\nmessaging_profile_id = {TELNYX_PROFILE:?}\n\
         public_key = {TELNYX_PUBLIC:?}\nstatus_callback_url = {TELNYX_CALLBACK:?}\n\
         channels = [\"sms\"]\n",
        api.url
    );
    let otpd = OtpdProcess::start(&dir, &config_with(&sink, "telnyx", &provider)).await;
    thrifty(&otpd).await;
    let send = |to: &str| json!({"to": to, "service": "thrifty"});
    let post = |body: String, headers: BTreeMap<String, String>| {
        let mut req = otpd
            .anonymous(Method::POST, "/v1/receipts/telnyx")
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.reply()
    };

    // 1. Delivered.
    let first = otpd.send_ok(&send("+14155550121")).await.id();
    let sms = api.nth(1).await;
    wait_status(&otpd, &first, 0, "sent").await;
    let delivered = telnyx_webhook("message.finalized", "tx-msg-1", "delivered");
    let headers = telnyx_sign(&delivered);
    let tampered = telnyx_webhook("message.finalized", "tx-msg-2", "delivered");
    post(tampered.clone(), headers.clone())
        .await
        .assert_problem(403, "forbidden", "a tampered webhook");
    post(delivered.clone(), BTreeMap::new())
        .await
        .assert_problem(403, "forbidden", "an unsigned webhook");
    let sent = telnyx_webhook("message.sent", "tx-msg-1", "sent");
    post(sent.clone(), telnyx_sign(&sent))
        .await
        .assert_status(200, "message.sent changes nothing");
    assert_eq!(
        otpd.verification(&first).await.body["deliveries"][0]["status"],
        "sent"
    );
    post(delivered.clone(), headers.clone())
        .await
        .assert_status(200, "a signed webhook");
    wait_status(&otpd, &first, 0, "delivered").await;
    let code = extract_code(sms.json()["text"].as_str().unwrap()).unwrap();
    otpd.check(&json!({"id": first, "code": code}))
        .await
        .assert_status(200, "the code sent through Telnyx checks");

    // 2. delivery_failed: the sink gets the same code.
    api.reply(
        200,
        json!({"data": {"id": "tx-msg-2", "record_type": "message"}}),
    );
    let second = otpd.send_ok(&send("+14155550122")).await.id();
    let sms2 = api.nth(2).await;
    wait_status(&otpd, &second, 0, "sent").await;
    let failed = telnyx_webhook("message.finalized", "tx-msg-2", "delivery_failed");
    post(failed.clone(), telnyx_sign(&failed))
        .await
        .assert_status(200, "a signed failure");
    wait_status(&otpd, &second, 0, "failed").await;
    assert_eq!(
        sink_code(&sink, "+14155550122").await,
        extract_code(sms2.json()["text"].as_str().unwrap()).unwrap()
    );

    // 3. The day's budget.
    otpd.send(&send("+14155550123")).await.assert_problem(
        403,
        "budget_exceeded",
        "a third SMS through Telnyx",
    );
    assert!(!otpd.output_contains(TELNYX_KEY));

    let case = |name: &str, r: &Req, to: &str| {
        json!({"name": name, "method": r.method, "path": r.path, "headers": r.headers,
               "body": r.json(),
               "kwargs": {"from_": "+18445550001", "to": to, "text": r.json()["text"],
                          "messaging_profile_id": TELNYX_PROFILE, "webhook_url": TELNYX_CALLBACK,
                          "idempotency_key": r.headers["idempotency-key"]}})
    };
    let spec = json!({"api_key": TELNYX_KEY, "public_key": TELNYX_PUBLIC,
        "cases": [case("messages.send", &sms, "+14155550121"),
                  case("messages.send (second)", &sms2, "+14155550122")],
        "webhooks": [
            {"name": "delivered webhook", "body": delivered, "headers": headers, "valid": true},
            {"name": "tampered webhook", "body": tampered, "headers": headers, "valid": false},
            {"name": "failure webhook", "body": failed, "headers": telnyx_sign(&failed), "valid": true}]});
    let out = run_checker(&py, "telnyx_provider_requests.py", &spec).await;
    assert_eq!(out.matches("ok ").count(), 5, "{out}");
}

const TELNYX_APP: &str = "1293384261075731499";
const TELNYX_CALL: &str = "v3:e2e-MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2a";

/// A Telnyx Call Control webhook of `event` for otpd's call (the shape of its
/// `call.answered` example), with `extra` payload fields.
fn telnyx_call_event(event: &str, client_state: &str, extra: Value) -> String {
    let mut payload = json!({"call_control_id": TELNYX_CALL,
        "call_leg_id": "428c31b6-7af4-4bcb-b7f5-5013ef9657c1",
        "call_session_id": "428c31b6-abf3-3bc1-b7f4-5013ef9657c1",
        "client_state": client_state, "connection_id": TELNYX_APP,
        "from": "+18445550002", "to": "+14155550141", "state": "answered"});
    for (k, v) in extra.as_object().unwrap() {
        payload[k] = v.clone();
    }
    json!({"data": {"event_type": event, "id": "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0",
        "occurred_at": "2026-12-07T04:20:00.000+00:00", "payload": payload,
        "record_type": "event"},
        "meta": {"attempt": 1, "delivered_to": TELNYX_CALLBACK}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnyx_calls_speak_the_sealed_script_on_a_signed_answer_and_a_missed_call_fails_over() {
    let Some(py) = python_with(&["telnyx", "nacl"]) else {
        return;
    };
    let api = StandIn::start(
        200,
        json!({"data": {"call_control_id": TELNYX_CALL, "call_leg_id": "leg-1",
            "call_session_id": "session-1", "is_alive": false, "record_type": "call"}}),
    )
    .await;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.channels = vec!["sms".into(), "voice".into()];
    config.extra_toml = format!(
        "[[providers]]\nname = \"telnyx\"\nkind = \"telnyx\"\nurl = {:?}\napi_key = {TELNYX_KEY:?}\n\
         from = \"+18445550001\"\nvoice_from = \"+18445550002\"\napplication_id = {TELNYX_APP:?}\n\
         public_key = {TELNYX_PUBLIC:?}\nstatus_callback_url = {TELNYX_CALLBACK:?}\n\
         channels = [\"voice\"]\n\n\
         [[routes]]\nchannel = \"voice\"\nproviders = [\"telnyx\", \"sink\"]\n\n\
         [[prices]]\nprovider = \"telnyx\"\nchannel = \"voice\"\nprice = 0.05\n",
        api.url
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    thrifty(&otpd).await;
    let send =
        |to: &str| json!({"to": to, "channel": "voice", "locale": "en-GB", "service": "thrifty"});
    let post = |body: String, headers: BTreeMap<String, String>| {
        let mut req = otpd
            .anonymous(Method::POST, "/v1/receipts/telnyx")
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.reply()
    };
    let seen = |api: &StandIn| api.log.lock().unwrap().len();

    // 1. Dialled; an unsigned "answered" gets nothing said; a signed one gets the
    // script spoken; "speak ended" hangs up and the call counts as delivered.
    let first = otpd.send_ok(&send("+14155550141")).await.id();
    let dial = api.nth(1).await;
    wait_status(&otpd, &first, 0, "sent").await;
    assert_eq!(
        (dial.method.as_str(), dial.path.as_str()),
        ("POST", "/v2/calls")
    );
    let state = dial.json()["client_state"].as_str().unwrap().to_string();
    let answered = telnyx_call_event("call.answered", &state, json!({}));
    post(answered.clone(), BTreeMap::new())
        .await
        .assert_problem(403, "forbidden", "an unsigned call.answered");
    // Nothing said on an unsigned answer: none now, and none later either — the requests
    // that follow are exactly the signed answer's speak (2nd) and hangup (3rd).
    assert_eq!(seen(&api), 1, "nothing was said on an unsigned answer");
    let answered_headers = telnyx_sign(&answered);
    post(answered.clone(), answered_headers.clone())
        .await
        .assert_status(200, "a signed call.answered");
    let speak = api.nth(2).await;
    assert_eq!(speak.path, format!("/v2/calls/{TELNYX_CALL}/actions/speak"));
    let code = extract_code(speak.json()["payload"].as_str().unwrap()).unwrap();
    assert_eq!(
        otpd.verification(&first).await.body["deliveries"][0]["status"],
        "sent"
    );
    let ended = telnyx_call_event("call.speak.ended", &state, json!({"status": "completed"}));
    let ended_headers = telnyx_sign(&ended);
    post(ended.clone(), ended_headers.clone())
        .await
        .assert_status(200, "a signed call.speak.ended");
    let hangup = api.nth(3).await;
    assert_eq!(
        hangup.path,
        format!("/v2/calls/{TELNYX_CALL}/actions/hangup")
    );
    wait_status(&otpd, &first, 0, "delivered").await;
    otpd.check(&json!({"id": first, "code": code}))
        .await
        .assert_status(200, "the code Telnyx's call said checks");

    // 2. A call nobody answers: the sink gets the same code.
    let second = otpd.send_ok(&send("+14155550142")).await.id();
    let dial2 = api.nth(4).await;
    wait_status(&otpd, &second, 0, "sent").await;
    let state2 = dial2.json()["client_state"].as_str().unwrap().to_string();
    let missed = telnyx_call_event("call.hangup", &state2, json!({"hangup_cause": "no_answer"}));
    post(missed.clone(), telnyx_sign(&missed))
        .await
        .assert_status(200, "a signed missed call");
    wait_status(&otpd, &second, 0, "failed").await;
    let code2 = sink_code(&sink, "+14155550142").await;
    otpd.check(&json!({"id": second, "code": code2}))
        .await
        .assert_status(200, "the failed-over code checks");

    // 3. The day's budget: two calls through Telnyx.
    otpd.send(&send("+14155550143")).await.assert_problem(
        403,
        "budget_exceeded",
        "a third call through Telnyx",
    );
    assert!(!otpd.output_contains(TELNYX_KEY));

    let dial_case = |name: &str, r: &Req, to: &str| {
        let b = r.json();
        json!({"name": name, "api": "dial", "method": r.method, "path": r.path,
               "headers": r.headers, "body": b,
               "kwargs": {"connection_id": TELNYX_APP, "from_": "+18445550002", "to": to,
                          "client_state": b["client_state"], "command_id": b["command_id"],
                          "timeout_secs": b["timeout_secs"], "time_limit_secs": b["time_limit_secs"],
                          "webhook_url": TELNYX_CALLBACK, "webhook_url_method": "POST"}})
    };
    let s = speak.json();
    let h = hangup.json();
    let spec = json!({"api_key": TELNYX_KEY, "public_key": TELNYX_PUBLIC,
        "cases": [dial_case("calls.dial", &dial, "+14155550141"),
                  dial_case("calls.dial (second)", &dial2, "+14155550142"),
                  {"name": "calls.actions.speak", "api": "speak", "call_control_id": TELNYX_CALL,
                   "method": speak.method, "path": speak.path, "headers": speak.headers, "body": s,
                   "kwargs": {"payload": s["payload"], "voice": "female", "language": "en-GB",
                              "payload_type": "text", "client_state": state,
                              "command_id": s["command_id"]}},
                  {"name": "calls.actions.hangup", "api": "hangup", "call_control_id": TELNYX_CALL,
                   "method": hangup.method, "path": hangup.path, "headers": hangup.headers, "body": h,
                   "kwargs": {"client_state": state, "command_id": h["command_id"]}}],
        "webhooks": [
            {"name": "call.answered", "body": answered, "headers": answered_headers, "valid": true},
            {"name": "unsigned call.answered", "body": answered, "headers": {}, "valid": false},
            {"name": "call.speak.ended", "body": ended, "headers": ended_headers, "valid": true}]});
    let out = run_checker(&py, "telnyx_provider_requests.py", &spec).await;
    assert_eq!(out.matches("ok ").count(), 7, "{out}");
}

// ---------------------------------------------------------------------------------------
// Infobip
// ---------------------------------------------------------------------------------------

const INFOBIP_KEY: &str = "e2e0123456789abcdef0123456789abc-01234567-89ab-cdef-0123-456789abcdef";
const INFOBIP_TOKEN: &str = "e2e-infobip-report-token";

/// An Infobip delivery report (the shape of its "Receive outbound SMS message report"
/// example) for otpd's message id.
fn infobip_report(message_id: &str, group: &str, name: &str, error: &str) -> Value {
    let group_id = match group {
        "PENDING" => 1,
        "UNDELIVERABLE" => 2,
        "DELIVERED" => 3,
        _ => 4,
    };
    json!({"results": [{"bulkId": "BULK-ID-123-xyz", "messageId": message_id, "to": "41793026727",
        "sentAt": "2026-12-07T04:20:00.000+0000", "doneAt": "2026-12-07T04:20:02.000+0000",
        "messageCount": 1, "price": {"pricePerMessage": 0.01, "currency": "EUR"},
        "status": {"groupId": group_id, "groupName": group, "id": 5, "name": name,
                   "description": "e2e"},
        "error": {"groupId": 0, "groupName": "OK", "id": 0, "name": error,
                  "description": "e2e", "permanent": false}}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infobip_sends_the_clients_requests_and_believes_reports_only_with_the_token() {
    let Some(py) = python_with(&["infobip_api_client"]) else {
        return;
    };
    // Infobip echoes the messageId otpd gave.
    let api = StandIn::start(
        200,
        json!({"bulkId": "2034072219640523072", "messages": [{"messageId": "ignored",
            "status": {"groupId": 1, "groupName": "PENDING", "id": 26, "name": "PENDING_ACCEPTED"},
            "destination": "41793026727"}]}),
    )
    .await;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let report_url = format!("https://otp.example.com/v1/receipts/ib?token={INFOBIP_TOKEN}");
    let provider = format!(
        "[[providers]]\nname = \"ib\"\nkind = \"infobip\"\nurl = {:?}\napi_key = {INFOBIP_KEY:?}\n\
         from = \"InfoSMS\"\nvoice_from = \"41793026700\"\nreceipt_token = {INFOBIP_TOKEN:?}\n\
         status_callback_url = {report_url:?}\nchannels = [\"sms\", \"voice\"]\n",
        api.url
    );
    let otpd = OtpdProcess::start(&dir, &config_with(&sink, "ib", &provider)).await;
    thrifty(&otpd).await;
    let send = |to: &str| json!({"to": to, "service": "thrifty"});
    let post = |query: &str, body: &Value| {
        otpd.anonymous(Method::POST, &format!("/v1/receipts/ib{query}"))
            .json(body)
            .reply()
    };
    let dlv = |v: &Value| v["deliveries"][0]["id"].as_str().unwrap().to_string();

    // 1. Delivered.
    let first = otpd.send_ok(&send("+41793026727")).await.id();
    let sms = api.nth(1).await;
    let v = wait_status(&otpd, &first, 0, "sent").await;
    let msg_id = sms.json()["messages"][0]["destinations"][0]["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(msg_id, dlv(&v), "otpd names the message itself");
    let delivered = infobip_report(&msg_id, "DELIVERED", "DELIVERED_TO_HANDSET", "NO_ERROR");
    post("", &delivered)
        .await
        .assert_problem(403, "forbidden", "a report without the token");
    post("?token=guess", &delivered).await.assert_problem(
        403,
        "forbidden",
        "a report with another token",
    );
    post(&format!("?token={INFOBIP_TOKEN}"), &delivered)
        .await
        .assert_status(200, "a report with the token");
    wait_status(&otpd, &first, 0, "delivered").await;
    let code = extract_code(
        sms.json()["messages"][0]["content"]["text"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    otpd.check(&json!({"id": first, "code": code}))
        .await
        .assert_status(200, "the code sent through Infobip checks");

    // 2. Undeliverable: the sink gets the same code.
    let second = otpd.send_ok(&send("+41793026728")).await.id();
    let sms2 = api.nth(2).await;
    let v = wait_status(&otpd, &second, 0, "sent").await;
    let failed = infobip_report(
        &dlv(&v),
        "UNDELIVERABLE",
        "UNDELIVERABLE_NOT_DELIVERED",
        "EC_ABSENT_SUBSCRIBER",
    );
    post(&format!("?token={INFOBIP_TOKEN}"), &failed)
        .await
        .assert_status(200, "a failure report");
    wait_status(&otpd, &second, 0, "failed").await;
    assert_eq!(
        sink_code(&sink, "+41793026728").await,
        extract_code(
            sms2.json()["messages"][0]["content"]["text"]
                .as_str()
                .unwrap()
        )
        .unwrap()
    );

    // 3. The day's budget; 4. a call.
    otpd.send(&send("+41793026729")).await.assert_problem(
        403,
        "budget_exceeded",
        "a third SMS through Infobip",
    );
    otpd.send_ok(&json!({"to": "+41793026730", "channel": "voice", "locale": "de-AT"}))
        .await;
    let call = api.nth(3).await;
    assert_eq!(call.json()["messages"][0]["language"], "de-at");
    assert!(!otpd.output_contains(INFOBIP_KEY));

    let case = |name: &str, kind: &str, r: &Req| {
        json!({"name": name, "kind": kind, "method": r.method, "path": r.path,
               "authorization": r.headers["authorization"], "body": r.json()})
    };
    let spec = json!({"base_url": "https://xxxxx.api.infobip.com", "api_key": INFOBIP_KEY,
        "cases": [case("SMS", "sms", &sms), case("SMS (second)", "sms", &sms2),
                  case("voice TTS", "voice", &call)],
        "reports": [{"name": "delivered report", "kind": "sms", "body": delivered},
                    {"name": "failure report", "kind": "sms", "body": failed}]});
    let out = run_checker(&py, "infobip_provider_requests.py", &spec).await;
    assert_eq!(out.matches("ok ").count(), 5, "{out}");
}

/// The WhatsApp authentication template message Infobip's WhatsApp API documents for
/// `to` (its generated models `WhatsAppBulkMessage` → `WhatsAppMessage` →
/// `WhatsAppTemplateContent` → `WhatsAppTemplateDataContent`, with a
/// `WhatsAppTemplateCopyCodeButtonContent`): built here from that shape, never from otpd's
/// output, with the code as the template's one placeholder and its button's parameter.
fn infobip_whatsapp_request(message_id: &str, to: &str, code: &str, language: &str) -> Value {
    json!({"messages": [{"from": "447860099299", "to": to, "messageId": message_id,
        "content": {"templateName": "otp_copy_code",
            "templateData": {"body": {"placeholders": [code]},
                             "buttons": [{"type": "COPY_CODE", "parameter": code}]},
            "language": language},
        "notifyUrl": format!("https://otp.example.com/v1/receipts/ib?token={INFOBIP_TOKEN}")}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infobip_whatsapp_sends_the_authentication_template_and_a_failed_report_fails_over() {
    let Some(py) = python_with(&["infobip_api_client"]) else {
        return;
    };
    let api = StandIn::start(
        200,
        json!({"bulkId": "2034072219640523072", "messages": [{"messageId": "ignored",
            "status": {"groupId": 1, "groupName": "PENDING", "id": 7, "name": "PENDING_ENROUTE"},
            "to": "41793026731", "messageCount": 1}]}),
    )
    .await;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let report_url = format!("https://otp.example.com/v1/receipts/ib?token={INFOBIP_TOKEN}");
    let mut config = Config::for_sink(&sink);
    config.channels = vec!["sms".into(), "whatsapp".into()];
    config.extra_toml = format!(
        "[[providers]]\nname = \"ib\"\nkind = \"infobip\"\nurl = {:?}\napi_key = {INFOBIP_KEY:?}\n\
         from = \"InfoSMS\"\nwhatsapp_from = \"447860099299\"\ntemplate = \"otp_copy_code\"\n\
         template_languages = [\"en\", \"fr\"]\nreceipt_token = {INFOBIP_TOKEN:?}\n\
         status_callback_url = {report_url:?}\nchannels = [\"whatsapp\"]\n\n\
         [[routes]]\nchannel = \"whatsapp\"\nproviders = [\"ib\", \"sink\"]\n\n\
         [[prices]]\nprovider = \"ib\"\nchannel = \"whatsapp\"\nprice = 0.05\n",
        api.url
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    thrifty(&otpd).await;
    let send = |to: &str, locale: &str| json!({"to": to, "channel": "whatsapp", "locale": locale, "service": "thrifty"});
    let post = |query: &str, body: &Value| {
        otpd.anonymous(Method::POST, &format!("/v1/receipts/ib{query}"))
            .json(body)
            .reply()
    };
    let dlv = |v: &Value| v["deliveries"][0]["id"].as_str().unwrap().to_string();
    let code_of = |r: &Req| {
        r.json()["messages"][0]["content"]["templateData"]["body"]["placeholders"][0]
            .as_str()
            .unwrap()
            .to_string()
    };

    // 1. Delivered: the documented request, the code checks.
    let first = otpd.send_ok(&send("+41793026731", "fr-CA")).await.id();
    let wa = api.nth(1).await;
    let v = wait_status(&otpd, &first, 0, "sent").await;
    assert_eq!(wa.method, "POST");
    assert_eq!(wa.path, "/whatsapp/1/message/template");
    assert_eq!(wa.headers["authorization"], format!("App {INFOBIP_KEY}"));
    assert_eq!(wa.headers["content-type"], "application/json");
    let code = code_of(&wa);
    assert_eq!(
        wa.json(),
        infobip_whatsapp_request(&dlv(&v), "41793026731", &code, "fr")
    );
    let delivered = infobip_report(&dlv(&v), "DELIVERED", "DELIVERED_TO_HANDSET", "NO_ERROR");
    post("", &delivered)
        .await
        .assert_problem(403, "forbidden", "a report without the token");
    assert_eq!(
        otpd.verification(&first).await.body["deliveries"][0]["status"],
        "sent"
    );
    post(&format!("?token={INFOBIP_TOKEN}"), &delivered)
        .await
        .assert_status(200, "a report with the token");
    wait_status(&otpd, &first, 0, "delivered").await;
    otpd.check(&json!({"id": first, "code": code}))
        .await
        .assert_status(200, "the code sent through Infobip WhatsApp checks");

    // 2. Undeliverable (no WhatsApp on the number): the sink gets the same code (in
    // English: the sink's reader looks for "code is").
    let second = otpd.send_ok(&send("+41793026732", "en-GB")).await.id();
    let wa2 = api.nth(2).await;
    let v = wait_status(&otpd, &second, 0, "sent").await;
    let failed = infobip_report(
        &dlv(&v),
        "UNDELIVERABLE",
        "UNDELIVERABLE_NOT_DELIVERED",
        "EC_UNKNOWN_SUBSCRIBER",
    );
    post(&format!("?token={INFOBIP_TOKEN}"), &failed)
        .await
        .assert_status(200, "a failure report");
    wait_status(&otpd, &second, 0, "failed").await;
    assert_eq!(wa2.json()["messages"][0]["content"]["language"], "en");
    assert_eq!(sink_code(&sink, "+41793026732").await, code_of(&wa2));

    // 3. The day's budget: two WhatsApp messages through Infobip.
    otpd.send(&send("+41793026733", "en")).await.assert_problem(
        403,
        "budget_exceeded",
        "a third WhatsApp message through Infobip",
    );
    assert!(!otpd.output_contains(INFOBIP_KEY));

    // The reports as Infobip's client reads them (a WhatsApp report's fields are a subset
    // of the SMS report's: `WhatsAppWebhookDeliveryReport`).
    let spec = json!({"base_url": "https://xxxxx.api.infobip.com", "api_key": INFOBIP_KEY,
        "cases": [],
        "reports": [{"name": "WhatsApp delivered report", "kind": "sms", "body": delivered},
                    {"name": "WhatsApp failure report", "kind": "sms", "body": failed}]});
    let out = run_checker(&py, "infobip_provider_requests.py", &spec).await;
    assert_eq!(out.matches("ok ").count(), 2, "{out}");
}

// ---------------------------------------------------------------------------------------
// Sinch
// ---------------------------------------------------------------------------------------

const SINCH_PLAN: &str = "e2eplan0123456789abcdef";
const SINCH_TOKEN: &str = "e2e-sinch-api-token";
const SINCH_SECRET: &str = "e2e-sinch-callback-secret";
const SINCH_CALLBACK: &str = "https://otp.example.com/v1/receipts/sinch";

/// A Sinch recipient delivery report for batch `id`.
fn sinch_report(id: &str, status: &str, code: u32) -> String {
    json!({"type": "recipient_delivery_report_sms", "batch_id": id, "recipient": "+12025550111",
           "code": code, "status": status, "at": "2026-12-07T04:20:00.000Z",
           "operator_status_at": "2026-12-07T04:19:59.000Z"})
    .to_string()
}

/// Sinch's signature headers: base64 HMAC-SHA256 over "{body}.{nonce}.{timestamp}".
fn sinch_sign(body: &str) -> BTreeMap<String, String> {
    use hmac::{Hmac, Mac};
    let (nonce, timestamp) = ("01FJA8B4A7BM43YGWSG9GBV067", "1734567890");
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(SINCH_SECRET.as_bytes()).unwrap();
    mac.update(format!("{body}.{nonce}.{timestamp}").as_bytes());
    BTreeMap::from([
        (
            "x-sinch-webhook-signature".to_string(),
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()),
        ),
        (
            "x-sinch-webhook-signature-nonce".to_string(),
            nonce.to_string(),
        ),
        (
            "x-sinch-webhook-signature-timestamp".to_string(),
            timestamp.to_string(),
        ),
        (
            "x-sinch-webhook-signature-algorithm".to_string(),
            "HmacSHA256".to_string(),
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinch_sends_the_sdks_batch_and_believes_only_signed_reports() {
    let Some(py) = python_with(&["sinch"]) else {
        return;
    };
    let api = StandIn::start(
        201,
        json!({"id": "01SINCHBATCH000000000000A1", "type": "mt_text"}),
    )
    .await;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let provider = format!(
        "[[providers]]\nname = \"sinch\"\nkind = \"sinch\"\nurl = {:?}\n\
         service_plan_id = {SINCH_PLAN:?}\napi_key = {SINCH_TOKEN:?}\nfrom = \"+12025550134\"\n\
         signature_secret = {SINCH_SECRET:?}\nstatus_callback_url = {SINCH_CALLBACK:?}\n\
         channels = [\"sms\"]\n",
        api.url
    );
    let otpd = OtpdProcess::start(&dir, &config_with(&sink, "sinch", &provider)).await;
    thrifty(&otpd).await;
    let send = |to: &str| json!({"to": to, "service": "thrifty"});
    let post = |body: String, headers: BTreeMap<String, String>| {
        let mut req = otpd
            .anonymous(Method::POST, "/v1/receipts/sinch")
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.reply()
    };

    // 1. Delivered.
    let first = otpd.send_ok(&send("+12025550111")).await.id();
    let sms = api.nth(1).await;
    wait_status(&otpd, &first, 0, "sent").await;
    let delivered = sinch_report("01SINCHBATCH000000000000A1", "Delivered", 0);
    let headers = sinch_sign(&delivered);
    let tampered = sinch_report("01SINCHBATCH000000000000A2", "Delivered", 0);
    post(tampered.clone(), headers.clone())
        .await
        .assert_problem(403, "forbidden", "a tampered report");
    post(delivered.clone(), BTreeMap::new())
        .await
        .assert_problem(403, "forbidden", "an unsigned report");
    post(delivered.clone(), headers.clone())
        .await
        .assert_status(200, "a signed report");
    wait_status(&otpd, &first, 0, "delivered").await;
    let code = extract_code(sms.json()["body"].as_str().unwrap()).unwrap();
    otpd.check(&json!({"id": first, "code": code}))
        .await
        .assert_status(200, "the code sent through Sinch checks");

    // 2. Failed: the sink gets the same code.
    api.reply(
        201,
        json!({"id": "01SINCHBATCH000000000000A2", "type": "mt_text"}),
    );
    let second = otpd.send_ok(&send("+12025550112")).await.id();
    let sms2 = api.nth(2).await;
    wait_status(&otpd, &second, 0, "sent").await;
    let failed = sinch_report("01SINCHBATCH000000000000A2", "Failed", 406);
    post(failed.clone(), sinch_sign(&failed))
        .await
        .assert_status(200, "a signed failure");
    wait_status(&otpd, &second, 0, "failed").await;
    assert_eq!(
        sink_code(&sink, "+12025550112").await,
        extract_code(sms2.json()["body"].as_str().unwrap()).unwrap()
    );

    // 3. The day's budget.
    otpd.send(&send("+12025550113")).await.assert_problem(
        403,
        "budget_exceeded",
        "a third SMS through Sinch",
    );
    assert!(!otpd.output_contains(SINCH_TOKEN));

    let case = |name: &str, r: &Req| {
        let sent = r.json();
        json!({"name": name, "method": r.method, "path": r.path,
               "authorization": r.headers["authorization"], "body": sent,
               "kwargs": {"to": sent["to"], "from_": "+12025550134", "body": sent["body"],
                          "delivery_report": "per_recipient_final",
                          "client_reference": sent["client_reference"],
                          "event_destination_target": SINCH_CALLBACK}})
    };
    let spec = json!({"service_plan_id": SINCH_PLAN, "api_token": SINCH_TOKEN, "region": "us",
        "callback_secret": SINCH_SECRET,
        "cases": [case("send_sms", &sms), case("send_sms (second)", &sms2)],
        "callbacks": [
            {"name": "delivered report", "body": delivered, "headers": headers, "valid": true},
            {"name": "tampered report", "body": tampered, "headers": headers, "valid": false},
            {"name": "failure report", "body": failed, "headers": sinch_sign(&failed), "valid": true}]});
    let out = run_checker(&py, "sinch_provider_requests.py", &spec).await;
    assert_eq!(out.matches("ok ").count(), 5, "{out}");
}

// ---------------------------------------------------------------------------------------
// MSG91 (no official SDK: the stand-in checks the request MSG91's "Send SMS via FLOW"
// reference documents)
// ---------------------------------------------------------------------------------------

const MSG91_KEY: &str = "e2e-msg91-authkey-0123456789";
const MSG91_TOKEN: &str = "e2e-msg91-webhook-token";
const MSG91_TEMPLATE_EN: &str = "6561e0d0d6fc0539a7253ef2";
const MSG91_TEMPLATE_HI: &str = "6561e0d0d6fc0539a7253ef3";

/// The documented Flow request for `to` with template `template`; returns the code.
fn assert_msg91_request(r: &Req, to: &str, template: &str) -> String {
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/api/v5/flow/");
    assert_eq!(r.headers["authkey"], MSG91_KEY);
    assert!(r.headers["content-type"].starts_with("application/json"));
    let body = r.json();
    let code = body["recipients"][0]["OTP"].as_str().unwrap().to_string();
    assert_eq!(
        body,
        json!({"template_id": template, "sender": "ACMEIN", "short_url": "0",
               "recipients": [{"mobiles": to, "OTP": code}]})
    );
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msg91_sends_the_locales_dlt_template_and_believes_webhooks_only_with_the_token() {
    let api = StandIn::start(
        200,
        json!({"message": "3465686b6c34353536373831", "type": "success"}),
    )
    .await;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let provider = format!(
        "[[providers]]\nname = \"msg91\"\nkind = \"msg91\"\nurl = {:?}\napi_key = {MSG91_KEY:?}\n\
         from = \"ACMEIN\"\ndlt_entity_id = \"1201159543060917386\"\n\
         template = {MSG91_TEMPLATE_EN:?}\ntemplates = {{ hi = {MSG91_TEMPLATE_HI:?} }}\n\
         dlt_template_ids = {{ {MSG91_TEMPLATE_EN:?} = \"1207170124467412345\", {MSG91_TEMPLATE_HI:?} = \"1207170124467412346\" }}\n\
         receipt_token = {MSG91_TOKEN:?}\nchannels = [\"sms\"]\n",
        api.url
    );
    let otpd = OtpdProcess::start(&dir, &config_with(&sink, "msg91", &provider)).await;
    thrifty(&otpd).await;
    let post = |query: String, body: Value| {
        otpd.anonymous(Method::POST, &format!("/v1/receipts/msg91{query}"))
            .json(&body)
            .reply()
    };
    let report = |id: &str, status: &str, desc: &str| {
        // MSG91's webhook version 3 sample.
        json!({"date": "2026-12-07 09:58:16", "number": "919812345601", "senderId": "ACMEIN",
               "amount": "0.2", "requestId": id, "INMSID": "0", "CRQID": "0", "credit": "1",
               "userId": "27XXXX", "campaignName": "API", "status": status, "desc": desc})
    };

    // 1. Delivered; Hindi gets the Hindi template.
    let first = otpd
        .send_ok(&json!({"to": "+919812345601", "service": "thrifty", "locale": "hi-IN"}))
        .await
        .id();
    let code = assert_msg91_request(&api.nth(1).await, "919812345601", MSG91_TEMPLATE_HI);
    wait_status(&otpd, &first, 0, "sent").await;
    let delivered = report("3465686b6c34353536373831", "1", "DELIVERED");
    post(String::new(), delivered.clone()).await.assert_problem(
        403,
        "forbidden",
        "a webhook without the token",
    );
    post(format!("?token={MSG91_TOKEN}"), delivered)
        .await
        .assert_status(200, "a webhook with the token");
    wait_status(&otpd, &first, 0, "delivered").await;
    otpd.check(&json!({"id": first, "code": code}))
        .await
        .assert_status(200, "the code sent through MSG91 checks");

    // 2. Blocked (status 17): the sink gets the same code; English gets the default template.
    api.reply(
        200,
        json!({"message": "3465686b6c34353536373832", "type": "success"}),
    );
    let second = otpd
        .send_ok(&json!({"to": "+919812345602", "service": "thrifty"}))
        .await
        .id();
    let code2 = assert_msg91_request(&api.nth(2).await, "919812345602", MSG91_TEMPLATE_EN);
    wait_status(&otpd, &second, 0, "sent").await;
    post(
        format!("?token={MSG91_TOKEN}"),
        report("3465686b6c34353536373832", "17", "BLOCKED"),
    )
    .await
    .assert_status(200, "a failure webhook");
    wait_status(&otpd, &second, 0, "failed").await;
    assert_eq!(sink_code(&sink, "+919812345602").await, code2);

    // 3. MSG91 answers errors with 200: a refused template fails over at once.
    api.reply(
        200,
        json!({"type": "error", "message": "Template id missing", "code": "418"}),
    );
    let third = otpd.send_ok(&json!({"to": "+919812345603"})).await.id();
    api.nth(3).await;
    sink_code(&sink, "+919812345603").await;
    let v = wait_status(&otpd, &third, 0, "sent").await;
    assert_eq!(v["deliveries"][0]["provider"], "sink", "{v}");

    // 4. The day's budget (two SMS through MSG91 for "thrifty").
    otpd.send(&json!({"to": "+919812345604", "service": "thrifty"}))
        .await
        .assert_problem(403, "budget_exceeded", "a third SMS through MSG91");
    assert!(!otpd.output_contains(MSG91_KEY));
}

// ---------------------------------------------------------------------------------------
// Termii (no official SDK: the stand-in checks the requests of Termii's "Messaging API"
// and "Voice Call" pages; events are signed as "Events and Reports" documents)
// ---------------------------------------------------------------------------------------

const TERMII_KEY: &str = "TLe2eTermiiApiKey0123456789";
const TERMII_SECRET: &str = "e2e-termii-secret-key";

fn termii_sign(body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha512> as Mac>::new_from_slice(TERMII_SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn termii_sends_sms_and_voice_codes_and_believes_only_signed_events() {
    let api = StandIn::start(
        200,
        json!({"code": "ok", "message_id": "9122821270554876501", "message_id_str": "9122821270554876501",
               "message": "Successfully Sent", "balance": 9, "user": "e2e"}),
    )
    .await;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let provider = format!(
        "[[providers]]\nname = \"termii\"\nkind = \"termii\"\nurl = {:?}\napi_key = {TERMII_KEY:?}\n\
         from = \"Acme\"\nsignature_secret = {TERMII_SECRET:?}\nchannels = [\"sms\", \"voice\"]\n",
        api.url
    );
    let otpd = OtpdProcess::start(&dir, &config_with(&sink, "termii", &provider)).await;
    thrifty(&otpd).await;
    let post = |body: String, signature: Option<String>| {
        let mut req = otpd
            .anonymous(Method::POST, "/v1/receipts/termii")
            .header("content-type", "application/json")
            .body(body);
        if let Some(s) = signature {
            req = req.header("x-termii-signature", s);
        }
        req.reply()
    };
    let event = |id: &str, status: &str| {
        json!({"type": "outbound", "id": "7f5d0d43-5f5c-4a4c-92b1-94f5f1b0f3e6", "message_id": id,
               "receiver": "2348031234501", "sender": "Acme", "message": "…", "sent_at": "2026-12-07 11:34:36",
               "cost": "3.9", "status": status, "channel": "dnd"})
        .to_string()
    };
    let assert_sms = |r: &Req, to: &str| -> String {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/api/sms/send");
        let body = r.json();
        let text = body["sms"].as_str().unwrap().to_string();
        assert_eq!(
            body,
            json!({"api_key": TERMII_KEY, "to": to, "from": "Acme", "sms": text,
                   "type": "plain", "channel": "dnd"})
        );
        extract_code(&text).unwrap()
    };

    // 1. Delivered.
    let first = otpd
        .send_ok(&json!({"to": "+2348031234501", "service": "thrifty"}))
        .await
        .id();
    let code = assert_sms(&api.nth(1).await, "2348031234501");
    wait_status(&otpd, &first, 0, "sent").await;
    let delivered = event("9122821270554876501", "Delivered");
    post(delivered.clone(), None)
        .await
        .assert_problem(403, "forbidden", "an unsigned event");
    post(
        event("9122821270554876502", "Delivered"),
        Some(termii_sign(&delivered)),
    )
    .await
    .assert_problem(403, "forbidden", "a tampered event");
    post(delivered.clone(), Some(termii_sign(&delivered)))
        .await
        .assert_status(200, "a signed event");
    wait_status(&otpd, &first, 0, "delivered").await;
    otpd.check(&json!({"id": first, "code": code}))
        .await
        .assert_status(200, "the code sent through Termii checks");

    // 2. DND: failed, the sink gets the same code.
    api.reply(
        200,
        json!({"code": "ok", "message_id": "9122821270554876502", "message": "Successfully Sent"}),
    );
    let second = otpd
        .send_ok(&json!({"to": "+2348031234502", "service": "thrifty"}))
        .await
        .id();
    let code2 = assert_sms(&api.nth(2).await, "2348031234502");
    wait_status(&otpd, &second, 0, "sent").await;
    let dnd = event("9122821270554876502", "DND Active on Phone Number");
    post(dnd.clone(), Some(termii_sign(&dnd)))
        .await
        .assert_status(200, "a signed failure");
    wait_status(&otpd, &second, 0, "failed").await;
    assert_eq!(sink_code(&sink, "+2348031234502").await, code2);

    // 3. The day's budget; 4. a voice call reads the code itself.
    otpd.send(&json!({"to": "+2348031234503", "service": "thrifty"}))
        .await
        .assert_problem(403, "budget_exceeded", "a third SMS through Termii");
    let call = otpd
        .send_ok(&json!({"to": "+2348031234504", "channel": "voice"}))
        .await
        .id();
    let r = api.nth(3).await;
    assert_eq!(r.path, "/api/sms/otp/call");
    let voice_code = r.json()["code"].as_str().unwrap().to_string();
    assert_eq!(
        r.json(),
        json!({"api_key": TERMII_KEY, "phone_number": "2348031234504", "code": voice_code})
    );
    otpd.check(&json!({"id": call, "code": voice_code}))
        .await
        .assert_status(200, "the code Termii's voice call reads checks");
    assert!(!otpd.output_contains(TERMII_KEY));
}

// ---------------------------------------------------------------------------------------
// Email over HTTP APIs: a bounce fails over like a failed SMS
// ---------------------------------------------------------------------------------------

/// Like [`config_with`] for email: the provider first, the sink second, 0.05 per email
/// through the provider.
fn email_config_with(sink: &Sink, name: &str, provider_toml: &str) -> Config {
    let mut config = Config::for_sink(sink);
    config.channels = vec!["email".into()];
    config.extra_toml = format!(
        "{provider_toml}\n\
         [[routes]]\nchannel = \"email\"\nproviders = [{name:?}, \"sink\"]\n\n\
         [[prices]]\nprovider = {name:?}\nchannel = \"email\"\nprice = 0.05\n"
    );
    config
}

fn email(to: &str) -> Value {
    json!({"to": to, "channel": "email", "service": "thrifty"})
}

const SES_TOPIC: &str = "arn:aws:sns:eu-west-1:111122223333:otpd-ses-events";

fn ses_event(kind: &str, message_id: &str) -> Value {
    // The shape of "Examples of event data that Amazon SES publishes to Amazon SNS".
    let mail = json!({"timestamp": "2026-12-07T04:20:00.000Z", "source": "no-reply@acme.example",
        "sendingAccountId": "111122223333", "messageId": message_id,
        "destination": ["alice@example.com"], "tags": {"otpd_message_id": ["dlv"]}});
    match kind {
        "Delivery" => json!({"eventType": "Delivery", "mail": mail,
            "delivery": {"timestamp": "2026-12-07T04:20:01.000Z", "processingTimeMillis": 546,
                         "recipients": ["alice@example.com"], "smtpResponse": "250 2.6.0 Message received"}}),
        _ => json!({"eventType": "Bounce", "mail": mail,
            "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                       "bouncedRecipients": [{"emailAddress": "bob@example.com", "action": "failed",
                                              "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
                       "timestamp": "2026-12-07T04:20:01.000Z", "feedbackId": "0102018c-feedback"}}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ses_sends_signed_emails_and_a_signed_sns_bounce_fails_over() {
    let Some(py) = python_with(&["botocore"]) else {
        return;
    };
    let api = StandIn::start(200, json!({"MessageId": "0102018c-ses-e2e-1"})).await;
    let sns = sns_host().await;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let provider = format!(
        "[[providers]]\nname = \"ses\"\nkind = \"aws_ses\"\nurl = {:?}\nregion = \"eu-west-1\"\n\
         access_key_id = {AWS_KEY_ID:?}\nsecret_access_key = {AWS_SECRET:?}\n\
         from = \"Acme <no-reply@acme.example>\"\nconfiguration_set = \"otpd\"\n\
         sns_topic_arn = {SES_TOPIC:?}\nsns_url_prefix = \"{sns}/\"\nchannels = [\"email\"]\n",
        api.url
    );
    let otpd = OtpdProcess::start(&dir, &email_config_with(&sink, "ses", &provider)).await;
    thrifty(&otpd).await;
    let post = |body: String| {
        otpd.anonymous(Method::POST, "/v1/receipts/ses")
            .header("content-type", "text/plain; charset=UTF-8")
            .body(body)
            .reply()
    };
    let text_of = |r: &Req| {
        r.json()["Content"]["Simple"]["Body"]["Text"]["Data"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // 1. Delivered.
    let first = otpd.send_ok(&email("alice@example.com")).await.id();
    let mail1 = api.nth(1).await;
    wait_status(&otpd, &first, 0, "sent").await;
    let mut forged: Value = serde_json::from_str(&sns_notification(
        &sns,
        SES_TOPIC,
        &ses_event("Delivery", "0102018c-ses-e2e-1"),
    ))
    .unwrap();
    forged["Message"] = ses_event("Delivery", "0102018c-ses-e2e-2")
        .to_string()
        .into();
    post(forged.to_string())
        .await
        .assert_problem(403, "forbidden", "a tampered SNS message");
    post(sns_notification(
        &sns,
        SES_TOPIC,
        &ses_event("Delivery", "0102018c-ses-e2e-1"),
    ))
    .await
    .assert_status(200, "a signed delivery event");
    wait_status(&otpd, &first, 0, "delivered").await;
    let code = extract_code(&text_of(&mail1)).unwrap();
    otpd.check(&json!({"id": first, "code": code}))
        .await
        .assert_status(200, "the code emailed through SES checks");

    // 2. Bounced: the sink emails the same code.
    api.reply(200, json!({"MessageId": "0102018c-ses-e2e-2"}));
    let second = otpd.send_ok(&email("bob@example.com")).await.id();
    let mail2 = api.nth(2).await;
    wait_status(&otpd, &second, 0, "sent").await;
    post(sns_notification(
        &sns,
        SES_TOPIC,
        &ses_event("Bounce", "0102018c-ses-e2e-2"),
    ))
    .await
    .assert_status(200, "a signed bounce");
    wait_status(&otpd, &second, 0, "failed").await;
    assert_eq!(
        sink_code(&sink, "bob@example.com").await,
        extract_code(&text_of(&mail2)).unwrap()
    );

    // 3. The day's budget.
    otpd.send(&email("carol@example.com")).await.assert_problem(
        403,
        "budget_exceeded",
        "a third email through SES",
    );
    assert!(!otpd.output_contains(AWS_SECRET));

    let case = |name: &str, r: &Req| {
        json!({"name": name, "operation": "SendEmail", "method": r.method,
               "url": format!("{}{}", api.url, r.path), "headers": r.headers, "body": r.body})
    };
    let spec = json!({"service": "sesv2", "region": "eu-west-1", "access_key": AWS_KEY_ID,
        "secret_key": AWS_SECRET,
        "cases": [case("SendEmail", &mail1), case("SendEmail (second)", &mail2)]});
    let out = run_checker(&py, "aws_provider_requests.py", &spec).await;
    assert_eq!(out.matches("ok ").count(), 2, "{out}");
}

const SENDGRID_KEY: &str = "SG.e2e-sendgrid-key.0123456789";
const SENDGRID_PRIVATE: &str = include_str!("../../otpd-delivery/testdata/sendgrid-test-key.pem");
/// The public half of `sendgrid-test-key.pem`, as SendGrid's settings page shows its key.
const SENDGRID_PUBLIC: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEMT2WAKSMhu5vRXodDzh/G4xCn3qOnLxgl1tIQwADyIZehDuvPhUxgCW0+OiUvfex8YgIjBZl4AWp0ashwVpwGw==";

/// A DER INTEGER of a big-endian unsigned number.
fn der_integer(bytes: &[u8]) -> Vec<u8> {
    let mut b: Vec<u8> = bytes.iter().copied().skip_while(|&x| x == 0).collect();
    if b.first().is_none_or(|&x| x & 0x80 != 0) {
        b.insert(0, 0);
    }
    let mut out = vec![0x02, b.len() as u8];
    out.extend(b);
    out
}

/// SendGrid's Event Webhook signature: ECDSA P-256 / SHA-256 over timestamp + body, as
/// DER, base64 (jsonwebtoken's ES256 gives r || s, re-encoded here).
fn sendgrid_sign(timestamp: &str, body: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_ec_pem(SENDGRID_PRIVATE.as_bytes()).unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(
            jsonwebtoken::crypto::sign(
                format!("{timestamp}{body}").as_bytes(),
                &key,
                jsonwebtoken::Algorithm::ES256,
            )
            .unwrap(),
        )
        .unwrap();
    let mut seq = der_integer(&raw[..32]);
    seq.extend(der_integer(&raw[32..]));
    let mut der = vec![0x30, seq.len() as u8];
    der.extend(seq);
    base64::engine::general_purpose::STANDARD.encode(der)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sendgrid_sends_the_librarys_mail_and_a_signed_bounce_fails_over() {
    let Some(py) = python_with(&["sendgrid"]) else {
        return;
    };
    let api = StandIn::start(202, Value::Null).await;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let provider = format!(
        "[[providers]]\nname = \"sg\"\nkind = \"sendgrid\"\nurl = {:?}\napi_key = {SENDGRID_KEY:?}\n\
         from = \"Acme <no-reply@acme.example>\"\npublic_key = {SENDGRID_PUBLIC:?}\n\
         channels = [\"email\"]\n",
        api.url
    );
    let otpd = OtpdProcess::start(&dir, &email_config_with(&sink, "sg", &provider)).await;
    thrifty(&otpd).await;
    let post = |body: String, timestamp: &str, signature: String| {
        otpd.anonymous(Method::POST, "/v1/receipts/sg")
            .header("content-type", "application/json")
            .header("x-twilio-email-event-webhook-timestamp", timestamp)
            .header("x-twilio-email-event-webhook-signature", signature)
            .body(body)
            .reply()
    };
    let events = |message_id: &str, event: &str| {
        // The shape of SendGrid's Event Webhook reference.
        let mut e = json!({"email": "alice@example.com", "timestamp": 1765081200, "event": event,
            "sg_event_id": "rbtnWrG1DVDGGGFHFyun0A==", "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            "otpd_message_id": message_id});
        if event == "bounce" {
            e["type"] = "bounce".into();
            e["reason"] =
                "550 5.1.1 The email account that you tried to reach does not exist".into();
            e["status"] = "5.1.1".into();
        }
        json!([{"email": "alice@example.com", "timestamp": 1765081199, "event": "processed",
                "otpd_message_id": message_id}, e])
        .to_string()
    };
    let dlv = |v: &Value| v["deliveries"][0]["id"].as_str().unwrap().to_string();
    let text_of = |r: &Req| {
        r.json()["content"][0]["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let ts = "1765081201";

    // 1. Delivered.
    let first = otpd.send_ok(&email("alice@example.com")).await.id();
    let mail1 = api.nth(1).await;
    let v = wait_status(&otpd, &first, 0, "sent").await;
    let delivered = events(&dlv(&v), "delivered");
    let good = sendgrid_sign(ts, &delivered);
    post(delivered.replace("delivered", "deferred"), ts, good.clone())
        .await
        .assert_problem(403, "forbidden", "a tampered event post");
    post(delivered.clone(), "1765081202", good.clone())
        .await
        .assert_problem(403, "forbidden", "another timestamp");
    post(delivered.clone(), ts, good.clone())
        .await
        .assert_status(200, "a signed event post");
    wait_status(&otpd, &first, 0, "delivered").await;
    let code = extract_code(&text_of(&mail1)).unwrap();
    otpd.check(&json!({"id": first, "code": code}))
        .await
        .assert_status(200, "the code emailed through SendGrid checks");

    // 2. Bounced: the sink emails the same code.
    let second = otpd.send_ok(&email("bob@example.com")).await.id();
    let mail2 = api.nth(2).await;
    let v = wait_status(&otpd, &second, 0, "sent").await;
    let bounced = events(&dlv(&v), "bounce");
    post(bounced.clone(), ts, sendgrid_sign(ts, &bounced))
        .await
        .assert_status(200, "a signed bounce");
    wait_status(&otpd, &second, 0, "failed").await;
    assert_eq!(
        sink_code(&sink, "bob@example.com").await,
        extract_code(&text_of(&mail2)).unwrap()
    );

    // 3. The day's budget.
    otpd.send(&email("carol@example.com")).await.assert_problem(
        403,
        "budget_exceeded",
        "a third email through SendGrid",
    );
    assert!(!otpd.output_contains(SENDGRID_KEY));

    let case = |name: &str, r: &Req| {
        let b = r.json();
        json!({"name": name, "method": r.method, "path": r.path,
               "authorization": r.headers["authorization"], "body": b,
               "mail": {"from_email": "no-reply@acme.example", "from_name": "Acme",
                        "to": b["personalizations"][0]["to"][0]["email"], "subject": b["subject"],
                        "text": b["content"][0]["value"], "html": b["content"][1]["value"],
                        "message_id": b["custom_args"]["otpd_message_id"]}})
    };
    let spec = json!({"api_key": SENDGRID_KEY, "public_key": SENDGRID_PUBLIC,
        "cases": [case("mail send", &mail1), case("mail send (second)", &mail2)],
        "webhooks": [
            {"name": "delivered events", "body": delivered, "signature": good, "timestamp": ts, "valid": true},
            {"name": "tampered events", "body": delivered.replace("delivered", "deferred"),
             "signature": good, "timestamp": ts, "valid": false},
            {"name": "bounce events", "body": bounced, "signature": sendgrid_sign(ts, &bounced),
             "timestamp": ts, "valid": true}]});
    let out = run_checker(&py, "sendgrid_provider_requests.py", &spec).await;
    assert_eq!(out.matches("ok ").count(), 5, "{out}");
}

// Postmark: no official Python SDK; the stand-in checks the request of Postmark's Email
// API reference, and webhooks carry the receipt token as their HTTP Basic password (the
// way Postmark's webhook settings authenticate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmark_sends_the_documented_email_and_a_bounce_webhook_fails_over() {
    const TOKEN: &str = "e2e-postmark-server-token";
    const HOOK: &str = "e2e-postmark-webhook-password";
    let api = StandIn::start(
        200,
        json!({"To": "alice@example.com", "SubmittedAt": "2026-12-07T04:20:00.0000000Z",
               "MessageID": "b7bc2f4a-e38e-4336-af7d-e6c392c20001", "ErrorCode": 0, "Message": "OK"}),
    )
    .await;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let provider = format!(
        "[[providers]]\nname = \"pm\"\nkind = \"postmark\"\nurl = {:?}\napi_key = {TOKEN:?}\n\
         from = \"Acme <no-reply@acme.example>\"\nreceipt_token = {HOOK:?}\nchannels = [\"email\"]\n",
        api.url
    );
    let otpd = OtpdProcess::start(&dir, &email_config_with(&sink, "pm", &provider)).await;
    thrifty(&otpd).await;
    let basic = |password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("postmark:{password}"))
        )
    };
    let post = |body: &Value, password: &str| {
        otpd.anonymous(Method::POST, "/v1/receipts/pm")
            .header("authorization", basic(password))
            .json(body)
            .reply()
    };
    let assert_request = |r: &Req, to: &str| -> String {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/email");
        assert_eq!(r.headers["x-postmark-server-token"], TOKEN);
        assert_eq!(r.headers["accept"], "application/json");
        let b = r.json();
        let text = b["TextBody"].as_str().unwrap().to_string();
        assert_eq!(b["From"], "Acme <no-reply@acme.example>");
        assert_eq!(b["To"], to);
        assert_eq!(b["MessageStream"], "outbound");
        assert!(b["Subject"].is_string() && b["HtmlBody"].is_string(), "{b}");
        assert!(
            b["Metadata"]["otpd_message_id"]
                .as_str()
                .unwrap()
                .starts_with("dlv_")
        );
        let keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
        for k in &keys {
            assert!(
                [
                    "From",
                    "To",
                    "Subject",
                    "TextBody",
                    "HtmlBody",
                    "MessageStream",
                    "Metadata"
                ]
                .contains(k),
                "{k} is not a field of Postmark's Email API"
            );
        }
        extract_code(&text).unwrap()
    };

    // 1. Delivered.
    let first = otpd.send_ok(&email("alice@example.com")).await.id();
    let code = assert_request(&api.nth(1).await, "alice@example.com");
    wait_status(&otpd, &first, 0, "sent").await;
    // Postmark's Delivery webhook example.
    let delivery = json!({"RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound",
        "MessageID": "b7bc2f4a-e38e-4336-af7d-e6c392c20001", "Recipient": "alice@example.com",
        "Tag": "", "DeliveredAt": "2026-12-07T04:20:01Z", "Details": "Test delivery webhook details",
        "Metadata": {}});
    post(&delivery, "guess").await.assert_problem(
        403,
        "forbidden",
        "a webhook with another password",
    );
    post(&delivery, HOOK)
        .await
        .assert_status(200, "a webhook with the password");
    wait_status(&otpd, &first, 0, "delivered").await;
    otpd.check(&json!({"id": first, "code": code}))
        .await
        .assert_status(200, "the code emailed through Postmark checks");

    // 2. Bounced: the sink emails the same code.
    api.reply(
        200,
        json!({"To": "bob@example.com", "SubmittedAt": "2026-12-07T04:20:00.0000000Z",
               "MessageID": "b7bc2f4a-e38e-4336-af7d-e6c392c20002", "ErrorCode": 0, "Message": "OK"}),
    );
    let second = otpd.send_ok(&email("bob@example.com")).await.id();
    let code2 = assert_request(&api.nth(2).await, "bob@example.com");
    wait_status(&otpd, &second, 0, "sent").await;
    // Postmark's Bounce webhook example.
    let bounce = json!({"RecordType": "Bounce", "MessageStream": "outbound", "ID": 4323372036854775807_u64,
        "Type": "HardBounce", "TypeCode": 1, "Name": "Hard bounce", "Tag": "",
        "MessageID": "b7bc2f4a-e38e-4336-af7d-e6c392c20002", "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "Test bounce details", "Email": "bob@example.com", "From": "no-reply@acme.example",
        "BouncedAt": "2026-12-07T04:20:01Z", "DumpAvailable": true, "Inactive": true, "CanActivate": true,
        "Subject": "Test subject", "Content": "", "Metadata": {}});
    post(&bounce, HOOK)
        .await
        .assert_status(200, "a bounce webhook");
    wait_status(&otpd, &second, 0, "failed").await;
    assert_eq!(sink_code(&sink, "bob@example.com").await, code2);

    // 3. Inactive recipient (406 in a 422): fails over at once; 4. the day's budget.
    api.reply(422, json!({"ErrorCode": 406, "Message": "You tried to send to recipient(s) that have been marked as inactive."}));
    let third = otpd
        .send_ok(&json!({"to": "carol@example.com", "channel": "email"}))
        .await
        .id();
    api.nth(3).await;
    sink_code(&sink, "carol@example.com").await;
    let v = wait_status(&otpd, &third, 0, "sent").await;
    assert_eq!(v["deliveries"][0]["provider"], "sink", "{v}");
    otpd.send(&email("dave@example.com")).await.assert_problem(
        403,
        "budget_exceeded",
        "a third email through Postmark",
    );
    assert!(!otpd.output_contains(TOKEN));
}
