//! Many nodes: several real `otpd` processes on different ports sharing one PostgreSQL
//! and one Redis (issue 5), and fail-closed behaviour when either goes away.
//!
//! - `otpd migrate` on PostgreSQL; a verification sent on node 1 is checked on nodes 2 and 3,
//!   and neither the database password nor the code reaches any node's logs;
//! - the send limit (5 per recipient per window) holds exactly when 6 concurrent sends are
//!   spread over three nodes;
//! - 60 concurrent right-code checks spread over the nodes approve exactly once;
//! - a node killed with SIGKILL while holding delivery jobs: another node delivers them
//!   once the lease runs out;
//! - Redis stopped → sends and checks answer 503 and `/readyz` names `redis`, nothing is
//!   approved; Redis back → service resumes without a restart. The same for PostgreSQL.
//!
//! The shared-server tests use the machine's PostgreSQL (a fresh database each) and Redis
//! (a logical database each); the stop/start tests run servers of their own. Without the
//! servers every test is skipped with a message, unless `OTPD_REQUIRE_STORES=1`.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::time::{Duration, Instant};

use common::stores::{PrivatePostgres, PrivateRedis, SharedPostgres, SharedRedis};
use common::{Config, OtpdProcess, Reply, Sink, TestDir, random_hex, wrong_code};
use serde_json::{Value, json};

/// Every node of a deployment gets the same server secret (codes hashed on one node are
/// checked on another).
fn node_env<'a>(
    secret: &'a str,
    database: &'a str,
    redis: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("OTPD_SECRET", secret), ("OTPD_DATABASE_URL", database)];
    if let Some(redis) = redis {
        env.push(("OTPD_REDIS_URL", redis));
    }
    env
}

/// A deployment: `n` nodes over one database (and Redis, when given), all delivering to
/// `sink`.
struct Cluster {
    _dir: TestDir,
    nodes: Vec<OtpdProcess>,
}

impl Cluster {
    async fn start(n: usize, sink: &Sink, database: &str, redis: Option<&str>) -> Cluster {
        let dir = TestDir::new();
        let secret = random_hex(32);
        let config = Config::for_sink(sink);
        let env = node_env(&secret, database, redis);
        let mut nodes = Vec::new();
        // One at a time: the first applies the migrations, the others find them applied
        // (concurrent starts are covered by the store's migration lock, not by this test).
        for _ in 0..n {
            nodes.push(OtpdProcess::start_with_env(&dir, &config, &env).await);
        }
        Cluster { _dir: dir, nodes }
    }

    fn node(&self, i: usize) -> &OtpdProcess {
        &self.nodes[i % self.nodes.len()]
    }
}

/// A phone number no other test uses (random, in a valid San Francisco range).
fn fresh_number() -> String {
    let n = u32::from_str_radix(&random_hex(3), 16).unwrap();
    format!("+1415{:03}{:04}", 200 + n % 700, (n >> 10) % 10_000)
}

/// Both shared servers, or a skip.
fn shared(redis_db: u8) -> Option<(SharedPostgres, SharedRedis)> {
    Some((SharedPostgres::create()?, SharedRedis::database(redis_db)?))
}

/// A password in the database URL (trust auth ignores it): it must never be printed.
const CANARY_PASSWORD: &str = "canary-pw-never-logged";

/// `url` with the canary password.
fn with_canary(url: &str) -> String {
    let mut url = reqwest::Url::parse(url).expect("a database URL");
    url.set_password(Some(CANARY_PASSWORD))
        .expect("set a password");
    url.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_verification_sent_on_one_node_is_checked_on_another() {
    let Some((pg, redis)) = shared(11) else {
        return;
    };
    let database = with_canary(&pg.url);

    // `otpd migrate` applies the PostgreSQL tree (the nodes then find it applied) and
    // prints the URL without its password.
    let migrate = std::process::Command::new(env!("CARGO_BIN_EXE_otpd"))
        .arg("migrate")
        .env_remove("OTPD_CONFIG")
        .env_remove("OTPD_REDIS_URL")
        .env("OTPD_DATABASE_URL", &database)
        .env("OTPD_SECRET", random_hex(32))
        .output()
        .expect("run otpd migrate");
    let printed = String::from_utf8_lossy(&migrate.stdout).to_string()
        + &String::from_utf8_lossy(&migrate.stderr);
    assert!(migrate.status.success(), "otpd migrate: {printed}");
    assert!(printed.contains("migrations applied"), "{printed}");
    assert!(!printed.contains(CANARY_PASSWORD), "{printed}");

    let sink = Sink::start().await;
    let cluster = Cluster::start(3, &sink, &database, Some(&redis.url)).await;
    let to = fresh_number();

    let sent = cluster.node(0).send_ok(&json!({"to": to})).await;
    let id = sent.id();
    let code = sink.code_for(&to).await;

    let wrong = cluster
        .node(1)
        .check(&json!({"id": id, "code": wrong_code(&code)}))
        .await;
    wrong.assert_status(200, "wrong code on node 2");
    assert_eq!(wrong.body["valid"], false);
    assert_eq!(wrong.body["remaining_attempts"], 4);

    let right = cluster
        .node(2)
        .check(&json!({"to": to, "code": code}))
        .await;
    right.assert_status(200, "right code on node 3");
    assert_eq!(right.body["valid"], true);
    assert_eq!(right.body["id"], id);

    // Every node sees the same state.
    for i in 0..3 {
        let v = cluster.node(i).verification(&id).await;
        assert_eq!(v.body["status"], "approved", "node {}", i + 1);
    }
    cluster
        .node(0)
        .check(&json!({"id": id, "code": code}))
        .await
        .assert_problem(409, "verification_not_pending", "the spent code on node 1");
    for node in &cluster.nodes {
        assert!(
            !node.output_contains(CANARY_PASSWORD),
            "the database password reached the logs"
        );
        assert!(!node.output_contains(&code), "the code reached the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_send_limit_holds_exactly_across_three_nodes() {
    let Some((pg, redis)) = shared(12) else {
        return;
    };
    let sink = Sink::start().await;
    let cluster = Cluster::start(3, &sink, &pg.url, Some(&redis.url)).await;
    let to = fresh_number();

    let sends = (0..6).map(|i| {
        let node = cluster.node(i);
        let body = json!({"to": to});
        async move { node.send(&body).await }
    });
    let replies: Vec<Reply> = futures_util::future::join_all(sends).await;
    let accepted: Vec<&Reply> = replies.iter().filter(|r| r.status == 201).collect();
    let limited: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        (accepted.len(), limited.len()),
        (5, 1),
        "6 sends over 3 nodes with a limit of 5: {replies:?}"
    );
    assert_eq!(limited[0].problem_code(), Some("rate_limited"));
    assert!(limited[0].header("retry-after").is_some());
    let ids: std::collections::BTreeSet<String> = accepted.iter().map(|r| r.id()).collect();
    assert_eq!(ids.len(), 1, "one verification, resent: {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_concurrent_right_code_checks_over_three_nodes_approve_once() {
    let Some((pg, redis)) = shared(13) else {
        return;
    };
    let sink = Sink::start().await;
    let cluster = Cluster::start(3, &sink, &pg.url, Some(&redis.url)).await;
    let to = fresh_number();
    let id = cluster.node(0).send_ok(&json!({"to": to})).await.id();
    let code = sink.code_for(&to).await;

    let checks = (0..60).map(|i| {
        let node = cluster.node(i);
        let body = json!({"id": id, "code": code});
        async move { node.check(&body).await }
    });
    let replies: Vec<Reply> = futures_util::future::join_all(checks).await;
    let approvals = replies
        .iter()
        .filter(|r| r.status == 200 && r.body["valid"] == true)
        .count();
    assert_eq!(approvals, 1, "exactly one approval: {replies:?}");
    for r in &replies {
        assert!(
            r.status == 200 || r.status == 409,
            "the others find it spent (409), never an error: {r:?}"
        );
    }
    let events = cluster
        .node(1)
        .get(&format!(
            "/v1/events?verification={id}&type=verification.approved"
        ))
        .await;
    let approved = events.body["events"].as_array().map_or(0, Vec::len);
    assert_eq!(approved, 1, "one approved event: {events:?}");
}

/// A provider endpoint that accepts connections and never answers: a worker sending to
/// it holds its job until the provider timeout.
async fn black_hole() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(socket);
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_while_holding_jobs_leaves_them_to_another_after_the_lease() {
    let Some((pg, redis)) = shared(14) else {
        return;
    };
    let sink = Sink::start().await;
    let (hole, connections) = black_hole().await;
    let dir = TestDir::new();
    let secret = random_hex(32);
    let env = node_env(&secret, &pg.url, Some(&redis.url));
    let lease = Duration::from_secs(3);

    // Node 1 delivers into the black hole, so it holds what it claims until killed.
    let mut doomed = Config::for_url(&hole);
    doomed.timeout_ms = 60_000;
    doomed.delivery.lease_seconds = lease.as_secs();
    let mut node1 = OtpdProcess::start_with_env(&dir, &doomed, &env).await;
    let to = fresh_number();
    let id = node1.send_ok(&json!({"to": to})).await.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while connections.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "node 1 never tried to deliver");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node1.kill_hard();
    let killed_at = Instant::now();

    // Node 2 delivers to the sink: the job comes to it once node 1's lease has run out.
    let mut healthy = Config::for_sink(&sink);
    healthy.delivery.lease_seconds = lease.as_secs();
    let node2 = OtpdProcess::start_with_env(&dir, &healthy, &env).await;
    let messages = sink.wait_for_to(&to, 1, Duration::from_secs(30)).await;
    let taken_over_after = killed_at.elapsed();
    assert_eq!(messages.len(), 1);
    println!(
        "measured: a job held by a SIGKILLed node was delivered by another {taken_over_after:?} after the kill (lease {lease:?})"
    );
    let code = sink.code_for(&to).await;
    let right = node2.check(&json!({"id": id, "code": code})).await;
    assert_eq!(right.body["valid"], true, "{right:?}");
}

/// `/readyz` as JSON, with its status.
async fn readyz(node: &OtpdProcess) -> (u16, Value) {
    let r = node.get("/readyz").await;
    (r.status, r.body)
}

/// Waits until `/readyz` answers `status` (otpd notices a server coming back by itself).
async fn wait_ready(node: &OtpdProcess, status: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, body) = readyz(node).await;
        if s == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "readyz never became {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a node answers to a send and to a check while a store is down: 503, a problem,
/// nothing approved.
async fn assert_fails_closed(node: &OtpdProcess, id: &str, code: &str, what: &str) {
    let send = node.send(&json!({"to": fresh_number()})).await;
    assert_eq!(send.status, 503, "send with {what} down: {send:?}");
    assert!(send.content_type().starts_with("application/problem+json"));
    let check = node.check(&json!({"id": id, "code": code})).await;
    assert_eq!(check.status, 503, "check with {what} down: {check:?}");
    assert_ne!(check.body["valid"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_fails_closed_and_its_return_needs_no_restart() {
    let Some(pg) = SharedPostgres::create() else {
        return;
    };
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let sink = Sink::start().await;
    let cluster = Cluster::start(1, &sink, &pg.url, Some(&redis.url())).await;
    let node = cluster.node(0);
    let to = fresh_number();
    let id = node.send_ok(&json!({"to": to})).await.id();
    let code = sink.code_for(&to).await;
    assert_eq!(readyz(node).await.0, 200);

    redis.stop();
    assert_fails_closed(node, &id, &code, "Redis").await;
    let body = wait_ready(node, 503).await;
    assert_ne!(body["checks"]["redis"], "ok", "readyz names redis: {body}");
    assert_eq!(body["checks"]["database"], "ok", "{body}");

    redis.resume();
    wait_ready(node, 200).await;
    // Redis kept the acknowledged send (append-only file): the code still works.
    let right = node.check(&json!({"id": id, "code": code})).await;
    assert_eq!(right.body["valid"], true, "{right:?}");
    let to2 = fresh_number();
    node.send_ok(&json!({"to": to2})).await;
    sink.code_for(&to2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_down_fails_closed_and_its_return_needs_no_restart() {
    let Some(mut pg) = PrivatePostgres::start() else {
        return;
    };
    let sink = Sink::start().await;
    let url = pg.url();
    let cluster = Cluster::start(1, &sink, &url, None).await;
    let node = cluster.node(0);
    let to = fresh_number();
    let id = node.send_ok(&json!({"to": to})).await.id();
    let code = sink.code_for(&to).await;

    pg.stop();
    assert_fails_closed(node, &id, &code, "PostgreSQL").await;
    let body = wait_ready(node, 503).await;
    assert_ne!(
        body["checks"]["database"], "ok",
        "readyz names the database: {body}"
    );

    pg.resume();
    wait_ready(node, 200).await;
    let right = node.check(&json!({"id": id, "code": code})).await;
    assert_eq!(right.body["valid"], true, "{right:?}");
    let to2 = fresh_number();
    node.send_ok(&json!({"to": to2})).await;
    sink.code_for(&to2).await;
}
