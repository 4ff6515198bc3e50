//! USSD end to end through the real binary: a `ussd` verification with the
//! `africastalking` provider is held until the number dials the service code; Africa's
//! Talking's session callback (its documented form) to `POST /v1/ussd/{provider}` gets
//! `END <message>` with the code once, the delivery becomes `delivered`, and the code
//! checks. Later dials, other numbers and unauthenticated sessions get no code.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const TOKEN: &str = "e2e-ussd-token";

fn session(phone: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("sessionId", "ATUid_e2e_1"),
            ("serviceCode", "*384*123#"),
            ("phoneNumber", phone),
            ("networkCode", "63902"),
            ("text", ""),
        ])
        .finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_code_is_answered_once_when_the_number_dials_in() {
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.channels = vec!["sms".into()];
    config.extra_toml = format!(
        "[[providers]]\nname = \"at\"\nkind = \"africastalking\"\n\
         url = \"http://127.0.0.1:9\"\nusername = \"sandbox\"\napi_key = \"at-key\"\n\
         channels = [\"ussd\"]\nreceipt_token = {TOKEN:?}\n\n\
         [[routes]]\nchannel = \"ussd\"\nproviders = [\"at\"]\nreceipt_timeout_seconds = 300\n"
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    let dial = |query: String, phone: &str| {
        otpd.anonymous(Method::POST, &format!("/v1/ussd/at{query}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(session(phone))
            .reply()
    };
    let ours = format!("?token={TOKEN}");
    // Nothing sent yet: a clear END.
    let r = dial(ours.clone(), "+254711000111").await;
    r.assert_status(200, "nothing pending");
    assert_eq!(
        r.text,
        "END No verification code is waiting for this number."
    );
    assert!(r.content_type().starts_with("text/plain"));

    let id = otpd
        .send_ok(&json!({"to": "+254711000111", "channel": "ussd"}))
        .await
        .id();
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while otpd.verification(&id).await.body["deliveries"][0]["status"] != "sent" {
        assert!(Instant::now() < deadline, "the USSD delivery is never held");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    dial(String::new(), "+254711000111")
        .await
        .assert_problem(403, "forbidden", "no token");
    dial("?token=guess".into(), "+254711000111")
        .await
        .assert_problem(403, "forbidden", "wrong token");
    dial(ours.clone(), "not a number").await.assert_problem(
        400,
        "invalid_phone_number",
        "bad phoneNumber",
    );
    otpd.anonymous(Method::POST, &format!("/v1/ussd/sink{ours}"))
        .body(session("+254711000111"))
        .reply()
        .await
        .assert_problem(404, "not_found", "a provider without USSD");
    let other = dial(ours.clone(), "+254711000112").await;
    assert_eq!(
        other.text,
        "END No verification code is waiting for this number."
    );

    let r = dial(ours.clone(), "+254711000111").await;
    r.assert_status(200, "the held code");
    assert!(r.text.starts_with("END "), "{}", r.text);
    let code = extract_code(&r.text).expect("the code in the USSD answer");
    assert_eq!(
        otpd.verification(&id).await.body["deliveries"][0]["status"],
        "delivered"
    );
    let again = dial(ours, "+254711000111").await;
    assert_eq!(
        again.text, "END No verification code is waiting for this number.",
        "handed over once"
    );
    otpd.check(&json!({"id": id, "code": code}))
        .await
        .assert_status(200, "check");
    assert_eq!(otpd.verification(&id).await.body["status"], "approved");
    assert!(
        !otpd.output_contains(&code),
        "the code never reaches the logs"
    );
    assert!(!otpd.output_contains("+254711000111"), "numbers are masked");
}

// Africa's Talking documents USSD responses of at most 182 characters (one screen of GSM
// 03.38 text; GSM 03.90 allows 160 octets of 7-bit text = 182 characters). A service whose
// USSD text is longer still gets its code on one screen: the sentence with the code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_ussd_message_is_cut_to_one_screen_with_the_code() {
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.channels = vec!["sms".into()];
    config.extra_toml = format!(
        "[[providers]]\nname = \"at\"\nkind = \"africastalking\"\n\
         url = \"http://127.0.0.1:9\"\nusername = \"sandbox\"\napi_key = \"at-key\"\n\
         channels = [\"ussd\"]\nreceipt_token = {TOKEN:?}\n"
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    let long = format!(
        "Welcome to {{service}}. {} Your code is {{code}}. {}",
        "Please read these instructions carefully before you continue. ".repeat(2),
        "Never share it with anyone, not even our support staff, who will never ask for it."
    );
    assert!(long.len() > 182);
    otpd.create_service(&json!({"name": "ussdco", "templates": {"ussd:en": long}}))
        .await;
    let id = otpd
        .send_ok(&json!({"to": "+254711000121", "channel": "ussd", "service": "ussdco"}))
        .await
        .id();
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let v = loop {
        let v = otpd.verification(&id).await.body;
        if v["deliveries"][0]["status"] == "sent" {
            break v;
        }
        assert!(Instant::now() < deadline, "the USSD delivery is never held");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let r = otpd
        .anonymous(Method::POST, &format!("/v1/ussd/at?token={TOKEN}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(session("+254711000121"))
        .reply()
        .await;
    r.assert_status(200, "the held code");
    assert!(
        r.text.chars().count() <= 182,
        "{} characters: {}",
        r.text.chars().count(),
        r.text
    );
    assert!(r.text.starts_with("END Your code is "), "{}", r.text);
    let code = extract_code(&r.text).expect("the code on the screen");
    otpd.check(&json!({"id": id, "code": code}))
        .await
        .assert_status(200, "check");
    let _ = v;
}
