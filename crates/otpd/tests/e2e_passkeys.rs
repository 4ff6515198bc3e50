//! Passkeys (WebAuthn) end to end against the real binary: registration and sign-in with
//! and without a user name in real Chromium with its virtual authenticator (the DevTools
//! protocol's WebAuthn domain, `tests/browser/passkeys.test.mjs`), a wrong origin, a reused
//! ceremony and a counter gone back refused, the events and the factor list they leave;
//! and bad input refused with clear problems, changing nothing.
//!
//! The browser part needs `node`, `crates/otpd/tests/browser/node_modules` (`npm ci`
//! there) and `/usr/bin/chromium` (or `CHROMIUM`); without them it prints "skipped",
//! unless `OTPD_REQUIRE_BROWSER=1` (CI) makes that a failure.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::browser::{browser_can_run, run_browser_script};
use common::{Method, OtpdProcess, start_with_sink};
use serde_json::{Value, json};

/// The events of one kind in a service, oldest first.
async fn events(otpd: &OtpdProcess, kind: &str, service_id: &str) -> Vec<Value> {
    let reply = otpd
        .get(&format!(
            "/v1/events?type={kind}&service={service_id}&limit=100"
        ))
        .await;
    reply.assert_status(200, "events");
    reply.body["events"]
        .as_array()
        .unwrap_or_else(|| panic!("events: {reply:?}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkeys_in_chromium_with_a_virtual_authenticator() {
    if !browser_can_run("passkeys") {
        return;
    }
    let (_dir, _sink, otpd) = start_with_sink().await;
    let service = "passkeys-e2e";
    let env = [
        ("OTPD_URL", otpd.base_url().to_owned()),
        ("OTPD_KEY", otpd.master_key().to_owned()),
        ("OTPD_SERVICE", service.to_owned()),
    ];
    run_browser_script("passkeys.test.mjs", &env).await;

    // What the browser run left: user-42's passkey, used (and user-44's, registered and
    // used through /v2), and their events in the shared log.
    let svc = otpd.get(&format!("/v1/services/{service}")).await;
    svc.assert_status(200, "service");
    let service_id = svc.str("id").to_owned();
    let list = otpd
        .get(&format!(
            "/v1/passkeys/factors?entity=user-42&service={service}"
        ))
        .await;
    list.assert_status(200, "list");
    let factors = list.body["factors"].as_array().unwrap();
    assert_eq!(factors.len(), 1, "{list:?}");
    assert_eq!(factors[0]["type"], "passkey");
    assert!(factors[0]["last_used_at"].is_string(), "{list:?}");
    assert!(!list.text.contains("publicKey") && !list.text.contains("cred\""));
    assert_eq!(
        events(&otpd, "passkey.registered", &service_id).await.len(),
        2
    );
    assert_eq!(
        events(&otpd, "passkey.authenticated", &service_id)
            .await
            .len(),
        5
    );
    let failed = events(&otpd, "passkey.failed", &service_id).await;
    assert!(failed.len() >= 4, "{failed:?}");
    assert!(
        failed
            .iter()
            .any(|e| e["data"]["reason"] == "signature counter did not increase"),
        "{failed:?}"
    );
    assert!(
        failed.iter().all(|e| e["data"]["entity"] == "user-42"),
        "{failed:?}"
    );

    // The dashboard counts them beside the authenticator apps.
    let stats = otpd.get("/v1/stats?window_minutes=60").await;
    stats.assert_status(200, "stats");
    let count = |kind: &str| {
        stats.body["factors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} row: {stats:?}"))["count"]
            .clone()
    };
    assert_eq!(count("passkey.registered"), 2);
    assert_eq!(count("passkey.authenticated"), 5);
    assert_eq!(count("passkey.failed"), json!(failed.len()));
    assert_eq!(count("factor.approved"), 0);

    // A deleted passkey signs nobody in.
    let id = factors[0]["id"].as_str().unwrap();
    otpd.request(Method::DELETE, &format!("/v1/passkeys/factors/{id}"))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    otpd.post(
        "/v1/passkeys/authentications",
        &json!({"service": service, "entity": "user-42"}),
    )
    .await
    .assert_problem(404, "not_found", "no passkey left");
    assert_eq!(events(&otpd, "passkey.deleted", &service_id).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkey_routes_refuse_bad_input_and_change_nothing() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    let start = json!({"entity": "user-1", "user_name": "u1"});
    otpd.post("/v1/passkeys/registrations", &start)
        .await
        .assert_problem(
            400,
            "invalid_request",
            "the default service has no passkeys",
        );

    for (passkeys, why) in [
        (
            json!({"rp_id": "example.com", "origins": ["https://evil.com"]}),
            "origin outside the RP id",
        ),
        (
            json!({"rp_id": "example.com", "origins": ["http://example.com"]}),
            "plain http",
        ),
        (json!({"rp_id": "example.com", "origins": []}), "no origin"),
        (
            json!({"rp_id": "example.com", "origins": ["https://example.com"], "x": 1}),
            "unknown field",
        ),
    ] {
        let reply = otpd
            .post(
                "/v1/services",
                &json!({"name": "pk-bad", "passkeys": passkeys}),
            )
            .await;
        reply.assert_problem(400, "invalid_request", why);
    }
    otpd.create_service(&json!({"name": "pk", "passkeys": {
        "rp_id": "example.com", "rp_name": "Example", "origins": ["https://example.com"]}}))
        .await;
    let other = otpd.create_service(&json!({"name": "pk-other"})).await;
    let reply = otpd
        .request(Method::PATCH, "/v1/services/pk-other")
        .json(&json!({"passkeys": {"rp_id": "example.org", "origins": ["https://login.example.org"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(other["name"], "pk-other");

    let started = otpd
        .post(
            "/v1/passkeys/registrations",
            &json!({"service": "pk", "entity": "user-1", "user_name": "alice@example.com", "display_name": "Alice"}),
        )
        .await;
    started.assert_status(201, "registration");
    let id = started.str("id").to_owned();
    assert!(id.starts_with("pkr_"), "{started:?}");
    let options = &started.body["options"];
    assert_eq!(options["rp"]["id"], "example.com");
    assert_eq!(options["rp"]["name"], "Example");
    assert_eq!(options["user"]["name"], "alice@example.com");
    assert_eq!(options["user"]["displayName"], "Alice");
    assert!(
        options["challenge"].as_str().unwrap().len() >= 43,
        "{options}"
    );
    assert!(!options["user"]["id"].as_str().unwrap().contains("user-1"));
    assert_eq!(
        options["authenticatorSelection"]["residentKey"],
        "preferred"
    );

    // Bodies that are not credentials: refused, and the ceremony is still there.
    for (body, why) in [
        (json!({}), "no credential"),
        (json!({"credential": "x"}), "a string"),
        (json!({"credential": {"id": "AA"}}), "half a credential"),
        (json!({"credential": {}, "extra": 1}), "unknown field"),
    ] {
        otpd.post(&format!("/v1/passkeys/registrations/{id}/verify"), &body)
            .await
            .assert_problem(400, "invalid_request", why);
    }
    // A well-formed credential of nobody: refused (400), the ceremony is spent.
    let forged = json!({"credential": {
        "id": "AAAA", "rawId": "AAAA", "type": "public-key",
        "response": {"attestationObject": "o2NmbXRkbm9uZQ", "clientDataJSON": "e30"},
        "clientExtensionResults": {}}});
    otpd.post(&format!("/v1/passkeys/registrations/{id}/verify"), &forged)
        .await
        .assert_problem(400, "invalid_request", "a forged attestation");
    let used = otpd
        .post(&format!("/v1/passkeys/registrations/{id}/verify"), &forged)
        .await;
    used.assert_problem(400, "invalid_request", "a used ceremony");
    assert!(
        used.body["detail"]
            .as_str()
            .unwrap()
            .contains("already used")
    );
    otpd.post("/v1/passkeys/registrations/pkr_nope/verify", &forged)
        .await
        .assert_problem(404, "not_found", "unknown ceremony");
    // A sign-in id is not a registration id.
    let auth = otpd
        .post("/v1/passkeys/authentications", &json!({"service": "pk"}))
        .await;
    auth.assert_status(201, "discoverable start");
    assert!(auth.str("id").starts_with("pka_"));
    assert_eq!(auth.body["options"]["userVerification"], "required");
    otpd.post(
        &format!("/v1/passkeys/registrations/{}/verify", auth.str("id")),
        &forged,
    )
    .await
    .assert_problem(404, "not_found", "kind");

    // Nothing was stored, and an entity without passkeys has no sign-in.
    let list = otpd
        .get("/v1/passkeys/factors?entity=user-1&service=pk")
        .await;
    list.assert_status(200, "list");
    assert_eq!(list.body["factors"], json!([]));
    otpd.post(
        "/v1/passkeys/authentications",
        &json!({"service": "pk", "entity": "user-1"}),
    )
    .await
    .assert_problem(404, "not_found", "no passkey");
    for (body, why) in [
        (json!({"service": "pk", "entity": ""}), "empty entity"),
        (json!({"service": "pk", "entity": " x"}), "spaces"),
        (json!({"service": "nope"}), "unknown service"),
    ] {
        let reply = otpd.post("/v1/passkeys/authentications", &body).await;
        assert!(
            reply.status == 400 || reply.status == 404,
            "{why}: {reply:?}"
        );
    }
    otpd.post(
        "/v1/passkeys/registrations",
        &json!({"service": "pk", "entity": "user-1", "user_name": ""}),
    )
    .await
    .assert_problem(400, "invalid_request", "empty user name");
    otpd.get("/v1/passkeys/factors?service=pk")
        .await
        .assert_problem(400, "invalid_request", "no entity");
    otpd.request(Method::DELETE, "/v1/passkeys/factors/pk_nope")
        .send()
        .await
        .map(|r| assert_eq!(r.status(), 404))
        .unwrap();

    // A key scoped to another service sees no ceremony of this one.
    let scoped = otpd
        .post(
            "/v1/keys",
            &json!({"name": "other", "role": "verify", "services": ["pk-other"]}),
        )
        .await;
    scoped.assert_status(201, "scoped key");
    let scoped = scoped.str("key").to_owned();
    let mine = otpd
        .post("/v1/passkeys/authentications", &json!({"service": "pk"}))
        .await;
    let reply = otpd
        .request_as(
            &scoped,
            Method::POST,
            &format!("/v1/passkeys/authentications/{}/verify", mine.str("id")),
        )
        .json(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 404);
    otpd.post_as(
        &scoped,
        "/v1/passkeys/registrations",
        &json!({"service": "pk", "entity": "u", "user_name": "u"}),
    )
    .await
    .assert_problem(403, "forbidden", "another service");
    // The ceremony the scoped key could not touch still works for its owner: a forged
    // assertion is a failed sign-in (200, valid false), not an error.
    let reply = otpd
        .post(
            &format!("/v1/passkeys/authentications/{}/verify", mine.str("id")),
            &json!({"credential": {
                "id": "AAAA", "rawId": "AAAA", "type": "public-key",
                "response": {"authenticatorData": "AAAA", "clientDataJSON": "e30", "signature": "AAAA"},
                "clientExtensionResults": {}}}),
        )
        .await;
    reply.assert_status(200, "forged assertion");
    assert_eq!(reply.body, json!({"valid": false}));
}
