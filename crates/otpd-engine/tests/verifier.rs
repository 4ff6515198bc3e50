//! The engine without HTTP: a `Verifier` over a real SQLite store and a clock the test
//! moves. What a face would do (parse, authorize the service) is done by hand here; what
//! the engine decides is asserted through its domain results and its one error type.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

use std::sync::Arc;

use chrono::{Duration, Utc};
use otpd_core::apikey::{Principal, Role};
use otpd_core::audit::WriteContext;
use otpd_core::clock::ManualClock;
use otpd_core::ids::Kind;
use otpd_core::secret::ServerSecret;
use otpd_core::service::{Service, ServiceSettings};
use otpd_core::store::Store;
use otpd_core::verification::{CheckDecision, Status};
use otpd_delivery::Router;
use otpd_engine::{CheckBy, ClientIp, Parts, StartCommand, StartKind, Verifier, VerifyError};
use otpd_store::SqliteStore;
use otpd_telemetry::Telemetry;
use tokio::sync::Notify;

struct Rig {
    verifier: Verifier,
    clock: Arc<ManualClock>,
    service: Service,
    _dir: tempfile::TempDir,
}

/// A test key: its sends are recorded, not delivered, so the code can be read back.
fn test_key() -> Principal {
    Principal {
        key_id: "key_engine_test".into(),
        role: Role::Verify,
        test: true,
        services: None,
    }
}

async fn rig(settings: ServiceSettings) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("otpd.db").display());
    let sqlite = SqliteStore::open(&url).await.unwrap();
    sqlite.migrate().await.unwrap();
    let store: Arc<dyn Store> = Arc::new(sqlite);
    let now = Utc::now();
    let id = Kind::Service.new_id();
    let service = Service {
        sid: Kind::Service.sid_of(&id),
        id,
        name: "default".into(),
        settings,
        webhook_secret: None,
        created_at: now,
        updated_at: now,
    };
    store.create_service(&service, None).await.unwrap();
    let clock = Arc::new(ManualClock::at(now));
    let verifier = Verifier::new(Parts {
        store,
        secret: Arc::new(ServerSecret::from_text("engine test secret, long enough").unwrap()),
        router: Arc::new(Router::new(&[], &[]).unwrap()),
        prices: Default::default(),
        wake: Arc::new(Notify::new()),
        callback_keys: Arc::default(),
        telemetry: Arc::new(Telemetry::new(Default::default())),
        clock: clock.clone(),
    });
    Rig {
        verifier,
        clock,
        service,
        _dir: dir,
    }
}

impl Rig {
    async fn start(&self, to: &str) -> (String, String) {
        let started = self
            .verifier
            .start(
                &test_key(),
                &self.service,
                StartCommand {
                    to: to.into(),
                    ..StartCommand::default()
                },
                &WriteContext::system(),
            )
            .await
            .unwrap();
        assert_eq!(started.kind, StartKind::Created);
        let id = started.verification.id.clone();
        let messages = self.verifier.messages(&test_key(), &id).await.unwrap();
        let body = messages[0].body.to_string();
        let code: String = body.chars().filter(char::is_ascii_digit).take(6).collect();
        (id, code)
    }

    async fn check(&self, id: &str, code: &str) -> Result<CheckDecision, VerifyError> {
        self.verifier
            .check(
                &test_key(),
                code,
                CheckBy::Id(id.into()),
                ClientIp::default(),
                &WriteContext::system(),
            )
            .await
            .map(|c| c.decision)
    }
}

#[tokio::test]
async fn a_code_is_approved_once_and_wrong_codes_count() {
    let rig = rig(ServiceSettings::default()).await;
    let (id, code) = rig.start("+14155550100").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(
        rig.check(&id, wrong).await.unwrap(),
        CheckDecision::Reject { remaining: 4 }
    );
    assert_eq!(rig.check(&id, &code).await.unwrap(), CheckDecision::Approve);
    assert!(matches!(
        rig.check(&id, &code).await,
        Err(VerifyError::NotPending(Status::Approved))
    ));
    let v = rig.verifier.read(&test_key(), &id).await.unwrap();
    assert_eq!(v.status, Status::Approved);
    assert_eq!(v.check_attempts, 2);
}

#[tokio::test]
async fn a_code_expires_on_the_clock_it_is_given() {
    let rig = rig(ServiceSettings::default()).await;
    let (id, code) = rig.start("+14155550101").await;
    rig.clock.advance(Duration::seconds(i64::from(
        ServiceSettings::default().ttl_seconds,
    )));
    assert!(matches!(
        rig.check(&id, &code).await,
        Err(VerifyError::Expired)
    ));
    let v = rig.verifier.read(&test_key(), &id).await.unwrap();
    assert_eq!(v.status, Status::Expired, "the check ended it as expired");
}

#[tokio::test]
async fn wrong_codes_lock_by_the_service_policy_until_it_ends() {
    let defaults = ServiceSettings::default();
    let rig = rig(ServiceSettings {
        max_check_attempts: 10,
        lockout: otpd_core::lockout::LockoutPolicy {
            max_failures: 2,
            // Shorter than the code's lifetime, so the code outlives the lock.
            duration_seconds: 60,
            ..defaults.lockout
        },
        ..defaults
    })
    .await;
    let (id, code) = rig.start("+14155550102").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert!(rig.check(&id, wrong).await.is_ok());
    assert!(
        rig.check(&id, wrong).await.is_ok(),
        "the second failure locks"
    );
    match rig.check(&id, &code).await {
        Err(VerifyError::Store(otpd_core::store::StoreError::Locked { retry_after_secs })) => {
            assert!(retry_after_secs > 0)
        }
        other => panic!("locked expected: {:?}", other.map(|_| ())),
    }
    // A new code for the locked recipient is refused too.
    let refused = rig
        .verifier
        .start(
            &test_key(),
            &rig.service,
            StartCommand {
                to: "+14155550102".into(),
                ..StartCommand::default()
            },
            &WriteContext::system(),
        )
        .await;
    assert!(matches!(
        refused,
        Err(VerifyError::Store(
            otpd_core::store::StoreError::Locked { .. }
        ))
    ));
    // The lock ends with the policy's duration.
    rig.clock.advance(Duration::seconds(i64::from(
        rig.service.settings.lockout.duration_seconds,
    )));
    assert_eq!(rig.check(&id, &code).await.unwrap(), CheckDecision::Approve);
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_stored() {
    let rig = rig(ServiceSettings::default()).await;
    let key = test_key();
    let ctx = WriteContext::system();
    let start = |cmd: StartCommand| rig.verifier.start(&key, &rig.service, cmd, &ctx);
    assert!(matches!(
        start(StartCommand {
            to: "not a number".into(),
            ..StartCommand::default()
        })
        .await,
        Err(VerifyError::Domain(_))
    ));
    assert!(matches!(
        start(StartCommand {
            to: "+14155550103".into(),
            code_length: Some(3),
            ..StartCommand::default()
        })
        .await,
        Err(VerifyError::Invalid(_))
    ));
    let latest = rig
        .verifier
        .latest(&test_key(), &rig.service.id, "+14155550103")
        .await
        .unwrap();
    assert!(latest.is_none(), "nothing was stored: {latest:?}");
}
