//! The Twilio adapter against a local server that records each request exactly as
//! Twilio would receive it, and answers with Twilio's documented replies.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::providers::testing::{FakeApi, pairs};

async fn fake_twilio() -> FakeApi {
    FakeApi::start(
        201,
        json!({"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}),
    )
    .await
}

const SID: &str = "AC00000000000000000000000000000001";
const TOKEN: &str = "twilio-auth-token-0001";
const CALLBACK: &str = "https://otp.example.com/v1/receipts/tw";

fn provider(url: &str) -> TwilioProvider {
    TwilioProvider::new(&ProviderConfig {
        name: "tw".into(),
        kind: "twilio".into(),
        url: Some(url.into()),
        channels: vec![Channel::Sms, Channel::Whatsapp, Channel::Voice],
        timeout_ms: 2000,
        account_sid: Some(SID.into()),
        auth_token: Some(TOKEN.to_string().into()),
        from: Some("+15005550006".into()),
        content_sid: Some(CONTENT.into()),
        status_callback_url: Some(CALLBACK.into()),
        ..Default::default()
    })
    .unwrap()
}

/// A Content template SID (the shape of Twilio's docs: `HX` and 32 hex digits).
const CONTENT: &str = "HXb5b62575e6e4ff6129ad7c8efe1f983e";

fn message(channel: Channel, body: &str) -> OutboundMessage {
    crate::providers::testing::message(channel, "+14155550123", body, "en")
}

#[tokio::test]
async fn sms_is_a_form_post_to_messages_with_basic_auth() {
    let fake = fake_twilio().await;
    let p = provider(&fake.url);
    let accepted = p
        .send(&message(Channel::Sms, "Your code is 123456."))
        .await
        .unwrap();
    assert_eq!(
        accepted,
        Accepted::Queued {
            provider_message_id: Some("SM0123456789abcdef0123456789abcdef".into())
        }
    );
    let seen = fake.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    assert_eq!(
        seen.header("authorization"),
        format!("Basic {}", STANDARD.encode(format!("{SID}:{TOKEN}")))
    );
    assert_eq!(
        seen.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        seen.form(),
        pairs(&[
            ("To", "+14155550123"),
            ("From", "+15005550006"),
            ("Body", "Your code is 123456."),
            ("StatusCallback", CALLBACK),
        ])
    );
}

/// A service's messaging configuration for the destination (Twilio Verify's per-country
/// Messaging Service) replaces the provider's `From` for SMS, as Twilio's Messages API
/// takes it: `MessagingServiceSid` instead of `From`.
#[tokio::test]
async fn a_messaging_configuration_sends_sms_through_its_messaging_service() {
    let fake = fake_twilio().await;
    let p = provider(&fake.url);
    let sid = "MG9752274e9e519418a7406176694466fa";
    let mut m = message(Channel::Sms, "Your code is 123456.");
    m.messaging_service_sid = Some(sid.into());
    p.send(&m).await.unwrap();
    assert_eq!(
        fake.last().form(),
        pairs(&[
            ("To", "+14155550123"),
            ("MessagingServiceSid", sid),
            ("Body", "Your code is 123456."),
            ("StatusCallback", CALLBACK),
        ])
    );
}

// Contract change (issue 21): WhatsApp is an approved Content template, never a free-form
// `Body`, and `<Say>` names a documented voice with its own language.
#[tokio::test]
async fn whatsapp_prefixes_both_numbers_and_voice_posts_twiml_to_calls() {
    let fake = fake_twilio().await;
    let p = provider(&fake.url);
    p.send(&message(Channel::Whatsapp, "code 1")).await.unwrap();
    fake.reply(201, json!({"sid": "CA01", "status": "queued"}));
    let call = p
        .send(&message(Channel::Voice, "Your code is: 1, 2. <again>"))
        .await
        .unwrap();
    assert_eq!(
        call,
        Accepted::Queued {
            provider_message_id: Some("CA01".into())
        }
    );
    let seen = fake.seen();
    assert_eq!(
        seen[0].form()[0],
        ("To".into(), "whatsapp:+14155550123".into())
    );
    assert_eq!(
        seen[0].form()[1],
        ("From".into(), "whatsapp:+15005550006".into())
    );
    assert_eq!(
        seen[1].path,
        format!("/2010-04-01/Accounts/{SID}/Calls.json")
    );
    assert_eq!(
        seen[1].form()[2],
        (
            "Twiml".into(),
            "<Response><Say voice=\"Polly.Joanna\" language=\"en-US\">Your code is: 1, 2. &lt;again&gt;</Say></Response>"
                .into()
        )
    );
}

// Expected request from Twilio's "Send templates created with the Content Template Builder"
// (https://www.twilio.com/docs/content/send-templates-created-with-the-content-template-builder):
// POST /2010-04-01/Accounts/{AccountSid}/Messages with To=whatsapp:+…, From=whatsapp:+…,
// ContentSid=HX…, ContentVariables={"1":"…"} — and no Body (error 63016 otherwise).
#[tokio::test]
async fn whatsapp_is_a_content_template_per_twilios_docs() {
    let fake = fake_twilio().await;
    let p = provider(&fake.url);
    p.send(&message(Channel::Whatsapp, "Your code is 123456."))
        .await
        .unwrap();
    let seen = fake.last();
    assert_eq!(
        seen.path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    assert_eq!(
        seen.form(),
        pairs(&[
            ("To", "whatsapp:+14155550123"),
            ("From", "whatsapp:+15005550006"),
            ("ContentSid", CONTENT),
            ("ContentVariables", r#"{"1":"123456"}"#),
            ("StatusCallback", CALLBACK),
        ])
    );
}

#[tokio::test]
async fn content_templates_are_chosen_per_locale_then_language_then_default() {
    let fake = fake_twilio().await;
    let fr = "HX00000000000000000000000000000f12";
    let pt_br = "HX000000000000000000000000000000b2";
    let p = TwilioProvider::new(&ProviderConfig {
        name: "tw".into(),
        kind: "twilio".into(),
        url: Some(fake.url.clone()),
        channels: vec![Channel::Whatsapp],
        timeout_ms: 2000,
        account_sid: Some(SID.into()),
        auth_token: Some(TOKEN.to_string().into()),
        from: Some("+15005550006".into()),
        content_sid: Some(CONTENT.into()),
        content_sids: [
            ("fr".to_string(), fr.to_string()),
            ("pt-BR".to_string(), pt_br.to_string()),
        ]
        .into(),
        ..Default::default()
    })
    .unwrap();
    for (locale, expected) in [
        ("fr-CA", fr),
        ("fr", fr),
        ("pt_BR", pt_br),
        ("pt-PT", CONTENT),
        ("de", CONTENT),
    ] {
        let m = crate::providers::testing::message(Channel::Whatsapp, "+14155550123", "x", locale);
        p.send(&m).await.unwrap();
        let form = fake.last().form();
        let sid = form
            .iter()
            .find(|(k, _)| k == "ContentSid")
            .map(|(_, v)| v.clone());
        assert_eq!(sid.as_deref(), Some(expected), "{locale}");
    }
}

// Twilio's Messages resource (https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource):
// MessagingServiceSid "MG…" replaces From; API keys (https://www.twilio.com/docs/iam/api-keys)
// authenticate as HTTP Basic `SK…:secret` on the same /Accounts/{AccountSid}/ URL.
#[tokio::test]
async fn messaging_service_and_api_key_per_twilios_docs() {
    let fake = fake_twilio().await;
    let service = "MG9752274e9e519418a7406176694466fa";
    let key = "SK2a0747eba6abf96b7e3c3ff0b4530f6e";
    let p = TwilioProvider::new(&ProviderConfig {
        name: "tw".into(),
        kind: "twilio".into(),
        url: Some(fake.url.clone()),
        channels: vec![Channel::Sms, Channel::Whatsapp],
        timeout_ms: 2000,
        account_sid: Some(SID.into()),
        api_key: Some(key.into()),
        api_secret: Some("api-key-secret".to_string().into()),
        messaging_service_sid: Some(service.into()),
        content_sid: Some(CONTENT.into()),
        sms_content_sid: Some("HX0000000000000000000000000000005a".into()),
        ..Default::default()
    })
    .unwrap();
    p.send(&message(Channel::Sms, "Your code is 123456."))
        .await
        .unwrap();
    let seen = fake.last();
    assert_eq!(
        seen.path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    assert_eq!(
        seen.header("authorization"),
        format!("Basic {}", STANDARD.encode(format!("{key}:api-key-secret")))
    );
    assert_eq!(
        seen.form(),
        pairs(&[
            ("To", "+14155550123"),
            ("MessagingServiceSid", service),
            ("ContentSid", "HX0000000000000000000000000000005a"),
            ("ContentVariables", r#"{"1":"123456"}"#),
        ])
    );
    p.send(&message(Channel::Whatsapp, "x")).await.unwrap();
    assert_eq!(
        fake.last().form()[..2],
        pairs(&[
            ("To", "whatsapp:+14155550123"),
            ("MessagingServiceSid", service)
        ])[..]
    );
}

// Voice/language pairs from Twilio's <Say> text-to-speech list
// (https://www.twilio.com/docs/voice/twiml/say/text-speech, Amazon Polly voices); the
// call's `Timeout` (ring seconds, default 60, documented 5 s buffer) and `TimeLimit` from
// https://www.twilio.com/docs/voice/api/call-resource#create-a-call-resource.
#[tokio::test]
async fn calls_use_a_documented_voice_and_ring_within_the_receipt_wait() {
    assert_eq!(voice_for("en"), ("en-US", "Polly.Joanna"));
    assert_eq!(voice_for("fr-CA"), ("fr-CA", "Polly.Chantal"));
    assert_eq!(voice_for("fr-BE"), ("fr-FR", "Polly.Celine"));
    assert_eq!(voice_for("pt_BR"), ("pt-BR", "Polly.Vitoria"));
    assert_eq!(voice_for("ar"), ("arb", "Polly.Zeina"));
    assert_eq!(voice_for("sw-TZ"), ("en-US", "Polly.Joanna"));
    for (lang, voice) in VOICES {
        assert!(voice.starts_with("Polly."), "{voice}");
        assert_eq!(voice_for(lang), (*lang, *voice));
    }
    // Ringing + buffer + talking + the callback's way back fit in the receipt wait.
    for wait in [30u64, 45, 60, 90, 120, 600] {
        let (ring, talk) = call_limits(Duration::from_secs(wait));
        assert!((5..=60).contains(&ring), "{wait}: {ring}");
        assert!(ring + 5 + talk < wait, "{wait}: {ring} + {talk}");
    }
    assert_eq!(call_limits(Duration::from_secs(60)), (20, 30));
    // The contract's example wait (30 s) shortens the talk, not the promise.
    assert_eq!(call_limits(Duration::from_secs(30)), (5, 15));
    assert_eq!(call_limits(Duration::from_secs(45)), (5, 30));
    let fake = fake_twilio().await;
    let p = provider(&fake.url);
    let mut m =
        crate::providers::testing::message(Channel::Voice, "+14155550123", "Code: 1, 2.", "de");
    m.receipt_wait = Duration::from_secs(90);
    p.send(&m).await.unwrap();
    assert_eq!(
        fake.last().form(),
        pairs(&[
            ("To", "+14155550123"),
            ("From", "+15005550006"),
            (
                "Twiml",
                "<Response><Say voice=\"Polly.Marlene\" language=\"de-DE\">Code: 1, 2.</Say></Response>"
            ),
            ("Timeout", "50"),
            ("TimeLimit", "30"),
            ("StatusCallback", CALLBACK),
        ])
    );
}

#[tokio::test]
async fn documented_errors_map_to_permanent_or_transient() {
    let fake = fake_twilio().await;
    let p = provider(&fake.url);
    let cases = [
        (
            400,
            json!({"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400}),
            "permanent",
            "21211",
        ),
        (
            400,
            json!({"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400}),
            "permanent",
            "21610",
        ),
        (
            401,
            json!({"code": 20003, "message": "Authenticate", "status": 401}),
            "permanent",
            "20003",
        ),
        (
            429,
            json!({"code": 20429, "message": "Too Many Requests", "status": 429}),
            "transient",
            "20429",
        ),
        (
            503,
            json!({"code": 20503, "message": "Service unavailable", "status": 503}),
            "transient",
            "503",
        ),
    ];
    for (status, body, kind, needle) in cases {
        fake.reply(status, body);
        let err = p.send(&message(Channel::Sms, "x")).await.unwrap_err();
        let (got, text) = match &err {
            ProviderError::Permanent(t) => ("permanent", t),
            ProviderError::Transient(t) => ("transient", t),
        };
        assert_eq!(got, kind, "{status}: {err}");
        assert!(text.contains(needle), "{text}");
        assert!(!text.contains(TOKEN));
    }
    // Nobody listening: transient.
    let down = provider("http://127.0.0.1:9");
    assert!(matches!(
        down.send(&message(Channel::Sms, "x")).await,
        Err(ProviderError::Transient(_))
    ));
}

#[test]
fn signatures_match_twilios_documented_example() {
    let call = pairs(&[
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ]);
    assert_eq!(
        signature(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            &call
        ),
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    );
}

fn callback(
    p: &TwilioProvider,
    params: &[(&str, &str)],
    sign: bool,
) -> Result<ParsedReceipt, ReceiptError> {
    let params = pairs(params);
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let mut headers = reqwest::header::HeaderMap::new();
    if sign {
        let sig = signature(TOKEN, CALLBACK, &params);
        headers.insert("x-twilio-signature", sig.parse().unwrap());
    }
    p.parse_receipt(&ReceiptRequest {
        headers: &headers,
        query: "",
        body: body.as_bytes(),
        now: chrono::Utc::now(),
    })
    .expect("twilio parses its own receipts")
}

#[test]
fn status_callbacks_are_verified_and_mapped() {
    let p = provider("http://127.0.0.1:9");
    let delivered = callback(
        &p,
        &[
            ("MessageSid", "SM1"),
            ("MessageStatus", "delivered"),
            ("AccountSid", SID),
        ],
        true,
    )
    .unwrap();
    assert_eq!(delivered.message_id, "SM1");
    assert_eq!(delivered.status, ReceiptStatus::Delivered);
    let failed = callback(
        &p,
        &[
            ("MessageSid", "SM2"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30003"),
        ],
        true,
    )
    .unwrap();
    assert_eq!(failed.status, ReceiptStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("Twilio error 30003"));
    let sent = callback(
        &p,
        &[("MessageSid", "SM3"), ("MessageStatus", "sent")],
        true,
    )
    .unwrap();
    assert_eq!(sent.status, ReceiptStatus::Pending);
    let answered = callback(&p, &[("CallSid", "CA1"), ("CallStatus", "completed")], true).unwrap();
    assert_eq!(answered.status, ReceiptStatus::Delivered);
    let busy = callback(&p, &[("CallSid", "CA2"), ("CallStatus", "busy")], true).unwrap();
    assert_eq!(busy.status, ReceiptStatus::Failed);
    // Unsigned or tampered callbacks are refused.
    assert_eq!(
        callback(
            &p,
            &[("MessageSid", "SM1"), ("MessageStatus", "delivered")],
            false
        ),
        Err(ReceiptError::Forged)
    );
    let params = pairs(&[("MessageSid", "SM1"), ("MessageStatus", "delivered")]);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-twilio-signature",
        signature(TOKEN, CALLBACK, &params).parse().unwrap(),
    );
    let tampered = "MessageSid=SM1&MessageStatus=failed";
    assert_eq!(
        p.parse_receipt(&ReceiptRequest {
            headers: &headers,
            query: "",
            body: tampered.as_bytes(),
            now: chrono::Utc::now(),
        }),
        Some(Err(ReceiptError::Forged))
    );
    assert!(matches!(
        callback(&p, &[("Foo", "bar")], true),
        Err(ReceiptError::Malformed(_))
    ));
}

#[test]
fn config_needs_credentials_and_supported_channels() {
    let base = ProviderConfig {
        name: "tw".into(),
        kind: "twilio".into(),
        channels: vec![Channel::Sms],
        timeout_ms: 1000,
        account_sid: Some(SID.into()),
        auth_token: Some(TOKEN.to_string().into()),
        from: Some("+15005550006".into()),
        ..Default::default()
    };
    assert!(TwilioProvider::new(&base).is_ok());
    for broken in [
        ProviderConfig {
            account_sid: None,
            ..base.clone()
        },
        ProviderConfig {
            account_sid: Some("XX1".into()),
            ..base.clone()
        },
        ProviderConfig {
            auth_token: None,
            ..base.clone()
        },
        ProviderConfig {
            channels: vec![Channel::Email],
            ..base.clone()
        },
        // WhatsApp needs a Content template; a voice call needs a number.
        ProviderConfig {
            channels: vec![Channel::Whatsapp],
            ..base.clone()
        },
        ProviderConfig {
            channels: vec![Channel::Voice],
            from: None,
            messaging_service_sid: Some("MG9752274e9e519418a7406176694466fa".into()),
            ..base.clone()
        },
        ProviderConfig {
            messaging_service_sid: Some("MG1".into()),
            ..base.clone()
        },
        ProviderConfig {
            api_key: Some("SK2a0747eba6abf96b7e3c3ff0b4530f6e".into()),
            ..base.clone()
        },
        // Status callbacks are signed with the Auth Token, which an API key does not replace.
        ProviderConfig {
            auth_token: None,
            api_key: Some("SK2a0747eba6abf96b7e3c3ff0b4530f6e".into()),
            api_secret: Some("s".to_string().into()),
            status_callback_url: Some(CALLBACK.into()),
            ..base.clone()
        },
    ] {
        assert!(TwilioProvider::new(&broken).is_err());
    }
}
