//! `otpd serve` with `OTPD_REDIS_URL` in front of the embedded SQLite store (one node):
//! sends and checks over HTTP, delivery reaching the sink through the journal spooler and
//! the outbox, `/readyz` naming Redis, and the durable history following. The many-node
//! deployments (PostgreSQL + Redis, three nodes) and the fail-closed tests are in
//! `e2e_nodes.rs`; every other end-to-end test runs with Redis in front when
//! `OTPD_E2E_REDIS_URL` is set.
//!
//! Skipped with a message when Redis is unavailable, unless `OTPD_REQUIRE_STORES=1`.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::time::{Duration, Instant};

use common::stores::SharedRedis;
use common::{Config, DELIVERY_TIMEOUT, OtpdProcess, Sink, TestDir, extract_code};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_deliver_check_with_redis_in_front_of_sqlite() {
    let Some(redis) = SharedRedis::database(10) else {
        return;
    };
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let otpd = OtpdProcess::start_with_env(
        &dir,
        &Config::for_sink(&sink),
        &[("OTPD_REDIS_URL", redis.url.as_str())],
    )
    .await;
    let to = "+14155550123";

    let ready = otpd.get("/readyz").await;
    ready.assert_status(200, "readyz");
    assert_eq!(ready.body["checks"]["redis"], "ok", "{ready:?}");
    assert_eq!(ready.body["checks"]["database"], "ok", "{ready:?}");

    let sent = otpd.send_ok(&json!({"to": to, "channel": "sms"})).await;
    assert_eq!(sent.str("status"), "pending", "{sent:?}");
    let id = sent.id();
    let messages = sink.wait_for_to(to, 1, DELIVERY_TIMEOUT).await;
    assert_eq!(messages[0]["verification_id"], id.as_str());
    let code = extract_code(messages[0]["body"].as_str().unwrap()).unwrap();

    let wrong = otpd
        .check(&json!({"to": to, "code": common::wrong_code(&code)}))
        .await;
    wrong.assert_status(200, "wrong code");
    assert_eq!(wrong.body["remaining_attempts"], 4, "{wrong:?}");
    let right = otpd.check(&json!({"id": id, "code": code})).await;
    right.assert_status(200, "right code");
    assert_eq!(right.str("status"), "approved", "{right:?}");
    assert_eq!(right.body["valid"], true);

    let read = otpd.verification(&id).await;
    assert_eq!(read.str("status"), "approved", "{read:?}");
    assert!(!read.body["deliveries"].as_array().unwrap().is_empty());

    // The durable history follows (the spooler applies the journal): the event log.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = otpd.get(&format!("/v1/events?verification={id}")).await;
        let body = events.body.to_string();
        if body.contains("verification.approved") {
            break;
        }
        assert!(Instant::now() < deadline, "no approved event: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
