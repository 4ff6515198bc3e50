//! The Redis hot store against a real Redis (127.0.0.1:6379 or `OTPD_TEST_REDIS_URL`) in
//! front of a real SQLite store. Each test uses its own key prefix and deletes its keys.
//! Without Redis the tests skip with a message, unless `OTPD_REQUIRE_STORES=1`.
//!
//! The tests that stop Redis, or read its memory and command statistics, start their own
//! `redis-server` on a free port (never the shared one).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::channel::Channel;
use otpd_core::code::OtpCode;
use otpd_core::guards::rate::{Bucket, Limit};
use otpd_core::ids::Kind;
use otpd_core::secret::ServerSecret;
use otpd_core::service::{Service, ServiceSettings};
use otpd_core::store::*;
use otpd_core::verification::{CheckDecision, Status};

use super::{Clock, RedisConfig, RedisHot, Spooler, journal};
use crate::SqliteStore;

fn redis_url() -> String {
    std::env::var("OTPD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn required() -> bool {
    std::env::var("OTPD_REQUIRE_STORES").is_ok_and(|v| v == "1")
}

/// Whether Redis at `url` answers; when not, says so (or fails when stores are required).
async fn reachable(url: &str) -> bool {
    let ok = async {
        let client = redis::Client::open(url).ok()?;
        let mut c = tokio::time::timeout(
            StdDuration::from_secs(2),
            client.get_multiplexed_async_connection(),
        )
        .await
        .ok()?
        .ok()?;
        redis::cmd("PING").query_async::<String>(&mut c).await.ok()
    }
    .await
    .is_some();
    if !ok {
        assert!(
            !required(),
            "OTPD_REQUIRE_STORES=1 but redis is unreachable"
        );
        eprintln!("skipped: redis unreachable (set OTPD_TEST_REDIS_URL)");
    }
    ok
}

type Hot = RedisHot<SqliteStore>;

/// The hot store also wraps a durable store chosen at run time (SQLite or PostgreSQL).
#[tokio::test]
async fn wraps_a_durable_store_chosen_at_run_time() {
    let Some(f) = fixture().await else { return };
    let durable: Arc<dyn DurableStore> = f.durable.clone();
    let hot: Arc<dyn Store> = Arc::new(
        RedisHot::connect(
            durable,
            RedisConfig {
                prefix: f.prefix.clone(),
                ..RedisConfig::new(f.url.clone())
            },
        )
        .await
        .unwrap(),
    );
    assert!(hot.find_service(&f.service.id).await.unwrap().is_some());
    assert_eq!(hot.dependencies().await.len(), 2);
}

struct Fixture {
    durable: Arc<SqliteStore>,
    secret: ServerSecret,
    service: Service,
    prefix: String,
    url: String,
    _dir: tempfile::TempDir,
}

async fn fixture_at(url: &str) -> Option<Fixture> {
    if !reachable(url).await {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/t.db", dir.path().display());
    let durable = SqliteStore::open(&db).await.unwrap();
    durable.migrate().await.unwrap();
    let now = Utc::now();
    let id = Kind::Service.new_id();
    let service = Service {
        sid: Kind::Service.sid_of(&id),
        id,
        name: "default".into(),
        settings: ServiceSettings::default(),
        webhook_secret: None,
        created_at: now,
        updated_at: now,
    };
    durable.create_service(&service, None).await.unwrap();
    Some(Fixture {
        durable: Arc::new(durable),
        secret: ServerSecret::from_text("store test secret, long enough").unwrap(),
        service,
        prefix: format!("otpdtest{:08x}", rand::random::<u32>()),
        url: url.to_string(),
        _dir: dir,
    })
}

async fn fixture() -> Option<Fixture> {
    fixture_at(&redis_url()).await
}

impl Fixture {
    /// A node: its own connection to the shared Redis, over the shared durable store.
    async fn node(&self) -> Hot {
        RedisHot::connect(
            self.durable.clone(),
            RedisConfig {
                url: self.url.clone(),
                prefix: self.prefix.clone(),
                clock: Clock::Caller,
            },
        )
        .await
        .unwrap()
    }

    fn request(&self, to: &str, code: &OtpCode) -> StartRequest {
        let new_id = Kind::Verification.new_id();
        StartRequest {
            service_id: self.service.id.clone(),
            to: to.into(),
            channel: Channel::Sms,
            fallback: vec![],
            providers: vec!["sink".into()],
            deliver: true,
            code_hash: self.secret.hasher().hash(&new_id, code),
            sealed_code: self.secret.sealer().seal_str(&new_id, code.expose()),
            new_id,
            ttl: Duration::seconds(600),
            max_check_attempts: 5,
            locale: "en".into(),
            metadata: None,
            entity: None,
            region: Some("US".into()),
            test: false,
            key_id: "key_test".into(),
            send_limit: otpd_core::start::SendLimit {
                count: 5,
                window: Duration::seconds(600),
            },
            idempotency: None,
            message_options: Default::default(),
        }
    }

    async fn check_at(
        &self,
        node: &Hot,
        target: CheckTarget,
        code: &str,
        now: chrono::DateTime<Utc>,
    ) -> StoreResult<CheckOutcome> {
        let code = OtpCode::parse(code).unwrap();
        let hasher = self.secret.hasher();
        let matcher = move |v: &otpd_core::verification::Verification| {
            hasher.matches(&v.id, &code, &v.code_hash)
        };
        node.check(
            target,
            &self.service.settings.lockout,
            &matcher,
            now,
            &WriteContext::system(),
        )
        .await
    }

    async fn check(&self, node: &Hot, target: CheckTarget, code: &str) -> CheckOutcome {
        self.check_at(node, target, code, Utc::now()).await.unwrap()
    }

    fn to(&self, to: &str) -> CheckTarget {
        CheckTarget::To {
            service_id: self.service.id.clone(),
            to: to.into(),
            test: false,
        }
    }

    /// Applies every journal entry (as a spooler would).
    async fn spool(&self, node: &Hot) -> usize {
        Spooler::new(node.clone(), "test")
            .spool_once()
            .await
            .unwrap()
    }

    /// Deletes this test's keys.
    async fn cleanup(&self) {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        // Binary: verification keys hold the id's 16 bytes.
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query_async(&mut c)
            .await
            .unwrap();
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(keys)
                .query_async::<()>(&mut c)
                .await
                .unwrap();
        }
    }
}

fn created(o: StartOutcome) -> otpd_core::verification::Verification {
    match o {
        StartOutcome::Created(v) => v,
        other => panic!("expected Created, got {other:?}"),
    }
}

fn decision(o: &CheckOutcome) -> CheckDecision {
    match o {
        CheckOutcome::Decided { decision, .. } => *decision,
        CheckOutcome::NotFound => panic!("not found"),
    }
}

const TO: &str = "+14155550123";

#[tokio::test]
async fn create_check_wrong_then_right_and_the_journal_reaches_the_durable_store() {
    let Some(f) = fixture().await else { return };
    let node = f.node().await;
    let code = OtpCode::parse("123456").unwrap();
    let v = created(
        node.start(
            f.request(TO, &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap(),
    );
    assert_eq!(v.status, Status::Pending);
    assert_eq!(v.service_name, "default");
    assert_eq!(v.deliveries.len(), 1);

    // Invariant 3: the delivery job reaches the durable outbox from the journal.
    assert_eq!(f.spool(&node).await, 1);
    let job = f
        .durable
        .claim("w", Utc::now(), Duration::seconds(30))
        .await
        .unwrap()
        .expect("the delivery job is in the durable outbox");
    assert_eq!(job.verification_id, v.id);
    assert!(job.sealed_code.is_some());

    let o = f
        .check(&node, CheckTarget::Id(v.id.clone()), "654321")
        .await;
    assert_eq!(decision(&o), CheckDecision::Reject { remaining: 4 });
    let o = f.check(&node, f.to(TO), "123456").await;
    assert_eq!(decision(&o), CheckDecision::Approve);
    let CheckOutcome::Decided { verification, .. } = &o else {
        unreachable!()
    };
    assert_eq!(
        (verification.status, verification.check_attempts),
        (Status::Approved, 2)
    );
    assert_eq!(verification.deliveries.len(), 1);
    let o = f
        .check(&node, CheckTarget::Id(v.id.clone()), "123456")
        .await;
    assert_eq!(decision(&o), CheckDecision::NotPending(Status::Approved));

    // The durable history follows: approved, sealed code erased (invariant 1), events.
    assert_eq!(f.spool(&node).await, 2);
    let d = f.durable.get_verification(&v.id).await.unwrap().unwrap();
    assert_eq!((d.status, d.check_attempts), (Status::Approved, 2));
    let job = f
        .durable
        .claim(
            "w2",
            Utc::now() + Duration::seconds(60),
            Duration::seconds(30),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        job.sealed_code.is_none(),
        "sealed code erased once approved"
    );
    let kinds: Vec<String> = f
        .durable
        .list_events(&EventFilter {
            verification_id: Some(v.id.clone()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind.as_str().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "verification.created",
            "verification.check_failed",
            "verification.approved"
        ]
    );
    // Applying again changes nothing (idempotent), and the journal is empty.
    assert_eq!(f.spool(&node).await, 0);
    f.cleanup().await;
}

#[tokio::test]
async fn resend_keeps_id_code_and_expiry_and_adds_a_delivery() {
    let Some(f) = fixture().await else { return };
    let node = f.node().await;
    let code = OtpCode::parse("123456").unwrap();
    let v1 = created(
        node.start(
            f.request(TO, &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap(),
    );
    f.spool(&node).await;
    let other = OtpCode::parse("999999").unwrap();
    let v2 = match node
        .start(
            f.request(TO, &other),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap()
    {
        StartOutcome::Resent(v) => v,
        o => panic!("{o:?}"),
    };
    assert_eq!(v1.id, v2.id);
    assert_eq!(v1.expires_at, v2.expires_at);
    assert_eq!(v2.deliveries.len(), 2);
    f.spool(&node).await;
    let d = f.durable.get_verification(&v1.id).await.unwrap().unwrap();
    assert_eq!(d.deliveries.len(), 2);
    assert_eq!(
        decision(
            &f.check(&node, CheckTarget::Id(v1.id.clone()), "123456")
                .await
        ),
        CheckDecision::Approve
    );
    f.cleanup().await;
}

#[tokio::test]
async fn the_send_limit_holds_across_nodes() {
    let Some(f) = fixture().await else { return };
    let (a, b) = (f.node().await, f.node().await);
    let code = OtpCode::parse("123456").unwrap();
    let now = Utc::now();
    for i in 0..5 {
        let node = if i % 2 == 0 { &a } else { &b };
        node.start(f.request(TO, &code), None, now, &WriteContext::system())
            .await
            .unwrap();
    }
    for node in [&a, &b] {
        match node
            .start(f.request(TO, &code), None, now, &WriteContext::system())
            .await
        {
            Err(StoreError::RateLimited { retry_after_secs }) => {
                assert_eq!(retry_after_secs, 600)
            }
            o => panic!("{o:?}"),
        }
    }
    // Another recipient is not affected; the window slides.
    a.start(
        f.request("+14155550124", &code),
        None,
        now,
        &WriteContext::system(),
    )
    .await
    .unwrap();
    a.start(
        f.request(TO, &code),
        None,
        now + Duration::seconds(601),
        &WriteContext::system(),
    )
    .await
    .unwrap();
    f.cleanup().await;
}

#[tokio::test]
async fn attempts_exhaust_and_wrong_codes_lock_the_recipient_across_nodes() {
    let Some(f) = fixture().await else { return };
    let (a, b) = (f.node().await, f.node().await);
    let code = OtpCode::parse("123456").unwrap();
    let v = created(
        a.start(
            f.request(TO, &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap(),
    );
    for remaining in (1..=4).rev() {
        let node = if remaining % 2 == 0 { &a } else { &b };
        assert_eq!(
            decision(&f.check(node, CheckTarget::Id(v.id.clone()), "000000").await),
            CheckDecision::Reject { remaining }
        );
    }
    assert_eq!(
        decision(&f.check(&b, CheckTarget::Id(v.id.clone()), "000000").await),
        CheckDecision::Exhaust
    );
    assert_eq!(
        decision(&f.check(&a, CheckTarget::Id(v.id.clone()), "123456").await),
        CheckDecision::NotPending(Status::MaxAttemptsReached)
    );
    // Five wrong codes (the default policy) locked the recipient: no new code for it.
    match b
        .start(
            f.request(TO, &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
    {
        Err(StoreError::Locked { retry_after_secs }) => {
            assert!((899..=900).contains(&retry_after_secs))
        }
        o => panic!("{o:?}"),
    }
    // The journal carries the lock's event.
    f.spool(&a).await;
    let blocked = f
        .durable
        .list_events(&EventFilter {
            kind: Some("verification.blocked".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].data["subject"], "to:+1******0123");
    let d = f.durable.get_verification(&v.id).await.unwrap().unwrap();
    assert_eq!(d.status, Status::MaxAttemptsReached);
    f.cleanup().await;
}

#[tokio::test]
async fn a_locked_entity_refuses_checks_of_its_other_verifications() {
    let Some(f) = fixture().await else { return };
    let node = f.node().await;
    let code = OtpCode::parse("123456").unwrap();
    let mut ids = Vec::new();
    for to in ["+14155550101", "+14155550102"] {
        let mut req = f.request(to, &code);
        req.entity = Some("user-42".into());
        req.max_check_attempts = 10;
        ids.push(
            created(
                node.start(req, None, Utc::now(), &WriteContext::system())
                    .await
                    .unwrap(),
            )
            .id,
        );
    }
    let now = Utc::now();
    for i in 0..5 {
        let id = ids[i % 2].clone();
        f.check_at(&node, CheckTarget::Id(id), "000000", now)
            .await
            .unwrap();
    }
    // Each recipient has fewer than five failures, the entity has five: locked.
    match f
        .check_at(&node, CheckTarget::Id(ids[0].clone()), "123456", now)
        .await
    {
        Err(StoreError::Locked { .. }) => {}
        o => panic!("{o:?}"),
    }
    // Authenticator checks of the entity share the lock.
    let no_match = |_: &otpd_core::totp::Factor| None;
    let no_backup = |_: &str, _: &str| None;
    match node
        .check_factor(
            FactorTarget::Entity {
                service_id: f.service.id.clone(),
                entity: "user-42".into(),
            },
            &no_match,
            &no_backup,
            now,
            &WriteContext::system(),
        )
        .await
    {
        Err(StoreError::Locked { .. }) => {}
        o => panic!("{o:?}"),
    }
    f.cleanup().await;
}

#[tokio::test]
async fn expiry_is_exact_and_reaches_the_durable_store() {
    let Some(f) = fixture().await else { return };
    let node = f.node().await;
    let code = OtpCode::parse("123456").unwrap();
    let now = Utc::now();
    let v = created(
        node.start(f.request(TO, &code), None, now, &WriteContext::system())
            .await
            .unwrap(),
    );
    assert_eq!(
        decision(
            &f.check_at(&node, CheckTarget::Id(v.id.clone()), "123456", v.expires_at)
                .await
                .unwrap()
        ),
        CheckDecision::NotPending(Status::Expired)
    );
    assert_eq!(
        node.get_verification(&v.id).await.unwrap().unwrap().status,
        Status::Expired
    );
    f.spool(&node).await;
    let d = f.durable.get_verification(&v.id).await.unwrap().unwrap();
    assert_eq!(d.status, Status::Expired);
    // A new send after the expiry starts a new verification.
    let v2 = created(
        node.start(
            f.request(TO, &code),
            None,
            v.expires_at + Duration::seconds(1),
            &WriteContext::system(),
        )
        .await
        .unwrap(),
    );
    assert_ne!(v2.id, v.id);
    f.spool(&node).await;
    f.cleanup().await;
}

#[tokio::test]
async fn idempotent_start_replays_and_detects_conflicts() {
    let Some(f) = fixture().await else { return };
    let node = f.node().await;
    let code = OtpCode::parse("123456").unwrap();
    let idem = Idempotency {
        key_id: "key_1".into(),
        key: "abc".into(),
        request_hash: vec![1],
    };
    let mut req = f.request(TO, &code);
    req.idempotency = Some(idem.clone());
    let v = created(
        node.start(req.clone(), None, Utc::now(), &WriteContext::system())
            .await
            .unwrap(),
    );
    f.spool(&node).await;
    match node
        .start(req.clone(), None, Utc::now(), &WriteContext::system())
        .await
        .unwrap()
    {
        StartOutcome::Replayed(r) => assert_eq!((r.id, r.deliveries.len()), (v.id, 1)),
        o => panic!("{o:?}"),
    }
    req.idempotency = Some(Idempotency {
        request_hash: vec![2],
        ..idem
    });
    assert!(matches!(
        node.start(req, None, Utc::now(), &WriteContext::system())
            .await,
        Err(StoreError::IdempotencyConflict)
    ));
    // Nothing more was queued.
    assert_eq!(f.spool(&node).await, 0);
    f.cleanup().await;
}

#[tokio::test]
async fn cancel_and_out_of_band_approval_end_only_pending_verifications() {
    let Some(f) = fixture().await else { return };
    let node = f.node().await;
    let code = OtpCode::parse("123456").unwrap();
    let v = created(
        node.start(
            f.request(TO, &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap(),
    );
    let c = node
        .cancel(&v.id, Utc::now(), &WriteContext::system())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.status, Status::Canceled);
    assert_eq!(
        decision(
            &f.check(&node, CheckTarget::Id(v.id.clone()), "123456")
                .await
        ),
        CheckDecision::NotPending(Status::Canceled)
    );
    assert_eq!(
        node.approve(&v.id, Utc::now(), &WriteContext::system())
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Canceled
    );
    assert!(
        node.cancel("ver_nope", Utc::now(), &WriteContext::system())
            .await
            .unwrap()
            .is_none()
    );
    f.spool(&node).await;
    assert_eq!(
        f.durable
            .get_verification(&v.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Canceled
    );

    let v = created(
        node.start(
            f.request("+14155550199", &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap(),
    );
    assert_eq!(
        node.approve(&v.id, Utc::now(), &WriteContext::system())
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Approved
    );
    assert_eq!(
        decision(
            &f.check(&node, CheckTarget::Id(v.id.clone()), "123456")
                .await
        ),
        CheckDecision::NotPending(Status::Approved)
    );
    f.spool(&node).await;
    f.cleanup().await;
}

/// Invariant 2 across nodes: 100 concurrent right-code checks, on two nodes sharing one
/// Redis, approve exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_right_checks_on_two_nodes_have_exactly_one_winner() {
    let Some(f) = fixture().await else { return };
    let f = Arc::new(f);
    let (a, b) = (f.node().await, f.node().await);
    let code = OtpCode::parse("123456").unwrap();
    let mut req = f.request(TO, &code);
    req.max_check_attempts = 20;
    let v = created(
        a.start(req, None, Utc::now(), &WriteContext::system())
            .await
            .unwrap(),
    );
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let f = f.clone();
            let node = if i % 2 == 0 { a.clone() } else { b.clone() };
            let id = v.id.clone();
            tokio::spawn(
                async move { decision(&f.check(&node, CheckTarget::Id(id), "123456").await) },
            )
        })
        .collect();
    let mut approvals = 0;
    for t in tasks {
        match t.await.unwrap() {
            CheckDecision::Approve => approvals += 1,
            CheckDecision::NotPending(Status::Approved) => {}
            d => panic!("{d:?}"),
        }
    }
    assert_eq!(approvals, 1);
    f.spool(&a).await;
    let events = f
        .durable
        .list_events(&EventFilter {
            kind: Some("verification.approved".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    f.cleanup().await;
}

#[tokio::test]
async fn rate_buckets_are_shared_by_nodes_and_taken_all_or_none() {
    let Some(f) = fixture().await else { return };
    let (a, b) = (f.node().await, f.node().await);
    let svc = &f.service.id;
    let ip = Bucket {
        key: format!("send:ip:{svc}:10.0.0.1"),
        limit: Limit::new(5, 600),
    };
    let key = Bucket {
        key: "send:key:key_1".into(),
        limit: Limit::new(3, 600),
    };
    let now = Utc::now();
    for i in 0..5 {
        let node = if i % 2 == 0 { &a } else { &b };
        assert!(
            node.take_tokens(std::slice::from_ref(&ip), now)
                .await
                .unwrap()
                .is_ok()
        );
    }
    let refusal = b
        .take_tokens(std::slice::from_ref(&ip), now)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refusal.retry_after_secs, Some(120));
    assert_eq!(refusal.reason, "more than 5 per 600 s by sends per ip");
    // After 120 s one token is back.
    assert!(
        a.take_tokens(std::slice::from_ref(&ip), now + Duration::seconds(120))
            .await
            .unwrap()
            .is_ok()
    );

    // Two tags (service and API key): a refusal by the key's bucket gives the other
    // bucket its token back.
    let other = Bucket {
        key: format!("send:to:{svc}:{TO}"),
        limit: Limit::new(3, 600),
    };
    for _ in 0..3 {
        assert!(
            a.take_tokens(&[other.clone(), key.clone()], now)
                .await
                .unwrap()
                .is_ok()
        );
    }
    let per_to_only = Bucket {
        key: format!("send:to:{svc}:+14155550999"),
        limit: Limit::new(1, 600),
    };
    assert!(
        a.take_tokens(&[per_to_only.clone(), key.clone()], now)
            .await
            .unwrap()
            .is_err()
    );
    // The refused call took nothing from `per_to_only`.
    assert!(
        b.take_tokens(std::slice::from_ref(&per_to_only), now)
            .await
            .unwrap()
            .is_ok()
    );
    f.cleanup().await;
}

/// The production clock (`Clock::Server`, the default): the rate limits count on Redis's
/// `TIME`, so a node's own `now` (skewed, or moved by hand as the conformance suite does
/// with `Clock::Caller`) changes nothing; and a bucket's key lives as long as its arrival
/// time, by Redis's clock.
#[tokio::test]
async fn rate_limits_count_on_the_redis_clock_by_default() {
    let Some(f) = fixture().await else { return };
    let config = RedisConfig {
        prefix: f.prefix.clone(),
        ..RedisConfig::new(f.url.clone())
    };
    assert_eq!(config.clock, Clock::Server);
    let (a, b) = (
        Hot::connect(f.durable.clone(), config.clone())
            .await
            .unwrap(),
        Hot::connect(f.durable.clone(), config).await.unwrap(),
    );
    let bucket = Bucket {
        key: format!("send:ip:{}:10.0.0.9", f.service.id),
        limit: Limit::new(2, 60),
    };
    let one = std::slice::from_ref(&bucket);
    let now = Utc::now();
    // Two nodes whose clocks are an hour apart share the two tokens.
    assert!(a.take_tokens(one, now).await.unwrap().is_ok());
    assert!(
        b.take_tokens(one, now + Duration::hours(1))
            .await
            .unwrap()
            .is_ok()
    );
    // Neither a clock an hour ahead nor one an hour behind gets a third token.
    for skew in [Duration::hours(1), Duration::hours(-1), Duration::zero()] {
        let refusal = a.take_tokens(one, now + skew).await.unwrap().unwrap_err();
        let wait = refusal.retry_after_secs.unwrap();
        assert!((29..=30).contains(&wait), "wait {wait} s by Redis's clock");
    }
    // The key expires by Redis's clock: at most the period from now.
    let client = redis::Client::open(f.url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(a.bucket_key(&f.service.id, &bucket.key))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(ttl > 50_000 && ttl <= 60_000, "ttl {ttl} ms");
    f.cleanup().await;
}

/// Invariant 3 across nodes: node A reads journal entries and dies before applying them;
/// node B's spooler takes them over after the lease and the job reaches the outbox.
/// Redis judges the lease by its own clock (an entry's idle time in the pending list), so
/// the test moves that clock for the entry: `XCLAIM … IDLE` sets how long it has been idle.
#[tokio::test]
async fn a_dead_nodes_journal_entries_are_taken_over_after_the_lease() {
    let Some(f) = fixture().await else { return };
    let (a, b) = (f.node().await, f.node().await);
    let code = OtpCode::parse("123456").unwrap();
    let v = created(
        a.start(
            f.request(TO, &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap(),
    );
    let lease = StdDuration::from_secs(10);
    let dead = Spooler::new(a.clone(), "node-a").with_lease(lease);
    let read = dead.read().await.unwrap();
    assert_eq!(read.len(), 1);
    let entry = read[0].0.clone();
    drop(dead);
    let spooler_b = Spooler::new(b.clone(), "node-b").with_lease(lease);
    let client = redis::Client::open(f.url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    // Idle for `idle` (ms) in node A's pending list, as if A had died that long ago.
    let idle_for = |idle: u128| {
        redis::cmd("XCLAIM")
            .arg(a.journal_key())
            .arg(journal::GROUP)
            .arg("node-a")
            .arg(0)
            .arg(&entry)
            .arg("IDLE")
            .arg(idle as u64)
            .arg("JUSTID")
            .to_owned()
    };
    for idle in [0, lease.as_millis() / 2] {
        let kept: Vec<String> = idle_for(idle).query_async(&mut c).await.unwrap();
        assert_eq!(kept, std::slice::from_ref(&entry), "still node A's");
        assert_eq!(
            spooler_b.spool_once().await.unwrap(),
            0,
            "still leased after {idle} ms"
        );
        assert!(
            f.durable
                .claim("w", Utc::now(), Duration::seconds(30))
                .await
                .unwrap()
                .is_none()
        );
    }
    let _: Vec<String> = idle_for(lease.as_millis())
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(spooler_b.spool_once().await.unwrap(), 1, "taken over");
    let job = f
        .durable
        .claim("w", Utc::now(), Duration::seconds(30))
        .await
        .unwrap()
        .expect("taken over and queued");
    assert_eq!(job.verification_id, v.id);
    f.cleanup().await;
}

#[tokio::test]
async fn test_key_sends_stay_in_the_durable_store_and_checks_fall_back_to_it() {
    let Some(f) = fixture().await else { return };
    let node = f.node().await;
    let code = OtpCode::parse("123456").unwrap();
    let mut req = f.request(TO, &code);
    req.test = true;
    let v = created(
        node.start(req, None, Utc::now(), &WriteContext::system())
            .await
            .unwrap(),
    );
    assert!(f.durable.get_verification(&v.id).await.unwrap().is_some());
    assert_eq!(
        decision(
            &f.check(&node, CheckTarget::Id(v.id.clone()), "123456")
                .await
        ),
        CheckDecision::Approve
    );
    let nope = f
        .check(&node, CheckTarget::Id("ver_nope".into()), "123456")
        .await;
    assert!(matches!(nope, CheckOutcome::NotFound));
    f.cleanup().await;
}

/// A private `redis-server` on a free port, killed on drop.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> Option<OwnRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut r = OwnRedis { port, child: None };
        r.spawn()?;
        Some(r)
    }

    fn spawn(&mut self) -> Option<()> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Some(());
            }
            std::thread::sleep(StdDuration::from_millis(20));
        }
        None
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private Redis, or a skip message (a failure when stores are required).
fn own_redis() -> Option<OwnRedis> {
    let r = OwnRedis::start();
    if r.is_none() {
        assert!(
            !required(),
            "OTPD_REQUIRE_STORES=1 but redis-server cannot be started"
        );
        eprintln!("skipped: cannot start a private redis-server");
    }
    r
}

/// Invariant 7: Redis down → `Unavailable` (never an approval); back → works again,
/// with no new connection made by the caller.
#[tokio::test]
async fn redis_down_fails_closed_and_recovers_by_itself() {
    let Some(mut redis) = own_redis() else { return };
    let Some(f) = fixture_at(&redis.url()).await else {
        return;
    };
    let node = f.node().await;
    let code = OtpCode::parse("123456").unwrap();
    let v = created(
        node.start(
            f.request(TO, &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap(),
    );
    assert_eq!(
        f.spool(&node).await,
        1,
        "the send's job is in the durable outbox"
    );
    redis.stop();
    let r = f
        .check_at(&node, CheckTarget::Id(v.id.clone()), "123456", Utc::now())
        .await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    // The delivery worker still delivers what the durable outbox holds (no read barrier
    // without Redis).
    let job = node
        .claim("w", Utc::now(), Duration::seconds(30))
        .await
        .unwrap()
        .expect("the job already in the durable outbox");
    assert_eq!(job.verification_id, v.id);
    assert!(matches!(
        node.start(
            f.request("+14155550999", &code),
            None,
            Utc::now(),
            &WriteContext::system()
        )
        .await,
        Err(StoreError::Unavailable(_))
    ));
    let deps = node.dependencies().await;
    assert!(deps[0].1.is_ok() && deps[1].1.is_err(), "{deps:?}");
    assert!(node.ping().await.is_err());

    redis.spawn().expect("redis restarts");
    let mut back = false;
    for _ in 0..50 {
        if node.ping().await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    assert!(back, "the connection manager reconnects");
    // The restarted Redis is empty (no persistence here): a new send works.
    created(
        node.start(
            f.request(TO, &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap(),
    );
}

/// Reads `INFO` fields (`name:value` lines) of one section.
async fn info(c: &mut redis::aio::MultiplexedConnection, section: &str) -> Vec<(String, String)> {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query_async(c)
        .await
        .unwrap();
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Script invocations Redis has served, from `INFO commandstats` (`cmdstat_x:calls=N,…`):
/// `EVALSHA`, `EVAL` (the fallback) and `SCRIPT` (loading). The check path sends nothing
/// else (commands run inside a script are counted under their own names, so a total of
/// all commands would count a script's inner calls, not round trips).
async fn calls(c: &mut redis::aio::MultiplexedConnection) -> u64 {
    info(c, "commandstats")
        .await
        .into_iter()
        .filter(|(k, _)| {
            ["cmdstat_evalsha", "cmdstat_eval", "cmdstat_script"].contains(&k.as_str())
        })
        .filter_map(|(_, v)| {
            v.split(',')
                .find_map(|p| p.strip_prefix("calls="))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum()
}

/// The ids of `n` verifications started for `+1415555<first…>`, each allowing 10 attempts.
async fn started(f: &Fixture, node: &Hot, code: &OtpCode, first: u64, n: u64) -> Vec<String> {
    let mut ids = Vec::new();
    for i in first..first + n {
        let mut req = f.request(&format!("+1415555{i:04}"), code);
        req.max_check_attempts = 10;
        ids.push(
            created(
                node.start(req, None, Utc::now(), &WriteContext::system())
                    .await
                    .unwrap(),
            )
            .id,
        );
    }
    ids
}

/// A private Redis, a fixture and node on it, and a connection that counts its commands
/// (`None`, with a message, when no Redis can be started).
async fn counted_node() -> Option<(OwnRedis, Fixture, Hot, redis::aio::MultiplexedConnection)> {
    let redis = own_redis()?;
    let f = fixture_at(&redis.url()).await?;
    let node = f.node().await;
    let client = redis::Client::open(redis.url()).unwrap();
    let c = client.get_multiplexed_async_connection().await.unwrap();
    Some((redis, f, node, c))
}

/// Target: at most 2 Redis round trips per check (measured by `INFO commandstats` on a
/// private Redis: commands served per check, scripts counted once).
#[tokio::test]
async fn a_check_costs_two_redis_round_trips() {
    let Some((_redis, f, node, mut c)) = counted_node().await else {
        return;
    };
    let code = OtpCode::parse("123456").unwrap();
    // Warm up: scripts loaded, the service cached.
    let w = created(
        node.start(
            f.request("+14155550100", &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap(),
    );
    f.check(&node, CheckTarget::Id(w.id.clone()), "000000")
        .await;
    f.check(&node, CheckTarget::Id(w.id.clone()), "123456")
        .await;
    const N: u64 = 50;
    let ids = started(&f, &node, &code, 1000, N).await;
    let before = calls(&mut c).await;
    for id in &ids {
        f.check(&node, CheckTarget::Id(id.clone()), "000000").await;
    }
    let wrong = calls(&mut c).await - before;
    let before = calls(&mut c).await;
    for (i, id) in ids.iter().enumerate() {
        let target = if i % 2 == 0 {
            CheckTarget::Id(id.clone())
        } else {
            f.to(&format!("+1415555{:04}", 1000 + i))
        };
        assert_eq!(
            decision(&f.check(&node, target, "123456").await),
            CheckDecision::Approve
        );
    }
    let right = calls(&mut c).await - before;
    eprintln!(
        "redis commands per check: wrong code {:.2}, right code {:.2}",
        wrong as f64 / N as f64,
        right as f64 / N as f64
    );
    assert!(wrong <= 2 * N && right <= 2 * N, "{wrong} {right}");
}

/// An API check by id reads the verification (visibility) and then checks it: with
/// `check_seen` that is 2 round trips in all, the check deciding on the state just read.
/// A state that changed since it was read is read again and decided anew.
#[tokio::test]
async fn a_check_of_a_verification_just_read_costs_one_more_round_trip_only() {
    let Some((_redis, f, node, mut c)) = counted_node().await else {
        return;
    };
    let code = OtpCode::parse("123456").unwrap();
    let hasher = f.secret.hasher();
    let right = {
        let code = code.clone();
        move |v: &otpd_core::verification::Verification| hasher.matches(&v.id, &code, &v.code_hash)
    };
    let wrong = |_: &otpd_core::verification::Verification| false;
    // Warm up: scripts loaded, the service cached.
    let w = created(
        node.start(
            f.request("+14155550100", &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap(),
    );
    let seen = node.get_verification(&w.id).await.unwrap().unwrap();
    node.check_seen(
        &seen,
        &f.service.settings.lockout,
        &wrong,
        Utc::now(),
        &WriteContext::system(),
    )
    .await
    .unwrap();
    const N: u64 = 50;
    let ids = started(&f, &node, &code, 2000, N).await;
    let before = calls(&mut c).await;
    for id in &ids {
        let seen = node.get_verification(id).await.unwrap().unwrap();
        let outcome = node
            .check_seen(
                &seen,
                &f.service.settings.lockout,
                &wrong,
                Utc::now(),
                &WriteContext::system(),
            )
            .await
            .unwrap();
        assert!(matches!(
            decision(&outcome),
            CheckDecision::Reject { remaining: 9 }
        ));
    }
    let per_check = calls(&mut c).await - before;
    eprintln!(
        "redis round trips per API check (read, then check): {:.2}",
        per_check as f64 / N as f64
    );
    assert!(per_check <= 2 * N, "{per_check}");
    // A stale read: another wrong code went in after it; the right code is still decided
    // on the current state (attempts 3, approved), not on the stale one.
    let id = &ids[0];
    let stale = node.get_verification(id).await.unwrap().unwrap();
    f.check(&node, CheckTarget::Id(id.clone()), "000000").await;
    let outcome = node
        .check_seen(
            &stale,
            &f.service.settings.lockout,
            &right,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap();
    assert_eq!(decision(&outcome), CheckDecision::Approve);
    let CheckOutcome::Decided { verification, .. } = outcome else {
        unreachable!()
    };
    assert_eq!(verification.check_attempts, stale.check_attempts + 2);
}

/// Target: at most 300 bytes of Redis memory per live verification (10k written,
/// `used_memory` compared), with the journal drained (its entries are deleted once
/// applied) and reported with it. The layout measures about 290: the verification's key
/// (name with the id's 16 bytes, TTL, packed state) and its recipient's entry in a shared
/// index shard. (This test's key prefix is 12 bytes longer than the default `otpd`.)
#[tokio::test]
async fn bytes_per_live_verification() {
    let Some((_redis, f, node, mut c)) = counted_node().await else {
        return;
    };
    let code = OtpCode::parse("123456").unwrap();
    // Warm up (scripts, stream and group created) before the baseline.
    node.start(
        f.request("+14155550100", &code),
        None,
        Utc::now(),
        &WriteContext::system(),
    )
    .await
    .unwrap();
    Spooler::new(node.clone(), "m").spool_once().await.unwrap();
    let used = |info: Vec<(String, String)>| -> i64 {
        info.into_iter()
            .find(|(k, _)| k == "used_memory")
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap()
    };
    let before = used(info(&mut c, "memory").await);
    const N: i64 = 10_000;
    let now = Utc::now();
    for i in 0..N {
        node.start(
            f.request(&format!("+1415{:07}", i), &code),
            None,
            now,
            &WriteContext::system(),
        )
        .await
        .unwrap();
    }
    let with_journal = used(info(&mut c, "memory").await);
    let spooler = Spooler::new(node.clone(), "m");
    while spooler.spool_once().await.unwrap() > 0 {}
    let after = used(info(&mut c, "memory").await);
    let per = (after - before) / N;
    eprintln!(
        "redis bytes per live verification: {per} (with its journal entry not yet applied: {})",
        (with_journal - before) / N
    );
    assert!(per <= 300, "{per} bytes per verification");
}

#[tokio::test]
async fn erasure_removes_the_recipient_from_redis() {
    let Some(f) = fixture().await else { return };
    let node = f.node().await;
    let code = OtpCode::parse("123456").unwrap();
    let v = created(
        node.start(
            f.request(TO, &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap(),
    );
    f.check(&node, CheckTarget::Id(v.id.clone()), "000000")
        .await;
    let bucket = Bucket {
        key: format!("send:to:{}:{TO}", f.service.id),
        limit: Limit::new(5, 600),
    };
    node.take_tokens(&[bucket], Utc::now())
        .await
        .unwrap()
        .unwrap();
    f.spool(&node).await;
    let counts = node
        .erase_recipient(TO, "+1******0123", Utc::now(), &WriteContext::system())
        .await
        .unwrap();
    // Recipient hash, verification, failures, bucket.
    assert_eq!(counts.get("redis_keys"), Some(&4), "{counts:?}");
    assert!(node.get_verification(&v.id).await.unwrap().is_none());
    f.cleanup().await;
}
