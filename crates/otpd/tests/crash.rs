//! Crash test: otpd is killed with SIGKILL at random moments under mixed send/check load,
//! and restarted on the same database, again and again. At the end:
//!
//! - every send that was answered 201 has reached the sink (the outbox row was written in
//!   the same transaction as the verification, and a dead worker's lease is taken over);
//! - no verification was approved twice (neither two `valid: true` replies nor two
//!   `verification.approved` events for one id), although every right code is checked by
//!   two concurrent requests;
//! - the database passes `PRAGMA integrity_check` and `PRAGMA foreign_key_check`.
//!
//! Rounds: `OTPD_CRASH_ROUNDS` (default 3; `bench/RESULTS.md` records a 20-round run).
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Config, OtpdProcess, Sink, TestDir, wrong_code};
use serde_json::{Value, json};

/// Rounds when `OTPD_CRASH_ROUNDS` is not set.
const DEFAULT_ROUNDS: u32 = 3;
/// Concurrent senders and checkers during a round.
const SENDERS: usize = 4;
const CHECKERS: usize = 2;
/// A round's load lasts a random time in this range (ms) before the SIGKILL.
const LOAD_MS: (u64, u64) = (200, 1_200);
/// How long the last server may take to deliver everything that was accepted.
const FINAL_DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// What the load saw, across rounds.
#[derive(Default)]
struct Seen {
    /// Verification ids answered 201.
    accepted: BTreeSet<String>,
    /// `valid: true` replies per verification id.
    approvals: BTreeMap<String, u32>,
    /// Replies by status (for the summary; 5xx are failures).
    statuses: BTreeMap<u16, u64>,
    /// Requests that got no reply (the server died under them).
    no_reply: u64,
    /// Verification ids whose codes a checker has taken on.
    tried: BTreeSet<String>,
}

/// One request; `None` when the server gave no reply.
async fn post(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    path: &str,
    body: &Value,
) -> Option<(u16, Value)> {
    let resp = client
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    Some((status, body))
}

fn record(seen: &Mutex<Seen>, reply: &Option<(u16, Value)>) {
    let mut s = seen.lock().unwrap();
    match reply {
        Some((status, _)) => *s.statuses.entry(*status).or_default() += 1,
        None => s.no_reply += 1,
    }
}

/// A few-millisecond pseudo-random number (no extra dependency needed).
fn jitter(range: (u64, u64)) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    range.0 + (nanos.wrapping_mul(6364136223846793005) >> 11) % (range.1 - range.0)
}

/// Runs senders and checkers against `otpd` until `stop`.
fn spawn_load(
    otpd: &OtpdProcess,
    sink: &Arc<Sink>,
    seen: &Arc<Mutex<Seen>>,
    next_number: &Arc<AtomicU64>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let (client, base, key) = (
            otpd.client().clone(),
            otpd.base_url().to_string(),
            otpd.master_key().to_string(),
        );
        let (seen, next_number, stop) = (seen.clone(), next_number.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = next_number.fetch_add(1, Ordering::Relaxed);
                let to = format!("+1415{:03}{:04}", 200 + n / 10_000, n % 10_000);
                let reply = post(
                    &client,
                    &base,
                    &key,
                    "/v1/verifications",
                    &json!({"to": to}),
                )
                .await;
                record(&seen, &reply);
                match reply {
                    Some((201, body)) => {
                        let id = body["id"].as_str().expect("201 with an id").to_string();
                        seen.lock().unwrap().accepted.insert(id);
                    }
                    Some(_) => {}
                    None => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }
    for c in 0..CHECKERS {
        let (client, base, key) = (
            otpd.client().clone(),
            otpd.base_url().to_string(),
            otpd.master_key().to_string(),
        );
        let (seen, sink, stop) = (seen.clone(), sink.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // A delivered code no checker has taken on yet (checkers split the ids).
                let target = {
                    let mut s = seen.lock().unwrap();
                    let found = sink.accepted().into_iter().find_map(|r| {
                        let id = r.verification_id()?.to_string();
                        let owned = id.bytes().map(usize::from).sum::<usize>() % CHECKERS == c;
                        (owned && !s.tried.contains(&id)).then(|| (id, r.code()))
                    });
                    if let Some((id, _)) = &found {
                        s.tried.insert(id.clone());
                    }
                    found
                };
                let Some((id, Some(code))) = target else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let wrong = post(
                    &client,
                    &base,
                    &key,
                    "/v1/verifications/check",
                    &json!({"id": id, "code": wrong_code(&code)}),
                )
                .await;
                record(&seen, &wrong);
                if let Some((200, body)) = &wrong {
                    assert_eq!(body["valid"], false, "a wrong code was accepted: {body}");
                }
                // Two concurrent checks with the right code: at most one may win.
                let right = json!({"id": id, "code": code});
                let (a, b) = tokio::join!(
                    post(&client, &base, &key, "/v1/verifications/check", &right),
                    post(&client, &base, &key, "/v1/verifications/check", &right),
                );
                for reply in [a, b] {
                    record(&seen, &reply);
                    if let Some((200, body)) = &reply
                        && body["valid"] == true
                    {
                        *seen
                            .lock()
                            .unwrap()
                            .approvals
                            .entry(id.clone())
                            .or_default() += 1;
                    }
                }
            }
        }));
    }
    tasks
}

/// `verification.approved` events per verification id, read page by page.
async fn approved_events(otpd: &OtpdProcess) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = "/v1/events?type=verification.approved&limit=1000".to_string();
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let page = otpd.get(&path).await;
        page.assert_status(200, "list approved events");
        for e in page.body["events"].as_array().expect("events array") {
            let id = e["verification_id"]
                .as_str()
                .expect("event with a verification");
            *counts.entry(id.to_string()).or_default() += 1;
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => after = Some(c.to_string()),
            None => return counts,
        }
    }
}

/// `PRAGMA integrity_check` and `PRAGMA foreign_key_check` on the stopped server's file.
async fn integrity(dir: &TestDir) -> (Vec<String>, usize) {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(&dir.database_url())
        .expect("database URL")
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("open the database");
    let check: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
        .expect("integrity_check");
    let fk = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&mut conn)
        .await
        .expect("foreign_key_check")
        .len();
    conn.close().await.ok();
    (check, fk)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_send_and_approves_nothing_twice() {
    let rounds: u32 = std::env::var("OTPD_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    let started = Instant::now();
    let dir = TestDir::new();
    let sink = Arc::new(Sink::start().await);
    let config = Config::for_sink(&sink);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let next_number = Arc::new(AtomicU64::new(0));

    for round in 1..=rounds {
        let mut otpd = OtpdProcess::start(&dir, &config).await;
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = spawn_load(&otpd, &sink, &seen, &next_number, &stop);
        tokio::time::sleep(Duration::from_millis(jitter(LOAD_MS))).await;
        otpd.kill_hard();
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.expect("load task");
        }
        let s = seen.lock().unwrap();
        eprintln!(
            "crash round {round}/{rounds}: {} accepted, {} approved, {} requests without reply so far",
            s.accepted.len(),
            s.approvals.len(),
            s.no_reply
        );
    }

    // The last life: it must deliver everything that was ever accepted.
    let mut otpd = OtpdProcess::start(&dir, &config).await;
    let accepted = seen.lock().unwrap().accepted.clone();
    assert!(!accepted.is_empty(), "the load made no accepted send");
    let deadline = Instant::now() + FINAL_DELIVERY_TIMEOUT;
    let missing = loop {
        let delivered: BTreeSet<String> = sink
            .accepted()
            .iter()
            .filter_map(|r| r.verification_id().map(String::from))
            .collect();
        let missing: Vec<&String> = accepted.difference(&delivered).collect();
        if missing.is_empty() || Instant::now() >= deadline {
            break missing.into_iter().cloned().collect::<Vec<_>>();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        missing.is_empty(),
        "{} of {} accepted sends never reached the sink: {missing:?}",
        missing.len(),
        accepted.len()
    );

    let events = approved_events(&otpd).await;
    let (approvals, statuses, no_reply) = {
        let s = seen.lock().unwrap();
        (s.approvals.clone(), s.statuses.clone(), s.no_reply)
    };
    let twice: Vec<_> = events.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "approved twice (events): {twice:?}");
    let twice: Vec<_> = approvals.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "approved twice (replies): {twice:?}");
    for id in approvals.keys() {
        assert_eq!(
            events.get(id),
            Some(&1),
            "{id}: an approval reply without its event"
        );
    }
    let server_errors: u64 = statuses
        .iter()
        .filter(|(st, _)| **st >= 500)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(server_errors, 0, "5xx replies: {statuses:?}");

    let status = otpd.stop().await;
    assert!(status.success(), "otpd exited with {status}");
    let (check, fk_violations) = integrity(&dir).await;
    assert_eq!(check, vec!["ok".to_string()], "integrity_check");
    assert_eq!(fk_violations, 0, "foreign_key_check");

    eprintln!(
        "crash test: {rounds} SIGKILL rounds in {:.1} s; {} sends accepted and all delivered \
         ({} messages at the sink); {} verifications approved, none twice ({} approved events); \
         replies by status {:?}, {} requests without reply; integrity_check ok",
        started.elapsed().as_secs_f64(),
        accepted.len(),
        sink.accepted().len(),
        approvals.len(),
        events.len(),
        statuses,
        no_reply
    );
}
