//! Verifications: create, resend, check right and wrong, expiry, attempts, cancel,
//! out-of-band approval, idempotency, and the single spend of a code under concurrency
//! (invariant 2).

use std::sync::Arc;

use chrono::{Duration, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::channel::Channel;
use otpd_core::code::OtpCode;
use otpd_core::ids::Kind;
use otpd_core::store::*;
use otpd_core::verification::{CheckDecision, DeliveryStatus, Status};

use crate::support::{Fixture, created, decision};

pub async fn create_check_wrong_then_right_spends_the_code(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    let v = created(
        f.store
            .start(
                f.request("+14155550123", &code),
                None,
                Utc::now(),
                &WriteContext::system(),
            )
            .await
            .unwrap(),
    );
    assert_eq!(v.status, Status::Pending);
    assert_eq!(v.deliveries.len(), 1);
    assert_eq!(v.deliveries[0].status, DeliveryStatus::Queued);

    let o = f.check(CheckTarget::Id(v.id.clone()), "654321").await;
    assert_eq!(decision(&o), CheckDecision::Reject { remaining: 4 });
    let o = f.check(f.to("+14155550123"), "123456").await;
    assert_eq!(decision(&o), CheckDecision::Approve);
    let o = f.check(CheckTarget::Id(v.id.clone()), "123456").await;
    assert_eq!(decision(&o), CheckDecision::NotPending(Status::Approved));
}

pub async fn resend_keeps_id_code_and_expiry_and_adds_a_delivery(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    let v1 = created(
        f.store
            .start(
                f.request("+14155550123", &code),
                None,
                Utc::now(),
                &WriteContext::system(),
            )
            .await
            .unwrap(),
    );
    let other = OtpCode::parse("999999").unwrap();
    let v2 = match f
        .store
        .start(
            f.request("+14155550123", &other),
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
    assert_eq!(
        decision(&f.check(CheckTarget::Id(v1.id.clone()), "123456").await),
        CheckDecision::Approve
    );
}

pub async fn attempts_exhaust_and_lock(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    let v = created(
        f.store
            .start(
                f.request("+14155550123", &code),
                None,
                Utc::now(),
                &WriteContext::system(),
            )
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

pub async fn expiry_ends_the_verification_and_erases_the_sealed_code(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    let mut req = f.request("+14155550123", &code);
    req.ttl = Duration::milliseconds(1);
    let v = created(
        f.store
            .start(
                req,
                None,
                Utc::now() - Duration::seconds(1),
                &WriteContext::system(),
            )
            .await
            .unwrap(),
    );
    assert_eq!(
        f.store
            .expire_due(Utc::now(), 100, &WriteContext::system())
            .await
            .unwrap(),
        1
    );
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

pub async fn idempotent_start_replays_and_detects_conflicts(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    let idem = Idempotency {
        key_id: "key_1".into(),
        key: "abc".into(),
        request_hash: vec![1],
    };
    let mut req = f.request("+14155550123", &code);
    req.idempotency = Some(idem.clone());
    let v = created(
        f.store
            .start(req.clone(), None, Utc::now(), &WriteContext::system())
            .await
            .unwrap(),
    );
    match f
        .store
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
        f.store
            .start(req, None, Utc::now(), &WriteContext::system())
            .await,
        Err(StoreError::IdempotencyConflict)
    ));
}

pub async fn cancel_ends_only_pending_verifications(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    let v = created(
        f.store
            .start(
                f.request("+14155550123", &code),
                None,
                Utc::now(),
                &WriteContext::system(),
            )
            .await
            .unwrap(),
    );
    assert_eq!(
        f.store
            .cancel(&v.id, Utc::now(), &WriteContext::system())
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
            .cancel("ver_nope", Utc::now(), &WriteContext::system())
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn out_of_band_approval_spends_the_code_once(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    let v = created(
        f.store
            .start(
                f.request("+14155550123", &code),
                None,
                Utc::now(),
                &WriteContext::system(),
            )
            .await
            .unwrap(),
    );
    let approved = f
        .store
        .approve(&v.id, Utc::now(), &WriteContext::system())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(approved.status, Status::Approved);
    // The code no longer approves anything, and a second approval changes nothing.
    let o = f.check(CheckTarget::Id(v.id.clone()), "123456").await;
    assert_eq!(decision(&o), CheckDecision::NotPending(Status::Approved));
    let again = f
        .store
        .approve(&v.id, Utc::now(), &WriteContext::system())
        .await
        .unwrap()
        .unwrap();
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
            .approve("ver_missing", Utc::now(), &WriteContext::system())
            .await
            .unwrap()
            .is_none()
    );

    // A canceled verification cannot be approved.
    let v2 = created(
        f.store
            .start(
                f.request("+14155550124", &code),
                None,
                Utc::now(),
                &WriteContext::system(),
            )
            .await
            .unwrap(),
    );
    f.store
        .cancel(&v2.id, Utc::now(), &WriteContext::system())
        .await
        .unwrap();
    let after = f
        .store
        .approve(&v2.id, Utc::now(), &WriteContext::system())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.status, Status::Canceled);
}

/// Invariant 2: a code is spent at most once under concurrent checks.
pub async fn concurrent_right_checks_have_exactly_one_winner(f: Fixture) {
    let f = Arc::new(f);
    let code = OtpCode::parse("123456").unwrap();
    let mut req = f.request("+14155550123", &code);
    req.max_check_attempts = 20;
    let v = created(
        f.store
            .start(req, None, Utc::now(), &WriteContext::system())
            .await
            .unwrap(),
    );
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

pub async fn test_mode_sends_are_recorded_in_the_same_step_and_never_queued(f: Fixture) {
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
    let v = created(
        f.store
            .start(req, Some(&record), Utc::now(), &WriteContext::system())
            .await
            .unwrap(),
    );
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

pub async fn deliveries_are_listed_with_filters_and_pages_and_fetched_by_id(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    let t0 = Utc::now();
    let a = created(
        f.store
            .start(
                f.request("+14155550123", &code),
                None,
                t0,
                &WriteContext::system(),
            )
            .await
            .unwrap(),
    );
    // A resend adds a second delivery to the same verification.
    f.store
        .start(
            f.request("+14155550123", &code),
            None,
            t0 + Duration::seconds(1),
            &WriteContext::system(),
        )
        .await
        .unwrap();
    let mut voice = f.request("+14155550124", &code);
    voice.channel = Channel::Voice;
    let b = created(
        f.store
            .start(
                voice,
                None,
                t0 + Duration::seconds(2),
                &WriteContext::system(),
            )
            .await
            .unwrap(),
    );
    f.store
        .approve(&b.id, t0 + Duration::seconds(3), &WriteContext::system())
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
        .latest_verification(&f.service.id, "+14155550123", false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.id, a.id);
    assert_eq!(latest.deliveries.len(), 2);
}

/// `check` builds its reply from the row it read plus the change it made (fewer round
/// trips on the writer); the reply must be exactly what a fresh read returns.
pub async fn the_verification_a_check_returns_is_the_stored_one(f: Fixture) {
    let code = OtpCode::parse("135790").unwrap();
    let id = match f
        .store
        .start(
            f.request("+14155550173", &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap()
    {
        StartOutcome::Created(v) => v.id,
        other => panic!("{other:?}"),
    };
    for (code, target) in [
        ("000000", CheckTarget::Id(id.clone())),
        ("135790", f.to("+14155550173")),
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

pub async fn a_check_of_an_unknown_verification_finds_nothing(f: Fixture) {
    let by_id = f
        .check(CheckTarget::Id("ver_missing".into()), "123456")
        .await;
    assert!(matches!(by_id, CheckOutcome::NotFound), "{by_id:?}");
    let by_to = f.check(f.to("+14155550199"), "123456").await;
    assert!(matches!(by_to, CheckOutcome::NotFound), "{by_to:?}");
    assert!(
        f.store
            .get_verification("ver_missing")
            .await
            .unwrap()
            .is_none()
    );
}

/// Past its expiry a verification is expired even before `expire_due` runs: a right code
/// is refused and nothing is counted.
pub async fn a_check_after_expiry_changes_nothing(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    let t0 = Utc::now();
    let v = created(
        f.store
            .start(
                f.request("+14155550123", &code),
                None,
                t0,
                &WriteContext::system(),
            )
            .await
            .unwrap(),
    );
    let after = t0 + Duration::seconds(601);
    let o = f
        .check_at(CheckTarget::Id(v.id.clone()), "123456", after)
        .await
        .unwrap();
    assert_eq!(decision(&o), CheckDecision::NotPending(Status::Expired));
    let stored = f.store.get_verification(&v.id).await.unwrap().unwrap();
    assert_eq!(stored.check_attempts, 0);
    assert_ne!(stored.status, Status::Approved);
    // Just before the expiry the same code is still good.
    let v2 = created(
        f.store
            .start(
                f.request("+14155550124", &code),
                None,
                t0,
                &WriteContext::system(),
            )
            .await
            .unwrap(),
    );
    let o = f
        .check_at(
            CheckTarget::Id(v2.id.clone()),
            "123456",
            t0 + Duration::seconds(599),
        )
        .await
        .unwrap();
    assert_eq!(decision(&o), CheckDecision::Approve);
}

/// The same idempotent send retried concurrently creates one verification with one
/// delivery; every other attempt replays it.
pub async fn concurrent_idempotent_starts_create_once(f: Fixture) {
    let f = Arc::new(f);
    let code = OtpCode::parse("123456").unwrap();
    let mut req = f.request("+14155550123", &code);
    req.idempotency = Some(Idempotency {
        key_id: "key_1".into(),
        key: "retry-me".into(),
        request_hash: vec![7],
    });
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (f, req) = (f.clone(), req.clone());
            tokio::spawn(async move {
                f.store
                    .start(req, None, Utc::now(), &WriteContext::system())
                    .await
            })
        })
        .collect();
    let (mut made, mut replayed, mut ids) = (0, 0, std::collections::BTreeSet::new());
    for t in tasks {
        match t.await.unwrap() {
            Ok(StartOutcome::Created(v)) => {
                made += 1;
                ids.insert(v.id);
            }
            Ok(StartOutcome::Replayed(v)) => {
                replayed += 1;
                ids.insert(v.id);
            }
            other => panic!("expected Created or Replayed, got {other:?}"),
        }
    }
    assert_eq!((made, replayed, ids.len()), (1, 19, 1));
    let id = ids.into_iter().next().unwrap();
    let v = f.store.get_verification(&id).await.unwrap().unwrap();
    assert_eq!(v.deliveries.len(), 1, "one send, one delivery");
}

/// Invariant 8: a test key's send to a recipient never finds, resends or reveals the live
/// key's pending verification of that recipient, nor the reverse — no shared id, code,
/// resend, message, check or send count between the worlds (security review, finding 1).
pub async fn test_and_live_sends_to_one_recipient_never_share_a_verification(f: Fixture) {
    let to = "+14155550123";
    let now = Utc::now();
    let live_code = OtpCode::parse("111111").unwrap();
    let test_code = OtpCode::parse("222222").unwrap();
    let live = created(
        f.store
            .start(
                f.request(to, &live_code),
                None,
                now,
                &WriteContext::system(),
            )
            .await
            .unwrap(),
    );
    // The test send makes a verification of its own (not a resend of the live one)...
    let sealer = f.secret.sealer();
    let record = |send: &TestSend<'_>| {
        let code = sealer
            .open_str(send.verification_id, send.sealed_code)
            .ok()?;
        let id = Kind::Message.new_id();
        Some((id.clone(), sealer.seal_str(&id, code.as_str())))
    };
    let test = created(
        f.store
            .start(
                f.test_request(to, &test_code),
                Some(&record),
                now,
                &WriteContext::system(),
            )
            .await
            .unwrap(),
    );
    assert_ne!(test.id, live.id);
    assert!(test.test && !live.test);
    // ...whose recorded message holds its own code, never the live one.
    let messages = f.store.recorded_messages(&test.id).await.unwrap();
    assert_eq!(messages.len(), 1);
    let body = sealer
        .open_str(&messages[0].id, &messages[0].sealed_body)
        .unwrap();
    assert_eq!(body.as_str(), "222222");
    assert!(
        f.store
            .recorded_messages(&live.id)
            .await
            .unwrap()
            .is_empty()
    );
    // A second send in each world resends that world's own verification.
    let again = f
        .store
        .start(
            f.test_request(to, &test_code),
            Some(&record),
            now,
            &WriteContext::system(),
        )
        .await
        .unwrap();
    assert!(
        matches!(&again, StartOutcome::Resent(v) if v.id == test.id),
        "{again:?}"
    );
    let again = f
        .store
        .start(
            f.request(to, &live_code),
            None,
            now,
            &WriteContext::system(),
        )
        .await
        .unwrap();
    assert!(
        matches!(&again, StartOutcome::Resent(v) if v.id == live.id),
        "{again:?}"
    );
    // The latest verification of the recipient, per world.
    let latest = |test: bool| f.store.latest_verification(&f.service.id, to, test);
    assert_eq!(latest(false).await.unwrap().unwrap().id, live.id);
    assert_eq!(latest(true).await.unwrap().unwrap().id, test.id);
    // A check by recipient finds only its own world's verification: the test code does
    // not approve the live verification, and the live code not the test one.
    let o = f.check(f.to(to), "222222").await;
    assert_eq!(decision(&o), CheckDecision::Reject { remaining: 4 });
    let o = f.check(f.test_to(to), "111111").await;
    assert_eq!(decision(&o), CheckDecision::Reject { remaining: 4 });
    let o = f.check(f.test_to(to), "222222").await;
    assert_eq!(decision(&o), CheckDecision::Approve);
    let live_now = f.store.get_verification(&live.id).await.unwrap().unwrap();
    assert_eq!(live_now.status, Status::Pending);
    let o = f.check(f.to(to), "111111").await;
    assert_eq!(decision(&o), CheckDecision::Approve);
}
