//! End-to-end tests of otpd's invariants under stress and failure: a code is spent exactly
//! once under concurrent checks, an accepted send survives a SIGKILL and is delivered after
//! restart, no secret (code or API key) is stored in clear, and SIGTERM shuts down cleanly.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::time::Duration;

use common::{
    Config, DELIVERY_TIMEOUT, Method, OtpdProcess, SendReply, Sink, TestDir, contains_bytes,
    contains_delimited_digits, start_with_sink,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checks_approve_exactly_once() {
    let (_dir, sink, otpd) = start_with_sink().await;
    let to = "+14155550150";

    let id = otpd.send_ok(&json!({"to": to})).await.id();
    let code = sink.code_for(to).await;

    let body = json!({"id": id, "code": code});
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let request = otpd
                .request(Method::POST, "/v1/verifications/check")
                .json(&body);
            tokio::spawn(request.reply())
        })
        .collect();
    let mut replies = Vec::with_capacity(tasks.len());
    for task in tasks {
        replies.push(task.await.expect("check task"));
    }

    let server_errors: Vec<_> = replies.iter().filter(|r| r.status >= 500).collect();
    assert!(
        server_errors.is_empty(),
        "5xx under concurrency: {server_errors:#?}"
    );

    let approved: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(approved.len(), 1, "exactly one check may win: {replies:#?}");
    assert_eq!(approved[0].str("status"), "approved", "{:?}", approved[0]);
    assert_eq!(approved[0].body["valid"], true, "{:?}", approved[0]);

    for loser in replies.iter().filter(|r| r.status != 200) {
        match loser.status {
            409 => loser.assert_problem(409, "verification_not_pending", "losing check"),
            _ => loser.assert_problem(404, "not_found", "losing check"),
        };
    }

    assert_eq!(otpd.verification(&id).await.str("status"), "approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_send_survives_sigkill() {
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let config = Config::for_sink(&sink);
    let to = "+14155550151";

    // The gateway is down: every delivery attempt fails with 500.
    sink.set_status(500);
    let mut first = OtpdProcess::start(&dir, &config).await;
    let id = first.send_ok(&json!({"to": to})).await.id();
    // Killed once the worker has had a go at the job (and the gateway refused it).
    sink.wait_for_attempt(&format!("for verification {id}"), DELIVERY_TIMEOUT, |r| {
        r.verification_id() == Some(id.as_str())
    })
    .await;
    first.kill_hard();

    let attempts = sink.attempts();
    assert!(
        attempts.iter().all(|r| r.status == 500),
        "nothing can have been delivered while the sink answered 500: {attempts:#?}"
    );

    // The gateway recovers, otpd restarts on the same database and must finish the job.
    sink.set_status(200);
    let second = OtpdProcess::start(&dir, &config).await;
    let delivered = sink
        .wait_for_matching(
            &format!("for verification {id}"),
            1,
            Duration::from_secs(15),
            |r| r.verification_id() == Some(id.as_str()),
        )
        .await;
    let record = &delivered[0];
    assert_eq!(record.to(), Some(to), "{record:?}");
    let code = record
        .code()
        .unwrap_or_else(|| panic!("no code in the redelivered message {record:?}"));

    let checked = second.check(&json!({"id": id, "code": code})).await;
    checked.assert_status(200, "check after restart");
    assert_eq!(checked.str("status"), "approved", "{checked:?}");
    assert_eq!(checked.body["valid"], true, "{checked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_clear_secrets_at_rest() {
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut otpd = OtpdProcess::start(&dir, &Config::for_sink(&sink)).await;

    let numbers = ["+14155550152", "+14155550153", "+14155550154"];
    for to in numbers {
        otpd.send_ok(&json!({"to": to})).await;
    }
    let mut codes = Vec::new();
    for to in numbers {
        codes.push(sink.code_for(to).await);
    }
    let created_key = otpd.create_key("backend", "verify", false).await;

    let status = otpd.stop().await;
    assert!(status.success(), "otpd exited with {status}");

    // API keys: neither the whole key nor its secret part after the `otpd_live_` prefix may
    // be stored (a short display prefix is fine, so only the full remainder is searched).
    let mut secrets: Vec<String> = Vec::new();
    for key in [dir.master_key(), created_key.as_str()] {
        secrets.push(key.to_owned());
        if let Some(rest) = key.strip_prefix("otpd_live_") {
            secrets.push(rest.to_owned());
        }
    }

    let files = dir.database_files();
    assert!(
        !files.is_empty(),
        "no database file in {}",
        dir.path().display()
    );
    for (path, bytes) in &files {
        let path = path.display();
        for secret in &secrets {
            assert!(
                !contains_bytes(bytes, secret.as_bytes()),
                "{path} holds an API key in clear"
            );
        }
        for code in &codes {
            assert!(
                !contains_bytes(bytes, format!("code is {code}").as_bytes()),
                "{path} holds a rendered message with an OTP code"
            );
            // The bare code as a run of ASCII digits delimited by non-digits (the byte-level
            // equivalent of the regex `(?-u:[^0-9])CODE(?-u:[^0-9])`). A chance collision
            // with unrelated data (a 6-digit timestamp fraction, random binary) has a
            // probability of about 1e-6 per code per candidate position: acceptable.
            assert!(
                !contains_delimited_digits(bytes, code),
                "{path} holds an OTP code in clear"
            );
        }
    }

    // Codes and keys never appear in a log line either (the http provider is not the
    // console provider, so nothing the server printed is a delivery).
    for line in otpd.output() {
        for code in &codes {
            assert!(
                !line.contains(&format!("code is {code}")),
                "code in a log line: {line}"
            );
        }
        for secret in &secrets {
            assert!(!line.contains(secret.as_str()), "API key in a log line");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_gracefully() {
    let (_dir, _sink, mut otpd) = start_with_sink().await;

    // Make sure the server is fully up and serving before asking it to stop.
    otpd.get("/healthz").await.assert_success("healthz");
    otpd.send_ok(&json!({"to": "+14155550155"})).await;

    otpd.terminate();
    let status = otpd
        .wait_exit(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("otpd still running 10 s after SIGTERM"));
    assert_eq!(status.code(), Some(0), "otpd exited with {status}");
}
