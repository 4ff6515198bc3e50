//! The OpenAPI document is the whole API: every route the contract names is in it, and
//! every operation in it is served (none falls through to the "no such route" fallback).
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

use otpd_server::{Application, Config};
use secrecy::SecretString;
use serde_json::Value;

const MASTER: &str = "otpd_live_openapi_test_master_key_0001";

/// The contract's endpoints (../shared/API.md), as (method, path template).
const CONTRACT: &[(&str, &str)] = &[
    ("post", "/v1/verifications"),
    ("post", "/v1/verifications/check"),
    ("get", "/v1/verifications/{id}"),
    ("post", "/v1/verifications/{id}/cancel"),
    ("get", "/v1/verifications/{id}/messages"),
    ("post", "/v1/totp/factors"),
    ("get", "/v1/totp/factors"),
    ("get", "/v1/totp/factors/{id}"),
    ("delete", "/v1/totp/factors/{id}"),
    ("get", "/v1/totp/factors/{id}/qr.png"),
    ("post", "/v1/totp/factors/{id}/verify"),
    ("post", "/v1/totp/check"),
    ("post", "/v1/totp/backup-codes"),
    ("post", "/v1/services"),
    ("get", "/v1/services"),
    ("get", "/v1/services/{name}"),
    ("patch", "/v1/services/{name}"),
    ("delete", "/v1/services/{name}"),
    ("post", "/v1/services/{name}/webhook-secret"),
    ("post", "/v1/keys"),
    ("get", "/v1/keys"),
    ("delete", "/v1/keys/{id}"),
    ("get", "/v1/events"),
    ("post", "/v1/receipts/{provider}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
    ("get", "/dashboard"),
    // The Twilio Verify v2-compatible API.
    ("post", "/v2/Services"),
    ("get", "/v2/Services"),
    ("get", "/v2/Services/{Sid}"),
    ("post", "/v2/Services/{Sid}"),
    ("delete", "/v2/Services/{Sid}"),
    ("post", "/v2/Services/{ServiceSid}/Verifications"),
    ("get", "/v2/Services/{ServiceSid}/Verifications/{Sid}"),
    ("post", "/v2/Services/{ServiceSid}/Verifications/{Sid}"),
    ("post", "/v2/Services/{ServiceSid}/VerificationCheck"),
    ("get", "/v2/Attempts"),
    ("get", "/v2/Attempts/{Sid}"),
];

async fn start() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}/otpd.db", dir.path().display()),
        master_key: Some(SecretString::from(MASTER)),
        ..Config::default()
    };
    let app = Application::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    (base, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_contract_route_is_documented_and_every_documented_route_is_served() {
    let (base, _dir) = start().await;
    let client = reqwest::Client::new();
    let doc: Value = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");

    for (method, path) in CONTRACT {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} is missing from /openapi.json"
        );
    }

    let mut operations = 0;
    for (path, item) in paths {
        for (method, _op) in item.as_object().unwrap() {
            let concrete = path
                .replace("{id}", "ver_00000000000000000000000000000000")
                .replace("{name}", "default")
                .replace("{provider}", "console")
                .replace("{ServiceSid}", "default")
                .replace("{Sid}", "VE00000000000000000000000000000000");
            let url = format!("{base}{concrete}");
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            // Delete a service that does not exist, so the test changes nothing.
            let url = if m == reqwest::Method::DELETE {
                url.replace("/default", "/nope")
            } else {
                url
            };
            let reply = client
                .request(m.clone(), &url)
                .bearer_auth(MASTER)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = reply.status().as_u16();
            let text = reply.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path}: method not routed");
            assert!(
                !text.contains("no such route"),
                "{method} {path} is documented but not served"
            );
            assert!(status < 500, "{method} {path}: {status} {text}");
            operations += 1;
        }
    }
    assert!(operations >= 20, "only {operations} operations documented");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_and_dashboard_are_served_without_external_assets() {
    let (base, _dir) = start().await;
    for page in ["/docs", "/dashboard"] {
        let reply = reqwest::get(format!("{base}{page}")).await.unwrap();
        assert_eq!(reply.status(), 200);
        let html = reply.text().await.unwrap();
        assert!(html.contains("<html") || html.contains("<!doctype") || html.contains("<!DOCTYPE"));
        for external in ["http://", "https://", "//cdn"] {
            let offending: Vec<&str> = html
                .lines()
                .filter(|l| (l.contains("src=") || l.contains("href=")) && l.contains(external))
                .collect();
            assert!(
                offending.is_empty(),
                "{page} loads external assets: {offending:?}"
            );
        }
    }
}

/// Found by schemathesis: the create-service body was documented as an `allOf` of the
/// PATCH body (which refuses unknown properties) and `{name}`, a schema no body can
/// satisfy. It is one flat object: `name` (required) plus the PATCH properties.
#[test]
fn the_create_service_body_is_one_satisfiable_object() {
    let doc = serde_json::to_value(otpd_server::api::openapi()).unwrap();
    let body = &doc["components"]["schemas"]["CreateServiceBody"];
    assert!(body.get("allOf").is_none(), "{body}");
    assert_eq!(body["type"], "object", "{body}");
    assert!(
        body["required"]
            .as_array()
            .unwrap()
            .contains(&Value::from("name"))
    );
    for field in [
        "name",
        "friendly_name",
        "code_length",
        "templates",
        "rate_limits",
    ] {
        assert!(body["properties"].get(field).is_some(), "{field} in {body}");
    }
    let patch = &doc["components"]["schemas"]["ServicePatch"];
    assert!(patch["properties"].get("name").is_none());
}

/// Found by schemathesis: 401, 403, 415 … were answered but not documented. Every
/// operation that takes a key, a body or a parameter documents its other refusals as
/// `4XX` problem+json.
#[test]
fn every_operation_that_takes_input_documents_its_refusals() {
    let doc = serde_json::to_value(otpd_server::api::openapi()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let takes_input = op.get("security").is_some()
                || op.get("requestBody").is_some()
                || op.get("parameters").is_some();
            if !takes_input {
                continue;
            }
            if path.starts_with("/v2/") {
                // The Twilio-compatible API refuses in Twilio's own error body (JSON).
                let responses = op["responses"].as_object().unwrap();
                let documented = responses.iter().any(|(status, r)| {
                    status.starts_with('4') && r["content"]["application/json"].is_object()
                });
                assert!(documented, "{method} {path}: no 4xx Twilio error response");
            } else {
                let refused = &op["responses"]["4XX"]["content"]["application/problem+json"];
                assert!(
                    refused.is_object(),
                    "{method} {path}: no 4XX problem response"
                );
            }
        }
    }
}
