//! Provider receipts through the real binary, one test per way a receipt is
//! authenticated: Vonage's signed SMS delivery receipts (`sig`, md5hash of the sorted
//! parameters and the signature secret), Vonage's signed Voice webhooks (an HS256 JWT
//! whose `payload_hash` binds the body) after a call made with an RS256 application JWT,
//! and Arkesel's unsigned delivery webhooks with the operator's `receipt_token` in the
//! callback URL (`?token=` or HTTP Basic), and otpd's generic JSON receipts of the `http`
//! provider with its `receipt_token` as `Authorization: Bearer` (401 `unauthorized`
//! without it; matched only among that provider's messages). Each provider
//! API is a local stand-in that answers its documented success reply; each receipt is
//! answered as the contract says: forged or unsigned → 403 `forbidden`, malformed → 400
//! `invalid_request`, an unknown message → 404 `not_found`, and only a genuine receipt
//! moves the delivery.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::Engine;
use common::*;
use md5::{Digest, Md5};
use serde_json::{Value, json};

/// What the stand-in API saw: path, headers, body.
type Seen = Arc<Mutex<Vec<(String, HeaderMap, String)>>>;

/// Starts a stand-in provider API answering every request with `status` and `reply`.
async fn fake_api(status: u16, reply: Value) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .fallback(
            move |State(seen): State<Seen>, uri: Uri, headers: HeaderMap, body: Bytes| {
                let reply = reply.clone();
                async move {
                    seen.lock().unwrap().push((
                        uri.path().to_string(),
                        headers,
                        String::from_utf8_lossy(&body).into_owned(),
                    ));
                    (StatusCode::from_u16(status).unwrap(), axum::Json(reply))
                }
            },
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// Waits until the first delivery of `id` has `status`; returns the verification.
async fn wait_delivery(otpd: &OtpdProcess, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let v = otpd.verification(id).await.body;
        if v["deliveries"][0]["status"] == status {
            return v;
        }
        assert!(Instant::now() < deadline, "waited for {status}: {v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn form(params: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// Vonage's `md5hash` signature, computed here by hand from Vonage's documented rule.
fn vonage_sig(params: &[(String, String)], secret: &str) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut md5 = Md5::new();
    for (k, v) in sorted {
        md5.update(format!("&{k}={}", v.replace(['&', '='], "_")));
    }
    md5.update(secret);
    md5.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

const VONAGE_SECRET: &str = "e2e-vonage-signature-secret";
const VONAGE_ID: &str = "0C000000217B7F02";

fn dlr(status: &str, message_id: &str, signed_with: Option<&str>) -> String {
    let mut p: Vec<(String, String)> = [
        ("msisdn", "447911123456"),
        ("to", "Acme"),
        ("network-code", "23410"),
        ("messageId", message_id),
        ("price", "0.03330000"),
        ("status", status),
        ("scts", "2001011400"),
        ("err-code", if status == "delivered" { "0" } else { "1" }),
        ("api-key", "abcd1234"),
        ("message-timestamp", "2020-01-01 12:00:00"),
        ("timestamp", "1582650446"),
        ("nonce", "ec11dd3e-1e7f-4db5-9467-82b02cd223b9"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(secret) = signed_with {
        let sig = vonage_sig(&p, secret);
        p.push(("sig".into(), sig));
    }
    form(&p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vonage_signed_delivery_receipts_move_the_delivery_and_forgeries_do_not() {
    let (api, seen) = fake_api(
        200,
        json!({"message-count": "1", "messages": [{"to": "447911123456",
            "message-id": VONAGE_ID, "status": "0", "remaining-balance": "15.5",
            "message-price": "0.0333", "network": "23410"}]}),
    )
    .await;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.channels = vec!["email".into()];
    config.extra_toml = format!(
        "[[providers]]\nname = \"vg\"\nkind = \"vonage\"\nurl = {api:?}\napi_key = \"abcd1234\"\n\
         api_secret = \"e2e-vonage-api-secret\"\nfrom = \"Acme\"\nchannels = [\"sms\"]\n\
         signature_secret = {VONAGE_SECRET:?}\n\
         status_callback_url = \"https://otp.example.com/v1/receipts/vg\"\n"
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    let id = otpd.send_ok(&json!({"to": "+447911123456"})).await.id();
    wait_delivery(&otpd, &id, "sent").await;
    let (path, _, body) = seen.lock().unwrap()[0].clone();
    assert_eq!(path, "/sms/json");
    assert!(body.contains("client-ref=dlv_"), "{body}");
    let post = |body: String| {
        otpd.anonymous(Method::POST, "/v1/receipts/vg")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .reply()
    };
    post(dlr("delivered", VONAGE_ID, None))
        .await
        .assert_problem(403, "forbidden", "unsigned receipt");
    post(dlr("delivered", VONAGE_ID, Some("a-guessed-secret")))
        .await
        .assert_problem(403, "forbidden", "receipt signed with another secret");
    let tampered =
        dlr("failed", VONAGE_ID, Some(VONAGE_SECRET)).replace("status=failed", "status=delivered");
    post(tampered)
        .await
        .assert_problem(403, "forbidden", "receipt altered after signing");
    post(dlr("", VONAGE_ID, Some(VONAGE_SECRET)))
        .await
        .assert_problem(400, "invalid_request", "signed receipt without a status");
    post(dlr("delivered", "0C00000000000000", Some(VONAGE_SECRET)))
        .await
        .assert_problem(404, "not_found", "receipt for a message otpd never sent");
    assert_eq!(
        otpd.verification(&id).await.body["deliveries"][0]["status"],
        "sent",
        "nothing above changed the delivery"
    );
    post(dlr("buffered", VONAGE_ID, Some(VONAGE_SECRET)))
        .await
        .assert_status(200, "an intermediate status is acknowledged");
    // Vonage's dashboard may send receipts as GET, the parameters in the query string.
    let get = |query: String| {
        otpd.anonymous(Method::GET, &format!("/v1/receipts/vg?{query}"))
            .reply()
    };
    get(dlr("delivered", VONAGE_ID, None)).await.assert_problem(
        403,
        "forbidden",
        "an unsigned GET receipt",
    );
    get(dlr("accepted", VONAGE_ID, Some(VONAGE_SECRET)))
        .await
        .assert_status(200, "a signed GET receipt");
    assert_eq!(
        otpd.verification(&id).await.body["deliveries"][0]["status"],
        "sent"
    );
    post(dlr("delivered", VONAGE_ID, Some(VONAGE_SECRET)))
        .await
        .assert_status(200, "a genuine receipt");
    wait_delivery(&otpd, &id, "delivered").await;
    assert!(!otpd.output_contains("e2e-vonage-api-secret"));
    assert!(!otpd.output_contains(VONAGE_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arkesel_webhooks_are_believed_only_with_the_receipt_token() {
    const ARK_ID: &str = "9b752841-7ee7-4d40-b4fe-768bfb1da4f0";
    const TOKEN: &str = "e2e-arkesel-receipt-token";
    let (api, seen) = fake_api(
        200,
        json!({"status": "success", "data": [{"recipient": "233544919953", "id": ARK_ID}]}),
    )
    .await;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.channels = vec!["email".into()];
    config.extra_toml = format!(
        "[[providers]]\nname = \"ark\"\nkind = \"arkesel\"\nurl = {api:?}\napi_key = \"ark-key\"\n\
         from = \"Acme\"\nchannels = [\"sms\"]\nreceipt_token = {TOKEN:?}\n\
         status_callback_url = \"https://otp.example.com/v1/receipts/ark?token={TOKEN}\"\n"
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    let id = otpd.send_ok(&json!({"to": "+233544919953"})).await.id();
    wait_delivery(&otpd, &id, "sent").await;
    let (_, headers, body) = seen.lock().unwrap()[0].clone();
    assert_eq!(headers["api-key"], "ark-key");
    let sent: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        sent["callback_url"],
        format!("https://otp.example.com/v1/receipts/ark?token={TOKEN}")
    );
    let webhook = |query: &str| {
        otpd.anonymous(Method::POST, &format!("/v1/receipts/ark?{query}"))
            .reply()
    };
    webhook(&format!("sms_id={ARK_ID}&status=DELIVERED"))
        .await
        .assert_problem(403, "forbidden", "no token");
    webhook(&format!("token=guess&sms_id={ARK_ID}&status=DELIVERED"))
        .await
        .assert_problem(403, "forbidden", "wrong token");
    webhook(&format!("token={TOKEN}&status=DELIVERED"))
        .await
        .assert_problem(400, "invalid_request", "no message id");
    webhook(&format!("token={TOKEN}&sms_id=unknown-id&status=DELIVERED"))
        .await
        .assert_problem(404, "not_found", "unknown message");
    assert_eq!(
        otpd.verification(&id).await.body["deliveries"][0]["status"],
        "sent"
    );
    // The token as the HTTP Basic password, the report as JSON.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("arkesel:{TOKEN}"));
    otpd.anonymous(Method::POST, "/v1/receipts/ark")
        .header("authorization", format!("Basic {basic}"))
        .json(&json!({"sms_id": ARK_ID, "status": "DELIVERED"}))
        .reply()
        .await
        .assert_status(200, "a genuine webhook");
    wait_delivery(&otpd, &id, "delivered").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vonage_call_uses_an_application_jwt_and_its_signed_events_mark_it() {
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
    use sha2::Sha256;
    const CALL: &str = "63f61863-4a51-4f6b-86e1-46edebcf9356";
    const APP: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../otpd-delivery/tests/fixtures"
    );
    let (api, seen) = fake_api(
        201,
        json!({"uuid": CALL, "status": "started", "direction": "outbound",
               "conversation_uuid": "CON-f972836a-550f-45fa-956c-12a2ab5b7d22"}),
    )
    .await;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.channels = vec!["email".into()];
    config.extra_toml = format!(
        "[[providers]]\nname = \"vgv\"\nkind = \"vonage\"\nurl = {api:?}\n\
         application_id = {APP:?}\nprivate_key_file = \"{fixtures}/vonage_test_key.pem\"\n\
         voice_from = \"447700900001\"\nchannels = [\"voice\"]\n\
         signature_secret = {VONAGE_SECRET:?}\n\
         status_callback_url = \"https://otp.example.com/v1/receipts/vgv\"\n"
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    let id = otpd
        .send_ok(&json!({"to": "+447911123456", "channel": "voice"}))
        .await
        .id();
    wait_delivery(&otpd, &id, "sent").await;
    let (path, headers, body) = seen.lock().unwrap()[0].clone();
    assert_eq!(path, "/v1/calls");
    let token = headers["authorization"]
        .to_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string();
    let public = std::fs::read(format!("{fixtures}/vonage_test_key.pub.pem")).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Value>(
        &token,
        &DecodingKey::from_rsa_pem(&public).unwrap(),
        &validation,
    )
    .expect("an RS256 JWT under the application's key")
    .claims;
    assert_eq!(claims["application_id"], APP);
    let call: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        call["to"],
        json!([{"type": "phone", "number": "447911123456"}])
    );
    assert_eq!(call["ncco"][0]["action"], "talk");
    assert_eq!(
        call["event_url"],
        json!(["https://otp.example.com/v1/receipts/vgv"])
    );
    let script = call["ncco"][0]["text"].as_str().unwrap();
    let code = extract_code(script).expect("the code read digit by digit");

    let event =
        json!({"uuid": CALL, "conversation_uuid": "CON-f972836a-550f-45fa-956c-12a2ab5b7d22",
        "status": "completed", "direction": "outbound", "timestamp": "2026-01-01T12:00:00.000Z",
        "from": "447700900001", "to": "447911123456", "duration": "14"})
        .to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signed_at = |secret: &str, payload: &str, iat: u64| {
        let hash: String = <Sha256 as sha2::Digest>::digest(payload.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"iat": iat, "jti": "e2e", "iss": "Vonage", "payload_hash": hash}),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let signed = |secret: &str, payload: &str| signed_at(secret, payload, now);
    // The events below are signed as Vonage signs them (HS256 under the signature secret,
    // the body's SHA-256 in `payload_hash`, per Vonage's signed-webhooks guide): the
    // official Vonage SDK (vonage-jwt's `verify_signature`, pinned in
    // requirements-test.txt) accepts such a token, and refuses it under another secret.
    if let Some(py) = python_with(&["vonage_jwt"]) {
        let token = signed(VONAGE_SECRET, &event);
        let verify = |secret: &str| {
            let out = std::process::Command::new(&py)
                .args([
                    "-W",
                    "ignore",
                    "-c",
                    "import sys; from vonage_jwt.verify_jwt import verify_signature; \
                     print(verify_signature(sys.argv[1], sys.argv[2]))",
                    &token,
                    secret,
                ])
                .output()
                .expect("run the Vonage SDK");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        assert_eq!(
            verify(VONAGE_SECRET),
            "True",
            "the SDK refused our Vonage token"
        );
        assert_eq!(verify("another-signature-secret"), "False");
    }
    let post = |auth: Option<String>, body: String| {
        let mut req = otpd
            .anonymous(Method::POST, "/v1/receipts/vgv")
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = auth {
            req = req.bearer_auth(token);
        }
        req.reply()
    };
    post(None, event.clone())
        .await
        .assert_problem(403, "forbidden", "an unsigned event");
    post(Some(signed("a-guessed-secret", &event)), event.clone())
        .await
        .assert_problem(403, "forbidden", "signed with another secret");
    let ringing = event.replace("completed", "ringing");
    post(Some(signed(VONAGE_SECRET, &ringing)), event.clone())
        .await
        .assert_problem(403, "forbidden", "a token for another body");
    post(Some(signed(VONAGE_SECRET, &ringing)), ringing)
        .await
        .assert_status(200, "an intermediate call status");
    // A genuine event signed an hour ago (captured and replayed) or an hour ahead.
    post(
        Some(signed_at(VONAGE_SECRET, &event, now - 3600)),
        event.clone(),
    )
    .await
    .assert_problem(403, "forbidden", "a replayed event");
    post(
        Some(signed_at(VONAGE_SECRET, &event, now + 3600)),
        event.clone(),
    )
    .await
    .assert_problem(403, "forbidden", "an event signed in the future");
    assert_eq!(
        otpd.verification(&id).await.body["deliveries"][0]["status"],
        "sent"
    );
    post(Some(signed(VONAGE_SECRET, &event)), event)
        .await
        .assert_status(200, "the signed completed event");
    wait_delivery(&otpd, &id, "delivered").await;
    otpd.check(&json!({"id": id, "code": code}))
        .await
        .assert_status(200, "check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_webhook_verification_echoes_the_challenge_only_for_the_verify_token() {
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.channels = vec!["sms".into()];
    config.extra_toml = "[[providers]]\nname = \"wa\"\nkind = \"whatsapp_cloud\"\n\
         phone_number_id = \"106540352242922\"\naccess_token = \"EAAG-e2e\"\n\
         app_secret = \"e2e-app-secret\"\nverify_token = \"e2e-verify-token\"\n\
         template = \"otp_auth\"\nchannels = [\"whatsapp\"]\n"
        .into();
    let otpd = OtpdProcess::start(&dir, &config).await;
    let check = |token: &str| {
        otpd.anonymous(
            Method::GET,
            &format!(
                "/v1/receipts/wa?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={token}"
            ),
        )
        .reply()
    };
    let r = check("e2e-verify-token").await;
    r.assert_status(200, "the right token");
    assert_eq!(r.text, "1158201444");
    check("guess")
        .await
        .assert_problem(403, "forbidden", "a wrong token");
    otpd.anonymous(
        Method::GET,
        "/v1/receipts/sink?hub.mode=subscribe&hub.challenge=1&hub.verify_token=x",
    )
    .reply()
    .await
    .assert_problem(404, "not_found", "a provider that makes no such check");
    let doc = otpd
        .anonymous(Method::GET, "/openapi.json")
        .reply()
        .await
        .body;
    let params = doc["paths"]["/v1/receipts/{provider}"]["get"]["parameters"].to_string();
    assert!(params.contains("hub.verify_token"), "{params}");
}

/// Waits until the delivery of verification `id` has `status`.
async fn wait_status(otpd: &OtpdProcess, id: &str, status: &str) {
    wait_delivery(otpd, id, status).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_receipts_need_the_providers_token_and_match_only_its_own_messages() {
    const OTHER_TOKEN: &str = "e2e-other-receipt-token";
    let dir = TestDir::new();
    let token_file = dir.path().join("other_receipt_token");
    std::fs::write(&token_file, format!("{OTHER_TOKEN}\n")).unwrap();
    // `sink` (sms) takes receipts with SINK_RECEIPT_TOKEN, `other` (email) with the token
    // in its file, `open` (voice) has no token and so takes none.
    let sink = Sink::start().await;
    let other = Sink::start().await;
    let open = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.channels = vec!["sms".into()];
    config.extra_toml = format!(
        "[[providers]]\nname = \"other\"\nkind = \"http\"\nurl = {:?}\nchannels = [\"email\"]\n\
         receipt_token_file = {:?}\n\n\
         [[providers]]\nname = \"open\"\nkind = \"http\"\nurl = {:?}\nchannels = [\"voice\"]\n",
        other.url(),
        token_file.display().to_string(),
        open.url(),
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    let sms = otpd.send_ok(&json!({"to": "+14155550191"})).await.id();
    let email = otpd
        .send_ok(&json!({"to": "someone@example.com", "channel": "email"}))
        .await
        .id();
    let voice = otpd
        .send_ok(&json!({"to": "+14155550192", "channel": "voice"}))
        .await
        .id();
    let sms_msg = sink.wait_for(1, DELIVERY_TIMEOUT).await[0]["message_id"].clone();
    let email_msg = other.wait_for(1, DELIVERY_TIMEOUT).await[0]["message_id"].clone();
    let voice_msg = open.wait_for(1, DELIVERY_TIMEOUT).await[0]["message_id"].clone();
    for id in [&sms, &email, &voice] {
        wait_status(&otpd, id, "sent").await;
    }
    let post = |provider: &str, auth: Option<String>, message_id: &Value, status: &str| {
        let mut req = otpd
            .anonymous(Method::POST, &format!("/v1/receipts/{provider}"))
            .json(&json!({"message_id": message_id, "status": status}));
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        req.reply()
    };
    let bearer = |t: &str| Some(format!("Bearer {t}"));

    post("sink", None, &sms_msg, "failed")
        .await
        .assert_problem(401, "unauthorized", "no token");
    post("sink", bearer("a-guessed-token"), &sms_msg, "failed")
        .await
        .assert_problem(401, "unauthorized", "a wrong token");
    post("sink", bearer(OTHER_TOKEN), &sms_msg, "failed")
        .await
        .assert_problem(401, "unauthorized", "another provider's token");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x:{SINK_RECEIPT_TOKEN}"));
    post("sink", Some(format!("Basic {basic}")), &sms_msg, "failed")
        .await
        .assert_problem(401, "unauthorized", "the token, but not as a bearer token");
    post("sink", None, &json!("not even a message"), "nonsense")
        .await
        .assert_problem(401, "unauthorized", "a bad body without a token");
    // A provider without a receipt_token takes no receipt, whatever token comes with it.
    for auth in [None, bearer(SINK_RECEIPT_TOKEN), bearer("")] {
        let reply = post("open", auth, &voice_msg, "failed").await;
        reply.assert_problem(401, "unauthorized", "a provider without a receipt_token");
        assert!(reply.text.contains("receipt_token"), "{}", reply.text);
    }
    // The right token for `sink`, naming a message `other` sent: as for an unknown id.
    post("sink", bearer(SINK_RECEIPT_TOKEN), &email_msg, "failed")
        .await
        .assert_problem(404, "not_found", "another provider's message");
    for id in [&sms, &email, &voice] {
        assert_eq!(
            otpd.verification(id).await.body["deliveries"][0]["status"],
            "sent",
            "no refused receipt changed a delivery"
        );
    }

    post("sink", bearer(SINK_RECEIPT_TOKEN), &sms_msg, "delivered")
        .await
        .assert_status(200, "sink's token, sink's message");
    wait_status(&otpd, &sms, "delivered").await;
    post("other", bearer(OTHER_TOKEN), &email_msg, "failed")
        .await
        .assert_status(200, "other's token (read from its file), other's message");
    wait_status(&otpd, &email, "failed").await;
    assert_eq!(
        otpd.verification(&voice).await.body["deliveries"][0]["status"],
        "sent"
    );
    assert!(!otpd.output_contains(SINK_RECEIPT_TOKEN));
    assert!(!otpd.output_contains(OTHER_TOKEN));
}

#[test]
fn a_missing_receipt_token_file_is_a_config_error() {
    let dir = TestDir::new();
    let mut config = Config::for_url("http://127.0.0.1:9");
    config.extra_toml = format!(
        "[[providers]]\nname = \"other\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9\"\n\
         channels = [\"email\"]\nreceipt_token_file = {:?}\n",
        dir.path().join("missing").display().to_string()
    );
    std::fs::write(dir.config_path(), config.to_toml()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_otpd"))
        .arg("--config")
        .arg(dir.config_path())
        .args(["config", "check"])
        .current_dir(dir.path())
        .env_remove("OTPD_CONFIG")
        .env_remove("OTPD_REDIS_URL")
        .env_remove("OTPD_SECRET")
        .env("OTPD_DATABASE_URL", dir.database_url())
        .env("OTPD_MASTER_KEY", dir.master_key())
        .output()
        .expect("run otpd config check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("receipt_token_file"), "{stderr}");
}

// Issue 21, item 4: Vonage signs Voice events only when "signed callbacks" are switched on
// for the application (off by default; Vonage's "Webhooks" guide, "Decoding signed
// webhooks"), so an ordinary application posts its event webhook
// (https://developer.vonage.com/en/voice/voice-api/webhook-reference#event-webhook) with
// no Authorization. otpd puts the provider's receipt_token in the call's event_url and
// believes unsigned voice events that carry it; before, every such event was 403 and every
// call timed out and failed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_vonage_voice_events_count_with_the_token_otpd_put_in_the_event_url() {
    const CALL: &str = "63f61863-4a51-4f6b-86e1-46edebcf9357";
    const TOKEN: &str = "e2e-vonage-voice-token";
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../otpd-delivery/tests/fixtures"
    );
    let (api, seen) = fake_api(201, json!({"uuid": CALL, "status": "started"})).await;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.channels = vec!["email".into()];
    config.extra_toml = format!(
        "[[providers]]\nname = \"vgv\"\nkind = \"vonage\"\nurl = {api:?}\n\
         application_id = \"aaaaaaaa-bbbb-cccc-dddd-0123456789ab\"\n\
         private_key_file = \"{fixtures}/vonage_test_key.pem\"\n\
         voice_from = \"447700900001\"\nchannels = [\"voice\"]\nreceipt_token = {TOKEN:?}\n\
         status_callback_url = \"https://otp.example.com/v1/receipts/vgv\"\n"
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    let id = otpd
        .send_ok(&json!({"to": "+447911123457", "channel": "voice"}))
        .await
        .id();
    wait_delivery(&otpd, &id, "sent").await;
    let call: Value = serde_json::from_str(&seen.lock().unwrap()[0].2).unwrap();
    let event_url = call["event_url"][0].as_str().unwrap().to_string();
    assert_eq!(
        event_url,
        format!("https://otp.example.com/v1/receipts/vgv?token={TOKEN}")
    );
    assert!(!otpd.output_contains(TOKEN), "the token is never logged");
    let event = json!({"from": "447700900001", "to": "447911123457", "uuid": CALL,
        "conversation_uuid": "CON-f972836a-550f-45fa-956c-12a2ab5b7d23", "status": "completed",
        "direction": "outbound", "timestamp": "2026-01-01T12:00:00.000Z", "duration": "14"})
    .to_string();
    let post = |query: &str| {
        otpd.anonymous(Method::POST, &format!("/v1/receipts/vgv{query}"))
            .header("content-type", "application/json")
            .body(event.clone())
            .reply()
    };
    post("").await.assert_problem(403, "forbidden", "no token");
    post("?token=guess")
        .await
        .assert_problem(403, "forbidden", "a wrong token");
    post(&format!("?token={TOKEN}"))
        .await
        .assert_status(200, "the unsigned event with the token");
    wait_delivery(&otpd, &id, "delivered").await;
}
