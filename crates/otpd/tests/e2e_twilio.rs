//! End-to-end tests of the Twilio Verify v2–compatible API (`/v2`) over raw HTTP, as the
//! official SDKs speak it: HTTP Basic with an otpd key as the password, form-encoded
//! PascalCase parameters, Twilio's JSON shapes and error bodies — plus the promises that
//! go beyond the wire: one verification store for `/v1` and `/v2`, service settings that
//! act (landlines, custom codes, the "don't share" sentence), and signed status callbacks.
//!
//! Each test starts its own `otpd serve` with the HTTP sink provider.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use base64::Engine;
use common::{
    Config, DELIVERY_TIMEOUT, Method, OtpdProcess, Reply, SendReply, Sink, TestDir,
    start_with_sink, wrong_code,
};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

/// The user name the SDKs put in the account SID slot; otpd does not check it.
const USER: &str = "ACotpd";

/// A `/v2` request with HTTP Basic and a form body (POST) or query (GET, DELETE).
async fn tw(
    otpd: &OtpdProcess,
    key: &str,
    method: Method,
    path: &str,
    params: &[(&str, &str)],
) -> Reply {
    let builder = otpd
        .anonymous(method.clone(), path)
        .basic_auth(USER, Some(key));
    let builder = if method == Method::POST {
        builder.form(params)
    } else {
        builder.query(params)
    };
    builder.reply().await
}

/// Asserts a Twilio error body: JSON `{code, message, more_info, status}`.
#[track_caller]
fn assert_twilio_error(reply: &Reply, status: u16, code: u64, context: &str) {
    assert_eq!(reply.status, status, "{context}: {reply:?}");
    assert!(
        reply.content_type().starts_with("application/json"),
        "{context}: {reply:?}"
    );
    assert_eq!(reply.body["code"], code, "{context}: {reply:?}");
    assert_eq!(reply.body["status"], status, "{context}: {reply:?}");
    assert!(reply.body["message"].is_string(), "{context}: {reply:?}");
    assert_eq!(
        reply.body["more_info"],
        format!("https://www.twilio.com/docs/errors/{code}"),
        "{context}"
    );
}

/// Creates a `/v2` service and returns its SID.
async fn service(otpd: &OtpdProcess, params: &[(&str, &str)]) -> String {
    let reply = tw(
        otpd,
        otpd.master_key(),
        Method::POST,
        "/v2/Services",
        params,
    )
    .await;
    reply.assert_status(201, "create service");
    reply.str("sid").to_owned()
}

/// Waits for the `n`th message to `to` and returns its body text.
async fn nth_message(sink: &Sink, to: &str, n: usize) -> String {
    let bodies = sink.wait_for_to(to, n, DELIVERY_TIMEOUT).await;
    bodies[n - 1]["body"].as_str().expect("body").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_in_twilio_shapes() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let key = otpd.master_key().to_owned();
    let to = "+14155550130";

    let created = tw(
        &otpd,
        &key,
        Method::POST,
        "/v2/Services",
        &[("FriendlyName", "Acme Shop"), ("CodeLength", "7")],
    )
    .await;
    created.assert_status(201, "create service");
    let sid = created.str("sid").to_owned();
    assert!(sid.starts_with("VA") && sid.len() == 34, "{created:?}");
    assert_eq!(created.body["friendly_name"], "Acme Shop");
    assert_eq!(created.body["code_length"], 7);
    assert_eq!(created.body["do_not_share_warning_enabled"], false);
    assert!(created.str("account_sid").starts_with("AC"));
    let base = otpd.base_url();
    assert_eq!(created.str("url"), format!("{base}/v2/Services/{sid}"));
    assert_eq!(
        created.body["links"]["verifications"],
        format!("{base}/v2/Services/{sid}/Verifications")
    );
    assert!(created.str("date_created").ends_with('Z'));

    let path = format!("/v2/Services/{sid}/Verifications");
    let started = tw(
        &otpd,
        &key,
        Method::POST,
        &path,
        &[("To", to), ("Channel", "sms")],
    )
    .await;
    started.assert_status(201, "start");
    let ve = started.str("sid").to_owned();
    assert!(ve.starts_with("VE") && ve.len() == 34, "{started:?}");
    assert_eq!(started.str("status"), "pending");
    assert_eq!(started.body["valid"], false);
    assert_eq!(started.str("service_sid"), sid);
    assert_eq!(started.str("channel"), "sms");
    assert_eq!(started.str("url"), format!("{base}{path}/{ve}"));
    let attempts = started.body["send_code_attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{started:?}");
    assert!(
        attempts[0]["attempt_sid"]
            .as_str()
            .unwrap()
            .starts_with("VL")
    );
    // Seconds precision, as the SDKs parse dates.
    assert_eq!(started.str("date_created").len(), 20, "{started:?}");

    let body = nth_message(&sink, to, 1).await;
    assert!(body.contains("Acme Shop"), "{body}");
    assert!(!body.contains("share"), "no warning unless asked: {body}");
    let code = common::extract_code(&body).expect("a code");
    assert_eq!(code.len(), 7);

    let check = format!("/v2/Services/{sid}/VerificationCheck");
    let wrong = tw(
        &otpd,
        &key,
        Method::POST,
        &check,
        &[("To", to), ("Code", &wrong_code(&code))],
    )
    .await;
    wrong.assert_status(200, "wrong code");
    assert_eq!(wrong.str("status"), "pending");
    assert_eq!(wrong.body["valid"], false);
    assert_eq!(wrong.str("sid"), ve);

    let right = tw(
        &otpd,
        &key,
        Method::POST,
        &check,
        &[("To", to), ("Code", &code)],
    )
    .await;
    right.assert_status(200, "right code");
    assert_eq!(right.str("status"), "approved");
    assert_eq!(right.body["valid"], true);
    assert_eq!(right.body["sna_attempts_error_codes"], json!([]));

    let again = tw(
        &otpd,
        &key,
        Method::POST,
        &check,
        &[("To", to), ("Code", &code)],
    )
    .await;
    assert_twilio_error(&again, 404, 20404, "spent code");

    // Unlike Twilio, finished verifications stay readable, by SID and by To.
    let by_sid = tw(&otpd, &key, Method::GET, &format!("{path}/{ve}"), &[]).await;
    by_sid.assert_status(200, "fetch by SID");
    assert_eq!(by_sid.str("status"), "approved");
    let by_to = tw(
        &otpd,
        &key,
        Method::GET,
        &format!("{path}/%2B14155550130"),
        &[],
    )
    .await;
    by_to.assert_status(200, "fetch by To");
    assert_eq!(by_to.str("sid"), ve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_twilio_errors() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let key = otpd.master_key().to_owned();
    let sid = service(&otpd, &[("FriendlyName", "Errors")]).await;
    let path = format!("/v2/Services/{sid}/Verifications");
    let check = format!("/v2/Services/{sid}/VerificationCheck");

    let anon = otpd
        .anonymous(Method::POST, &path)
        .form(&[("To", "+14155550131"), ("Channel", "sms")])
        .reply()
        .await;
    assert_twilio_error(&anon, 401, 20003, "no credentials");
    let bad_key = tw(&otpd, "otpd_live_nope", Method::GET, "/v2/Services", &[]).await;
    assert_twilio_error(&bad_key, 401, 20003, "unknown key");
    assert!(bad_key.header("www-authenticate").is_some(), "{bad_key:?}");
    let wrong_method = tw(&otpd, &key, Method::PUT, &path, &[]).await;
    assert_twilio_error(&wrong_method, 405, 20004, "PUT");

    for (params, name, context) in [
        (vec![("Channel", "sms")], "To", "missing To"),
        (vec![("To", "+14155550131")], "Channel", "missing Channel"),
        (
            vec![
                ("To", "+14155550131"),
                ("Channel", "sms"),
                ("SendDigits", "1"),
            ],
            "SendDigits",
            "unsupported parameter",
        ),
        (
            vec![("To", "+14155550131"), ("Channel", "sna")],
            "Channel",
            "sna channel",
        ),
        (
            vec![
                ("To", "+14155550131"),
                ("Channel", "sms"),
                ("RiskCheck", "disable"),
            ],
            "RiskCheck",
            "risk check off",
        ),
    ] {
        let reply = tw(&otpd, &key, Method::POST, &path, &params).await;
        assert_twilio_error(&reply, 400, 60200, context);
        assert!(reply.str("message").contains(name), "{context}: {reply:?}");
    }
    let invalid_to = tw(
        &otpd,
        &key,
        Method::POST,
        &path,
        &[("To", "+1555"), ("Channel", "sms")],
    )
    .await;
    assert_twilio_error(&invalid_to, 400, 60200, "invalid number");
    let json_body = otpd
        .anonymous(Method::POST, &path)
        .basic_auth(USER, Some(&key))
        .json(&json!({"To": "+14155550131", "Channel": "sms"}))
        .reply()
        .await;
    assert_twilio_error(&json_body, 415, 60200, "JSON body");

    let missing = tw(
        &otpd,
        &key,
        Method::POST,
        "/v2/Services/VA00000000000000000000000000000000/Verifications",
        &[("To", "+14155550131"), ("Channel", "sms")],
    )
    .await;
    assert_twilio_error(&missing, 404, 20404, "unknown service");
    let nowhere = tw(&otpd, &key, Method::GET, "/v2/RateLimits", &[]).await;
    assert_twilio_error(&nowhere, 404, 20404, "unserved route");
    let nothing = tw(
        &otpd,
        &key,
        Method::POST,
        &check,
        &[("To", "+14155550139"), ("Code", "123456")],
    )
    .await;
    assert_twilio_error(&nothing, 404, 20404, "nothing pending");
    let neither = tw(&otpd, &key, Method::POST, &check, &[("Code", "123456")]).await;
    assert_twilio_error(&neither, 400, 60200, "no To nor VerificationSid");

    // Too many checks: 60202 on the attempt that exhausts the limit and after.
    let to = "+14155550132";
    tw(
        &otpd,
        &key,
        Method::POST,
        &path,
        &[("To", to), ("Channel", "sms")],
    )
    .await
    .assert_status(201, "start");
    let code = sink.code_for(to).await;
    let wrong = wrong_code(&code);
    for _ in 0..4 {
        tw(
            &otpd,
            &key,
            Method::POST,
            &check,
            &[("To", to), ("Code", &wrong)],
        )
        .await
        .assert_status(200, "wrong code");
    }
    let locked = tw(
        &otpd,
        &key,
        Method::POST,
        &check,
        &[("To", to), ("Code", &wrong)],
    )
    .await;
    assert_twilio_error(&locked, 429, 60202, "fifth wrong code");
    let locked = tw(
        &otpd,
        &key,
        Method::POST,
        &check,
        &[("To", to), ("Code", &code)],
    )
    .await;
    assert_twilio_error(&locked, 429, 60202, "right code after the lock");

    // Too many sends: 60203 with Retry-After.
    let to = "+14155550133";
    for _ in 0..5 {
        tw(
            &otpd,
            &key,
            Method::POST,
            &path,
            &[("To", to), ("Channel", "sms")],
        )
        .await
        .assert_status(201, "send within the limit");
    }
    let limited = tw(
        &otpd,
        &key,
        Method::POST,
        &path,
        &[("To", to), ("Channel", "sms")],
    )
    .await;
    assert_twilio_error(&limited, 429, 60203, "sixth send");
    assert!(limited.header("retry-after").is_some(), "{limited:?}");
    // No code leaks into an error message.
    assert!(!locked.text.contains(&code));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_and_v2_share_one_verification_store() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let key = otpd.master_key().to_owned();

    // Started on /v2 (the default service, addressed by its SID), checked on /v1.
    let default = otpd.get("/v1/services/default").await;
    let va = default.str("sid").to_owned();
    let to = "+14155550140";
    let started = tw(
        &otpd,
        &key,
        Method::POST,
        &format!("/v2/Services/{va}/Verifications"),
        &[("To", to), ("Channel", "call")],
    )
    .await;
    started.assert_status(201, "start on /v2");
    assert_eq!(started.str("channel"), "call");
    let ve = started.str("sid").to_owned();
    let code = sink.code_for(to).await;
    assert_eq!(sink.messages_to(to)[0]["channel"], "voice");
    let native = otpd.verification(&ve).await;
    assert_eq!(native.str("channel"), "voice");
    let checked = otpd.check(&json!({"id": ve, "code": code})).await;
    checked.assert_status(200, "check on /v1");
    assert_eq!(checked.str("status"), "approved");
    let seen = tw(
        &otpd,
        &key,
        Method::GET,
        &format!("/v2/Services/{va}/Verifications/{ve}"),
        &[],
    )
    .await;
    assert_eq!(seen.str("status"), "approved");

    // Started on /v1, checked on /v2 by VerificationSid; canceled on /v2, seen on /v1.
    let to = "+14155550141";
    let v1 = otpd.send_ok(&json!({"to": to})).await;
    let ve = v1.str("sid").to_owned();
    let code = sink.code_for(to).await;
    let check = tw(
        &otpd,
        &key,
        Method::POST,
        &format!("/v2/Services/{va}/VerificationCheck"),
        &[("VerificationSid", &ve), ("Code", &code)],
    )
    .await;
    check.assert_status(200, "check on /v2");
    assert_eq!(check.str("status"), "approved");
    assert_eq!(otpd.verification(&v1.id()).await.str("status"), "approved");

    let to = "+14155550142";
    let v1 = otpd.send_ok(&json!({"to": to})).await;
    let canceled = tw(
        &otpd,
        &key,
        Method::POST,
        &format!("/v2/Services/{va}/Verifications/{}", v1.str("sid")),
        &[("Status", "canceled")],
    )
    .await;
    canceled.assert_status(200, "cancel on /v2");
    assert_eq!(canceled.str("status"), "canceled");
    assert_eq!(otpd.verification(&v1.id()).await.str("status"), "canceled");

    // A verification of one service is not found under another.
    let other = service(&otpd, &[("FriendlyName", "Other")]).await;
    let wrong_service = tw(
        &otpd,
        &key,
        Method::GET,
        &format!("/v2/Services/{other}/Verifications/{}", v1.str("sid")),
        &[],
    )
    .await;
    assert_twilio_error(&wrong_service, 404, 20404, "other service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_out_of_band_approval() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let key = otpd.master_key().to_owned();
    let sid = service(&otpd, &[("FriendlyName", "Approvals")]).await;
    let path = format!("/v2/Services/{sid}/Verifications");
    let check = format!("/v2/Services/{sid}/VerificationCheck");

    let to = "+14155550150";
    let ve = tw(
        &otpd,
        &key,
        Method::POST,
        &path,
        &[("To", to), ("Channel", "sms")],
    )
    .await
    .str("sid")
    .to_owned();
    let code = sink.code_for(to).await;
    let approved = tw(
        &otpd,
        &key,
        Method::POST,
        &format!("{path}/{ve}"),
        &[("Status", "approved")],
    )
    .await;
    approved.assert_status(200, "approve out of band");
    assert_eq!(approved.str("status"), "approved");
    assert_eq!(approved.body["valid"], true);
    // The code was spent by the approval.
    let spent = tw(
        &otpd,
        &key,
        Method::POST,
        &check,
        &[("VerificationSid", &ve), ("Code", &code)],
    )
    .await;
    assert_twilio_error(&spent, 404, 20404, "code after approval");
    let again = tw(
        &otpd,
        &key,
        Method::POST,
        &format!("{path}/{ve}"),
        &[("Status", "canceled")],
    )
    .await;
    assert_twilio_error(&again, 404, 20404, "cancel an approved verification");
    let bad = tw(
        &otpd,
        &key,
        Method::POST,
        &format!("{path}/{ve}"),
        &[("Status", "pending")],
    )
    .await;
    assert_twilio_error(&bad, 400, 60200, "Status=pending");
    let events = otpd
        .get(&format!(
            "/v1/events?verification={ve}&type=verification.approved"
        ))
        .await;
    assert_eq!(
        events.body["events"].as_array().unwrap().len(),
        1,
        "{events:?}"
    );

    // By To, too.
    let to = "+14155550151";
    tw(
        &otpd,
        &key,
        Method::POST,
        &path,
        &[("To", to), ("Channel", "sms")],
    )
    .await
    .assert_status(201, "start");
    let canceled = tw(
        &otpd,
        &key,
        Method::POST,
        &format!("{path}/%2B14155550151"),
        &[("Status", "canceled")],
    )
    .await;
    canceled.assert_status(200, "cancel by To");
    assert_eq!(canceled.str("status"), "canceled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_settings_act_on_verifications() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let key = otpd.master_key().to_owned();

    // SkipSmsToLandlines: SMS to a UK fixed line is refused (60205); a call is fine.
    let sid = service(
        &otpd,
        &[
            ("FriendlyName", "Landlines"),
            ("SkipSmsToLandlines", "true"),
            ("LookupEnabled", "true"),
        ],
    )
    .await;
    let path = format!("/v2/Services/{sid}/Verifications");
    let landline = "+442079460018";
    let refused = tw(
        &otpd,
        &key,
        Method::POST,
        &path,
        &[("To", landline), ("Channel", "sms")],
    )
    .await;
    assert_twilio_error(&refused, 403, 60205, "SMS to a landline");
    let call = tw(
        &otpd,
        &key,
        Method::POST,
        &path,
        &[("To", landline), ("Channel", "call")],
    )
    .await;
    call.assert_status(201, "call to a landline");
    assert_eq!(
        call.body["lookup"]["carrier"]["type"], "landline",
        "{call:?}"
    );
    let mobile = tw(
        &otpd,
        &key,
        Method::POST,
        &path,
        &[("To", "+447400123456"), ("Channel", "sms")],
    )
    .await;
    mobile.assert_status(201, "SMS to a mobile");
    assert_eq!(mobile.body["lookup"]["carrier"]["type"], "mobile");

    // CustomCode needs CustomCodeEnabled; then it is the code, and CustomFriendlyName and
    // DoNotShareWarningEnabled shape the message.
    let plain = service(&otpd, &[("FriendlyName", "Plain")]).await;
    let refused = tw(
        &otpd,
        &key,
        Method::POST,
        &format!("/v2/Services/{plain}/Verifications"),
        &[
            ("To", "+14155550160"),
            ("Channel", "sms"),
            ("CustomCode", "424242"),
        ],
    )
    .await;
    assert_twilio_error(&refused, 400, 60200, "CustomCode without CustomCodeEnabled");
    assert!(!refused.text.contains("424242"));

    let custom = service(
        &otpd,
        &[
            ("FriendlyName", "Custom"),
            ("CustomCodeEnabled", "true"),
            ("DoNotShareWarningEnabled", "true"),
        ],
    )
    .await;
    let to = "+14155550161";
    tw(
        &otpd,
        &key,
        Method::POST,
        &format!("/v2/Services/{custom}/Verifications"),
        &[
            ("To", to),
            ("Channel", "sms"),
            ("CustomCode", "90817263"),
            ("CustomFriendlyName", "Your Bank"),
            ("Locale", "fr"),
        ],
    )
    .await
    .assert_status(201, "custom code");
    let body = nth_message(&sink, to, 1).await;
    assert!(
        body.contains("90817263") && body.contains("Your Bank"),
        "{body}"
    );
    assert!(
        body.contains("Ne le partagez"),
        "warning on, in French: {body}"
    );
    let right = tw(
        &otpd,
        &key,
        Method::POST,
        &format!("/v2/Services/{custom}/VerificationCheck"),
        &[("To", to), ("Code", "90817263")],
    )
    .await;
    assert_eq!(right.str("status"), "approved", "{right:?}");
    let bad_code = tw(
        &otpd,
        &key,
        Method::POST,
        &format!("/v2/Services/{custom}/Verifications"),
        &[
            ("To", "+14155550162"),
            ("Channel", "sms"),
            ("CustomCode", "12"),
        ],
    )
    .await;
    assert_twilio_error(&bad_code, 400, 60200, "custom code too short");

    // Update, list with pages, delete.
    let updated = tw(
        &otpd,
        &key,
        Method::POST,
        &format!("/v2/Services/{plain}"),
        &[("CodeLength", "8"), ("FriendlyName", "Plainer")],
    )
    .await;
    updated.assert_status(200, "update");
    assert_eq!(updated.body["code_length"], 8);
    let native = otpd.get(&format!("/v1/services/{plain}")).await;
    assert_eq!(native.body["code_length"], 8, "{native:?}");
    assert_eq!(native.body["friendly_name"], "Plainer");
    assert_eq!(native.str("name"), updated.str("otpd_name"));

    let first = tw(
        &otpd,
        &key,
        Method::GET,
        "/v2/Services",
        &[("PageSize", "2")],
    )
    .await;
    first.assert_status(200, "list");
    assert_eq!(first.body["meta"]["key"], "services");
    // A page beyond any list is a clean 60200, never a 5xx (found by schemathesis).
    for path in ["/v2/Services", "/v2/Attempts"] {
        let far = tw(
            &otpd,
            &key,
            Method::GET,
            path,
            &[("Page", "9223372036854775808")],
        )
        .await;
        assert_twilio_error(&far, 400, 60200, "page overflow");
    }
    assert_eq!(first.body["services"].as_array().unwrap().len(), 2);
    let mut seen = 2;
    let mut next = first.body["meta"]["next_page_url"]
        .as_str()
        .map(str::to_owned);
    while let Some(url) = next {
        assert!(url.starts_with(otpd.base_url()), "{url}");
        let page = otpd
            .client()
            .get(&url)
            .basic_auth(USER, Some(&key))
            .reply()
            .await;
        page.assert_status(200, "next page");
        seen += page.body["services"].as_array().unwrap().len();
        next = page.body["meta"]["next_page_url"]
            .as_str()
            .map(str::to_owned);
    }
    assert_eq!(seen, 4, "default + 3 created");

    let deleted = tw(
        &otpd,
        &key,
        Method::DELETE,
        &format!("/v2/Services/{plain}"),
        &[],
    )
    .await;
    deleted.assert_status(204, "delete");
    let gone = tw(
        &otpd,
        &key,
        Method::GET,
        &format!("/v2/Services/{plain}"),
        &[],
    )
    .await;
    assert_twilio_error(&gone, 404, 20404, "deleted service");
    let unsupported = tw(
        &otpd,
        &key,
        Method::POST,
        "/v2/Services",
        &[("FriendlyName", "Totp"), ("Totp.Issuer", "Acme")],
    )
    .await;
    assert_twilio_error(&unsupported, 400, 60200, "Totp.Issuer");

    // Verify keys cannot manage services.
    let verify_key = otpd.create_key("app", "verify", false).await;
    let forbidden = tw(
        &otpd,
        &verify_key,
        Method::POST,
        "/v2/Services",
        &[("FriendlyName", "X")],
    )
    .await;
    assert_twilio_error(&forbidden, 403, 20403, "verify key creating a service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_are_deliveries() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let key = otpd.master_key().to_owned();
    let sid = service(&otpd, &[("FriendlyName", "Attempts")]).await;
    let path = format!("/v2/Services/{sid}/Verifications");
    let to = "+14155550170";
    let first = tw(
        &otpd,
        &key,
        Method::POST,
        &path,
        &[("To", to), ("Channel", "sms")],
    )
    .await;
    let ve = first.str("sid").to_owned();
    let resent = tw(
        &otpd,
        &key,
        Method::POST,
        &path,
        &[("To", to), ("Channel", "sms")],
    )
    .await;
    assert_eq!(resent.str("sid"), ve, "a resend keeps the verification");
    assert_eq!(
        resent.body["send_code_attempts"].as_array().unwrap().len(),
        2
    );
    let code = sink.code_for(to).await;
    tw(
        &otpd,
        &key,
        Method::POST,
        &format!("/v2/Services/{sid}/VerificationCheck"),
        &[("To", to), ("Code", &code)],
    )
    .await
    .assert_status(200, "check");
    tw(
        &otpd,
        &key,
        Method::POST,
        &path,
        &[("To", "+14155550171"), ("Channel", "sms")],
    )
    .await
    .assert_status(201, "other");

    let listed = tw(
        &otpd,
        &key,
        Method::GET,
        "/v2/Attempts",
        &[("VerificationSid", &ve)],
    )
    .await;
    listed.assert_status(200, "list attempts");
    assert_eq!(listed.body["meta"]["key"], "attempts");
    let attempts = listed.body["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{listed:?}");
    for a in attempts {
        assert!(a["sid"].as_str().unwrap().starts_with("VL"));
        assert_eq!(a["verification_sid"], ve.as_str());
        assert_eq!(a["service_sid"], sid.as_str());
        assert_eq!(a["conversion_status"], "converted");
        assert_eq!(a["channel"], "sms");
        assert_eq!(a["channel_data"]["to"], to);
    }
    let one = tw(
        &otpd,
        &key,
        Method::GET,
        &format!("/v2/Attempts/{}", attempts[0]["sid"].as_str().unwrap()),
        &[],
    )
    .await;
    one.assert_status(200, "fetch attempt");
    assert_eq!(one.body["sid"], attempts[0]["sid"]);
    assert_eq!(
        one.str("url"),
        format!("{}/v2/Attempts/{}", otpd.base_url(), one.str("sid"))
    );

    let unconverted = tw(
        &otpd,
        &key,
        Method::GET,
        "/v2/Attempts",
        &[
            ("VerifyServiceSid", &sid),
            ("Status", "unconverted"),
            ("PageSize", "1"),
        ],
    )
    .await;
    assert_eq!(
        unconverted.body["attempts"].as_array().unwrap().len(),
        1,
        "{unconverted:?}"
    );
    assert_eq!(
        unconverted.body["attempts"][0]["channel_data"]["to"],
        "+14155550171"
    );
    assert!(unconverted.body["meta"]["next_page_url"].is_null());
    let paged = tw(
        &otpd,
        &key,
        Method::GET,
        "/v2/Attempts",
        &[("VerifyServiceSid", &sid), ("PageSize", "2")],
    )
    .await;
    let next = paged.body["meta"]["next_page_url"]
        .as_str()
        .expect("a next page")
        .to_owned();
    assert!(
        next.contains("VerifyServiceSid="),
        "filters are kept: {next}"
    );
    let page2 = otpd
        .client()
        .get(&next)
        .basic_auth(USER, Some(&key))
        .reply()
        .await;
    assert_eq!(
        page2.body["attempts"].as_array().unwrap().len(),
        1,
        "{page2:?}"
    );

    let country = tw(
        &otpd,
        &key,
        Method::GET,
        "/v2/Attempts",
        &[("Country", "US")],
    )
    .await;
    assert_twilio_error(&country, 400, 60200, "Country filter");
    let missing = tw(
        &otpd,
        &key,
        Method::GET,
        "/v2/Attempts/VL00000000000000000000000000000000",
        &[],
    )
    .await;
    assert_twilio_error(&missing, 404, 20404, "unknown attempt");
}

/// One request received by the callback receiver.
#[derive(Clone, Debug)]
struct Callback {
    signature: String,
    params: Vec<(String, String)>,
}

type Received = Arc<Mutex<Vec<Callback>>>;

async fn receive(State(got): State<Received>, headers: HeaderMap, body: Bytes) -> &'static str {
    let params = form_urlencoded::parse(&body).into_owned().collect();
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    got.lock().unwrap().push(Callback { signature, params });
    "ok"
}

/// Twilio's `RequestValidator.compute_signature`, written from TWILIO_VERIFY.md §2.6:
/// URL, then name+value of each parameter sorted, HMAC-SHA1 with the token, base64.
fn twilio_signature(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(&k);
        data.push_str(&v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_callbacks_are_signed_with_the_starting_key() {
    let got: Received = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callback_url = format!("http://{}/status?tenant=7", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/status", axum::routing::post(receive))
        .with_state(got.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.extra_toml = "[webhooks]\nallow_private_targets = true\n".into();
    let otpd = OtpdProcess::start(&dir, &config).await;
    let key = otpd.create_key("app", "verify", false).await;

    let sid = service(
        &otpd,
        &[
            ("FriendlyName", "Callbacks"),
            ("OtpdStatusCallback", &callback_url),
        ],
    )
    .await;
    let to = "+14155550180";
    let ve = tw(
        &otpd,
        &key,
        Method::POST,
        &format!("/v2/Services/{sid}/Verifications"),
        &[("To", to), ("Channel", "sms")],
    )
    .await
    .str("sid")
    .to_owned();
    let code = sink.code_for(to).await;
    // Approved through /v1: callbacks follow the verification, whichever API changes it.
    otpd.check(&json!({"id": ve, "code": code}))
        .await
        .assert_status(200, "check");

    let deadline = Instant::now() + Duration::from_secs(15);
    let callbacks = loop {
        let got = got.lock().unwrap().clone();
        if got.len() >= 2 || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let statuses: Vec<String> = callbacks
        .iter()
        .filter_map(|c| {
            c.params
                .iter()
                .find(|(k, _)| k == "Status")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert!(statuses.contains(&"pending".to_string()), "{callbacks:?}");
    assert!(statuses.contains(&"approved".to_string()), "{callbacks:?}");
    for c in &callbacks {
        let get = |name: &str| {
            c.params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_default()
        };
        assert_eq!(get("VerificationSid"), ve);
        assert_eq!(get("ServiceSid"), sid);
        assert_eq!(get("To"), to);
        assert_eq!(
            c.signature,
            twilio_signature(&key, &callback_url, &c.params),
            "{c:?}"
        );
        assert_ne!(
            c.signature,
            twilio_signature(otpd.master_key(), &callback_url, &c.params)
        );
        assert!(
            !c.params.iter().any(|(_, v)| v == &code),
            "no code in callbacks"
        );
    }

    // Private targets are refused unless allowed.
    drop(otpd);
    let dir = TestDir::new();
    let otpd = OtpdProcess::start(&dir, &Config::for_sink(&sink)).await;
    let refused = tw(
        &otpd,
        otpd.master_key(),
        Method::POST,
        "/v2/Services",
        &[("FriendlyName", "X"), ("OtpdStatusCallback", &callback_url)],
    )
    .await;
    assert_twilio_error(&refused, 400, 60200, "loopback callback target");
    let refused = otpd
        .request(Method::PATCH, "/v1/services/default")
        .json(&json!({"status_callback_url": "http://10.0.0.1/cb"}))
        .reply()
        .await;
    refused.assert_problem(400, "invalid_request", "private callback on /v1");
    let ok = otpd
        .request(Method::PATCH, "/v1/services/default")
        .json(&json!({"status_callback_url": "https://hooks.example.com/otp"}))
        .reply()
        .await;
    ok.assert_status(200, "public callback on /v1");
    assert_eq!(
        ok.str("status_callback_url"),
        "https://hooks.example.com/otp"
    );
    let shown = tw(
        &otpd,
        otpd.master_key(),
        Method::GET,
        "/v2/Services/default",
        &[],
    )
    .await;
    assert_eq!(
        shown.body["otpd_status_callback"],
        Value::from("https://hooks.example.com/otp")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_keys_never_deliver_on_v2_either() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let test_key = otpd.create_key("ci", "verify", true).await;
    let to = "+14155550190";
    let started = tw(
        &otpd,
        &test_key,
        Method::POST,
        "/v2/Services/default/Verifications",
        &[
            ("To", to),
            ("Channel", "sms"),
            ("CustomFriendlyName", "Test Shop"),
        ],
    )
    .await;
    started.assert_status(201, "start with a test key");
    let ve = started.str("sid").to_owned();
    let messages = otpd
        .get_as(&test_key, &format!("/v1/verifications/{ve}/messages"))
        .await;
    messages.assert_status(200, "recorded messages");
    let recorded = messages.body["messages"].as_array().unwrap();
    assert_eq!(recorded.len(), 1, "{messages:?}");
    let body = recorded[0]["body"].as_str().unwrap();
    assert!(body.contains("Test Shop"), "{body}");
    let code = common::extract_code(body).unwrap();
    let check = tw(
        &otpd,
        &test_key,
        Method::POST,
        "/v2/Services/default/VerificationCheck",
        &[("VerificationSid", &ve), ("Code", &code)],
    )
    .await;
    assert_eq!(check.str("status"), "approved", "{check:?}");
    // Nothing can still be on its way to the provider: the verification's one delivery is
    // the recorded message (never queued), and no delivery job is queued or in a
    // worker's hands. So a provider that has seen nothing never will.
    let v = otpd
        .get_as(&test_key, &format!("/v1/verifications/{ve}"))
        .await;
    v.assert_status(200, "read the test verification");
    let deliveries = v.body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{v:?}");
    assert_eq!(
        (&deliveries[0]["provider"], &deliveries[0]["status"]),
        (&json!("test"), &json!("sent")),
        "{v:?}"
    );
    otpd.wait_outbox_empty().await;
    assert!(
        sink.attempts().is_empty(),
        "a test key reached the provider"
    );
}
