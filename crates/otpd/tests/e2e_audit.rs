//! End-to-end tests of the audit trail and of data retention, against the real binary:
//! every state-changing call and every event names its API key, request id and end-user
//! IP; the log filters, pages with an opaque cursor and exports as JSON lines; an erasure
//! and the retention purge leave no trace of a phone number in any table.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Config, Method, OtpdProcess, SendReply, Sink, TestDir, contains_bytes, wrong_code};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::sqlite::SqliteConnectOptions;

/// A verify key's id and secret.
struct Key {
    id: String,
    secret: String,
}

async fn verify_key(otpd: &OtpdProcess, name: &str, test: bool) -> Key {
    let reply = otpd.create_key_reply(name, "verify", test).await;
    Key {
        id: reply.id(),
        secret: reply.str("key").to_owned(),
    }
}

/// Every event matching `query`, following `next_cursor` page by page (`limit` per page).
async fn all_events(otpd: &OtpdProcess, query: &str, limit: u32) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/v1/events?limit={limit}&{query}");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let page = otpd.get(&path).await;
        page.assert_status(200, &path);
        events.extend(page.body["events"].as_array().unwrap().iter().cloned());
        match page.body["next_cursor"].as_str() {
            Some(c) => {
                assert!(c.parse::<i64>().is_err(), "cursors are opaque: {c}");
                after = Some(c.to_owned());
            }
            None => return events,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_records_key_request_and_client_ip() {
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let otpd = OtpdProcess::start(&dir, &Config::for_sink(&sink)).await;
    let to = "+14155550161";
    let app = verify_key(&otpd, "app", false).await;

    // A send with the caller's request id and the end user's IP.
    let sent = otpd
        .request_as(&app.secret, Method::POST, "/v1/verifications")
        .header("x-request-id", "req-audit-1")
        .json(&json!({"to": to, "client_ip": "203.0.113.5"}))
        .reply()
        .await;
    sent.assert_status(201, "send");
    assert_eq!(sent.header("x-request-id"), Some("req-audit-1"));
    let id = sent.id();

    // A wrong check without a request id or client_ip: otpd makes an id, the IP is the peer's.
    let code = sink.code_for(to).await;
    let wrong = otpd
        .post_as(
            &app.secret,
            "/v1/verifications/check",
            &json!({"id": id, "code": wrong_code(&code)}),
        )
        .await;
    wrong.assert_status(200, "wrong check");
    let generated = wrong
        .header("x-request-id")
        .expect("a generated request id")
        .to_owned();
    assert!(generated.len() >= 32, "{generated}");

    // The Twilio-compatible face records the same way.
    let sid = otpd.get("/v1/services/default").await.str("sid").to_owned();
    let twilio = otpd
        .anonymous(
            Method::POST,
            &format!("/v2/Services/{sid}/VerificationCheck"),
        )
        .basic_auth("AC-anything", Some(&app.secret))
        .header("x-request-id", "req-audit-2")
        .form(&[("To", to), ("Code", code.as_str())])
        .reply()
        .await;
    twilio.assert_status(200, "twilio check");
    assert_eq!(twilio.body["status"], "approved", "{twilio:?}");

    // A refused admin call by the verify key, and an admin change with no domain event.
    otpd.post_as(&app.secret, "/v1/services", &json!({"name": "nope"}))
        .await
        .assert_status(403, "verify key creating a service");
    otpd.create_service(&json!({"name": "audited"})).await;

    let by_request = |events: &[Value], rid: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e["request_id"] == rid)
            .cloned()
            .collect()
    };
    let events = all_events(&otpd, "", 1000).await;
    let created = by_request(&events, "req-audit-1");
    assert_eq!(created.len(), 1, "{created:#?}");
    assert_eq!(created[0]["type"], "verification.created");
    assert_eq!(created[0]["key_id"], app.id.as_str());
    assert_eq!(created[0]["client_ip"], "203.0.113.5");
    let failed = by_request(&events, &generated);
    assert_eq!(
        failed[0]["type"], "verification.check_failed",
        "{failed:#?}"
    );
    assert_eq!(failed[0]["key_id"], app.id.as_str());
    assert_eq!(failed[0]["client_ip"], "127.0.0.1");
    let approved = by_request(&events, "req-audit-2");
    assert_eq!(
        approved[0]["type"], "verification.approved",
        "{approved:#?}"
    );
    assert_eq!(approved[0]["key_id"], app.id.as_str());
    // Deliveries are otpd's own work: no key, no request.
    let sent_events: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "verification.delivery_sent")
        .collect();
    assert!(!sent_events.is_empty());
    assert!(
        sent_events
            .iter()
            .all(|e| e["key_id"].is_null() && e["request_id"].is_null())
    );
    // Calls that caused no event are recorded as `api.request`, refusals included.
    let requests: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "api.request")
        .collect();
    let refused = requests
        .iter()
        .find(|e| e["data"]["route"] == "/v1/services" && e["data"]["status"] == 403)
        .unwrap_or_else(|| panic!("no record of the refused call: {requests:#?}"));
    assert_eq!(refused["key_id"], app.id.as_str());
    assert_eq!(refused["data"]["method"], "POST");
    assert!(requests.iter().any(|e| e["data"]["route"] == "/v1/services"
        && e["data"]["status"] == 201
        && e["key_id"] == "master"));
    assert!(
        requests
            .iter()
            .any(|e| e["data"]["route"] == "/v1/keys" && e["data"]["status"] == 201)
    );
    // Every event of a request has its request id; numbers only masked.
    let text = serde_json::to_string(&events).unwrap();
    assert!(
        !text.contains("4155550161"),
        "a full number in the event log"
    );
    assert!(text.contains("+1******0161"));

    // Filters: key, type, service, request, time.
    let mine = all_events(&otpd, &format!("key={}", app.id), 2).await;
    assert!(mine.iter().all(|e| e["key_id"] == app.id.as_str()));
    assert_eq!(
        mine.len(),
        events
            .iter()
            .filter(|e| e["key_id"] == app.id.as_str())
            .count()
    );
    let typed = all_events(&otpd, "type=verification.created&service=default", 1).await;
    assert_eq!(typed.len(), 1, "{typed:#?}");
    let req = all_events(&otpd, "request=req-audit-2", 10).await;
    assert_eq!(req.len(), approved.len());
    let past = all_events(&otpd, "until=2000-01-01T00:00:00Z", 10).await;
    assert!(past.is_empty());
    otpd.get("/v1/events?until=yesterday").await.assert_problem(
        400,
        "invalid_request",
        "bad until",
    );
    otpd.get("/v1/events?after=garbage")
        .await
        .assert_problem(400, "invalid_request", "bad cursor");
    otpd.get_as(&app.secret, "/v1/events")
        .await
        .assert_problem(403, "forbidden", "verify key");

    // The export: the same events as JSON lines.
    let export = otpd.get(&format!("/v1/events/export?key={}", app.id)).await;
    export.assert_status(200, "export");
    assert_eq!(export.content_type(), "application/x-ndjson");
    let lines: Vec<Value> = export
        .text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines, mine);
    otpd.get_as(&app.secret, "/v1/events/export")
        .await
        .assert_problem(403, "forbidden", "verify key export");
}

// ---------------------------------------------------------------------------------------
// Retention and erasure
// ---------------------------------------------------------------------------------------

/// Every `(table, column)` of the database whose value holds any of `needles`.
async fn find_in_database(db: &Path, needles: &[&str]) -> Vec<String> {
    let options = SqliteConnectOptions::new().filename(db).read_only(true);
    let mut conn = sqlx::ConnectOptions::connect(&options)
        .await
        .expect("open the database");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(tables.len() >= 15, "{tables:?}");
    let mut found = Vec::new();
    for table in tables {
        let columns: Vec<String> = sqlx::query(&format!("PRAGMA table_info(\"{table}\")"))
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("name"))
            .collect();
        for column in columns {
            for needle in needles {
                let n: i64 = sqlx::query_scalar(&format!(
                    "SELECT COUNT(*) FROM \"{table}\" WHERE instr(CAST(\"{column}\" AS BLOB), CAST(?1 AS BLOB)) > 0"
                ))
                .bind(*needle)
                .fetch_one(&mut conn)
                .await
                .unwrap();
                if n > 0 {
                    found.push(format!("{table}.{column} ({n} rows hold {needle})"));
                }
            }
        }
    }
    found
}

/// Everything otpd keeps about a number: sends, a resend, wrong and right checks, a
/// cancel, an idempotent send, a test-key send with its recorded message, a Twilio-style
/// send, a guard refusal and a lockout failure.
async fn scripted_run(
    otpd: &OtpdProcess,
    sink: &Sink,
    e164: &str,
    national: &str,
    keys: (&Key, &Key),
) {
    let (app, test) = keys;
    let id = otpd
        .post_as(
            &app.secret,
            "/v1/verifications",
            &json!({"to": national, "country": "US", "client_ip": "198.51.100.4"}),
        )
        .await;
    id.assert_status(201, "send");
    otpd.post_as(&app.secret, "/v1/verifications", &json!({"to": e164}))
        .await
        .assert_status(201, "resend");
    let code = sink.code_for(e164).await;
    otpd.post_as(
        &app.secret,
        "/v1/verifications/check",
        &json!({"to": e164, "code": wrong_code(&code)}),
    )
    .await
    .assert_status(200, "wrong");
    otpd.post_as(
        &app.secret,
        "/v1/verifications/check",
        &json!({"to": e164, "code": code}),
    )
    .await
    .assert_status(200, "right");
    let again = otpd
        .request_as(&app.secret, Method::POST, "/v1/verifications")
        .header("idempotency-key", format!("idem-{national}"))
        .json(&json!({"to": e164, "service": "retained"}))
        .reply()
        .await;
    again.assert_status(201, "idempotent send");
    otpd.post_as(
        &app.secret,
        &format!("/v1/verifications/{}/cancel", again.id()),
        &json!({}),
    )
    .await
    .assert_status(200, "cancel");
    let recorded = otpd
        .post_as(
            &test.secret,
            "/v1/verifications",
            &json!({"to": e164, "service": "retained"}),
        )
        .await;
    recorded.assert_status(201, "test-key send");
    otpd.post_as(
        &test.secret,
        &format!("/v1/verifications/{}/cancel", recorded.id()),
        &json!({}),
    )
    .await
    .assert_status(200, "cancel the test-key send");
    // Blocked by the service's geo guard: a decision record and a `blocked` event.
    otpd.post_as(
        &app.secret,
        "/v1/verifications",
        &json!({"to": e164, "service": "gb-only"}),
    )
    .await
    .assert_problem(403, "geo_blocked", "geo");
    let service_sid = otpd
        .get("/v1/services/retained")
        .await
        .str("sid")
        .to_owned();
    let twilio = otpd
        .anonymous(
            Method::POST,
            &format!("/v2/Services/{service_sid}/Verifications"),
        )
        .basic_auth("AC", Some(&app.secret))
        .form(&[("To", e164), ("Channel", "sms")])
        .reply()
        .await;
    twilio.assert_status(201, "twilio send");
    // A wrong code for it (a lockout failure record), then it ends, so the purge may take it.
    let ver = twilio.str("sid").to_owned();
    let native_id = format!("ver_{}", &ver[2..]);
    let message = sink
        .wait_for_matching("of the Twilio send", 1, Duration::from_secs(10), |r| {
            r.verification_id() == Some(native_id.as_str())
        })
        .await;
    let code = message[0].code().expect("a code");
    otpd.anonymous(
        Method::POST,
        &format!("/v2/Services/{service_sid}/VerificationCheck"),
    )
    .basic_auth("AC", Some(&app.secret))
    .form(&[
        ("VerificationSid", ver.as_str()),
        ("Code", wrong_code(&code).as_str()),
    ])
    .reply()
    .await
    .assert_status(200, "twilio wrong check");
    otpd.anonymous(
        Method::POST,
        &format!("/v2/Services/{service_sid}/Verifications/{ver}"),
    )
    .basic_auth("AC", Some(&app.secret))
    .form(&[("Status", "canceled")])
    .reply()
    .await
    .assert_status(200, "twilio cancel");
}

const A: (&str, &str) = ("+14155550171", "4155550171");
const B: (&str, &str) = ("+14155550172", "4155550172");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_and_purge_leave_no_trace_of_a_number() {
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let otpd = OtpdProcess::start(&dir, &Config::for_sink(&sink)).await;
    otpd.create_service(&json!({"name": "retained"})).await;
    otpd.create_service(&json!({"name": "gb-only", "allowed_countries": ["GB"]}))
        .await;
    let app = verify_key(&otpd, "app", false).await;
    let test = verify_key(&otpd, "app-test", true).await;
    for (e164, national) in [A, B] {
        scripted_run(&otpd, &sink, e164, national, (&app, &test)).await;
    }
    let db = dir.db_path();
    let before = find_in_database(&db, &[A.1]).await;
    for table in [
        "verifications",
        "sends",
        "guard_decisions",
        "messages",
        "lockout_failures",
    ] {
        assert!(
            before.iter().any(|f| f.starts_with(&format!("{table}."))),
            "{table} holds the number before: {before:#?}"
        );
    }

    // Erase A, named in national form.
    let erased = otpd
        .post(
            "/v1/erasures",
            &json!({"to": "(415) 555-0171", "country": "US"}),
        )
        .await;
    erased.assert_status(200, "erase");
    assert_eq!(erased.str("to"), "+1******0171");
    assert!(
        erased.body["deleted"]["verifications"].as_u64().unwrap() >= 4,
        "{erased:?}"
    );
    assert!(!erased.text.contains(A.1));
    let left = find_in_database(&db, &[A.0, A.1]).await;
    assert!(left.is_empty(), "after the erasure: {left:#?}");
    // Scrubbed at rest too: no copy in the database file or its write-ahead log.
    for (path, bytes) in dir.database_files() {
        assert!(
            !contains_bytes(&bytes, A.1.as_bytes()),
            "{} still holds the erased number",
            path.display()
        );
    }
    assert!(
        !find_in_database(&db, &[B.1]).await.is_empty(),
        "B is untouched"
    );
    let audit = all_events(&otpd, "type=erasure.completed", 10).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["key_id"], "master");
    assert_eq!(audit[0]["data"]["to"], "+1******0171");
    otpd.post("/v1/erasures", &json!({"to": "not a number"}))
        .await
        .assert_problem(400, "invalid_phone_number", "bad number");
    otpd.post_as(&app.secret, "/v1/erasures", &json!({"to": B.0}))
        .await
        .assert_problem(403, "forbidden", "verify key");
    drop(otpd);

    // Restart with a retention shorter than a restart takes (0.000001 days: 86 ms; B's
    // records are older by then, or at the latest by the next purge a second later): the
    // periodic purge takes B's records. (The purge's judgement by the application's clock
    // is tested in otpd-server's in-process tests.)
    let mut config = Config::for_sink(&sink);
    config.extra_toml = "[retention]\nverifications_days = 0.000001\nmessages_days = 0.000001\n\
                         guard_decisions_days = 0.000001\ninterval_seconds = 1\n"
        .into();
    let otpd = OtpdProcess::start(&dir, &config).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    // B's records: its verifications and the lockout failure of its Twilio wrong check,
    // which is younger than the verification it was made on (a purge right after the
    // restart can take the one and not yet the other).
    let purged = loop {
        let events = all_events(&otpd, "type=retention.purged", 100).await;
        let deleted = |table: &str| -> u64 {
            events
                .iter()
                .map(|e| e["data"]["deleted"][table].as_u64().unwrap_or(0))
                .sum()
        };
        if deleted("verifications") >= 4 && deleted("lockout_failures") >= 1 {
            break events;
        }
        assert!(
            Instant::now() < deadline,
            "no purge of B's verifications: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        purged.iter().all(|e| e["key_id"].is_null()),
        "the purge is otpd's own work"
    );
    let left = find_in_database(&db, &[B.0, B.1]).await;
    assert!(left.is_empty(), "after the purge: {left:#?}");
}
