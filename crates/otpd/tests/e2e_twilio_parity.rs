//! End-to-end tests of the `/v2` face's parity with Twilio's published contract (issue
//! 24): checks naming both `To` and `VerificationSid`, changes of finished verifications,
//! list filters with nothing to match, unknown parameters, the 401 text, and the
//! operations added for parity (Safe List, Attempts Summary, Templates).
//!
//! Each test starts its own `otpd serve` with the HTTP sink provider.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{Method, OtpdProcess, Reply, SendReply, start_with_sink, wrong_code};

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
async fn service(otpd: &OtpdProcess, name: &str) -> String {
    let reply = tw(
        otpd,
        otpd.master_key(),
        Method::POST,
        "/v2/Services",
        &[("FriendlyName", name)],
    )
    .await;
    reply.assert_status(201, "create service");
    reply.str("sid").to_owned()
}

/// Starts an SMS verification and returns its SID.
async fn start(otpd: &OtpdProcess, service: &str, to: &str) -> String {
    let reply = tw(
        otpd,
        otpd.master_key(),
        Method::POST,
        &format!("/v2/Services/{service}/Verifications"),
        &[("To", to), ("Channel", "sms")],
    )
    .await;
    reply.assert_status(201, "start");
    reply.str("sid").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_may_name_both_to_and_verification_sid() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let key = otpd.master_key().to_owned();
    let sid = service(&otpd, "Both").await;
    let check = format!("/v2/Services/{sid}/VerificationCheck");
    let (a, b) = ("+14155550601", "+14155550602");
    let ve_a = start(&otpd, &sid, a).await;
    let ve_b = start(&otpd, &sid, b).await;
    let code_a = sink.code_for(a).await;
    let code_b = sink.code_for(b).await;

    // They name different verifications: nothing is both, 404 / 20404, and neither is
    // touched (no attempt counted against either).
    let mismatch = tw(
        &otpd,
        &key,
        Method::POST,
        &check,
        &[("To", a), ("VerificationSid", &ve_b), ("Code", &code_b)],
    )
    .await;
    assert_twilio_error(&mismatch, 404, 20404, "To of one, SID of another");
    assert!(!mismatch.text.contains("4155550601"), "{mismatch:?}");
    let fetched = tw(
        &otpd,
        &key,
        Method::GET,
        &format!("/v2/Services/{sid}/Verifications/{ve_b}"),
        &[],
    )
    .await;
    assert_eq!(fetched.str("status"), "pending");

    // The same verification, in any spelling of the number: checked.
    let wrong = tw(
        &otpd,
        &key,
        Method::POST,
        &check,
        &[
            ("To", "+1 (415) 555-0601"),
            ("VerificationSid", &ve_a),
            ("Code", &wrong_code(&code_a)),
        ],
    )
    .await;
    wrong.assert_status(200, "both, wrong code");
    assert_eq!(wrong.str("status"), "pending");
    let right = tw(
        &otpd,
        &key,
        Method::POST,
        &check,
        &[("To", a), ("VerificationSid", &ve_a), ("Code", &code_a)],
    )
    .await;
    right.assert_status(200, "both, right code");
    assert_eq!(right.str("status"), "approved");
    assert_eq!(right.str("sid"), ve_a);
    assert_eq!(right.body["valid"], true);

    // The other verification is still checkable by its own pair.
    let other = tw(
        &otpd,
        &key,
        Method::POST,
        &check,
        &[("To", b), ("VerificationSid", &ve_b), ("Code", &code_b)],
    )
    .await;
    assert_eq!(other.str("status"), "approved", "{other:?}");

    // Still refused: neither; an invalid To beside a SID.
    let neither = tw(&otpd, &key, Method::POST, &check, &[("Code", "123456")]).await;
    assert_twilio_error(&neither, 400, 60200, "neither To nor VerificationSid");
    let bad_to = tw(
        &otpd,
        &key,
        Method::POST,
        &check,
        &[
            ("To", "+1555"),
            ("VerificationSid", &ve_a),
            ("Code", "123456"),
        ],
    )
    .await;
    assert_twilio_error(&bad_to, 400, 60200, "invalid To with a SID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_verifications_cannot_be_changed_even_to_their_status() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    let key = otpd.master_key().to_owned();
    let sid = service(&otpd, "Finished").await;
    let path = format!("/v2/Services/{sid}/Verifications");

    for (first, second) in [
        ("approved", "approved"),
        ("approved", "canceled"),
        ("canceled", "canceled"),
        ("canceled", "approved"),
    ] {
        let to = if first == "approved" {
            "+14155550611"
        } else {
            "+14155550612"
        };
        let ve = start(&otpd, &sid, to).await;
        let done = tw(
            &otpd,
            &key,
            Method::POST,
            &format!("{path}/{ve}"),
            &[("Status", first)],
        )
        .await;
        done.assert_status(200, first);
        assert_eq!(done.str("status"), first);
        for target in [ve.as_str(), &to.replace('+', "%2B")] {
            let again = tw(
                &otpd,
                &key,
                Method::POST,
                &format!("{path}/{target}"),
                &[("Status", second)],
            )
            .await;
            assert_twilio_error(&again, 404, 20404, &format!("{first} then {second}"));
        }
        // Still readable, unchanged.
        let read = tw(&otpd, &key, Method::GET, &format!("{path}/{ve}"), &[]).await;
        assert_eq!(read.str("status"), first, "{read:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempt_filters_that_match_nothing_answer_an_empty_page() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let key = otpd.master_key().to_owned();
    let sid = service(&otpd, "Filters").await;
    start(&otpd, &sid, "+14155550621").await;
    sink.code_for("+14155550621").await;

    let all = tw(&otpd, &key, Method::GET, "/v2/Attempts", &[]).await;
    all.assert_status(200, "all attempts");
    assert_eq!(all.body["attempts"].as_array().unwrap().len(), 1, "{all:?}");

    for (params, context) in [
        (
            vec![("VerifyServiceSid", "VA00000000000000000000000000000000")],
            "unknown service",
        ),
        (
            vec![("VerifyServiceSid", "no-such-service")],
            "unknown name",
        ),
        (vec![("Channel", "rbm")], "rbm"),
        (
            vec![("Channel", "rbm"), ("VerifyServiceSid", sid.as_str())],
            "rbm on a known service",
        ),
    ] {
        let page = tw(&otpd, &key, Method::GET, "/v2/Attempts", &params).await;
        page.assert_status(200, context);
        assert_eq!(page.body["attempts"], serde_json::json!([]), "{context}");
        assert_eq!(page.body["meta"]["key"], "attempts", "{context}");
        assert!(page.body["meta"]["next_page_url"].is_null(), "{context}");
        let url = page.body["meta"]["url"].as_str().unwrap();
        for (name, _) in &params {
            assert!(url.contains(name), "{context}: the filter is kept: {url}");
        }
    }
    // The enum's other values still filter; values outside it are refused.
    let sms = tw(
        &otpd,
        &key,
        Method::GET,
        "/v2/Attempts",
        &[("Channel", "sms")],
    )
    .await;
    assert_eq!(sms.body["attempts"].as_array().unwrap().len(), 1, "{sms:?}");
    let bad = tw(
        &otpd,
        &key,
        Method::GET,
        "/v2/Attempts",
        &[("Channel", "fax")],
    )
    .await;
    assert_twilio_error(&bad, 400, 60200, "Channel=fax");
    // Sending over rbm: not in the create enum, Twilio's invalid-parameter error.
    let rbm = tw(
        &otpd,
        &key,
        Method::POST,
        &format!("/v2/Services/{sid}/Verifications"),
        &[("To", "+14155550622"), ("Channel", "rbm")],
    )
    .await;
    assert_twilio_error(&rbm, 400, 60200, "send over rbm");
    assert!(rbm.str("message").contains("Channel"), "{rbm:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_parameters_are_ignored_and_logged_by_name_only() {
    let dir = common::TestDir::new();
    let sink = common::Sink::start().await;
    let otpd = OtpdProcess::start_with_env(
        &dir,
        &common::Config::for_sink(&sink),
        &[("RUST_LOG", "otpd_server=debug,info")],
    )
    .await;
    let key = otpd.master_key().to_owned();
    const VALUE: &str = "zq7secretvalue";

    let created = tw(
        &otpd,
        &key,
        Method::POST,
        "/v2/Services",
        &[("FriendlyName", "Unknowns"), ("FutureServiceFlag", VALUE)],
    )
    .await;
    created.assert_status(201, "service with an unknown parameter");
    let sid = created.str("sid").to_owned();
    let to = "+14155550631";
    let started = tw(
        &otpd,
        &key,
        Method::POST,
        &format!("/v2/Services/{sid}/Verifications"),
        &[("To", to), ("Channel", "sms"), ("FutureStartOption", VALUE)],
    )
    .await;
    started.assert_status(201, "start with an unknown parameter");
    let code = sink.code_for(to).await;
    let checked = tw(
        &otpd,
        &key,
        Method::POST,
        &format!("/v2/Services/{sid}/VerificationCheck"),
        &[("To", to), ("Code", &code), ("FutureCheckOption", VALUE)],
    )
    .await;
    checked.assert_status(200, "check with an unknown parameter");
    assert_eq!(checked.str("status"), "approved");
    let listed = tw(
        &otpd,
        &key,
        Method::GET,
        "/v2/Attempts",
        &[("FutureFilter", VALUE)],
    )
    .await;
    listed.assert_status(200, "list with an unknown parameter");
    let fetched = tw(
        &otpd,
        &key,
        Method::GET,
        &format!("/v2/Services/{sid}"),
        &[("FutureQuery", VALUE)],
    )
    .await;
    fetched.assert_status(200, "fetch with an unknown parameter");

    // Known parameters otpd cannot honour are still refused, even beside unknown ones.
    let refused = tw(
        &otpd,
        &key,
        Method::POST,
        &format!("/v2/Services/{sid}/Verifications"),
        &[
            ("To", "+14155550632"),
            ("Channel", "sms"),
            ("FutureStartOption", VALUE),
            ("SendDigits", "1"),
        ],
    )
    .await;
    assert_twilio_error(&refused, 400, 60200, "SendDigits beside an unknown");
    assert!(refused.str("message").contains("SendDigits"), "{refused:?}");
    let refused = tw(
        &otpd,
        &key,
        Method::POST,
        "/v2/Services",
        &[("FriendlyName", "Totp"), ("Totp.Issuer", "Acme")],
    )
    .await;
    assert_twilio_error(&refused, 400, 60200, "Totp.Issuer");

    // Logged at debug by name, never with the value (each waited for: the output is read
    // by another task, so a line may land a moment after the reply).
    for name in [
        "FutureServiceFlag",
        "FutureStartOption",
        "FutureCheckOption",
        "FutureFilter",
        "FutureQuery",
    ] {
        otpd.wait_for_output(name, std::time::Duration::from_secs(5))
            .await;
    }
    assert!(!otpd.output_contains(VALUE), "no value is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_describes_http_basic() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    let sid = service(&otpd, "Auth").await;
    let anonymous = otpd
        .anonymous(Method::POST, &format!("/v2/Services/{sid}/Verifications"))
        .form(&[("To", "+14155550641"), ("Channel", "sms")])
        .reply()
        .await;
    let wrong = tw(&otpd, "otpd_live_nope", Method::GET, "/v2/Services", &[]).await;
    let bearer = otpd
        .anonymous(Method::GET, "/v2/Attempts")
        .bearer_auth("otpd_live_nope")
        .reply()
        .await;
    for (reply, context) in [
        (&anonymous, "no credentials"),
        (&wrong, "unknown key"),
        (&bearer, "unknown Bearer key"),
    ] {
        assert_twilio_error(reply, 401, 20003, context);
        let message = reply.str("message");
        assert!(message.starts_with("Authenticate"), "{context}: {message}");
        assert!(message.contains("HTTP Basic"), "{context}: {message}");
        assert!(!message.contains("Bearer"), "{context}: {message}");
        assert!(
            reply
                .header("www-authenticate")
                .is_some_and(|h| h.starts_with("Basic")),
            "{context}: {reply:?}"
        );
    }
    // `/v1` keeps its own words.
    let v1 = otpd.anonymous(Method::GET, "/v1/services").reply().await;
    assert_eq!(v1.status, 401, "{v1:?}");
    assert!(v1.text.contains("Bearer"), "{v1:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_listed_numbers_skip_the_fraud_guards_not_the_send_limits() {
    let dir = common::TestDir::new();
    let sink = common::Sink::start().await;
    let config = common::Config::for_sink(&sink);
    let mut otpd = OtpdProcess::start(&dir, &config).await;
    let key = otpd.master_key().to_owned();
    otpd.create_service(&serde_json::json!({
        "name": "geo",
        "guards": {"geo": {"blocked_countries": ["GH"]}}
    }))
    .await;
    let path = "/v2/Services/geo/Verifications";
    let ghana = "+233241234567";
    let landline = "+442079460018";
    let send = |to: &'static str| {
        let otpd = &otpd;
        let key = key.clone();
        async move {
            tw(
                otpd,
                &key,
                Method::POST,
                path,
                &[("To", to), ("Channel", "sms")],
            )
            .await
        }
    };
    assert_twilio_error(&send(ghana).await, 403, 60605, "blocked country");
    assert_twilio_error(&send(landline).await, 403, 60205, "SMS to a landline");

    let not_yet = tw(
        &otpd,
        &key,
        Method::GET,
        "/v2/SafeList/Numbers/%2B233241234567",
        &[],
    )
    .await;
    assert_twilio_error(&not_yet, 404, 20404, "not listed yet");
    let added = tw(
        &otpd,
        &key,
        Method::POST,
        "/v2/SafeList/Numbers",
        &[("PhoneNumber", ghana)],
    )
    .await;
    added.assert_status(201, "add to the safe list");
    let gn = added.str("sid").to_owned();
    assert!(gn.starts_with("GN") && gn.len() == 34, "{added:?}");
    assert_eq!(added.str("phone_number"), ghana);
    assert_eq!(
        added.str("url"),
        format!("{}/v2/SafeList/Numbers/{ghana}", otpd.base_url())
    );
    // Adding again answers the same entry.
    let again = tw(
        &otpd,
        &key,
        Method::POST,
        "/v2/SafeList/Numbers",
        &[("PhoneNumber", "+233 24 123 4567")],
    )
    .await;
    again.assert_status(201, "add again");
    assert_eq!(again.str("sid"), gn);
    tw(
        &otpd,
        &key,
        Method::POST,
        "/v2/SafeList/Numbers",
        &[("PhoneNumber", landline)],
    )
    .await
    .assert_status(201, "add the landline");

    send(ghana)
        .await
        .assert_status(201, "safe-listed: geo skipped");
    send(landline)
        .await
        .assert_status(201, "safe-listed: number type skipped");
    sink.code_for(ghana).await;
    // The send limits still apply: 5 sends, then 60203.
    for _ in 0..4 {
        send(ghana)
            .await
            .assert_status(201, "within the send limit");
    }
    assert_twilio_error(&send(ghana).await, 429, 60203, "sixth send");

    // Refusals: a verify key; bad numbers.
    let verify_key = otpd.create_key("verifier", "verify", false).await;
    let forbidden = tw(
        &otpd,
        &verify_key,
        Method::POST,
        "/v2/SafeList/Numbers",
        &[("PhoneNumber", "+14155550651")],
    )
    .await;
    assert_twilio_error(&forbidden, 403, 20403, "verify key");
    for bad in ["4155550651", "+1555", "not a number"] {
        let reply = tw(
            &otpd,
            &key,
            Method::POST,
            "/v2/SafeList/Numbers",
            &[("PhoneNumber", bad)],
        )
        .await;
        assert_twilio_error(&reply, 400, 60200, bad);
    }
    let missing = tw(&otpd, &key, Method::POST, "/v2/SafeList/Numbers", &[]).await;
    assert_twilio_error(&missing, 400, 60200, "no PhoneNumber");

    // Durable: still listed after a restart.
    otpd.stop().await;
    let otpd = OtpdProcess::start(&dir, &config).await;
    for path in [
        "/v2/SafeList/Numbers/%2B233241234567",
        "/v2/SafeList/Numbers/+233241234567",
    ] {
        let fetched = tw(&otpd, &key, Method::GET, path, &[]).await;
        fetched.assert_status(200, path);
        assert_eq!(fetched.str("sid"), gn);
        assert_eq!(fetched.str("phone_number"), ghana);
    }
    let removed = tw(
        &otpd,
        &key,
        Method::DELETE,
        "/v2/SafeList/Numbers/%2B442079460018",
        &[],
    )
    .await;
    assert_eq!(removed.status, 204, "{removed:?}");
    let gone = tw(
        &otpd,
        &key,
        Method::DELETE,
        "/v2/SafeList/Numbers/%2B442079460018",
        &[],
    )
    .await;
    assert_twilio_error(&gone, 404, 20404, "removed twice");
    let refused = tw(
        &otpd,
        &key,
        Method::POST,
        path,
        &[("To", landline), ("Channel", "sms")],
    )
    .await;
    assert_twilio_error(&refused, 403, 60205, "off the list: guarded again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_summary_counts_attempts_and_conversions() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let key = otpd.master_key().to_owned();
    let sid = service(&otpd, "Summary").await;
    let other = service(&otpd, "Other").await;
    let numbers = ["+14155550661", "+14155550662", "+14155550663"];
    let mut first = String::new();
    for to in numbers {
        let ve = start(&otpd, &sid, to).await;
        if first.is_empty() {
            first = ve;
        }
    }
    start(&otpd, &other, "+447400123456").await;
    let code = sink.code_for(numbers[0]).await;
    tw(
        &otpd,
        &key,
        Method::POST,
        &format!("/v2/Services/{sid}/VerificationCheck"),
        &[("VerificationSid", &first), ("Code", &code)],
    )
    .await
    .assert_status(200, "approve one");

    let summary = |params: Vec<(&'static str, String)>| {
        let otpd = &otpd;
        let key = key.clone();
        async move {
            let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            tw(otpd, &key, Method::GET, "/v2/Attempts/Summary", &params).await
        }
    };
    let all = summary(vec![]).await;
    all.assert_status(200, "summary");
    assert_eq!(all.body["total_attempts"], 4, "{all:?}");
    assert_eq!(all.body["total_converted"], 1);
    assert_eq!(all.body["total_unconverted"], 3);
    assert_eq!(all.body["conversion_rate_percentage"], "25");
    assert_eq!(
        all.str("url"),
        format!("{}/v2/Attempts/Summary", otpd.base_url())
    );
    let one = summary(vec![("VerifyServiceSid", sid.clone())]).await;
    assert_eq!(one.body["total_attempts"], 3, "{one:?}");
    assert_eq!(one.body["conversion_rate_percentage"], "33.333333333");
    for (params, total) in [
        (vec![("Country", "US".to_string())], 3),
        (vec![("Country", "gb".to_string())], 1),
        (vec![("DestinationPrefix", "+1415".to_string())], 3),
        (vec![("DestinationPrefix", "+44".to_string())], 1),
        (vec![("Channel", "sms".to_string())], 4),
        (vec![("Channel", "rbm".to_string())], 0),
        (vec![("Channel", "call".to_string())], 0),
        (
            vec![(
                "VerifyServiceSid",
                "VA00000000000000000000000000000000".to_string(),
            )],
            0,
        ),
        (
            vec![("DateCreatedAfter", "2999-01-01T00:00:00Z".to_string())],
            0,
        ),
        (
            vec![("DateCreatedBefore", "2999-01-01T00:00:00Z".to_string())],
            4,
        ),
    ] {
        let context = format!("{params:?}");
        let reply = summary(params).await;
        reply.assert_status(200, &context);
        assert_eq!(reply.body["total_attempts"], total, "{context}: {reply:?}");
        if total == 0 {
            assert!(
                reply.body["conversion_rate_percentage"].is_null(),
                "{context}"
            );
        }
    }
    for (params, context) in [
        (
            vec![("DestinationPrefix", "44".to_string())],
            "prefix without +",
        ),
        (vec![("Country", "USA".to_string())], "three-letter country"),
        (vec![("Channel", "fax".to_string())], "unknown channel"),
        (
            vec![("DateCreatedAfter", "yesterday".to_string())],
            "bad date",
        ),
    ] {
        assert_twilio_error(&summary(params).await, 400, 60200, context);
    }
    // Admin keys only, as /v2/Attempts.
    let verify_key = otpd.create_key("verifier", "verify", false).await;
    let forbidden = tw(&otpd, &verify_key, Method::GET, "/v2/Attempts/Summary", &[]).await;
    assert_twilio_error(&forbidden, 403, 20403, "verify key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_are_listed_and_chosen_with_template_sid() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let key = otpd.master_key().to_owned();
    let listed = tw(&otpd, &key, Method::GET, "/v2/Templates", &[]).await;
    listed.assert_status(200, "list templates");
    let templates = listed.body["templates"].as_array().unwrap();
    assert_eq!(templates.len(), 2, "{listed:?}");
    assert_eq!(listed.body["meta"]["key"], "templates");
    let with = &templates[0];
    let without = &templates[1];
    for t in [with, without] {
        let sid = t["sid"].as_str().unwrap();
        assert!(sid.starts_with("HJ") && sid.len() == 34, "{t}");
        assert_eq!(t["channels"], serde_json::json!(["sms"]));
        assert!(t["account_sid"].as_str().unwrap().starts_with("AC"));
        assert_eq!(t["translations"]["en"]["status"], "approved");
        assert!(
            t["translations"]["fr"]["text"]
                .as_str()
                .unwrap()
                .contains("{code}")
        );
    }
    assert!(
        with["translations"]["en"]["text"]
            .as_str()
            .unwrap()
            .contains("share")
    );
    assert!(
        !without["translations"]["en"]["text"]
            .as_str()
            .unwrap()
            .contains("share")
    );
    let paged = tw(
        &otpd,
        &key,
        Method::GET,
        "/v2/Templates",
        &[("PageSize", "1")],
    )
    .await;
    assert_eq!(paged.body["templates"].as_array().unwrap().len(), 1);
    assert!(paged.body["meta"]["next_page_url"].is_string(), "{paged:?}");
    let named = tw(
        &otpd,
        &key,
        Method::GET,
        "/v2/Templates",
        &[("FriendlyName", without["friendly_name"].as_str().unwrap())],
    )
    .await;
    assert_eq!(named.body["templates"].as_array().unwrap().len(), 1);
    assert_eq!(named.body["templates"][0]["sid"], without["sid"]);
    // Any key may list them (a verify key chooses them).
    let verify_key = otpd.create_key("verifier", "verify", false).await;
    tw(&otpd, &verify_key, Method::GET, "/v2/Templates", &[])
        .await
        .assert_status(200, "verify key lists templates");

    // A service without the warning; a verification choosing the template with it.
    let sid = service(&otpd, "Templated").await;
    let path = format!("/v2/Services/{sid}/Verifications");
    let with_sid = with["sid"].as_str().unwrap();
    let without_sid = without["sid"].as_str().unwrap();
    tw(
        &otpd,
        &verify_key,
        Method::POST,
        &path,
        &[
            ("To", "+14155550671"),
            ("Channel", "sms"),
            ("TemplateSid", with_sid),
            ("Locale", "fr"),
        ],
    )
    .await
    .assert_status(201, "start with a template");
    let bodies = sink
        .wait_for_to("+14155550671", 1, common::DELIVERY_TIMEOUT)
        .await;
    let body = bodies[0]["body"].as_str().unwrap();
    assert!(
        body.starts_with("Votre code de vérification Templated"),
        "{body}"
    );
    assert!(body.contains("Ne le partagez avec personne."), "{body}");
    tw(
        &otpd,
        &key,
        Method::POST,
        &path,
        &[
            ("To", "+14155550672"),
            ("Channel", "sms"),
            ("TemplateSid", without_sid),
        ],
    )
    .await
    .assert_status(201, "start with the other template");
    let bodies = sink
        .wait_for_to("+14155550672", 1, common::DELIVERY_TIMEOUT)
        .await;
    let body = bodies[0]["body"].as_str().unwrap();
    assert!(!body.contains("share"), "{body}");

    let unknown = tw(
        &otpd,
        &key,
        Method::POST,
        &path,
        &[
            ("To", "+14155550673"),
            ("Channel", "sms"),
            ("TemplateSid", "HJ00000000000000000000000000000000"),
        ],
    )
    .await;
    assert_twilio_error(&unknown, 400, 60228, "unknown TemplateSid");
    let by_call = tw(
        &otpd,
        &key,
        Method::POST,
        &path,
        &[
            ("To", "+14155550673"),
            ("Channel", "call"),
            ("TemplateSid", with_sid),
        ],
    )
    .await;
    assert_twilio_error(&by_call, 400, 60408, "TemplateSid on a call");
    // Nothing was started by the refusals.
    let none = tw(
        &otpd,
        &key,
        Method::GET,
        &format!("{path}/%2B14155550673"),
        &[],
    )
    .await;
    assert_twilio_error(&none, 404, 20404, "no verification after refusals");
}
