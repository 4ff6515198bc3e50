//! The PostgreSQL store's own tests' fixture (one fresh database per test) and what only
//! this backend has (`start_many`). The rules every backend keeps are the conformance
//! suite's (`tests/conformance`), run against PostgreSQL there.

use chrono::{Duration, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::channel::Channel;
use otpd_core::code::OtpCode;
use otpd_core::ids::Kind;
use otpd_core::secret::ServerSecret;
use otpd_core::service::{Service, ServiceSettings};
use otpd_core::store::*;
use otpd_core::verification::CheckDecision;

use super::PostgresStore;

pub(super) struct Fixture {
    pub(super) store: PostgresStore,
    pub(super) secret: ServerSecret,
    pub(super) service: Service,
    /// The test's own database (dropped with the fixture).
    pub(super) db: super::testdb::TestDb,
}

/// A migrated database of its own with one service, or `None` (skipped) without PostgreSQL.
pub(super) async fn fixture() -> Option<Fixture> {
    let db = super::testdb::fresh().await?;
    let store = db.store.clone();
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
    Some(Fixture {
        store,
        secret: ServerSecret::from_text("store test secret, long enough").unwrap(),
        service,
        db,
    })
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
    let Some(f) = fixture().await else { return };
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
    let Some(f) = fixture().await else {
        return;
    };
    crate::journal_conformance::journal_sink(&f.store, &f.service.id).await;
}
