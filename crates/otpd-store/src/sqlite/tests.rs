//! Store behaviour against a real SQLite file: the rules every backend must keep.

use std::sync::Arc;

use chrono::{Duration, Utc};
use otpd_core::channel::Channel;
use otpd_core::code::OtpCode;
use otpd_core::ids::Kind;
use otpd_core::secret::ServerSecret;
use otpd_core::service::{Service, ServiceSettings};
use otpd_core::store::*;
use otpd_core::verification::{CheckDecision, DeliveryStatus, Status};

use super::SqliteStore;

struct Fixture {
    store: SqliteStore,
    secret: ServerSecret,
    service: Service,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
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
        _dir: dir,
    }
}

impl Fixture {
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
            test: false,
            key_id: "key_test".into(),
            sends_per_window: 5,
            send_window: Duration::seconds(600),
            idempotency: None,
        }
    }

    async fn check(&self, target: CheckTarget, code: &str) -> CheckOutcome {
        let code = OtpCode::parse(code).unwrap();
        let hasher = self.secret.hasher();
        let matcher = move |v: &otpd_core::verification::Verification| {
            hasher.matches(&v.id, &code, &v.code_hash)
        };
        self.store
            .check(target, &matcher, Utc::now())
            .await
            .unwrap()
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

#[tokio::test]
async fn create_check_wrong_then_right_spends_the_code() {
    let f = fixture().await;
    let code = OtpCode::parse("123456").unwrap();
    let v = created(
        f.store
            .start(f.request("+14155550123", &code), None, Utc::now())
            .await
            .unwrap(),
    );
    assert_eq!(v.status, Status::Pending);
    assert_eq!(v.deliveries.len(), 1);
    assert_eq!(v.deliveries[0].status, DeliveryStatus::Queued);

    let o = f.check(CheckTarget::Id(v.id.clone()), "654321").await;
    assert_eq!(decision(&o), CheckDecision::Reject { remaining: 4 });
    let o = f
        .check(
            CheckTarget::To {
                service_id: f.service.id.clone(),
                to: "+14155550123".into(),
            },
            "123456",
        )
        .await;
    assert_eq!(decision(&o), CheckDecision::Approve);
    let o = f.check(CheckTarget::Id(v.id.clone()), "123456").await;
    assert_eq!(decision(&o), CheckDecision::NotPending(Status::Approved));
}

#[tokio::test]
async fn resend_keeps_id_code_and_expiry_and_adds_a_delivery() {
    let f = fixture().await;
    let code = OtpCode::parse("123456").unwrap();
    let v1 = created(
        f.store
            .start(f.request("+14155550123", &code), None, Utc::now())
            .await
            .unwrap(),
    );
    let other = OtpCode::parse("999999").unwrap();
    let v2 = match f
        .store
        .start(f.request("+14155550123", &other), None, Utc::now())
        .await
        .unwrap()
    {
        StartOutcome::Resent(v) => v,
        o => panic!("{o:?}"),
    };
    assert_eq!(v1.id, v2.id);
    assert_eq!(v1.expires_at, v2.expires_at);
    assert_eq!(v2.deliveries.len(), 2);
    assert_eq!(
        decision(&f.check(CheckTarget::Id(v1.id.clone()), "123456").await),
        CheckDecision::Approve
    );
}

#[tokio::test]
async fn send_limit_counts_sends_per_recipient() {
    let f = fixture().await;
    let code = OtpCode::parse("123456").unwrap();
    for _ in 0..5 {
        f.store
            .start(f.request("+14155550123", &code), None, Utc::now())
            .await
            .unwrap();
    }
    match f
        .store
        .start(f.request("+14155550123", &code), None, Utc::now())
        .await
    {
        Err(StoreError::RateLimited { retry_after_secs }) => {
            assert!((599..=600).contains(&retry_after_secs))
        }
        o => panic!("{o:?}"),
    }
    // Another recipient is not affected.
    f.store
        .start(f.request("+14155550124", &code), None, Utc::now())
        .await
        .unwrap();
}

#[tokio::test]
async fn attempts_exhaust_and_lock() {
    let f = fixture().await;
    let code = OtpCode::parse("123456").unwrap();
    let v = created(
        f.store
            .start(f.request("+14155550123", &code), None, Utc::now())
            .await
            .unwrap(),
    );
    for remaining in (1..=4).rev() {
        assert_eq!(
            decision(&f.check(CheckTarget::Id(v.id.clone()), "000000").await),
            CheckDecision::Reject { remaining }
        );
    }
    assert_eq!(
        decision(&f.check(CheckTarget::Id(v.id.clone()), "000000").await),
        CheckDecision::Exhaust
    );
    assert_eq!(
        decision(&f.check(CheckTarget::Id(v.id.clone()), "123456").await),
        CheckDecision::NotPending(Status::MaxAttemptsReached)
    );
}

#[tokio::test]
async fn expiry_ends_the_verification_and_erases_the_sealed_code() {
    let f = fixture().await;
    let code = OtpCode::parse("123456").unwrap();
    let mut req = f.request("+14155550123", &code);
    req.ttl = Duration::milliseconds(1);
    let v = created(
        f.store
            .start(req, None, Utc::now() - Duration::seconds(1))
            .await
            .unwrap(),
    );
    assert_eq!(f.store.expire_due(Utc::now(), 100).await.unwrap(), 1);
    let got = f.store.get_verification(&v.id).await.unwrap().unwrap();
    assert_eq!(got.status, Status::Expired);
    let job = f
        .store
        .claim("w", Utc::now(), Duration::seconds(30))
        .await
        .unwrap()
        .unwrap();
    assert!(
        job.sealed_code.is_none(),
        "sealed code must be erased when the verification ends"
    );
}

#[tokio::test]
async fn idempotent_start_replays_and_detects_conflicts() {
    let f = fixture().await;
    let code = OtpCode::parse("123456").unwrap();
    let idem = Idempotency {
        key_id: "key_1".into(),
        key: "abc".into(),
        request_hash: vec![1],
    };
    let mut req = f.request("+14155550123", &code);
    req.idempotency = Some(idem.clone());
    let v = created(f.store.start(req.clone(), None, Utc::now()).await.unwrap());
    match f.store.start(req.clone(), None, Utc::now()).await.unwrap() {
        StartOutcome::Replayed(r) => assert_eq!((r.id, r.deliveries.len()), (v.id, 1)),
        o => panic!("{o:?}"),
    }
    req.idempotency = Some(Idempotency {
        request_hash: vec![2],
        ..idem
    });
    assert!(matches!(
        f.store.start(req, None, Utc::now()).await,
        Err(StoreError::IdempotencyConflict)
    ));
}

#[tokio::test]
async fn cancel_ends_only_pending_verifications() {
    let f = fixture().await;
    let code = OtpCode::parse("123456").unwrap();
    let v = created(
        f.store
            .start(f.request("+14155550123", &code), None, Utc::now())
            .await
            .unwrap(),
    );
    assert_eq!(
        f.store
            .cancel(&v.id, Utc::now())
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Canceled
    );
    assert_eq!(
        decision(&f.check(CheckTarget::Id(v.id.clone()), "123456").await),
        CheckDecision::NotPending(Status::Canceled)
    );
    assert!(
        f.store
            .cancel("ver_nope", Utc::now())
            .await
            .unwrap()
            .is_none()
    );
}

/// Invariant 2: a code is spent at most once under concurrent checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_right_checks_have_exactly_one_winner() {
    let f = Arc::new(fixture().await);
    let code = OtpCode::parse("123456").unwrap();
    let mut req = f.request("+14155550123", &code);
    req.max_check_attempts = 20;
    let v = created(f.store.start(req, None, Utc::now()).await.unwrap());
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let f = f.clone();
            let id = v.id.clone();
            tokio::spawn(async move { decision(&f.check(CheckTarget::Id(id), "123456").await) })
        })
        .collect();
    let mut approvals = 0;
    for t in tasks {
        if t.await.unwrap() == CheckDecision::Approve {
            approvals += 1;
        }
    }
    assert_eq!(approvals, 1);
}

#[tokio::test]
async fn outbox_lease_is_exclusive_until_it_runs_out() {
    let f = fixture().await;
    let code = OtpCode::parse("123456").unwrap();
    f.store
        .start(f.request("+14155550123", &code), None, Utc::now())
        .await
        .unwrap();
    let now = Utc::now();
    let job = f
        .store
        .claim("a", now, Duration::seconds(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.current_provider(), Some("sink"));
    let sealed = job.sealed_code.clone().unwrap();
    assert_eq!(
        f.secret
            .sealer()
            .open_str(&job.verification_id, &sealed)
            .unwrap()
            .as_str(),
        "123456"
    );
    assert!(
        f.store
            .claim("b", now, Duration::seconds(30))
            .await
            .unwrap()
            .is_none()
    );
    // Worker "a" died: after the lease, "b" takes the job over.
    let later = now + Duration::seconds(31);
    let taken = f
        .store
        .claim("b", later, Duration::seconds(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.id, job.id);
    f.store
        .finish(
            &taken,
            AttemptResult::Sent {
                status: DeliveryStatus::Sent,
                provider_message_id: Some("p-1".into()),
            },
            later,
        )
        .await
        .unwrap();
    assert!(
        f.store
            .claim("c", later + Duration::seconds(60), Duration::seconds(30))
            .await
            .unwrap()
            .is_none()
    );
    // A receipt by the provider's own id marks it delivered.
    let receipt = Receipt {
        provider: "sink".into(),
        message_id: "p-1".into(),
        delivered: true,
        error: None,
    };
    assert!(f.store.apply_receipt(&receipt, later).await.unwrap());
    let v = f
        .store
        .get_verification(&job.verification_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.deliveries[0].status, DeliveryStatus::Delivered);
    let wrong = Receipt {
        provider: "other".into(),
        ..receipt
    };
    assert!(!f.store.apply_receipt(&wrong, later).await.unwrap());
}

#[tokio::test]
async fn final_failure_without_fallback_fails_the_verification() {
    let f = fixture().await;
    let code = OtpCode::parse("123456").unwrap();
    f.store
        .start(f.request("+14155550123", &code), None, Utc::now())
        .await
        .unwrap();
    let job = f
        .store
        .claim("a", Utc::now(), Duration::seconds(30))
        .await
        .unwrap()
        .unwrap();
    f.store
        .finish(
            &job,
            AttemptResult::Fail {
                error: "rejected".into(),
                next: None,
            },
            Utc::now(),
        )
        .await
        .unwrap();
    let v = f
        .store
        .get_verification(&job.verification_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.status, Status::Failed);
    let events = f
        .store
        .list_events(&EventFilter {
            verification_id: Some(v.id.clone()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "verification.created",
            "verification.delivery_failed",
            "verification.failed"
        ]
    );
}

#[tokio::test]
async fn fallback_channel_is_queued_after_a_final_failure() {
    let f = fixture().await;
    let code = OtpCode::parse("123456").unwrap();
    let mut req = f.request("+14155550123", &code);
    req.fallback = vec![Channel::Voice];
    f.store.start(req, None, Utc::now()).await.unwrap();
    let job = f
        .store
        .claim("a", Utc::now(), Duration::seconds(30))
        .await
        .unwrap()
        .unwrap();
    let next = NextDelivery {
        channel: Channel::Voice,
        fallback: vec![],
        providers: vec!["sink".into()],
    };
    f.store
        .finish(
            &job,
            AttemptResult::Fail {
                error: "x".into(),
                next: Some(next),
            },
            Utc::now(),
        )
        .await
        .unwrap();
    let v = f
        .store
        .get_verification(&job.verification_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.status, Status::Pending);
    assert_eq!(v.channel, Channel::Voice);
    assert_eq!(v.deliveries.len(), 2);
    assert_eq!(v.deliveries[1].channel, Channel::Voice);
}

#[tokio::test]
async fn test_mode_sends_are_recorded_in_the_same_step_and_never_queued() {
    let f = fixture().await;
    let code = OtpCode::parse("123456").unwrap();
    let mut req = f.request("+14155550123", &code);
    req.test = true;
    req.providers = vec!["test".into()];
    let sealer = f.secret.sealer();
    let record = |send: &TestSend<'_>| {
        let code = sealer
            .open_str(send.verification_id, send.sealed_code)
            .ok()?;
        let id = Kind::Message.new_id();
        let body = sealer.seal_str(&id, &format!("code {}", code.as_str()));
        Some((id, body))
    };
    let v = created(f.store.start(req, Some(&record), Utc::now()).await.unwrap());
    assert_eq!(v.deliveries.len(), 1);
    assert_eq!(v.deliveries[0].provider, "test");
    assert_eq!(v.deliveries[0].status, DeliveryStatus::Sent);
    let messages = f.store.recorded_messages(&v.id).await.unwrap();
    assert_eq!(messages.len(), 1);
    let body = sealer
        .open_str(&messages[0].id, &messages[0].sealed_body)
        .unwrap();
    assert_eq!(body.as_str(), "code 123456");
    assert!(
        f.store
            .claim("w", Utc::now(), Duration::seconds(30))
            .await
            .unwrap()
            .is_none()
    );
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
        r.sends_per_window = 2;
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
            },
            "424242",
        )
        .await;
    assert!(matches!(none, CheckOutcome::NotFound));
}

/// `check` builds its reply from the row it read plus the change it made (fewer round
/// trips on the writer); the reply must be exactly what a fresh read returns.
#[tokio::test]
async fn the_verification_a_check_returns_is_the_stored_one() {
    let f = fixture().await;
    let code = OtpCode::parse("135790").unwrap();
    let id = match f
        .store
        .start(f.request("+14155550173", &code), None, Utc::now())
        .await
        .unwrap()
    {
        StartOutcome::Created(v) => v.id,
        other => panic!("{other:?}"),
    };
    for (code, target) in [
        ("000000", CheckTarget::Id(id.clone())),
        (
            "135790",
            CheckTarget::To {
                service_id: f.service.id.clone(),
                to: "+14155550173".into(),
            },
        ),
        ("135790", CheckTarget::Id(id.clone())),
    ] {
        let CheckOutcome::Decided { verification, .. } = f.check(target, code).await else {
            panic!("found nothing");
        };
        let stored = f.store.get_verification(&id).await.unwrap().unwrap();
        assert_eq!(verification.status, stored.status);
        assert_eq!(verification.check_attempts, stored.check_attempts);
        assert_eq!(verification.updated_at, stored.updated_at);
        assert_eq!(verification.expires_at, stored.expires_at);
        assert_eq!(verification.deliveries.len(), stored.deliveries.len());
        assert_eq!(verification.deliveries.len(), 1);
    }
}
