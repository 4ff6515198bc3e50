//! End-to-end tests of roles and service scopes on every route (security review, finding
//! 2: an admin key created with `services: ["a"]` minted an unscoped admin key, changed and
//! deleted service `b`, and read `b`'s events and decisions). The route walk is generated
//! from the route table itself (`otpd_server::api::openapi()` and
//! `otpd_server::access::access_of`), so a route added later without a scope decision
//! fails it.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{Method, OtpdProcess, Reply, SendReply, start_with_sink};
use otpd_server::access::{Access, access_of};
use serde_json::{Value, json};

/// The keys the walk calls with.
struct Keys {
    verify: String,
    verify_a: String,
    admin: String,
    admin_a: String,
}

/// Two services (`a`, `b`) and a key of each role, unscoped and scoped to `a`.
async fn setup(otpd: &OtpdProcess) -> (Value, Value, Keys) {
    let a = otpd.create_service(&json!({"name": "a"})).await;
    let b = otpd.create_service(&json!({"name": "b"})).await;
    let key = |role: &str, services: Option<Vec<&str>>| {
        let mut body = json!({"name": format!("{role}-key"), "role": role});
        if let Some(s) = services {
            body["services"] = json!(s);
        }
        async move {
            let r = otpd.post("/v1/keys", &body).await;
            r.assert_status(201, &format!("create {body}"));
            r.str("key").to_string()
        }
    };
    let keys = Keys {
        verify: key("verify", None).await,
        verify_a: key("verify", Some(vec!["a"])).await,
        admin: key("admin", None).await,
        admin_a: key("admin", Some(vec!["a"])).await,
    };
    (a, b, keys)
}

/// A request of the walk: path parameters filled in (the one naming a service with
/// `service`), an empty body in the face's encoding.
async fn call(otpd: &OtpdProcess, key: &str, method: &Method, path: &str, service: &str) -> Reply {
    let mut filled = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').expect("a closed path parameter") + open;
        filled.push_str(&rest[..open]);
        let name = &rest[open + 1..close];
        filled.push_str(match name {
            "name" | "ServiceSid" => service,
            "Sid" if path.starts_with("/v2/Services/{Sid}") => service,
            "provider" => "sink",
            _ => "x_not_there",
        });
        rest = &rest[close + 1..];
    }
    filled.push_str(rest);
    let twilio = path.starts_with("/v2/");
    let mut req = otpd.anonymous(method.clone(), &filled);
    req = if twilio {
        req.basic_auth("otpd", Some(key))
    } else {
        req.bearer_auth(key)
    };
    if *method == Method::POST || *method == Method::PATCH {
        req = if twilio {
            req.header("content-type", "application/x-www-form-urlencoded")
                .body("")
        } else {
            req.json(&json!({}))
        };
    }
    req.reply().await
}

fn refused(r: &Reply) -> bool {
    r.status == 401 || r.status == 403
}

/// Every route × role × scope, as the route table declares it: a verify key never passes an
/// admin route, a key scoped to `a` never reaches `b` through a route that names it, a
/// scoped key never passes a route that needs an unscoped admin, and an admin allowed in
/// is never refused by the layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_applies_its_role_and_scope_rule() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    let (a, b, k) = setup(&otpd).await;
    let (a_sid, b_sid) = (a["sid"].as_str().unwrap(), b["sid"].as_str().unwrap());
    let doc = otpd_server::api::openapi();
    let mut walked = 0;
    let mut failures = Vec::new();
    for (path, item) in &doc.paths.paths {
        let ops = [
            (Method::GET, item.get.is_some()),
            (Method::POST, item.post.is_some()),
            (Method::PATCH, item.patch.is_some()),
            (Method::DELETE, item.delete.is_some()),
            (Method::PUT, item.put.is_some()),
        ];
        for (method, served) in ops {
            if !served {
                continue;
            }
            walked += 1;
            let Some(access) = access_of(&method, path) else {
                failures.push(format!("{method} {path}: no access rule"));
                continue;
            };
            let twilio = path.starts_with("/v2/");
            let (in_scope, out_of_scope) = if twilio { (a_sid, b_sid) } else { ("a", "b") };
            let mut expect = |ok: bool, what: &str, r: &Reply| {
                if !ok {
                    failures.push(format!(
                        "{method} {path}: {what}: {} {:?}",
                        r.status, r.body
                    ));
                }
            };
            // A request without a key is refused wherever a key is needed.
            if !matches!(access, Access::Public) {
                let r = otpd
                    .anonymous(method.clone(), &path.replace(['{', '}'], ""))
                    .reply()
                    .await;
                expect(r.status == 401, "no key must be 401", &r);
            }
            let destructive = method == Method::DELETE;
            match access {
                Access::Public | Access::Key => {}
                Access::Operator | Access::AdminGlobal => {
                    for key in [&k.verify, &k.verify_a, &k.admin_a] {
                        let r = call(&otpd, key, &method, path, in_scope).await;
                        expect(r.status == 403, "needs an unscoped admin", &r);
                    }
                    let r = call(&otpd, &k.admin, &method, path, in_scope).await;
                    expect(!refused(&r), "an unscoped admin passes", &r);
                }
                Access::Admin => {
                    for key in [&k.verify, &k.verify_a] {
                        let r = call(&otpd, key, &method, path, in_scope).await;
                        expect(r.status == 403, "needs an admin", &r);
                    }
                    for key in [&k.admin, &k.admin_a] {
                        let r = call(&otpd, key, &method, path, in_scope).await;
                        expect(!refused(&r), "an admin passes the layer", &r);
                    }
                }
                Access::AdminOfService(_) => {
                    for key in [&k.verify, &k.verify_a] {
                        let r = call(&otpd, key, &method, path, in_scope).await;
                        expect(r.status == 403, "needs an admin", &r);
                    }
                    let r = call(&otpd, &k.admin_a, &method, path, out_of_scope).await;
                    expect(r.status == 403, "a key scoped to a never reaches b", &r);
                    if !destructive {
                        let r = call(&otpd, &k.admin_a, &method, path, in_scope).await;
                        expect(!refused(&r), "a key scoped to a reaches a", &r);
                        let r = call(&otpd, &k.admin, &method, path, out_of_scope).await;
                        expect(!refused(&r), "an unscoped admin reaches b", &r);
                    }
                }
            }
        }
    }
    assert!(walked > 50, "only {walked} routes walked");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Service b survived the walk (the scoped key's DELETE was refused).
    otpd.get("/v1/services/b")
        .await
        .assert_status(200, "b is still there");
}

/// The finding, step by step: an admin key scoped to `a` cannot mint a wider key, change,
/// re-key or delete `b`, nor read `b`'s events, decisions, keys or service entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_key_scoped_to_one_service_stays_inside_it() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    let (a, b, k) = setup(&otpd).await;
    let a_id = a["id"].as_str().unwrap();
    let b_sid = b["sid"].as_str().unwrap();
    let as_a = |method: Method, path: &str| otpd.request_as(&k.admin_a, method, path);

    // New keys lie inside the creator's scope.
    for body in [
        json!({"name": "wider", "role": "admin"}),
        json!({"name": "other", "role": "admin", "services": ["b"]}),
        json!({"name": "both", "role": "verify", "services": ["a", "b"]}),
    ] {
        as_a(Method::POST, "/v1/keys")
            .json(&body)
            .reply()
            .await
            .assert_problem(403, "forbidden", &format!("scoped key minting {body}"));
    }
    let inside = as_a(Method::POST, "/v1/keys")
        .json(&json!({"name": "inside", "role": "verify", "services": ["a"]}))
        .reply()
        .await;
    inside.assert_status(201, "a key inside the scope");

    // Service b: no change, no new webhook secret, no deletion, no read.
    as_a(Method::PATCH, "/v1/services/b")
        .json(&json!({"friendly_name": "Hijacked"}))
        .reply()
        .await
        .assert_problem(403, "forbidden", "patch b");
    as_a(Method::POST, "/v1/services/b/webhook-secret")
        .reply()
        .await
        .assert_problem(403, "forbidden", "re-key b");
    as_a(Method::DELETE, "/v1/services/b")
        .reply()
        .await
        .assert_problem(403, "forbidden", "delete b");
    for path in [
        "/v1/services/b",
        "/v1/services/b/decisions",
        "/v1/events?service=b",
    ] {
        otpd.get_as(&k.admin_a, path)
            .await
            .assert_problem(403, "forbidden", path);
    }
    let twilio_update = otpd
        .anonymous(Method::POST, &format!("/v2/Services/{b_sid}"))
        .basic_auth("otpd", Some(&k.admin_a))
        .form(&[("FriendlyName", "Hijacked")])
        .reply()
        .await;
    assert_eq!(twilio_update.status, 403, "{twilio_update:?}");
    let b_now = otpd.get("/v1/services/b").await;
    b_now.assert_status(200, "b is still there");
    assert_ne!(b_now.body["friendly_name"], "Hijacked", "{b_now:?}");

    // b's events exist, but the scoped key's event list holds none of them.
    otpd.send_ok(&json!({"to": "+14155550150", "service": "b"}))
        .await;
    let events = otpd.get_as(&k.admin_a, "/v1/events").await;
    events.assert_status(200, "events of the scoped key");
    let b_id = b["id"].as_str().unwrap();
    for e in events.body["events"].as_array().unwrap() {
        assert_ne!(e["service_id"].as_str(), Some(b_id), "{e}");
    }

    // Lists keep to the scope: services a only, keys inside the scope only.
    let services = otpd.get_as(&k.admin_a, "/v1/services").await;
    let names: Vec<&str> = services.body["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, vec!["a"], "{services:?}");
    let keys = otpd.get_as(&k.admin_a, "/v1/keys").await;
    for key in keys.body["keys"].as_array().unwrap() {
        assert_eq!(key["services"], json!([a_id]), "{key}");
    }
    // An unscoped key cannot be revoked by the scoped one.
    let all = otpd.get("/v1/keys").await;
    let unscoped_id = all.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["name"] == "admin-key" && key["services"].is_null())
        .and_then(|key| key["id"].as_str())
        .expect("the unscoped admin key")
        .to_string();
    as_a(Method::DELETE, &format!("/v1/keys/{unscoped_id}"))
        .reply()
        .await
        .assert_problem(404, "not_found", "revoke an unscoped key");
    otpd.get_as(&k.admin, "/v1/keys")
        .await
        .assert_status(200, "the unscoped admin key still works");

    // A test key mints only test keys; the dashboard wants an unscoped admin.
    let test_admin = otpd.create_key("test-admin", "admin", true).await;
    otpd.post_as(
        &test_admin,
        "/v1/keys",
        &json!({"name": "live", "role": "verify"}),
    )
    .await
    .assert_problem(403, "forbidden", "test key minting a live key");
    otpd.post_as(
        &test_admin,
        "/v1/keys",
        &json!({"name": "t", "role": "verify", "test": true}),
    )
    .await
    .assert_status(201, "test key minting a test key");
    otpd.anonymous(Method::POST, "/dashboard/session")
        .json(&json!({"key": k.admin_a}))
        .reply()
        .await
        .assert_problem(403, "forbidden", "scoped key signing in to the dashboard");
}
