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

pub(super) struct Fixture {
    pub(super) store: SqliteStore,
    pub(super) secret: ServerSecret,
    pub(super) service: Service,
    _dir: tempfile::TempDir,
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
        _dir: dir,
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
            sends_per_window: 5,
            send_window: Duration::seconds(600),
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
        self.store.check(target, &matcher, now).await
    }
}

/// Claims the next job and records it as handed to its provider (`sent`), waiting 300 s
/// for a receipt.
pub(super) async fn hand_over(f: &Fixture, now: chrono::DateTime<Utc>) -> DeliveryJob {
    let job = f
        .store
        .claim("w", now, Duration::seconds(30))
        .await
        .unwrap()
        .unwrap();
    f.store
        .finish(
            &job,
            AttemptResult::Sent {
                status: DeliveryStatus::Sent,
                provider_message_id: None,
                receipt_deadline: Some(now + Duration::seconds(300)),
            },
            now,
        )
        .await
        .unwrap();
    job
}

pub(super) fn created(o: StartOutcome) -> otpd_core::verification::Verification {
    match o {
        StartOutcome::Created(v) => v,
        other => panic!("expected Created, got {other:?}"),
    }
}

pub(super) fn decision(o: &CheckOutcome) -> CheckDecision {
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
                receipt_deadline: None,
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
async fn out_of_band_approval_spends_the_code_once() {
    let f = fixture().await;
    let code = OtpCode::parse("123456").unwrap();
    let v = created(
        f.store
            .start(f.request("+14155550123", &code), None, Utc::now())
            .await
            .unwrap(),
    );
    let approved = f.store.approve(&v.id, Utc::now()).await.unwrap().unwrap();
    assert_eq!(approved.status, Status::Approved);
    // The code no longer approves anything, and a second approval changes nothing.
    let o = f.check(CheckTarget::Id(v.id.clone()), "123456").await;
    assert_eq!(decision(&o), CheckDecision::NotPending(Status::Approved));
    let again = f.store.approve(&v.id, Utc::now()).await.unwrap().unwrap();
    assert_eq!(again.updated_at, approved.updated_at);
    let events = f
        .store
        .list_events(&EventFilter {
            verification_id: Some(v.id.clone()),
            kind: Some("verification.approved".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data["out_of_band"], true);
    assert!(
        f.store
            .approve("ver_missing", Utc::now())
            .await
            .unwrap()
            .is_none()
    );

    // A canceled verification cannot be approved.
    let v2 = created(
        f.store
            .start(f.request("+14155550124", &code), None, Utc::now())
            .await
            .unwrap(),
    );
    f.store.cancel(&v2.id, Utc::now()).await.unwrap();
    let after = f.store.approve(&v2.id, Utc::now()).await.unwrap().unwrap();
    assert_eq!(after.status, Status::Canceled);
}

#[tokio::test]
async fn deliveries_are_listed_with_filters_and_pages_and_fetched_by_id() {
    let f = fixture().await;
    let code = OtpCode::parse("123456").unwrap();
    let t0 = Utc::now();
    let a = created(
        f.store
            .start(f.request("+14155550123", &code), None, t0)
            .await
            .unwrap(),
    );
    // A resend adds a second delivery to the same verification.
    f.store
        .start(
            f.request("+14155550123", &code),
            None,
            t0 + Duration::seconds(1),
        )
        .await
        .unwrap();
    let mut voice = f.request("+14155550124", &code);
    voice.channel = Channel::Voice;
    let b = created(
        f.store
            .start(voice, None, t0 + Duration::seconds(2))
            .await
            .unwrap(),
    );
    f.store
        .approve(&b.id, t0 + Duration::seconds(3))
        .await
        .unwrap();

    let all = |extra: DeliveryFilter| DeliveryFilter { limit: 50, ..extra };
    let listed = f
        .store
        .list_deliveries(&all(Default::default()))
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0].verification_id, b.id, "newest first");
    let by_verification = f
        .store
        .list_deliveries(&all(DeliveryFilter {
            verification_id: Some(a.id.clone()),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(by_verification.len(), 2);
    let converted = f
        .store
        .list_deliveries(&all(DeliveryFilter {
            converted: Some(true),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(converted.len(), 1);
    assert_eq!(converted[0].delivery.channel, Channel::Voice);
    assert_eq!(converted[0].verification_status, Status::Approved);
    let voice_only = f
        .store
        .list_deliveries(&all(DeliveryFilter {
            channel: Some(Channel::Voice),
            to: Some("+14155550124".into()),
            service_id: Some(f.service.id.clone()),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(voice_only.len(), 1);
    let early = f
        .store
        .list_deliveries(&all(DeliveryFilter {
            created_before: Some(t0 + Duration::milliseconds(500)),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(early.len(), 1);
    let page2 = f
        .store
        .list_deliveries(&DeliveryFilter {
            offset: 2,
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page2.len(), 1);

    let one = f
        .store
        .get_delivery(&listed[0].delivery.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one, listed[0]);
    assert!(f.store.get_delivery("dlv_missing").await.unwrap().is_none());
    let latest = f
        .store
        .latest_verification(&f.service.id, "+14155550123")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.id, a.id);
    assert_eq!(latest.deliveries.len(), 2);
}

#[tokio::test]
async fn message_options_travel_with_the_delivery_job() {
    let f = fixture().await;
    let code = OtpCode::parse("123456").unwrap();
    let mut req = f.request("+14155550123", &code);
    req.message_options = otpd_core::verification::MessageOptions {
        friendly_name: Some("Shop".into()),
        app_hash: None,
    };
    f.store.start(req, None, Utc::now()).await.unwrap();
    let job = f
        .store
        .claim("w", Utc::now(), Duration::seconds(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.message_options.friendly_name.as_deref(), Some("Shop"));
}

#[tokio::test]
async fn an_overdue_receipt_hands_the_same_code_to_the_next_provider_once() {
    let f = fixture().await;
    let code = OtpCode::parse("123456").unwrap();
    let mut req = f.request("+14155550123", &code);
    req.providers = vec!["a".into(), "b".into()];
    f.store.start(req, None, Utc::now()).await.unwrap();
    let now = Utc::now();
    let job = f
        .store
        .claim("w", now, Duration::seconds(30))
        .await
        .unwrap()
        .unwrap();
    let deadline = now + Duration::seconds(5);
    f.store
        .finish(
            &job,
            AttemptResult::Sent {
                status: DeliveryStatus::Sent,
                provider_message_id: None,
                receipt_deadline: Some(deadline),
            },
            now,
        )
        .await
        .unwrap();
    // Not overdue before the deadline.
    assert!(
        f.store
            .overdue_receipts(deadline - Duration::milliseconds(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let overdue = f.store.overdue_receipts(deadline, 10).await.unwrap();
    assert_eq!(overdue.len(), 1);
    assert_eq!(overdue[0].id, job.id);
    assert_eq!(overdue[0].current_provider(), Some("a"));
    let next = NextDelivery {
        channel: Channel::Sms,
        fallback: vec![],
        providers: vec!["b".into()],
    };
    assert!(
        f.store
            .receipt_timeout(&overdue[0], Some(next.clone()), "no receipt", deadline)
            .await
            .unwrap()
    );
    // A second sweeper (another node) finds nothing to do.
    assert!(
        !f.store
            .receipt_timeout(&overdue[0], Some(next), "no receipt", deadline)
            .await
            .unwrap()
    );
    assert!(
        f.store
            .overdue_receipts(deadline + Duration::seconds(60), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let v = f
        .store
        .get_verification(&job.verification_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.deliveries.len(), 2, "{:?}", v.deliveries);
    assert_eq!(v.deliveries[0].status, DeliveryStatus::Sent);
    assert_eq!(v.deliveries[1].status, DeliveryStatus::Queued);
    let next_job = f
        .store
        .claim("w", deadline, Duration::seconds(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next_job.current_provider(), Some("b"));
    assert_eq!(next_job.sealed_code, job.sealed_code, "the same code");
}

#[tokio::test]
async fn a_failed_receipt_ends_the_wait_at_once() {
    let f = fixture().await;
    let code = OtpCode::parse("123456").unwrap();
    f.store
        .start(f.request("+14155550123", &code), None, Utc::now())
        .await
        .unwrap();
    let now = Utc::now();
    let job = hand_over(&f, now).await;
    let receipt = Receipt {
        provider: "sink".into(),
        message_id: job.id.clone(),
        delivered: false,
        error: Some("unreachable".into()),
    };
    assert!(f.store.apply_receipt(&receipt, now).await.unwrap());
    let overdue = f.store.overdue_receipts(now, 10).await.unwrap();
    assert_eq!(overdue.len(), 1);
    // Handled once (nothing left to try here): the wait is over.
    assert!(
        f.store
            .receipt_timeout(&overdue[0], None, "x", now)
            .await
            .unwrap()
    );
    assert!(f.store.overdue_receipts(now, 10).await.unwrap().is_empty());
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

#[tokio::test]
async fn a_proof_of_work_challenge_is_spent_once_among_concurrent_sends() {
    use otpd_core::guards::proof_of_work::{Challenge, ProofOfWorkGuard};
    let f = Arc::new(fixture().await);
    let now = Utc::now();
    let c = Challenge::issue(&f.service.id, &ProofOfWorkGuard::default(), now.timestamp());
    f.store.create_challenge(&c).await.unwrap();
    assert_eq!(f.store.get_challenge(&c.id).await.unwrap(), Some(c.clone()));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let f = f.clone();
            let id = c.id.clone();
            tokio::spawn(async move { f.store.spend_challenge(&id, None, now).await.unwrap() })
        })
        .collect();
    let mut spent = 0;
    for t in tasks {
        if t.await.unwrap() == Spend::Spent {
            spent += 1;
        }
    }
    assert_eq!(spent, 1, "exactly one send spends a challenge");

    // A retry of the spending request (same idempotency digest) is told so; others not.
    let c2 = Challenge::issue(&f.service.id, &ProofOfWorkGuard::default(), now.timestamp());
    f.store.create_challenge(&c2).await.unwrap();
    let s = |by| f.store.spend_challenge(&c2.id, by, now);
    assert_eq!(s(Some("a")).await.unwrap(), Spend::Spent);
    assert_eq!(s(Some("a")).await.unwrap(), Spend::Retried);
    assert_eq!(s(Some("b")).await.unwrap(), Spend::AlreadySpent);
    assert_eq!(s(None).await.unwrap(), Spend::AlreadySpent);
    assert_eq!(
        f.store
            .spend_challenge("pow_unknown", None, now)
            .await
            .unwrap(),
        Spend::AlreadySpent
    );
}

#[tokio::test]
async fn a_held_ussd_delivery_is_found_by_number_and_provider_until_it_is_delivered() {
    let f = fixture().await;
    let code = OtpCode::parse("123456").unwrap();
    let mut req = f.request("+254711000111", &code);
    req.channel = Channel::Ussd;
    req.providers = vec!["at".into()];
    let now = Utc::now();
    created(f.store.start(req, None, now).await.unwrap());
    // Not handed over yet: nothing is held.
    assert!(
        f.store
            .held_ussd("at", "+254711000111", now)
            .await
            .unwrap()
            .is_none()
    );
    let job = hand_over(&f, now).await;
    let held = f
        .store
        .held_ussd("at", "+254711000111", now)
        .await
        .unwrap()
        .expect("held");
    assert_eq!(held.id, job.id);
    assert!(held.sealed_code.is_some());
    assert!(
        f.store
            .held_ussd("other", "+254711000111", now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        f.store
            .held_ussd("at", "+254711000112", now)
            .await
            .unwrap()
            .is_none()
    );
    let after_expiry = now + Duration::seconds(601);
    assert!(
        f.store
            .held_ussd("at", "+254711000111", after_expiry)
            .await
            .unwrap()
            .is_none()
    );
    let receipt = Receipt {
        provider: "at".into(),
        message_id: job.id.clone(),
        delivered: true,
        error: None,
    };
    assert!(f.store.apply_receipt(&receipt, now).await.unwrap());
    assert!(
        f.store
            .held_ussd("at", "+254711000111", now)
            .await
            .unwrap()
            .is_none(),
        "answered once"
    );
}

/// The durable side of the Redis hot store (`JournalSink`), by the shared rules.
#[tokio::test]
async fn the_journal_sink_keeps_the_shared_rules() {
    let f = fixture().await;
    crate::journal_conformance::journal_sink(&f.store, &f.service.id).await;
}
