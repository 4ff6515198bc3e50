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
    ("get", "/v2/Attempts/Summary"),
    ("get", "/v2/Templates"),
    ("post", "/v2/SafeList/Numbers"),
    ("get", "/v2/SafeList/Numbers/{PhoneNumber}"),
    ("delete", "/v2/SafeList/Numbers/{PhoneNumber}"),
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

/// `/docs` shows a request and a response example for every operation: each request body
/// and each JSON success response in the served document has an `example`.
#[test]
fn every_operation_has_request_and_response_examples() {
    let doc = otpd_server::api::document(&otpd_server::api::openapi());
    let mut missing = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (media_type, media) in op["requestBody"]["content"]
                .as_object()
                .into_iter()
                .flatten()
            {
                if media.get("example").is_none_or(Value::is_null) {
                    missing.push(format!("{method} {path}: request {media_type}"));
                }
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                if !status.starts_with('2') {
                    continue;
                }
                for (media_type, media) in response["content"].as_object().into_iter().flatten() {
                    if media_type.contains("json")
                        && media.get("example").is_none_or(Value::is_null)
                    {
                        missing.push(format!("{method} {path}: {status} {media_type}"));
                    }
                }
            }
        }
    }
    assert!(missing.is_empty(), "no example: {missing:#?}");
}

/// A bound written in a field's description ("4–10", "1-1000") is the schema's: the
/// reference cannot say one thing in words and another in its limits.
#[test]
fn schema_bounds_match_the_text() {
    let doc = serde_json::to_value(otpd_server::api::openapi()).unwrap();
    let mut wrong = Vec::new();
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        for (field, property) in schema["properties"].as_object().into_iter().flatten() {
            let integer = match &property["type"] {
                Value::String(t) => t == "integer",
                Value::Array(ts) => ts.iter().any(|t| t == "integer"),
                _ => false,
            };
            let Some(text) = property["description"].as_str() else {
                continue;
            };
            if !integer {
                continue;
            }
            if let Some((low, high)) = written_range(text) {
                let (min, max) = (property["minimum"].as_i64(), property["maximum"].as_i64());
                if (min, max) != (Some(low), Some(high)) {
                    wrong.push(format!(
                        "{name}.{field}: text says {low}–{high}, schema {min:?}–{max:?}"
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The first `N–M` (or `N-M`) range of numbers in a text.
fn written_range(text: &str) -> Option<(i64, i64)> {
    let chars: Vec<char> = text.chars().collect();
    let number_at = |mut i: usize| -> Option<(i64, usize)> {
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        let digits: String = chars[start..i].iter().filter(|c| **c != ',').collect();
        (i > start)
            .then(|| (digits.parse().ok(), i))
            .and_then(|(n, i)| Some((n?, i)))
    };
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !chars[i - 1].is_ascii_alphanumeric() && chars[i - 1] != '.';
        if boundary && chars[i].is_ascii_digit() {
            let (low, end) = number_at(i)?;
            if end + 1 < chars.len()
                && matches!(chars[end], '–' | '-')
                && chars[end + 1].is_ascii_digit()
            {
                let (high, after) = number_at(end + 1)?;
                let bounded = after == chars.len() || !chars[after].is_ascii_alphanumeric();
                if bounded && low < high {
                    return Some((low, high));
                }
            }
            i = end;
        } else {
            i += 1;
        }
    }
    None
}
