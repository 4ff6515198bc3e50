//! End-to-end tests of the abuse guards through the native HTTP API: rate limits with an
//! exact `Retry-After`, the lockout across verifications, geo and number-type refusals with
//! their codes, shadow mode, and the `verification.blocked` events that record blocks.
//!
//! Each test starts its own `otpd serve` on its own temporary SQLite database.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{Config, OtpdProcess, Reply, SendReply, Sink, TestDir, start_with_sink, wrong_code};
use serde_json::{Value, json};

fn retry_after(reply: &Reply) -> u64 {
    reply
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {reply:?}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("Retry-After is not whole seconds ({e}): {reply:?}"))
}

async fn blocked_events(otpd: &OtpdProcess) -> Vec<Value> {
    let reply = otpd.get("/v1/events?type=verification.blocked").await;
    reply.assert_status(200, "list blocked events");
    reply.body["events"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixth_send_from_one_ip_is_refused_with_the_exact_retry_after() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    otpd.create_service(&json!({
        "name": "ip-limited",
        "guards": {"rate_limits": {"send": {"per_ip": {"count": 5, "period_seconds": 600}}}}
    }))
    .await;
    for n in 0..5 {
        let to = format!("+1415555014{n}");
        otpd.send_ok(&json!({"to": to, "service": "ip-limited", "client_ip": "198.51.100.7"}))
            .await;
    }
    let limited = otpd
        .send(&json!({"to": "+14155550149", "service": "ip-limited", "client_ip": "198.51.100.7"}))
        .await;
    limited.assert_problem(429, "rate_limited", "sixth send from one IP");
    // GCRA: a burst of 5, then one token every 600 / 5 = 120 s after the first send.
    assert_eq!(retry_after(&limited), 120, "{limited:?}");
    // Another end user is not held back.
    otpd.send_ok(
        &json!({"to": "+14155550149", "service": "ip-limited", "client_ip": "198.51.100.8"}),
    )
    .await;
    // A bad address is a bad request, not a silent pass.
    otpd.send(&json!({"to": "+14155550148", "service": "ip-limited", "client_ip": "not-an-ip"}))
        .await
        .assert_problem(400, "invalid_request", "client_ip must be an address");

    let events = blocked_events(&otpd).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["data"]["reason"], "rate_limit", "{events:?}");
    assert_eq!(events[0]["data"]["action"], "send", "{events:?}");
    let list = otpd.get("/v1/services/ip-limited/decisions?limit=3").await;
    let latest = &list.body["decisions"];
    assert_eq!(latest[1]["allowed"], false, "{list:?}");
    assert_eq!(latest[1]["blocked"]["guard"], "rate_limit", "{list:?}");
    assert_eq!(latest[1]["blocked"]["retry_after_secs"], 120, "{list:?}");
    assert_eq!(latest[1]["client_ip"], "198.51.100.7", "{list:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_have_their_own_rate_limit_namespace() {
    let (_dir, sink, otpd) = start_with_sink().await;
    otpd.create_service(&json!({
        "name": "check-limited",
        "guards": {"rate_limits": {"check": {"per_ip": {"count": 2, "period_seconds": 60}}}}
    }))
    .await;
    let to = "+14155550150";
    otpd.send_ok(&json!({"to": to, "service": "check-limited", "client_ip": "198.51.100.9"}))
        .await;
    let code = sink.code_for(to).await;
    let check = |code: String| json!({"to": to, "service": "check-limited", "code": code, "client_ip": "198.51.100.9"});
    for _ in 0..2 {
        otpd.check(&check(wrong_code(&code)))
            .await
            .assert_status(200, "wrong code within the limit");
    }
    let limited = otpd.check(&check(code.clone())).await;
    limited.assert_problem(429, "rate_limited", "third check from one IP in a minute");
    assert_eq!(retry_after(&limited), 30, "{limited:?}");
    // The refused check spent no attempt: the verification still takes the right code from
    // elsewhere.
    let ok = otpd
        .check(&json!({"to": to, "service": "check-limited", "code": code, "client_ip": "198.51.100.10"}))
        .await;
    ok.assert_status(200, "right code from another IP");
    assert_eq!(ok.body["valid"], true, "{ok:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_counts_wrong_codes_across_two_verifications() {
    let (_dir, sink, otpd) = start_with_sink().await;
    otpd.create_service(&json!({"name": "locking", "max_check_attempts": 3}))
        .await;
    let to = "+14155550151";
    let first = otpd
        .send_ok(&json!({"to": to, "service": "locking"}))
        .await
        .id();
    let code = sink.code_for(to).await;
    for _ in 0..2 {
        otpd.check(&json!({"to": to, "service": "locking", "code": wrong_code(&code)}))
            .await
            .assert_status(200, "wrong code on the first verification");
    }
    otpd.check(&json!({"to": to, "service": "locking", "code": wrong_code(&code)}))
        .await
        .assert_problem(
            429,
            "max_attempts_reached",
            "third wrong code ends the first",
        );
    // A new verification for the same number: the failures carry over (default lockout: 5
    // wrong codes in 15 minutes).
    let second = otpd
        .send_ok(&json!({"to": to, "service": "locking"}))
        .await
        .id();
    assert_ne!(first, second);
    let codes = sink.codes_for(to);
    let code = codes.last().cloned().expect("second code").clone();
    otpd.check(&json!({"to": to, "service": "locking", "code": wrong_code(&code)}))
        .await
        .assert_status(200, "fourth wrong code");
    let fifth = otpd
        .check(&json!({"to": to, "service": "locking", "code": wrong_code(&code)}))
        .await;
    assert!(
        fifth.status == 200 || fifth.status == 429,
        "fifth wrong code: {fifth:?}"
    );
    let locked = otpd
        .check(&json!({"to": to, "service": "locking", "code": code}))
        .await;
    locked.assert_problem(429, "rate_limited", "right code while locked");
    let wait = retry_after(&locked);
    assert!(
        (880..=900).contains(&wait),
        "lock of 15 minutes: {locked:?}"
    );
    otpd.send(&json!({"to": to, "service": "locking"}))
        .await
        .assert_problem(429, "rate_limited", "send to a locked recipient");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn premium_rate_numbers_and_blocked_countries_are_refused_with_their_codes() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    // Defaults: premium rate never gets a code, on any channel.
    otpd.send(&json!({"to": "+449098790000"}))
        .await
        .assert_problem(403, "number_type_blocked", "premium-rate number");
    otpd.send(&json!({"to": "+449098790000", "channel": "voice"}))
        .await
        .assert_problem(403, "number_type_blocked", "premium-rate number by voice");
    // SMS to a fixed line is refused by default; a call goes.
    otpd.send(&json!({"to": "+442079460018"}))
        .await
        .assert_problem(403, "number_type_blocked", "SMS to a landline");

    otpd.create_service(&json!({
        "name": "geo",
        "guards": {"geo": {"blocked_countries": ["gh"], "blocked_prefixes": ["+23480"]}}
    }))
    .await;
    otpd.send(&json!({"to": "+233241234567", "service": "geo"}))
        .await
        .assert_problem(403, "geo_blocked", "blocked country");
    otpd.send(&json!({"to": "+2348031234567", "service": "geo"}))
        .await
        .assert_problem(403, "geo_blocked", "blocked prefix");
    otpd.send_ok(&json!({"to": "+2347031234567", "service": "geo"}))
        .await;

    let events = blocked_events(&otpd).await;
    let reasons: Vec<&str> = events
        .iter()
        .map(|e| e["data"]["reason"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        reasons,
        ["number_type", "number_type", "number_type", "geo", "geo"],
        "{events:?}"
    );
    let text = serde_json::to_string(&events).unwrap();
    assert!(
        !text.contains("233241234567"),
        "full numbers stay out of events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_records_nothing_blocked_and_off_asks_nothing() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    otpd.create_service(&json!({
        "name": "tuning",
        "guards": {
            "geo": {"mode": "shadow", "blocked_countries": ["GH"]},
            "number_type": {"mode": "off"}
        }
    }))
    .await;
    otpd.send_ok(&json!({"to": "+233241234567", "service": "tuning"}))
        .await;
    otpd.send_ok(&json!({"to": "+449098790000", "service": "tuning", "channel": "voice"}))
        .await;
    assert!(blocked_events(&otpd).await.is_empty());
    // One decision record per send: both allowed, the first with geo's shadow refusal.
    let list = otpd.get("/v1/services/tuning/decisions").await;
    list.assert_status(200, "decision records");
    let decisions = list.body["decisions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(decisions.len(), 2, "{list:?}");
    assert!(
        decisions
            .iter()
            .all(|d| d["allowed"] == true && d["action"] == "send")
    );
    assert_eq!(
        decisions[1]["to"], "+233241234567",
        "newest first: {list:?}"
    );
    assert_eq!(decisions[1]["shadow"][0]["guard"], "geo", "{list:?}");
    assert!(
        decisions[1]["verification_id"]
            .as_str()
            .is_some_and(|v| v.starts_with("ver_"))
    );
    assert_eq!(
        decisions[0]["shadow"],
        json!([]),
        "number type is off: {list:?}"
    );
    // Settings come back as stored, and bad ones are refused.
    let svc = otpd.get("/v1/services/tuning").await;
    assert_eq!(svc.body["guards"]["geo"]["mode"], "shadow", "{svc:?}");
    otpd.post(
        "/v1/services",
        &json!({"name": "bad", "guards": {"geo": {"blocked_prefixes": ["+12x"]}}}),
    )
    .await
    .assert_problem(400, "invalid_request", "bad prefix");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_runs_out_with_alerts_at_80_and_100_percent() {
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.extra_toml = "[[prices]]\nchannel = \"sms\"\nprice = 0.04\n\n\
                         [[prices]]\nchannel = \"sms\"\ncountry = \"GH\"\nprice = 0.05\n"
        .into();
    let otpd = OtpdProcess::start(&dir, &config).await;
    otpd.create_service(&json!({
        "name": "thrifty",
        "guards": {"budget": {"daily_limit": 0.1, "monthly_limit": 2}}
    }))
    .await;
    let send = |to: &str| json!({"to": to, "service": "thrifty"});
    otpd.send_ok(&send("+233241234567")).await;
    otpd.send_ok(&send("+233241234568")).await;
    // 0.10 spent: a third GH message (0.05) would pass the day's 0.10.
    otpd.send(&send("+233241234569"))
        .await
        .assert_problem(403, "budget_exceeded", "third GH send");
    // A send that was refused cost nothing, and a voice call has no price row.
    otpd.send_ok(&json!({"to": "+233241234569", "service": "thrifty", "channel": "voice"}))
        .await;
    let alerts = otpd.get("/v1/events?type=budget.threshold").await;
    let percents: Vec<i64> = alerts.body["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{alerts:?}"))
        .iter()
        .map(|e| e["data"]["percent"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(percents, [80, 100], "{alerts:?}");
    let blocked = blocked_events(&otpd).await;
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    assert_eq!(blocked[0]["data"]["reason"], "budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_sequential_numbers_is_refused_as_fraud() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    otpd.create_service(&json!({
        "name": "pumped",
        "guards": {"pumping": {"mode": "enforce", "safe_prefixes": ["+1415555017"]}}
    }))
    .await;
    // A pump walking a range: three go out, the fourth near them is refused.
    for n in [0, 2, 4] {
        otpd.send_ok(&json!({"to": format!("+2348035550{n:03}"), "service": "pumped"}))
            .await;
    }
    otpd.send(&json!({"to": "+2348035550006", "service": "pumped"}))
        .await
        .assert_problem(403, "fraud_blocked", "fourth number of a run");
    // The safe list exempts its prefixes.
    for n in 0..5 {
        otpd.send_ok(&json!({"to": format!("+1415555017{n}"), "service": "pumped"}))
            .await;
    }
    let events = blocked_events(&otpd).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["data"]["reason"], "fraud");
}

/// Solves a challenge with the JavaScript solver otpd serves, run by Node (the way a
/// customer's page runs it). Without Node the test solves it in Rust, unless
/// `OTPD_REQUIRE_PEERS=1` (as in `.ci/run`) makes a missing Node a failure.
async fn solve(otpd: &OtpdProcess, dir: &TestDir, challenge: &str, difficulty: u64) -> String {
    let script = otpd
        .anonymous(reqwest::Method::GET, "/v1/challenges/solver.js")
        .send()
        .await
        .expect("GET solver.js");
    assert_eq!(script.status(), 200);
    let path = dir.path().join("pow-solver.js");
    std::fs::write(&path, script.text().await.expect("solver body")).expect("write solver");
    let program = format!(
        "require({:?})({challenge:?}, {difficulty}).then(n => console.log(n))",
        path.display().to_string()
    );
    match std::process::Command::new("node")
        .args(["-e", &program])
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => panic!(
            "node solver failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            let required = std::env::var("OTPD_REQUIRE_PEERS").is_ok_and(|v| v == "1");
            assert!(!required, "OTPD_REQUIRE_PEERS=1 but node is missing: {e}");
            eprintln!("node is missing ({e}): solving the challenge in Rust instead");
            let difficulty = u8::try_from(difficulty).expect("difficulty fits u8");
            (0u64..)
                .map(|n| n.to_string())
                .find(|n| otpd_core::guards::proof_of_work::solves(challenge, n, difficulty))
                .expect("a nonce")
        }
    }
}

async fn challenge(otpd: &OtpdProcess, service: &str) -> (String, u64) {
    let reply = otpd
        .post("/v1/challenges", &json!({"service": service}))
        .await;
    reply.assert_status(201, "issue a challenge");
    assert_eq!(reply.body["algorithm"], "sha256", "{reply:?}");
    (
        reply.str("challenge").to_string(),
        reply.body["difficulty"].as_u64().expect("difficulty"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_of_work_send_is_accepted_once_and_refused_on_replay() {
    let (dir, _sink, otpd) = start_with_sink().await;
    otpd.create_service(&json!({
        "name": "puzzled",
        "guards": {"proof_of_work": {"mode": "enforce", "require": "always", "difficulty": 12}}
    }))
    .await;
    otpd.create_service(&json!({"name": "other"})).await;
    otpd.send(&json!({"to": "+14155550180", "service": "puzzled"}))
        .await
        .assert_problem(403, "proof_of_work_required", "no solution");

    let (text, difficulty) = challenge(&otpd, "puzzled").await;
    assert_eq!(difficulty, 12);
    let nonce = solve(&otpd, &dir, &text, difficulty).await;
    let pow = json!({"challenge": text, "nonce": nonce});
    let wrong = json!({"challenge": text, "nonce": format!("{nonce}0")});
    // A nonce that falls short is refused and does not spend the challenge (it would pass
    // 12 bits by chance once in 4096: the check below would then see "already used").
    otpd.send(&json!({"to": "+14155550181", "service": "puzzled", "proof_of_work": wrong}))
        .await
        .assert_problem(403, "proof_of_work_required", "a wrong nonce");
    // Sent with the same key twice (a retry), the solution counts once.
    let send = |to: &str| json!({"to": to, "service": "puzzled", "proof_of_work": pow});
    let first = otpd
        .request(reqwest::Method::POST, "/v1/verifications")
        .header("Idempotency-Key", "pow-retry-1")
        .json(&send("+14155550181"))
        .reply()
        .await;
    first.assert_status(201, "solved");
    let retry = otpd
        .request(reqwest::Method::POST, "/v1/verifications")
        .header("Idempotency-Key", "pow-retry-1")
        .json(&send("+14155550181"))
        .reply()
        .await;
    retry.assert_status(201, "the same request retried");
    assert_eq!(retry.id(), first.id(), "a retry replays the first answer");
    // Any other send with the spent solution is a replay.
    let replay = otpd.send(&send("+14155550182")).await;
    replay.assert_problem(403, "proof_of_work_required", "replayed solution");
    assert!(
        replay.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("already used")
    );

    // A solution is good only for the service it was issued for.
    let (text, difficulty) = challenge(&otpd, "other").await;
    let nonce = solve(&otpd, &dir, &text, difficulty).await;
    otpd.send(&json!({"to": "+14155550183", "service": "puzzled",
                      "proof_of_work": {"challenge": text, "nonce": nonce}}))
        .await
        .assert_problem(403, "proof_of_work_required", "another service's challenge");
    // Malformed solutions are refused the same way; unknown fields are bad requests.
    otpd.send(&json!({"to": "+14155550183", "service": "puzzled",
                      "proof_of_work": {"challenge": "pow_x.y", "nonce": "1e9"}}))
        .await
        .assert_problem(403, "proof_of_work_required", "malformed");
    otpd.send(&json!({"to": "+14155550183", "service": "puzzled",
                      "proof_of_work": {"challenge": "pow_x.y", "nonce": "1", "x": 1}}))
        .await
        .assert_problem(400, "invalid_request", "unknown field");

    let blocked = blocked_events(&otpd).await;
    assert!(
        blocked
            .iter()
            .all(|e| e["data"]["reason"] == "proof_of_work"),
        "{blocked:?}"
    );
    assert_eq!(blocked.len(), 5, "{blocked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proof_of_work_is_asked_only_when_a_shadow_guard_objects() {
    let (dir, _sink, otpd) = start_with_sink().await;
    otpd.create_service(&json!({
        "name": "watchful",
        "guards": {
            "geo": {"mode": "shadow", "blocked_countries": ["NG"]},
            "proof_of_work": {"mode": "enforce", "require": "elevated", "difficulty": 10}
        }
    }))
    .await;
    otpd.send_ok(&json!({"to": "+14155550190", "service": "watchful"}))
        .await;
    otpd.send(&json!({"to": "+2348035550190", "service": "watchful"}))
        .await
        .assert_problem(403, "proof_of_work_required", "elevated risk");
    let (text, difficulty) = challenge(&otpd, "watchful").await;
    let nonce = solve(&otpd, &dir, &text, difficulty).await;
    otpd.send_ok(&json!({"to": "+2348035550190", "service": "watchful",
                         "proof_of_work": {"challenge": text, "nonce": nonce}}))
        .await;
    // Challenges are for services the key may use; the solver needs no key.
    otpd.post("/v1/challenges", &json!({"service": "nope"}))
        .await
        .assert_problem(404, "not_found", "unknown service");
}
