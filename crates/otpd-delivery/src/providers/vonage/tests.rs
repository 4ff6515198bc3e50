//! The Vonage adapter against a local stand-in of Vonage's SMS, Voice and Messages APIs
//! that checks the documented method, path, authentication and body, and answers with
//! Vonage's documented replies; and its receipt parsers against documented callbacks.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use sha2::Digest;

use super::signing::{SigMethod, sms_signature};
use super::*;
use crate::providers::testing::{FakeApi, message, pairs};

const PRIVATE_KEY: &str = include_str!("../../../tests/fixtures/vonage_test_key.pem");
const PUBLIC_KEY: &str = include_str!("../../../tests/fixtures/vonage_test_key.pub.pem");
const APP_ID: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";

fn ok_reply(status: &str) -> Value {
    json!({"message-count": "1", "messages": [{"to": "447700900000",
        "message-id": "0C000000217B7F02", "status": status,
        "remaining-balance": "15.53590000", "message-price": "0.03330000", "network": "23410"}]})
}

fn config(url: &str) -> ProviderConfig {
    ProviderConfig {
        name: "vg".into(),
        kind: "vonage".into(),
        url: Some(url.into()),
        channels: vec![Channel::Sms, Channel::Voice, Channel::Whatsapp],
        timeout_ms: 2000,
        api_key: Some("abcd1234".into()),
        api_secret: Some("vonage-secret-1".to_string().into()),
        from: Some("Acme".into()),
        voice_from: Some("447700900001".into()),
        whatsapp_from: Some("447700900002".into()),
        template: Some("otp_auth".into()),
        application_id: Some(APP_ID.into()),
        private_key: Some(PRIVATE_KEY.to_string().into()),
        signature_secret: Some("sig-secret-1".to_string().into()),
        status_callback_url: Some("https://otp.example.com/v1/receipts/vg".into()),
        ..Default::default()
    }
}

async fn fake(status: u16, body: Value) -> (FakeApi, VonageProvider) {
    let f = FakeApi::start(status, body).await;
    let p = VonageProvider::new(&config(&f.url)).unwrap();
    (f, p)
}

/// The application JWT of a request, verified with the application's public key.
fn verified_claims(authorization: &str) -> Value {
    let token = authorization
        .strip_prefix("Bearer ")
        .expect("a bearer token");
    let mut v = Validation::new(Algorithm::RS256);
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).unwrap(),
        &v,
    )
    .expect("an RS256 JWT under the application's key")
    .claims
}

#[tokio::test]
async fn sms_posts_the_documented_form_and_reads_the_message_id() {
    let (f, p) = fake(200, ok_reply("0")).await;
    let got = p
        .send(&message(
            Channel::Sms,
            "+447700900000",
            "Your code is 123456.",
            "en",
        ))
        .await
        .unwrap();
    assert_eq!(
        got,
        Accepted::Queued {
            provider_message_id: Some("0C000000217B7F02".into())
        }
    );
    let seen = f.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/sms/json");
    assert_eq!(
        seen.form(),
        pairs(&[
            ("api_key", "abcd1234"),
            ("api_secret", "vonage-secret-1"),
            ("from", "Acme"),
            ("to", "447700900000"),
            ("text", "Your code is 123456."),
            ("type", "text"),
            ("client-ref", "dlv_1"),
            ("callback", "https://otp.example.com/v1/receipts/vg"),
        ])
    );
    p.send(&message(Channel::Sms, "+447700900000", "رمز 123456", "ar"))
        .await
        .unwrap();
    assert_eq!(f.last().form()[5], ("type".into(), "unicode".into()));
}

#[tokio::test]
async fn sms_statuses_map_to_transient_or_permanent() {
    let (f, p) = fake(200, ok_reply("0")).await;
    let m = message(Channel::Sms, "+447700900000", "x", "en");
    for (code, transient) in [
        ("1", true),
        ("5", true),
        ("2", false),
        ("3", false),
        ("4", false),
        ("7", false),
        ("9", false),
        ("15", false),
    ] {
        f.reply(200, ok_reply(code));
        let err = p.send(&m).await.unwrap_err();
        assert_eq!(
            matches!(err, ProviderError::Transient(_)),
            transient,
            "{code}: {err}"
        );
        assert!(err.to_string().contains(&format!("status {code}")));
        assert!(!err.to_string().contains("vonage-secret-1"));
    }
    f.reply(500, json!({}));
    assert!(matches!(p.send(&m).await, Err(ProviderError::Transient(_))));
    f.reply(401, json!({}));
    assert!(matches!(p.send(&m).await, Err(ProviderError::Permanent(_))));
}

#[tokio::test]
async fn voice_creates_a_call_with_a_talk_ncco_and_an_application_jwt() {
    let (f, p) = fake(
        201,
        json!({"uuid": "63f61863-4a51-4f6b-86e1-46edebcf9356", "status": "started",
               "direction": "outbound", "conversation_uuid": "CON-f972836a-550f-45fa-956c-12a2ab5b7d22"}),
    )
    .await;
    let script = "Your code is: 1, 2, 3, 4, 5, 6. Again: 1, 2, 3, 4, 5, 6.";
    let got = p
        .send(&message(Channel::Voice, "+447700900000", script, "fr"))
        .await
        .unwrap();
    assert_eq!(
        got,
        Accepted::Queued {
            provider_message_id: Some("63f61863-4a51-4f6b-86e1-46edebcf9356".into())
        }
    );
    let seen = f.last();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/v1/calls")
    );
    assert!(seen.header("content-type").starts_with("application/json"));
    let claims = verified_claims(&seen.header("authorization"));
    assert_eq!(claims["application_id"], APP_ID);
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() == 32));
    assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap());
    assert_eq!(
        seen.json(),
        json!({
            "to": [{"type": "phone", "number": "447700900000"}],
            "from": {"type": "phone", "number": "447700900001"},
            "ncco": [{"action": "talk", "text": script, "language": "fr-FR"}],
            "event_url": ["https://otp.example.com/v1/receipts/vg"],
        })
    );
    for (status, transient) in [
        (400, false),
        (401, false),
        (403, false),
        (429, true),
        (500, true),
    ] {
        f.reply(
            status,
            json!({"type": "https://developer.nexmo.com/api-errors#x", "title": "Bad Request", "detail": "x"}),
        );
        let err = p
            .send(&message(Channel::Voice, "+447700900000", script, "en"))
            .await
            .unwrap_err();
        assert_eq!(
            matches!(err, ProviderError::Transient(_)),
            transient,
            "{status}"
        );
    }
}

#[tokio::test]
async fn whatsapp_sends_the_authentication_template_through_the_messages_api() {
    let (f, p) = fake(
        202,
        json!({"message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"}),
    )
    .await;
    let got = p
        .send(&message(Channel::Whatsapp, "+447700900000", "x", "pt-BR"))
        .await
        .unwrap();
    assert_eq!(
        got,
        Accepted::Queued {
            provider_message_id: Some("aaaaaaaa-bbbb-cccc-dddd-0123456789ab".into())
        }
    );
    let seen = f.last();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(
        verified_claims(&seen.header("authorization"))["application_id"],
        APP_ID
    );
    let cloud = whatsapp_auth_template("+447700900000", "otp_auth", "pt_BR", "123456");
    assert_eq!(
        seen.json(),
        json!({"message_type": "custom", "channel": "whatsapp", "to": "447700900000",
               "from": "447700900002", "client_ref": "dlv_1",
               "custom": {"type": "template", "template": cloud["template"]}})
    );
    f.reply(422, json!({"title": "Invalid params"}));
    let err = p
        .send(&message(Channel::Whatsapp, "+447700900000", "x", "en"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::Permanent("Vonage HTTP 422 (Invalid params)".into())
    );
}

/// A Vonage SMS delivery receipt, as its documentation shows one.
fn dlr(status: &str, err: &str) -> Vec<(String, String)> {
    pairs(&[
        ("msisdn", "447700900000"),
        ("to", "Acme"),
        ("network-code", "23410"),
        ("messageId", "0C000000217B7F02"),
        ("price", "0.03330000"),
        ("status", status),
        ("scts", "2001011400"),
        ("err-code", err),
        ("api-key", "abcd1234"),
        ("client-ref", "dlv_1"),
        ("message-timestamp", "2020-01-01 12:00:00"),
        ("timestamp", "1582650446"),
        ("nonce", "ec11dd3e-1e7f-4db5-9467-82b02cd223b9"),
    ])
}

fn signed(
    mut params: Vec<(String, String)>,
    method: SigMethod,
    secret: &str,
) -> Vec<(String, String)> {
    let sig = sms_signature(method, secret, &params);
    params.push(("sig".into(), sig));
    params
}

fn form(params: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// When the receipts of these tests arrive: ten seconds after their JWTs' `iat`.
const RECEIVED_AT: i64 = ISSUED_AT + 10;
/// The `iat` of the webhook JWTs these tests sign.
const ISSUED_AT: i64 = 1_700_000_000;

fn parse(
    p: &VonageProvider,
    headers: &reqwest::header::HeaderMap,
    query: &str,
    body: &str,
) -> Result<ParsedReceipt, ReceiptError> {
    parse_at(p, headers, query, body, RECEIVED_AT)
}

fn parse_at(
    p: &VonageProvider,
    headers: &reqwest::header::HeaderMap,
    query: &str,
    body: &str,
    now: i64,
) -> Result<ParsedReceipt, ReceiptError> {
    p.parse_receipt(&ReceiptRequest {
        headers,
        query,
        body: body.as_bytes(),
        now: chrono::DateTime::from_timestamp(now, 0).unwrap(),
    })
    .unwrap()
}

#[test]
fn signed_sms_receipts_are_verified_and_mapped_as_form_or_json() {
    let p = VonageProvider::new(&config("http://127.0.0.1:9")).unwrap();
    let h = reqwest::header::HeaderMap::new();
    let r = parse(
        &p,
        &h,
        "",
        &form(&signed(
            dlr("delivered", "0"),
            SigMethod::Md5Hash,
            "sig-secret-1",
        )),
    )
    .unwrap();
    assert_eq!(
        r,
        ParsedReceipt {
            message_id: "dlv_1".into(),
            status: ReceiptStatus::Delivered,
            error: None
        }
    );
    for (status, want) in [
        ("failed", ReceiptStatus::Failed),
        ("rejected", ReceiptStatus::Failed),
        ("expired", ReceiptStatus::Failed),
        ("accepted", ReceiptStatus::Pending),
        ("buffered", ReceiptStatus::Pending),
        ("unknown", ReceiptStatus::Pending),
    ] {
        let body = form(&signed(
            dlr(status, "6"),
            SigMethod::Md5Hash,
            "sig-secret-1",
        ));
        let r = parse(&p, &h, "", &body).unwrap();
        assert_eq!(r.status, want, "{status}");
        assert_eq!(r.error.as_deref(), Some("Vonage err-code 6"));
    }
    // POST-JSON webhooks sign the same parameters.
    let json_body: serde_json::Map<String, Value> =
        signed(dlr("delivered", "0"), SigMethod::Md5Hash, "sig-secret-1")
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
    let r = parse(&p, &h, "", &Value::Object(json_body).to_string()).unwrap();
    assert_eq!(r.status, ReceiptStatus::Delivered);
    // Unsigned, signed with another secret, or altered after signing: forged.
    assert_eq!(
        parse(&p, &h, "", &form(&dlr("delivered", "0"))),
        Err(ReceiptError::Forged)
    );
    let other = form(&signed(
        dlr("delivered", "0"),
        SigMethod::Md5Hash,
        "not-the-secret",
    ));
    assert_eq!(parse(&p, &h, "", &other), Err(ReceiptError::Forged));
    let mut altered = signed(dlr("failed", "0"), SigMethod::Md5Hash, "sig-secret-1");
    altered[5].1 = "delivered".into();
    assert_eq!(
        parse(&p, &h, "", &form(&altered)),
        Err(ReceiptError::Forged)
    );
    // Signed but without the receipt's fields: malformed.
    let empty = form(&signed(
        pairs(&[("timestamp", "1")]),
        SigMethod::Md5Hash,
        "sig-secret-1",
    ));
    assert!(matches!(
        parse(&p, &h, "", &empty),
        Err(ReceiptError::Malformed(_))
    ));
}

#[test]
fn the_configured_signature_method_is_used_and_a_token_serves_unsigned_accounts() {
    let mut c = config("http://127.0.0.1:9");
    c.signature_method = Some("sha512".into());
    let p = VonageProvider::new(&c).unwrap();
    let h = reqwest::header::HeaderMap::new();
    let good = form(&signed(
        dlr("delivered", "0"),
        SigMethod::Sha512,
        "sig-secret-1",
    ));
    assert!(parse(&p, &h, "", &good).is_ok());
    let md5 = form(&signed(
        dlr("delivered", "0"),
        SigMethod::Md5Hash,
        "sig-secret-1",
    ));
    assert_eq!(parse(&p, &h, "", &md5), Err(ReceiptError::Forged));
    c.signature_method = Some("crc".into());
    assert!(VonageProvider::new(&c).is_err());

    let mut c = config("http://127.0.0.1:9");
    c.signature_secret = None;
    c.receipt_token = Some("tok-1".to_string().into());
    let p = VonageProvider::new(&c).unwrap();
    let body = form(&dlr("delivered", "0"));
    assert!(parse(&p, &h, "token=tok-1", &body).is_ok());
    assert_eq!(
        parse(&p, &h, "token=nope", &body),
        Err(ReceiptError::Forged)
    );
    c.receipt_token = None;
    let p = VonageProvider::new(&c).unwrap();
    assert_eq!(
        parse(&p, &h, "", &body),
        Err(ReceiptError::Forged),
        "no way to authenticate"
    );
}

fn webhook_jwt(secret: &str, body: &str) -> reqwest::header::HeaderMap {
    let hash: String = sha2::Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"iat": ISSUED_AT, "jti": "e1", "iss": "Vonage", "payload_hash": hash, "api_key": "abcd1234"}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().unwrap());
    h
}

#[test]
fn voice_events_and_message_statuses_need_a_signed_jwt() {
    let p = VonageProvider::new(&config("http://127.0.0.1:9")).unwrap();
    let call = json!({"uuid": "63f61863-4a51-4f6b-86e1-46edebcf9356", "conversation_uuid": "CON-1",
        "status": "completed", "direction": "outbound", "timestamp": "2020-01-01T12:00:00.000Z",
        "duration": "12", "from": "447700900001", "to": "447700900000"})
    .to_string();
    let r = parse(&p, &webhook_jwt("sig-secret-1", &call), "", &call).unwrap();
    assert_eq!(r.message_id, "63f61863-4a51-4f6b-86e1-46edebcf9356");
    assert_eq!(r.status, ReceiptStatus::Delivered);
    for (status, want) in [
        ("ringing", ReceiptStatus::Pending),
        ("answered", ReceiptStatus::Pending),
        ("busy", ReceiptStatus::Failed),
        ("unanswered", ReceiptStatus::Failed),
        ("timeout", ReceiptStatus::Failed),
    ] {
        let body = json!({"uuid": "u1", "status": status}).to_string();
        assert_eq!(
            parse(&p, &webhook_jwt("sig-secret-1", &body), "", &body)
                .unwrap()
                .status,
            want
        );
    }
    let wa = json!({"message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab", "to": "447700900000",
        "from": "447700900002", "timestamp": "2025-02-03T12:14:25Z", "status": "read",
        "channel": "whatsapp", "client_ref": "dlv_1"})
    .to_string();
    let r = parse(&p, &webhook_jwt("sig-secret-1", &wa), "", &wa).unwrap();
    assert_eq!(
        (r.message_id.as_str(), r.status),
        (
            "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
            ReceiptStatus::Delivered
        )
    );
    let h = reqwest::header::HeaderMap::new();
    assert_eq!(parse(&p, &h, "", &wa), Err(ReceiptError::Forged));
    assert_eq!(
        parse(&p, &webhook_jwt("other", &wa), "", &wa),
        Err(ReceiptError::Forged)
    );
    assert_eq!(
        parse(&p, &webhook_jwt("sig-secret-1", &call), "", &wa),
        Err(ReceiptError::Forged),
        "the payload hash binds the token to its body"
    );
}

// Vonage signs Voice webhooks only with "signed callbacks" on for the application (off by
// default: https://developer.vonage.com/en/getting-started/concepts/webhooks#decoding-signed-webhooks),
// so the event of an ordinary application arrives without `Authorization`. The payload is
// the Voice API's event webhook
// (https://developer.vonage.com/en/voice/voice-api/webhook-reference#event-webhook, status
// `completed`), POSTed as JSON to the event_url otpd gave in the call.
#[tokio::test]
async fn unsigned_voice_events_are_believed_with_the_token_otpd_put_in_the_event_url() {
    let f = FakeApi::start(
        201,
        json!({"uuid": "63f61863-4a51-4f6b-86e1-46edebcf9356", "status": "started"}),
    )
    .await;
    let mut c = config(&f.url);
    c.receipt_token = Some("voice-token-1".to_string().into());
    let p = VonageProvider::new(&c).unwrap();
    p.send(&message(Channel::Voice, "+447700900000", "x", "en"))
        .await
        .unwrap();
    let event_url = f.last().json()["event_url"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        event_url,
        "https://otp.example.com/v1/receipts/vg?token=voice-token-1"
    );
    let query = event_url.split_once('?').unwrap().1;
    let event = json!({"from": "447700900001", "to": "447700900000",
        "uuid": "63f61863-4a51-4f6b-86e1-46edebcf9356", "conversation_uuid": "CON-f972836a-550f-45fa-956c-12a2ab5b7d22",
        "status": "completed", "direction": "outbound", "timestamp": "2020-01-01T14:00:00.000Z",
        "rate": "0.01", "price": "0.001", "duration": "12", "network": "23410",
        "start_time": "2020-01-01T14:00:00.000Z", "end_time": "2020-01-01T14:00:12.000Z"})
    .to_string();
    let none = reqwest::header::HeaderMap::new();
    let r = parse(&p, &none, query, &event).unwrap();
    assert_eq!(
        (r.message_id.as_str(), r.status),
        (
            "63f61863-4a51-4f6b-86e1-46edebcf9356",
            ReceiptStatus::Delivered
        )
    );
    // Without the token, or with another: refused.
    assert_eq!(parse(&p, &none, "", &event), Err(ReceiptError::Forged));
    assert_eq!(
        parse(&p, &none, "token=guess", &event),
        Err(ReceiptError::Forged)
    );
    // A JWT that is there is still checked (signed callbacks on): a bad one is refused
    // even with the token.
    assert_eq!(
        parse(&p, &webhook_jwt("other", &event), query, &event),
        Err(ReceiptError::Forged)
    );
    // Message statuses stay JWT-only (the Messages API always signs).
    let wa = json!({"message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab", "status": "read"})
        .to_string();
    assert_eq!(parse(&p, &none, query, &wa), Err(ReceiptError::Forged));
    // No receipt token configured: unsigned voice events are refused.
    let p = VonageProvider::new(&config(&f.url)).unwrap();
    assert_eq!(parse(&p, &none, query, &event), Err(ReceiptError::Forged));
}

#[test]
fn config_needs_what_each_channel_uses() {
    let base = config("http://127.0.0.1:9");
    assert!(VonageProvider::new(&base).is_ok());
    let mut c = base.clone();
    c.api_secret = None;
    assert!(
        VonageProvider::new(&c)
            .err()
            .unwrap()
            .contains("api_secret")
    );
    c.channels = vec![Channel::Voice];
    assert!(
        VonageProvider::new(&c).is_ok(),
        "voice needs no SMS credentials"
    );
    let mut c = base.clone();
    c.application_id = None;
    assert!(
        VonageProvider::new(&c)
            .err()
            .unwrap()
            .contains("application_id")
    );
    c.channels = vec![Channel::Sms];
    assert!(VonageProvider::new(&c).is_ok());
    let mut c = base.clone();
    c.private_key = Some("not a key".to_string().into());
    assert!(
        VonageProvider::new(&c)
            .err()
            .unwrap()
            .contains("RSA private key")
    );
    let mut c = base.clone();
    c.channels = vec![Channel::Email];
    assert!(VonageProvider::new(&c).is_err());
    let mut c = base;
    c.template = None;
    assert!(VonageProvider::new(&c).err().unwrap().contains("template"));
}

#[test]
fn a_signed_webhook_replayed_later_is_refused() {
    let p = VonageProvider::new(&config("http://127.0.0.1:9")).unwrap();
    let body = json!({"uuid": "u1", "status": "completed"}).to_string();
    let signed = webhook_jwt("sig-secret-1", &body);
    assert_eq!(
        parse_at(&p, &signed, "", &body, ISSUED_AT + 60)
            .unwrap()
            .status,
        ReceiptStatus::Delivered,
        "a minute after it was signed"
    );
    for later in [ISSUED_AT + 600, ISSUED_AT + 86_400] {
        assert_eq!(
            parse_at(&p, &signed, "", &body, later),
            Err(ReceiptError::Forged),
            "{} s after it was signed",
            later - ISSUED_AT
        );
    }
    assert_eq!(
        parse_at(&p, &signed, "", &body, ISSUED_AT - 600),
        Err(ReceiptError::Forged),
        "signed in the future"
    );
}
