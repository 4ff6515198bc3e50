//! The SQLite fixture of the store's unit tests, and what only the SQLite store has.
//!
//! The rules every backend must keep live in the conformance suite
//! (`crates/otpd-store/tests/conformance`), run against SQLite and every other backend;
//! the unit tests here and in `audit_tests` reach into the SQLite store (its pools, its
//! triggers, `start_many`).

use chrono::{Duration, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::channel::Channel;
use otpd_core::code::OtpCode;
use otpd_core::ids::Kind;
use otpd_core::secret::ServerSecret;
use otpd_core::service::{Service, ServiceSettings};
use otpd_core::store::*;
use otpd_core::verification::CheckDecision;

use super::SqliteStore;

pub(super) struct Fixture {
    pub(super) store: SqliteStore,
    pub(super) secret: ServerSecret,
    pub(super) service: Service,
    dir: tempfile::TempDir,
}

pub(super) async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let store = SqliteStore::open(&url).await.unwrap();
    store.migrate().await.unwrap();
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
    store.create_service(&service, None).await.unwrap();
    Fixture {
        store,
        secret: ServerSecret::from_text("store test secret, long enough").unwrap(),
        service,
        dir,
    }
}

impl Fixture {
    pub(super) fn request(&self, to: &str, code: &OtpCode) -> StartRequest {
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

    async fn check(&self, target: CheckTarget, code: &str) -> CheckOutcome {
        self.check_at(target, code, Utc::now()).await.unwrap()
    }

    /// A check at a given time, with the store's error (e.g. `Locked`).
    pub(super) async fn check_at(
        &self,
        target: CheckTarget,
        code: &str,
        now: chrono::DateTime<Utc>,
    ) -> StoreResult<CheckOutcome> {
        let code = OtpCode::parse(code).unwrap();
        let hasher = self.secret.hasher();
        let matcher = move |v: &otpd_core::verification::Verification| {
            hasher.matches(&v.id, &code, &v.code_hash)
        };
        self.store
            .check(
                target,
                &self.service.settings.lockout,
                &matcher,
                now,
                &WriteContext::system(),
            )
            .await
    }
}

#[tokio::test]
async fn start_many_does_the_work_of_start_in_one_transaction() {
    let f = fixture().await;
    let code = OtpCode::parse("424242").unwrap();
    let reqs = vec![
        f.request("+14155550170", &code),
        f.request("+14155550171", &code),
        // The same recipient again within the batch: a resend of the first.
        f.request("+14155550170", &code),
    ];
    let outcomes = f.store.start_many(reqs, Utc::now()).await.unwrap();
    let ids: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            StartOutcome::Created(v) | StartOutcome::Resent(v) | StartOutcome::Replayed(v) => {
                v.id.clone()
            }
        })
        .collect();
    assert!(matches!(outcomes[0], StartOutcome::Created(_)));
    assert!(matches!(outcomes[1], StartOutcome::Created(_)));
    assert!(matches!(outcomes[2], StartOutcome::Resent(_)));
    assert_eq!(ids[0], ids[2]);
    let v = f.store.get_verification(&ids[0]).await.unwrap().unwrap();
    assert_eq!(v.deliveries.len(), 2, "a queued job per send");
    let right = f.check(CheckTarget::Id(ids[1].clone()), "424242").await;
    assert!(matches!(
        right,
        CheckOutcome::Decided {
            decision: CheckDecision::Approve,
            ..
        }
    ));

    // All or nothing: a batch whose last send is over the limit leaves nothing behind.
    let mut reqs: Vec<StartRequest> = (0..3).map(|_| f.request("+14155550172", &code)).collect();
    for r in &mut reqs {
        r.send_limit.count = 2;
    }
    assert!(matches!(
        f.store.start_many(reqs, Utc::now()).await,
        Err(StoreError::RateLimited { .. })
    ));
    let none = f
        .check(
            CheckTarget::To {
                service_id: f.service.id.clone(),
                to: "+14155550172".into(),
                test: false,
            },
            "424242",
        )
        .await;
    assert!(matches!(none, CheckOutcome::NotFound));
}

/// The durable side of the Redis hot store (`JournalSink`), by the shared rules.
#[tokio::test]
async fn the_journal_sink_keeps_the_shared_rules() {
    let f = fixture().await;
    crate::journal_conformance::journal_sink(&f.store, &f.service.id).await;
}

/// Concurrent calls are batched on the writer; each one's change is committed, and
/// visible to the readers, by the time it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_committed_before_they_return() {
    let f = std::sync::Arc::new(fixture().await);
    let code = OtpCode::parse("123456").unwrap();
    let calls = (0..64).map(|i| {
        let f = f.clone();
        let req = f.request(&format!("+1415555{i:04}"), &code);
        tokio::spawn(async move {
            let id = req.new_id.clone();
            let started = f
                .store
                .start(req, None, Utc::now(), &WriteContext::system())
                .await
                .unwrap();
            assert!(matches!(started, StartOutcome::Created(_)));
            // Read back at once, on a reader connection.
            assert!(f.store.get_verification(&id).await.unwrap().is_some());
        })
    });
    for call in calls.collect::<Vec<_>>() {
        call.await.unwrap();
    }
    let created = f
        .store
        .list_events(&EventFilter {
            kind: Some("verification.created".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(created.len(), 64);
}

/// The checkpointer starts the log over itself, holding the writer: after a request
/// (as an erasure makes) the log holds only its own commit, and the store keeps working
/// with no change lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpointer_restarts_the_log_while_holding_the_writer() {
    let f = fixture().await;
    let code = OtpCode::parse("123456").unwrap();
    let mut ids = Vec::new();
    for i in 0..20 {
        let req = f.request(&format!("+1415556{i:04}"), &code);
        ids.push(req.new_id.clone());
        f.store
            .start(req, None, Utc::now(), &WriteContext::system())
            .await
            .unwrap();
    }
    let restarts = || async {
        f.store
            .read(
                |c| Ok(c.query_row("SELECT count FROM wal_restarts", [], |r| r.get::<_, i64>(0))?),
            )
            .await
            .unwrap()
    };
    assert_eq!(restarts().await, 0);
    f.store.truncate_log_soon();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while restarts().await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no restart within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Truncated, then one commit (the counter's page) in the new log.
    let wal = f.dir.path().join("t.db-wal");
    let frames = (std::fs::metadata(&wal).unwrap().len().saturating_sub(32)) / (4096 + 24);
    assert!(
        frames <= 2,
        "the log holds {frames} frames after the restart"
    );
    let req = f.request("+14155569999", &code);
    ids.push(req.new_id.clone());
    f.store
        .start(req, None, Utc::now(), &WriteContext::system())
        .await
        .unwrap();
    for id in &ids {
        assert!(f.store.get_verification(id).await.unwrap().is_some());
    }
}
