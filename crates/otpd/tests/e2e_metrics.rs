//! `/metrics` end to end: after a scripted run against the real binary (sends and a
//! resend through the `http` sink, a delivery receipt, right and wrong checks, a check
//! with nothing pending, a send refused by the geo guard), the text parses with the
//! Prometheus Python client's strict OpenMetrics parser (`tests/peers/parse_metrics.py`)
//! and every counter equals what happened — no more, no less.
//!
//! The parser runs under the Python named by `OTPD_PY` (with
//! `tests/requirements-test.txt`); without it the test prints "skipped: …" and passes,
//! unless `OTPD_REQUIRE_PEERS=1` (as in `.ci/run`).
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

type Labels = BTreeMap<String, String>;

/// `/metrics` parsed by the reference parser.
struct Scrape {
    families: BTreeMap<String, String>,
    samples: Vec<(String, Labels, f64)>,
}

impl Scrape {
    /// Every sample named `name`, by its labels.
    fn series(&self, name: &str) -> BTreeMap<Labels, f64> {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, v)| (l.clone(), *v))
            .collect()
    }

    /// The sum of the samples named `name`.
    fn total(&self, name: &str) -> f64 {
        self.series(name).values().sum()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Scrapes `/metrics` and parses it with `parse_metrics.py`.
async fn scrape(otpd: &OtpdProcess, py: &str) -> Scrape {
    let reply = otpd
        .anonymous(Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let content_type = reply.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = reply.text().await.unwrap();
    let mut child = std::process::Command::new(py)
        .arg(peer_script("parse_metrics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run parse_metrics.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "/metrics does not parse: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    Scrape {
        families: serde_json::from_value(parsed["families"].clone()).unwrap(),
        samples: parsed["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s[0].as_str().unwrap().to_string(),
                    serde_json::from_value(s[1].clone()).unwrap(),
                    s[2].as_f64().unwrap(),
                )
            })
            .collect(),
    }
}

/// Waits until the delivery of `verification` has `status`.
async fn wait_delivery_status(otpd: &OtpdProcess, verification: &str, status: &str) {
    for _ in 0..250 {
        let v = otpd.verification(verification).await;
        if v.body["deliveries"][0]["status"] == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("delivery of {verification} never became {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_exactly_what_happened() {
    let Some(py) = python_with(&["prometheus_client"]) else {
        return;
    };
    let (_dir, sink, otpd) = start_with_sink().await;
    const GH: &str = "+233241234567";
    const US: &str = "+14155550123";
    const US2: &str = "+14155550124";

    // Nothing happened yet: no counts (families without a series show no sample).
    let before = scrape(&otpd, &py).await;
    assert_eq!(before.total("otpd_sends_total"), 0.0);
    assert_eq!(before.total("otpd_checks_total"), 0.0);

    // Two sends and a resend, delivered synchronously by the sink.
    sink.set_reply(json!({"status": "delivered"}));
    otpd.send_ok(&json!({"to": GH})).await;
    sink.wait_for_to(GH, 1, DELIVERY_TIMEOUT).await;
    otpd.send_ok(&json!({"to": GH})).await;
    sink.wait_for_to(GH, 2, DELIVERY_TIMEOUT).await;
    otpd.send_ok(&json!({"to": US})).await;
    sink.wait_for_to(US, 1, DELIVERY_TIMEOUT).await;
    // One accepted without a receipt, then a receipt at /v1/receipts/sink.
    sink.set_reply(json!({}));
    let pending = otpd.send_ok(&json!({"to": US2})).await.id();
    let message = sink.wait_for_to(US2, 1, DELIVERY_TIMEOUT).await[0].clone();
    wait_delivery_status(&otpd, &pending, "sent").await;
    otpd.sink_receipt(&json!({"message_id": message["message_id"], "status": "delivered"}))
        .send()
        .await
        .unwrap();
    wait_delivery_status(&otpd, &pending, "delivered").await;

    // Checks: wrong then right for GH, wrong for US, and one with nothing pending.
    let code = sink.code_for(GH).await;
    let wrong = otpd
        .check(&json!({"to": GH, "code": wrong_code(&code)}))
        .await;
    wrong.assert_status(200, "wrong code");
    assert_eq!(wrong.body["valid"], false);
    otpd.check(&json!({"to": GH, "code": code}))
        .await
        .assert_status(200, "right code");
    let us_code = sink.code_for(US).await;
    otpd.check(&json!({"to": US, "code": wrong_code(&us_code)}))
        .await
        .assert_status(200, "wrong code");
    otpd.check(&json!({"to": "+14155550199", "code": "123456"}))
        .await
        .assert_problem(404, "not_found", "nothing pending");

    // A send the geo guard refuses.
    otpd.create_service(
        &json!({"name": "fenced", "guards": {"geo": {"blocked_countries": ["GH"]}}}),
    )
    .await;
    otpd.send(&json!({"to": GH, "service": "fenced"}))
        .await
        .assert_problem(403, "geo_blocked", "blocked country");

    let m = scrape(&otpd, &py).await;
    for (family, kind) in [
        ("otpd_sends", "counter"),
        ("otpd_delivery_latency_seconds", "histogram"),
        ("otpd_circuit_state", "gauge"),
        ("otpd_outbox_depth", "gauge"),
        ("otpd_http_request_duration_seconds", "histogram"),
    ] {
        assert_eq!(
            m.families.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }

    let sms = |country: &str, outcome: &str| {
        labels(&[
            ("channel", "sms"),
            ("country", country),
            ("outcome", outcome),
        ])
    };
    assert_eq!(
        m.series("otpd_verifications_total"),
        BTreeMap::from([
            (sms("GH", "created"), 1.0),
            (sms("GH", "resent"), 1.0),
            (sms("US", "created"), 2.0),
        ])
    );
    assert_eq!(
        m.series("otpd_approvals_total"),
        BTreeMap::from([(labels(&[("channel", "sms"), ("country", "GH")]), 1.0)])
    );
    // Checks and blocks by service and recipient country (a check by `to` knows both even
    // when nothing is pending).
    let check = |outcome: &str, country: &str| {
        labels(&[
            ("outcome", outcome),
            ("service", "default"),
            ("country", country),
        ])
    };
    assert_eq!(
        m.series("otpd_checks_total"),
        BTreeMap::from([
            (check("approved", "GH"), 1.0),
            (check("wrong_code", "GH"), 1.0),
            (check("wrong_code", "US"), 1.0),
            (check("not_found", "US"), 1.0),
        ])
    );
    assert_eq!(
        m.series("otpd_blocks_total"),
        BTreeMap::from([(
            labels(&[
                ("action", "send"),
                ("guard", "geo"),
                ("mode", "enforce"),
                ("service", "fenced"),
                ("country", "GH"),
            ]),
            1.0
        )])
    );
    let send = |country: &str, outcome: &str| {
        labels(&[
            ("channel", "sms"),
            ("provider", "sink"),
            ("country", country),
            ("outcome", outcome),
        ])
    };
    assert_eq!(
        m.series("otpd_sends_total"),
        BTreeMap::from([
            (send("GH", "delivered"), 2.0),
            (send("US", "delivered"), 1.0),
            (send("US", "accepted"), 1.0),
        ])
    );
    let sink_sms = labels(&[("channel", "sms"), ("provider", "sink")]);
    assert_eq!(
        m.series("otpd_receipts_total"),
        BTreeMap::from([(
            labels(&[
                ("channel", "sms"),
                ("provider", "sink"),
                ("status", "delivered")
            ]),
            1.0
        )])
    );
    assert_eq!(
        m.series("otpd_delivery_latency_seconds_count"),
        BTreeMap::from([(sink_sms.clone(), 4.0)]),
        "three delivered in the reply, one by a receipt"
    );
    assert!(m.total("otpd_delivery_latency_seconds_sum") > 0.0);
    assert_eq!(m.total("otpd_receipt_timeouts_total"), 0.0);
    assert_eq!(
        m.series("otpd_circuit_state"),
        BTreeMap::from([
            (labels(&[("provider", "sink"), ("state", "closed")]), 1.0),
            (labels(&[("provider", "sink"), ("state", "open")]), 0.0),
            (labels(&[("provider", "sink"), ("state", "half_open")]), 0.0),
        ])
    );
    assert_eq!(m.total("otpd_outbox_depth"), 0.0);
    assert_eq!(m.total("otpd_outbox_oldest_age_seconds"), 0.0);
    assert_eq!(m.total("otpd_webhook_queue_depth"), 0.0);
    assert_eq!(m.total("otpd_webhook_dead_letters"), 0.0);

    // HTTP requests by route template and status class, never by raw path.
    let http = m.series("otpd_http_request_duration_seconds_count");
    let route = |method: &str, route: &str, class: &str| {
        http.get(&labels(&[
            ("method", method),
            ("route", route),
            ("status_class", class),
        ]))
        .copied()
        .unwrap_or(0.0)
    };
    assert_eq!(route("POST", "/v1/verifications", "2xx"), 4.0);
    assert_eq!(route("POST", "/v1/verifications", "4xx"), 1.0);
    assert_eq!(route("POST", "/v1/verifications/check", "2xx"), 3.0);
    assert_eq!(route("POST", "/v1/verifications/check", "4xx"), 1.0);
    assert_eq!(route("POST", "/v1/receipts/{provider}", "2xx"), 1.0);
    assert_eq!(route("POST", "/v1/services", "2xx"), 1.0);
    assert_eq!(route("GET", "/metrics", "2xx"), 1.0, "the first scrape");
    assert!(route("GET", "/v1/verifications/{id}", "2xx") >= 2.0);

    // Low cardinality: no label value is a number, an id or a raw path.
    for (name, labels, _) in &m.samples {
        for value in labels.values() {
            let number = value.len() > 4 && value[1..].bytes().all(|b| b.is_ascii_digit());
            assert!(
                !value.contains("ver_") && !value.contains("dlv_") && !number,
                "{name} has a high-cardinality label value {value}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_scrape_token_is_required() {
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.extra_toml = "[metrics]\nbearer_token = \"scrape-token-0123456789\"\n".into();
    let otpd = OtpdProcess::start(&dir, &config).await;
    let anonymous = otpd.anonymous(Method::GET, "/metrics").reply().await;
    anonymous.assert_problem(401, "unauthorized", "no scrape token");
    let wrong = otpd
        .anonymous(Method::GET, "/metrics")
        .bearer_auth("scrape-token-wrong")
        .reply()
        .await;
    wrong.assert_problem(401, "unauthorized", "a wrong scrape token");
    // Not even an admin key: the scrape token is its own credential.
    let admin = otpd.get("/metrics").await;
    admin.assert_problem(401, "unauthorized", "an API key is not the scrape token");
    let ok = otpd
        .anonymous(Method::GET, "/metrics")
        .bearer_auth("scrape-token-0123456789")
        .reply()
        .await;
    ok.assert_status(200, "the scrape token");
}
