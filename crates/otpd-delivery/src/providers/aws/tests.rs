use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::*;
use crate::providers::testing::{FakeApi, message};

const KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TOPIC: &str = "arn:aws:sns:us-east-1:111122223333:otpd-events";
const TEST_KEY: &str = include_str!("../../../testdata/sns-test-key.pem");
const TEST_CERT: &str = include_str!("../../../testdata/sns-test-cert.pem");

fn config(url: &str) -> ProviderConfig {
    ProviderConfig {
        name: "aws".into(),
        kind: "aws_sms_voice".into(),
        url: Some(url.into()),
        channels: vec![Channel::Sms, Channel::Voice],
        timeout_ms: 2000,
        region: Some("us-east-1".into()),
        access_key_id: Some(KEY_ID.into()),
        secret_access_key: Some(SECRET.to_string().into()),
        from: Some("+12065550152".into()),
        configuration_set: Some("otpd".into()),
        sns_topic_arn: Some(TOPIC.into()),
        ..Default::default()
    }
}

async fn fake() -> (FakeApi, AwsSmsVoiceProvider) {
    let f = FakeApi::start(
        200,
        json!({"MessageId": "862a8790-60c0-4430-9b2b-658bdexample"}),
    )
    .await;
    let p = AwsSmsVoiceProvider::new(&config(&f.url)).unwrap();
    (f, p)
}

// The vector: botocore 1.44.5's `SigV4Auth(Credentials(KEY_ID, SECRET), "sms-voice",
// "us-east-1").add_auth` of this request at 2026-12-07T04:20:00Z (the official SDK's
// signer; the request as botocore's serializer builds SendTextMessage).
#[test]
fn the_signature_is_the_one_botocore_computes() {
    let p = AwsSmsVoiceProvider::new(&config("https://sms-voice.us-east-1.amazonaws.com")).unwrap();
    let body = br#"{"DestinationPhoneNumber":"+14255550156","MessageBody":"Your code is 123456.","MessageType":"TRANSACTIONAL","OriginationIdentity":"+12065550152","TimeToLive":60}"#;
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_617_200);
    let request = p
        .request("SendTextMessage", body.to_vec(), time)
        .unwrap()
        .build()
        .unwrap();
    let h = request.headers();
    assert_eq!(h["x-amz-date"], "20261207T042000Z");
    assert_eq!(h["content-type"], "application/x-amz-json-1.0");
    assert_eq!(h["x-amz-target"], "PinpointSMSVoiceV2.SendTextMessage");
    assert_eq!(
        h["authorization"],
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261207/us-east-1/sms-voice/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
         Signature=f38d6287b09fabece8e3e06aad85a71b9af39fb33839aa9cc8f784a8f0c32ce6"
    );
    assert!(h["authorization"].is_sensitive());
    assert_eq!(
        request.url().as_str(),
        "https://sms-voice.us-east-1.amazonaws.com/"
    );
}

#[tokio::test]
async fn an_sms_is_a_signed_send_text_message() {
    let (f, p) = fake().await;
    let sms = message(Channel::Sms, "+14255550156", "Your code is 123456.", "en");
    assert_eq!(
        p.send(&sms).await.unwrap(),
        Accepted::Queued {
            provider_message_id: Some("862a8790-60c0-4430-9b2b-658bdexample".into())
        }
    );
    let seen = f.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/");
    assert_eq!(
        seen.header("x-amz-target"),
        "PinpointSMSVoiceV2.SendTextMessage"
    );
    assert_eq!(seen.header("content-type"), "application/x-amz-json-1.0");
    assert!(
        seen.header("authorization")
            .starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
        "{}",
        seen.header("authorization")
    );
    assert!(
        seen.header("authorization")
            .contains("/us-east-1/sms-voice/aws4_request")
    );
    assert!(!seen.header("authorization").contains(SECRET));
    assert_eq!(
        seen.json(),
        json!({"DestinationPhoneNumber": "+14255550156", "OriginationIdentity": "+12065550152",
               "MessageBody": "Your code is 123456.", "MessageType": "TRANSACTIONAL",
               "TimeToLive": 60, "ConfigurationSetName": "otpd"})
    );
}

#[tokio::test]
async fn a_call_is_a_send_voice_message_with_a_polly_voice_for_the_locale() {
    let (f, p) = fake().await;
    let mut call = message(
        Channel::Voice,
        "+14255550156",
        "Your code is 1, 2, 3.",
        "fr-CA",
    );
    call.receipt_wait = Duration::from_secs(2);
    p.send(&call).await.unwrap();
    let seen = f.last();
    assert_eq!(
        seen.header("x-amz-target"),
        "PinpointSMSVoiceV2.SendVoiceMessage"
    );
    assert_eq!(
        seen.json(),
        json!({"DestinationPhoneNumber": "+14255550156", "OriginationIdentity": "+12065550152",
               "MessageBody": "Your code is 1, 2, 3.", "MessageBodyTextType": "TEXT",
               "VoiceId": "CHANTAL", "TimeToLive": 5, "ConfigurationSetName": "otpd"})
    );
    assert_eq!(voice_id_for("en"), "JOANNA");
    assert_eq!(
        voice_id_for("hi-IN"),
        "JOANNA",
        "Aditi is not a VoiceId of the API"
    );
    assert_eq!(voice_id_for("de"), "MARLENE");
}

#[tokio::test]
async fn errors_map_by_their_aws_type() {
    let (f, p) = fake().await;
    let sms = message(Channel::Sms, "+14255550156", "x", "en");
    for (http, kind, transient) in [
        (400, "ValidationException", false),
        (403, "AccessDeniedException", false),
        (404, "ResourceNotFoundException", false),
        (402, "ServiceQuotaExceededException", false),
        (409, "ConflictException", false),
        (400, "ThrottlingException", true),
        (500, "InternalServerException", true),
        (503, "", true),
        (400, "", false),
    ] {
        f.reply(http, json!({"__type": kind, "message": "x"}));
        let err = p.send(&sms).await.unwrap_err();
        assert_eq!(
            matches!(err, ProviderError::Transient(_)),
            transient,
            "{http} {kind}"
        );
        assert!(err.to_string().contains(kind), "{err}");
        assert!(!err.to_string().contains(SECRET));
    }
}

#[test]
fn config_check_names_each_missing_key() {
    let full = config("http://x");
    for (key, strip) in [
        (
            "region",
            (|c: &mut ProviderConfig| c.region = None) as fn(&mut ProviderConfig),
        ),
        ("access_key_id", |c| c.access_key_id = None),
        ("secret_access_key", |c| c.secret_access_key = None),
        ("from", |c| c.from = None),
    ] {
        let mut c = full.clone();
        strip(&mut c);
        let err = AwsSmsVoiceProvider::new(&c).err().unwrap();
        assert!(err.contains(&format!("needs {key}")), "{err}");
    }
    let mut c = full.clone();
    c.sns_topic_arn = Some("arn:aws:sqs:us-east-1:1:q".into());
    assert!(
        AwsSmsVoiceProvider::new(&c)
            .err()
            .unwrap()
            .contains("sns_topic_arn")
    );
    let mut c = full.clone();
    c.voice_id = Some("HAL".into());
    assert!(
        AwsSmsVoiceProvider::new(&c)
            .err()
            .unwrap()
            .contains("voice_id")
    );
    let mut c = full;
    c.channels = vec![Channel::Email];
    assert!(AwsSmsVoiceProvider::new(&c).is_err());
}

#[test]
fn delivery_events_map_to_receipts() {
    // From "Messaging Events" of the AWS End User Messaging user guide.
    let ev = |t: &str| {
        json!({"eventType": t, "eventVersion": "1.0", "isFinal": true,
        "messageId": "862a8790-60c0-4430-9b2b-658bdexample", "messageStatus": "X",
        "messageStatusDescription": "Message has been accepted by phone carrier"})
    };
    for (t, status) in [
        ("TEXT_DELIVERED", ReceiptStatus::Delivered),
        ("TEXT_SUCCESSFUL", ReceiptStatus::Delivered),
        ("VOICE_COMPLETED", ReceiptStatus::Delivered),
        ("TEXT_BLOCKED", ReceiptStatus::Failed),
        ("TEXT_TTL_EXPIRED", ReceiptStatus::Failed),
        ("VOICE_NO_ANSWER", ReceiptStatus::Failed),
        ("VOICE_BUSY", ReceiptStatus::Failed),
        ("TEXT_QUEUED", ReceiptStatus::Pending),
        ("VOICE_RINGING", ReceiptStatus::Pending),
    ] {
        let r = event_receipt(&ev(t)).unwrap();
        assert_eq!(r.status, status, "{t}");
        assert_eq!(r.message_id, "862a8790-60c0-4430-9b2b-658bdexample");
        assert_eq!(r.error.is_some(), status == ReceiptStatus::Failed);
    }
    assert!(event_receipt(&json!({"eventType": "TEXT_DELIVERED"})).is_none());
}

/// The test key's PKCS#8 DER.
fn key_der() -> Vec<u8> {
    let b64: String = TEST_KEY
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    STANDARD.decode(b64).unwrap()
}

/// Signs an SNS message as SNS does: RSA PKCS#1 v1.5 over the DigestInfo of the SHA-1
/// (`SignatureVersion` 1) or SHA-256 (2) digest of the string to sign (RFC 8017, 9.2).
fn sign(mut message: Value) -> Value {
    use rsa::pkcs8::DecodePrivateKey;
    use sha1::Digest;
    let envelope: sns::Envelope = serde_json::from_value(message.clone()).unwrap();
    let text = envelope.string_to_sign().unwrap();
    let mut digest_info = if message["SignatureVersion"] == "1" {
        let mut d = hex_bytes("3021300906052b0e03021a05000414");
        d.extend(sha1::Sha1::digest(text.as_bytes()));
        d
    } else {
        let mut d = hex_bytes("3031300d060960864801650304020105000420");
        d.extend(sha2::Sha256::digest(text.as_bytes()));
        d
    };
    let key = rsa::RsaPrivateKey::from_pkcs8_der(&key_der()).unwrap();
    let sig = key
        .sign(rsa::Pkcs1v15Sign::new_unprefixed(), &digest_info)
        .unwrap();
    digest_info.clear();
    message["Signature"] = STANDARD.encode(sig).into();
    message
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// A local SNS host: serves the test certificate and records subscribe-URL hits.
async fn sns_host() -> (String, Arc<Mutex<Vec<String>>>) {
    let hits: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = hits.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(uri.to_string());
            if uri.path().ends_with(".pem") {
                TEST_CERT.to_string()
            } else {
                "<ConfirmSubscriptionResponse/>".to_string()
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hits)
}

fn notification(host: &str, version: &str, event: &Value) -> Value {
    sign(json!({
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Message": event.to_string(),
        "Timestamp": "2026-12-07T04:20:00.655Z",
        "SignatureVersion": version,
        "Signature": "",
        "SigningCertURL": format!("{host}/SimpleNotificationService-0000000000000000000000000000000a.pem"),
        "UnsubscribeURL": format!("{host}/?Action=Unsubscribe"),
    }))
}

async fn receive(
    p: &AwsSmsVoiceProvider,
    body: &Value,
) -> Result<Vec<ParsedReceipt>, ReceiptError> {
    let headers = HeaderMap::new();
    let body = body.to_string();
    p.parse_receipt_batch_online(&ReceiptRequest {
        headers: &headers,
        query: "",
        body: body.as_bytes(),
        now: chrono::Utc::now(),
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn signed_sns_notifications_of_the_topic_are_receipts_and_nothing_else_is() {
    let (host, hits) = sns_host().await;
    let mut c = config("http://127.0.0.1:9");
    c.sns_url_prefix = Some(format!("{host}/"));
    let p = AwsSmsVoiceProvider::new(&c).unwrap();
    let event = json!({"eventType": "TEXT_DELIVERED", "messageId": "m-1", "isFinal": true});
    for version in ["1", "2"] {
        let got = receive(&p, &notification(&host, version, &event))
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].status, ReceiptStatus::Delivered);
        assert_eq!(got[0].message_id, "m-1");
    }
    // The certificate was fetched once.
    assert_eq!(
        hits.lock()
            .unwrap()
            .iter()
            .filter(|h| h.ends_with(".pem"))
            .count(),
        1
    );
    // A changed message, another topic (validly signed), a bad version, no signature.
    let mut tampered = notification(&host, "1", &event);
    tampered["Message"] = json!({"eventType": "TEXT_DELIVERED", "messageId": "m-2"})
        .to_string()
        .into();
    let mut other_topic = notification(&host, "1", &event);
    other_topic["TopicArn"] = "arn:aws:sns:us-east-1:999999999999:attacker".into();
    let other_topic = sign(other_topic);
    let mut version3 = notification(&host, "1", &event);
    version3["SignatureVersion"] = "3".into();
    let mut unsigned = notification(&host, "2", &event);
    unsigned["Signature"] = "".into();
    let mut elsewhere = notification(&host, "2", &event);
    elsewhere["SigningCertURL"] = "https://attacker.example/SimpleNotificationService-1.pem".into();
    let elsewhere = sign(elsewhere);
    for (what, forged) in [
        ("tampered", tampered),
        ("another topic", other_topic),
        ("version 3", version3),
        ("unsigned", unsigned),
        ("certificate elsewhere", elsewhere),
    ] {
        assert_eq!(
            receive(&p, &forged).await,
            Err(ReceiptError::Forged),
            "{what}"
        );
    }
    assert!(matches!(
        receive(&p, &json!({"Type": "Notification"})).await,
        Err(ReceiptError::Malformed(_))
    ));
}

#[tokio::test]
async fn a_signed_subscription_confirmation_is_confirmed() {
    let (host, hits) = sns_host().await;
    let mut c = config("http://127.0.0.1:9");
    c.sns_url_prefix = Some(format!("{host}/"));
    let p = AwsSmsVoiceProvider::new(&c).unwrap();
    let confirm = |subscribe: String| {
        sign(json!({
            "Type": "SubscriptionConfirmation",
            "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82efd087cc3b7849e05798d2d2785c03b0879594eeac82c01f235d0e717736",
            "TopicArn": TOPIC,
            "Message": "You have chosen to subscribe to the topic. To confirm the subscription, visit the SubscribeURL included in this message.",
            "SubscribeURL": subscribe,
            "Timestamp": "2026-12-07T04:20:00.655Z",
            "SignatureVersion": "1",
            "Signature": "",
            "SigningCertURL": format!("{host}/SimpleNotificationService-0000000000000000000000000000000a.pem"),
        }))
    };
    let ok = confirm(format!(
        "{host}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=2336"
    ));
    assert_eq!(receive(&p, &ok).await, Ok(vec![]));
    assert!(
        hits.lock()
            .unwrap()
            .iter()
            .any(|h| h.contains("Action=ConfirmSubscription"))
    );
    let away = confirm("https://attacker.example/?Action=ConfirmSubscription".into());
    assert_eq!(receive(&p, &away).await, Err(ReceiptError::Forged));
}

#[test]
fn certificates_come_only_from_the_topic_regions_sns_host_over_https() {
    let p = AwsSmsVoiceProvider::new(&config("http://x")).unwrap();
    let sns = p.sns.as_ref().unwrap();
    assert!(sns.allowed(
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
        true
    ));
    for bad in [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-f3.pem",
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-f3.pem",
        "https://sns.us-east-1.amazonaws.com.attacker.example/x.pem",
        "https://sns.us-east-1.amazonaws.com:8443/x.pem",
        "https://user@sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com/x.txt",
        "https://s3.amazonaws.com/sns.us-east-1.amazonaws.com/x.pem",
    ] {
        assert!(!sns.allowed(bad, true), "{bad}");
    }
    assert!(sns.allowed(
        "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=1",
        false
    ));
    assert!(
        sns::rsa_key_of_certificate(TEST_CERT.as_bytes(), chrono::Utc::now().timestamp()).is_some()
    );
    assert!(
        sns::rsa_key_of_certificate(TEST_CERT.as_bytes(), 0).is_none(),
        "not yet valid"
    );
}

#[tokio::test]
async fn without_a_topic_no_receipt_is_believed() {
    let mut c = config("http://x");
    c.sns_topic_arn = None;
    let p = AwsSmsVoiceProvider::new(&c).unwrap();
    assert_eq!(receive(&p, &json!({})).await, Err(ReceiptError::Forged));
}
