//! No secret in the logs: a full scenario against the real binary with JSON logs at debug
//! level — sends and checks (right and wrong), an authenticator factor, a new API key,
//! Twilio-style send and check, a webhook secret rotation, an erasure — then every line
//! it printed (stdout and stderr) is searched for every code, API key, factor secret,
//! webhook secret and full phone number the scenario used. Also: the logs are JSON, one
//! object per line, and request lines carry the request id.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{Config, Method, OtpdProcess, SendReply, Sink, TestDir, wrong_code};
use otpd_core::totp::{Algorithm, FactorKind, FactorParams, FactorSecret};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debug_run_logs_no_secret() {
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut otpd = OtpdProcess::start_with_env(
        &dir,
        &Config::for_sink(&sink),
        &[("RUST_LOG", "debug"), ("OTPD_LOG_FORMAT", "json")],
    )
    .await;
    // What must never be printed.
    let mut secrets: Vec<String> = vec![otpd.master_key().to_owned()];
    let numbers = ["+14155550191", "+14155550192", "+14155550193"];
    for n in numbers {
        secrets.push(n.to_owned());
        secrets.push(n.trim_start_matches("+1").to_owned());
    }

    // A new key; native send, wrong and right checks.
    let key = otpd.create_key("app", "verify", false).await;
    secrets.push(key.clone());
    let sent = otpd
        .request_as(&key, Method::POST, "/v1/verifications")
        .header("x-request-id", "req-logs-1")
        .json(&json!({"to": numbers[0]}))
        .reply()
        .await;
    sent.assert_status(201, "send");
    let code = sink.code_for(numbers[0]).await;
    let wrong = wrong_code(&code);
    secrets.extend([code.clone(), wrong.clone()]);
    for c in [&wrong, &code] {
        otpd.post_as(
            &key,
            "/v1/verifications/check",
            &json!({"to": numbers[0], "code": c}),
        )
        .await
        .assert_status(200, "check");
    }

    // Twilio-style send and check, and a read by number in the path.
    let sid = otpd.get("/v1/services/default").await.str("sid").to_owned();
    let twilio = |path: String| {
        otpd.anonymous(Method::POST, &path)
            .basic_auth("AC", Some(&key))
    };
    twilio(format!("/v2/Services/{sid}/Verifications"))
        .form(&[("To", numbers[1]), ("Channel", "sms")])
        .reply()
        .await
        .assert_status(201, "twilio send");
    let code2 = sink.code_for(numbers[1]).await;
    secrets.push(code2.clone());
    twilio(format!("/v2/Services/{sid}/VerificationCheck"))
        .form(&[("To", numbers[1]), ("Code", code2.as_str())])
        .reply()
        .await
        .assert_status(200, "twilio check");
    otpd.anonymous(
        Method::GET,
        &format!("/v2/Services/{sid}/Verifications/{}", numbers[1]),
    )
    .basic_auth("AC", Some(&key))
    .reply()
    .await;

    // An authenticator factor: create, activate, check.
    let factor = otpd
        .post(
            "/v1/totp/factors",
            &json!({"entity": "user-1", "label": "alice@example.com"}),
        )
        .await;
    factor.assert_status(201, "factor");
    let secret_b32 = factor.str("secret").to_owned();
    secrets.push(secret_b32.clone());
    secrets.push(factor.str("otpauth_uri").to_owned());
    let params = FactorParams {
        kind: FactorKind::Totp,
        algorithm: Algorithm::parse(factor.str("algorithm")).unwrap(),
        digits: factor.body["digits"].as_u64().unwrap() as u8,
        period: factor.body["period"].as_u64().unwrap() as u32,
        tolerance: 1,
    };
    let secret = FactorSecret::from_base32(&secret_b32).unwrap();
    let step = chrono::Utc::now().timestamp() as u64 / u64::from(params.period);
    let totp_codes: Vec<String> = (step - 1..=step + 1)
        .map(|s| params.code_at(&secret, s))
        .collect();
    secrets.extend(totp_codes.iter().cloned());
    let id = factor.id();
    otpd.post(
        &format!("/v1/totp/factors/{id}/verify"),
        &json!({"code": totp_codes[1]}),
    )
    .await
    .assert_status(200, "activate");
    otpd.post(
        "/v1/totp/check",
        &json!({"entity": "user-1", "code": totp_codes[2]}),
    )
    .await
    .assert_status(200, "totp check");

    // A webhook secret, generated and then rotated.
    let svc = otpd
        .create_service(&json!({"name": "hooked", "webhook_url": "https://hooks.example.com/otpd"}))
        .await;
    secrets.push(
        svc["webhook_secret"]
            .as_str()
            .expect("a webhook secret")
            .to_owned(),
    );
    let rotated = otpd
        .post("/v1/services/hooked/webhook-secret", &json!({}))
        .await;
    rotated.assert_success("rotate");
    secrets.push(rotated.str("webhook_secret").to_owned());

    // A send to a refused number and an erasure (both name a number).
    otpd.send(&json!({"to": numbers[2], "service": "hooked", "channel": "carrier-pigeon"}))
        .await;
    otpd.post("/v1/erasures", &json!({"to": numbers[0]}))
        .await
        .assert_status(200, "erase");

    // Let the delivery worker finish, stop the server (it finishes what it holds), and
    // read everything the process printed, to the end of its output.
    sink.wait_for(2, std::time::Duration::from_secs(10)).await;
    let status = otpd.stop().await;
    assert!(status.success(), "otpd exited with {status}");
    otpd.wait_output_closed().await;
    let output = otpd.output();
    assert!(
        output.len() > 50,
        "a debug run prints plenty: {} lines",
        output.len()
    );
    let leaks: Vec<(String, &String)> = secrets
        .iter()
        .filter(|s| s.len() >= 6)
        .flat_map(|s| {
            output
                .iter()
                .filter(|l| l.contains(s.as_str()))
                .map(move |l| (s.clone(), l))
        })
        .collect();
    assert!(leaks.is_empty(), "secrets in the output:\n{leaks:#?}");

    // JSON lines, with the request id on request lines.
    let logs: Vec<Value> = output
        .iter()
        .filter_map(|l| l.strip_prefix("stderr| "))
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    assert!(
        logs.iter().any(|l| l["level"] == "DEBUG"),
        "debug level is on"
    );
    let tagged = logs
        .iter()
        .filter(|l| {
            l["span"]["request_id"] == "req-logs-1" || l["spans"].to_string().contains("req-logs-1")
        })
        .count();
    assert!(tagged > 0, "no log line of request req-logs-1");
}
