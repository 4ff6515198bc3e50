//! End-to-end tests of the verification lifecycle through the native HTTP API: send, deliver
//! (through the `http` provider to the in-process sink), check, expire, exhaust, resend,
//! idempotency, cancel, send rate limits, test numbers and named services.
//!
//! Each test starts its own `otpd serve` on its own temporary SQLite database.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{DELIVERY_TIMEOUT, Method, SendReply, extract_code, start_with_sink, wrong_code};
use serde_json::{Value, json};

/// The `deliveries` array of a verification reply.
fn deliveries(verification: &Value) -> &Vec<Value> {
    verification["deliveries"]
        .as_array()
        .unwrap_or_else(|| panic!("verification without a `deliveries` array: {verification}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_send_deliver_check() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let to = "+14155550123";

    let sent = otpd.send_ok(&json!({"to": to, "channel": "sms"})).await;
    assert_eq!(sent.str("status"), "pending", "{sent:?}");
    assert_eq!(sent.str("to"), to);
    assert_eq!(sent.str("channel"), "sms");
    assert!(sent.str("id").starts_with("ver_"), "{sent:?}");
    for field in ["service", "expires_at", "created_at"] {
        sent.str(field);
    }
    assert_eq!(sent.body["max_check_attempts"], 5, "{sent:?}");
    assert_eq!(sent.body["check_attempts"], 0, "{sent:?}");
    assert!(!deliveries(&sent.body).is_empty(), "{sent:?}");
    let id = sent.id();

    let messages = sink.wait_for_to(to, 1, DELIVERY_TIMEOUT).await;
    let message = &messages[0];
    assert_eq!(message["to"], to, "{message}");
    assert_eq!(message["channel"], "sms", "{message}");
    assert_eq!(message["verification_id"], id.as_str(), "{message}");
    let code = extract_code(message["body"].as_str().expect("message body"))
        .unwrap_or_else(|| panic!("no code in {message}"));

    let wrong = otpd
        .check(&json!({"to": to, "code": wrong_code(&code)}))
        .await;
    wrong.assert_status(200, "wrong code");
    assert_eq!(wrong.body["valid"], false, "{wrong:?}");
    assert_eq!(wrong.str("status"), "pending");
    assert_eq!(wrong.body["remaining_attempts"], 4, "{wrong:?}");
    assert_eq!(wrong.str("id"), id);

    let right = otpd.check(&json!({"to": to, "code": code})).await;
    right.assert_status(200, "right code");
    assert_eq!(right.str("status"), "approved");
    assert_eq!(right.body["valid"], true, "{right:?}");
    assert_eq!(right.str("id"), id);

    // The code is spent, and nothing is pending for that number any more.
    otpd.check(&json!({"to": to, "code": code}))
        .await
        .assert_problem(404, "not_found", "second check of a spent code");

    let read = otpd.verification(&id).await;
    assert_eq!(read.str("status"), "approved", "{read:?}");
    assert_eq!(read.str("id"), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn national_number_with_country_is_normalized_to_e164() {
    let (_dir, sink, otpd) = start_with_sink().await;

    let sent = otpd
        .send_ok(&json!({"to": "024 123 4567", "country": "GH"}))
        .await;
    assert_eq!(sent.str("to"), "+233241234567", "{sent:?}");

    // The provider is handed the normalized number too.
    sink.wait_for_to("+233241234567", 1, DELIVERY_TIMEOUT).await;
}

// Expiry at the TTL is tested in process with a clock the test moves
// (crates/otpd-server/tests/in_process.rs, a_code_expires_at_its_ttl_on_the_clock).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_check_attempts_locks_the_verification() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let to = "+14155550125";

    let id = otpd.send_ok(&json!({"to": to})).await.id();
    let code = sink.code_for(to).await;
    let wrong = wrong_code(&code);

    for remaining in [4, 3, 2, 1] {
        let reply = otpd.check(&json!({"to": to, "code": wrong})).await;
        reply.assert_status(200, &format!("wrong check, {remaining} left after it"));
        assert_eq!(reply.body["valid"], false, "{reply:?}");
        assert_eq!(reply.str("status"), "pending", "{reply:?}");
        assert_eq!(reply.body["remaining_attempts"], remaining, "{reply:?}");
    }
    otpd.check(&json!({"to": to, "code": wrong}))
        .await
        .assert_problem(429, "max_attempts_reached", "fifth wrong check");

    // "The attempt that exhausts the limit, and any check after it": 429, even the right code.
    otpd.check(&json!({"to": to, "code": code}))
        .await
        .assert_problem(
            429,
            "max_attempts_reached",
            "right code after lockout (by to)",
        );
    otpd.check(&json!({"id": id, "code": code}))
        .await
        .assert_problem(
            429,
            "max_attempts_reached",
            "right code after lockout (by id)",
        );

    let read = otpd.verification(&id).await;
    assert_eq!(read.str("status"), "max_attempts_reached", "{read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_keeps_id_code_and_expiry() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let to = "+14155550126";

    let first = otpd.send_ok(&json!({"to": to})).await;
    // Let the first message go out, so the resend is a genuine second delivery.
    sink.wait_for_to(to, 1, DELIVERY_TIMEOUT).await;

    let second = otpd.send_ok(&json!({"to": to})).await;
    assert_eq!(second.str("id"), first.str("id"), "a resend keeps the id");
    assert_eq!(
        second.str("expires_at"),
        first.str("expires_at"),
        "a resend keeps the expiry"
    );
    assert_eq!(deliveries(&second.body).len(), 2, "{second:?}");

    sink.wait_for_to(to, 2, DELIVERY_TIMEOUT).await;
    let codes = sink.codes_for(to);
    assert_eq!(codes.len(), 2, "{codes:?}");
    assert_eq!(codes[0], codes[1], "a resend delivers the same code");

    let right = otpd.check(&json!({"to": to, "code": codes[0]})).await;
    right.assert_status(200, "check after resend");
    assert_eq!(right.str("status"), "approved", "{right:?}");
    assert_eq!(right.str("id"), first.str("id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_replays_the_first_response() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let to = "+14155550127";
    let key = format!("idem-{}", common::random_hex(8));
    let body = json!({"to": to, "channel": "sms"});

    let send = |body: Value| {
        otpd.request(Method::POST, "/v1/verifications")
            .header("Idempotency-Key", key.as_str())
            .json(&body)
            .reply()
    };

    let first = send(body.clone()).await;
    first.assert_status(201, "first idempotent send");
    let retried = send(body.clone()).await;
    retried.assert_status(201, "retried idempotent send");
    assert_eq!(retried.str("id"), first.str("id"));
    assert_eq!(
        deliveries(&retried.body).len(),
        deliveries(&first.body).len(),
        "a replay is not a resend: {retried:?}"
    );

    // Exactly one message goes out: once it has, the verification has one delivery and no
    // delivery job is queued or in a worker's hands, so no second message can follow.
    sink.wait_for_to(to, 1, DELIVERY_TIMEOUT).await;
    otpd.wait_outbox_empty().await;
    let v = otpd.verification(first.str("id")).await;
    assert_eq!(deliveries(&v.body).len(), 1, "{v:?}");
    assert_eq!(sink.messages_to(to).len(), 1, "{:#?}", sink.attempts());

    send(json!({"to": "+14155550128", "channel": "sms"}))
        .await
        .assert_problem(409, "idempotency_conflict", "same key, different body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_the_verification() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let to = "+14155550129";

    let id = otpd.send_ok(&json!({"to": to})).await.id();
    let code = sink.code_for(to).await;

    let canceled = otpd
        .post(&format!("/v1/verifications/{id}/cancel"), &json!({}))
        .await;
    canceled.assert_success("cancel");
    assert_eq!(canceled.str("status"), "canceled", "{canceled:?}");

    otpd.check(&json!({"id": id, "code": code}))
        .await
        .assert_problem(409, "verification_not_pending", "check after cancel");
    let read = otpd.verification(&id).await;
    assert_eq!(read.str("status"), "canceled", "{read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_to_one_number_are_rate_limited() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    let to = "+14155550130";

    let id = otpd.send_ok(&json!({"to": to})).await.id();
    for n in 2..=5 {
        let resend = otpd.send(&json!({"to": to})).await;
        resend.assert_status(201, &format!("send #{n}"));
        assert_eq!(resend.str("id"), id, "send #{n} is a resend");
    }

    let limited = otpd.send(&json!({"to": to})).await;
    limited.assert_problem(429, "rate_limited", "sixth send");
    let retry_after: u64 = limited
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {limited:?}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("Retry-After is not a number of seconds ({e}): {limited:?}"));
    assert!(retry_after > 0, "Retry-After must be positive: {limited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_numbers_use_a_fixed_code_and_are_never_delivered() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let test_number = "+15005550006";
    let control_number = "+14155550131";

    let service = otpd
        .create_service(&json!({"name": "qa", "test_numbers": {test_number: "123456"}}))
        .await;
    assert_eq!(service["name"], "qa", "{service}");
    assert!(
        service["sid"].is_string(),
        "service without a sid: {service}"
    );

    let sent = otpd
        .send_ok(&json!({"to": test_number, "service": "qa"}))
        .await;
    assert_eq!(sent.str("status"), "pending", "{sent:?}");

    // A control send on the same service proves the delivery path works, so the test
    // number's silence below means something.
    otpd.send_ok(&json!({"to": control_number, "service": "qa"}))
        .await;
    sink.wait_for_to(control_number, 1, DELIVERY_TIMEOUT).await;
    // The test number's verification has no delivery at all, and no delivery job is
    // queued or in a worker's hands: nothing for the test number can still reach the
    // provider.
    let v = otpd.verification(sent.str("id")).await;
    assert_eq!(deliveries(&v.body).len(), 0, "{v:?}");
    otpd.wait_outbox_empty().await;
    let leaked: Vec<_> = sink
        .attempts()
        .into_iter()
        .filter(|r| r.to() == Some(test_number))
        .collect();
    assert!(
        leaked.is_empty(),
        "a test number was handed to the provider: {leaked:#?}"
    );

    let right = otpd
        .check(&json!({"to": test_number, "code": "123456", "service": "qa"}))
        .await;
    right.assert_status(200, "fixed code of a test number");
    assert_eq!(right.str("status"), "approved", "{right:?}");
    assert_eq!(right.body["valid"], true, "{right:?}");
    assert_eq!(right.str("id"), sent.str("id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_by_id_on_a_named_service() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let to = "+14155550132";

    let service = otpd.create_service(&json!({"name": "shop"})).await;
    let sid = service["sid"]
        .as_str()
        .unwrap_or_else(|| panic!("service without a sid: {service}"))
        .to_owned();
    // The native API shows a service by name (or, acceptably, by sid).
    let is_shop = |value: &str| value == "shop" || value == sid;

    let sent = otpd.send_ok(&json!({"to": to, "service": "shop"})).await;
    assert!(is_shop(sent.str("service")), "{sent:?}");
    let id = sent.id();

    let read = otpd.verification(&id).await;
    assert_eq!(read.str("id"), id);
    assert_eq!(read.str("to"), to);
    assert_eq!(read.str("status"), "pending", "{read:?}");
    assert!(is_shop(read.str("service")), "{read:?}");

    let code = sink.code_for(to).await;
    let right = otpd.check(&json!({"id": id, "code": code})).await;
    right.assert_status(200, "check by id");
    assert_eq!(right.str("status"), "approved", "{right:?}");
    assert_eq!(right.body["valid"], true, "{right:?}");

    assert_eq!(otpd.verification(&id).await.str("status"), "approved");

    // The service's sid is accepted wherever a service is taken.
    let other = "+14155550133";
    let by_sid = otpd.send_ok(&json!({"to": other, "service": sid})).await;
    assert!(is_shop(by_sid.str("service")), "{by_sid:?}");
    let code = sink.code_for(other).await;
    let right = otpd
        .check(&json!({"to": other, "code": code, "service": "shop"}))
        .await;
    right.assert_status(200, "check by name of a verification started by sid");
    assert_eq!(right.str("status"), "approved", "{right:?}");
}
