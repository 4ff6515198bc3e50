//! Limits that must hold across nodes sharing the store (invariant 4): the send limit per
//! recipient and window, the lockout after wrong codes, the guards' token buckets (all or
//! none, exact under concurrency), budgets, the guards' decision log, and single-spend
//! proof-of-work challenges.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::code::OtpCode;
use otpd_core::guards::budget::{BudgetGuard, Money};
use otpd_core::guards::rate::{Bucket, Limit, Limits, RateLimitGuard, Subject};
use otpd_core::guards::{Action, DecisionRecord, GuardName, Mode, Refusal};
use otpd_core::lockout::LockoutPolicy;
use otpd_core::store::*;
use otpd_core::verification::CheckDecision;

use crate::support::{Fixture, created, decision, locked, unique};

pub async fn send_limit_counts_sends_per_recipient(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    for _ in 0..5 {
        f.store
            .start(
                f.request("+14155550123", &code),
                None,
                Utc::now(),
                &WriteContext::system(),
            )
            .await
            .unwrap();
    }
    match f
        .store
        .start(
            f.request("+14155550123", &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
    {
        Err(StoreError::RateLimited { retry_after_secs }) => {
            assert!((599..=600).contains(&retry_after_secs))
        }
        o => panic!("{o:?}"),
    }
    // Another recipient is not affected.
    f.store
        .start(
            f.request("+14155550124", &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap();
}

pub async fn a_proof_of_work_challenge_is_spent_once_among_concurrent_sends(f: Fixture) {
    use otpd_core::guards::proof_of_work::{Challenge, ProofOfWorkGuard};
    let f = Arc::new(f);
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

pub async fn a_locked_recipient_gets_no_new_code_and_a_right_code_clears_failures(f: Fixture) {
    f.set_lockout(LockoutPolicy {
        max_failures: 2,
        window_seconds: 60,
        duration_seconds: 120,
    })
    .await;
    let code = OtpCode::parse("123456").unwrap();
    let to = "+14155550123";
    let now = Utc::now();
    let v = created(
        f.store
            .start(f.request(to, &code), None, now, &WriteContext::system())
            .await
            .unwrap(),
    );

    // One failure, then the right code: the failure is forgotten.
    f.check_at(CheckTarget::Id(v.id.clone()), "000000", now)
        .await
        .unwrap();
    let o = f
        .check_at(CheckTarget::Id(v.id.clone()), "123456", now)
        .await
        .unwrap();
    assert_eq!(decision(&o), CheckDecision::Approve);

    let v2 = created(
        f.store
            .start(f.request(to, &code), None, now, &WriteContext::system())
            .await
            .unwrap(),
    );
    f.check_at(CheckTarget::Id(v2.id.clone()), "000000", now)
        .await
        .unwrap();
    // Failures outside the window do not count: this one is 61 s later.
    let t1 = now + Duration::seconds(61);
    f.check_at(CheckTarget::Id(v2.id.clone()), "000000", t1)
        .await
        .unwrap();
    let t2 = t1 + Duration::seconds(1);
    f.check_at(CheckTarget::Id(v2.id.clone()), "000000", t2)
        .await
        .unwrap();
    // Two within the window: locked for 120 s, sends included.
    assert_eq!(
        locked(
            f.store
                .start(f.request(to, &code), None, t2, &WriteContext::system())
                .await
        ),
        120
    );
    assert_eq!(
        locked(
            f.check_at(CheckTarget::Id(v2.id.clone()), "123456", t2)
                .await
        ),
        120
    );
    // Another recipient is not affected.
    f.store
        .start(
            f.request("+14155550124", &code),
            None,
            t2,
            &WriteContext::system(),
        )
        .await
        .unwrap();
    // After the lock the right code still works (the verification had attempts left).
    let after = t2 + Duration::seconds(120);
    let o = f
        .check_at(CheckTarget::Id(v2.id.clone()), "123456", after)
        .await
        .unwrap();
    assert_eq!(decision(&o), CheckDecision::Approve);
}

/// A user (entity) locked out by wrong codes gets no new code while the lock lasts, on any
/// number, and no resend of a verification started for it (security review, finding 12:
/// the send was accepted and paid for, then every check refused).
pub async fn a_locked_user_gets_no_new_code_on_any_number(f: Fixture) {
    f.set_lockout(LockoutPolicy {
        max_failures: 2,
        window_seconds: 60,
        duration_seconds: 120,
    })
    .await;
    let code = OtpCode::parse("123456").unwrap();
    let now = Utc::now();
    let for_user = |to: &str, entity: Option<&str>| {
        let mut req = f.request(to, &code);
        req.entity = entity.map(Into::into);
        req
    };
    let v = created(
        f.store
            .start(
                for_user("+14155550123", Some("user-7")),
                None,
                now,
                &WriteContext::system(),
            )
            .await
            .unwrap(),
    );
    // A second verification for the same user, on another number, started before the lock.
    created(
        f.store
            .start(
                for_user("+14155550127", Some("user-7")),
                None,
                now,
                &WriteContext::system(),
            )
            .await
            .unwrap(),
    );
    for _ in 0..2 {
        f.check_at(CheckTarget::Id(v.id.clone()), "000000", now)
            .await
            .unwrap();
    }
    // The user is locked (and so is that number): a send for the user to another number
    // is refused, and so is a resend of its verification that does not name the user.
    assert_eq!(
        locked(
            f.store
                .start(
                    for_user("+14155550124", Some("user-7")),
                    None,
                    now,
                    &WriteContext::system()
                )
                .await
        ),
        120
    );
    assert_eq!(
        locked(
            f.store
                .start(
                    for_user("+14155550127", None),
                    None,
                    now,
                    &WriteContext::system()
                )
                .await
        ),
        120
    );
    // A send to a third number that names no user is no send for the locked user.
    let other = created(
        f.store
            .start(
                for_user("+14155550125", None),
                None,
                now,
                &WriteContext::system(),
            )
            .await
            .unwrap(),
    );
    assert!(other.entity.is_none());
    // Another user on another number is not affected; after the lock the user is served.
    f.store
        .start(
            for_user("+14155550126", Some("user-8")),
            None,
            now,
            &WriteContext::system(),
        )
        .await
        .unwrap();
    let after = now + Duration::seconds(120);
    f.store
        .start(
            for_user("+14155550124", Some("user-7")),
            None,
            after,
            &WriteContext::system(),
        )
        .await
        .unwrap();
}

pub async fn tokens_are_taken_all_or_none_and_come_back_on_time(f: Fixture) {
    let s = &f.store;
    let guard = RateLimitGuard {
        send: Limits {
            per_ip: Some(Limit::new(2, 60)),
            ..Default::default()
        },
        ..Default::default()
    };
    let subject = Subject {
        service_id: "svc_1",
        client_ip: Some("192.0.2.7"),
        ..Default::default()
    };
    let b = guard.buckets(Action::Send, &subject);
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    assert_eq!(s.take_tokens(&b, t0).await.unwrap(), Ok(()));
    assert_eq!(s.take_tokens(&b, t0).await.unwrap(), Ok(()));
    let refused = s.take_tokens(&b, t0).await.unwrap().unwrap_err();
    assert_eq!(refused.retry_after_secs, Some(30));
    let later = t0 + Duration::seconds(30);
    assert_eq!(s.take_tokens(&b, later).await.unwrap(), Ok(()));
    assert!(s.take_tokens(&b, later).await.unwrap().is_err());
}

/// Sends racing to one recipient: exactly the limit gets through (one verification,
/// created then resent), every other one is refused.
pub async fn concurrent_sends_stop_exactly_at_the_send_limit(f: Fixture) {
    let f = Arc::new(f);
    let code = OtpCode::parse("123456").unwrap();
    let now = Utc::now();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let f = f.clone();
            let req = f.request("+14155550123", &code);
            tokio::spawn(
                async move { f.store.start(req, None, now, &WriteContext::system()).await },
            )
        })
        .collect();
    let (mut accepted, mut refused, mut ids) = (0, 0, std::collections::BTreeSet::new());
    for t in tasks {
        match t.await.unwrap() {
            Ok(StartOutcome::Created(v) | StartOutcome::Resent(v)) => {
                accepted += 1;
                ids.insert(v.id);
            }
            Err(StoreError::RateLimited { retry_after_secs }) => {
                assert!(retry_after_secs > 0);
                refused += 1;
            }
            other => panic!("expected a send or RateLimited, got {other:?}"),
        }
    }
    assert_eq!((accepted, refused), (5, 15));
    assert_eq!(ids.len(), 1, "one pending verification per recipient");
    let id = ids.into_iter().next().unwrap();
    let v = f.store.get_verification(&id).await.unwrap().unwrap();
    assert_eq!(v.deliveries.len(), 5, "a delivery per accepted send");
}

/// Wrong codes racing on one recipient: the lock starts once, at the limit, and every
/// wrong code either counted or was refused as locked (none lost, none past the lock).
pub async fn concurrent_wrong_codes_lock_exactly_once(f: Fixture) {
    let f = Arc::new(f);
    f.set_lockout(LockoutPolicy {
        max_failures: 5,
        window_seconds: 600,
        duration_seconds: 600,
    })
    .await;
    let code = OtpCode::parse("123456").unwrap();
    let now = Utc::now();
    let mut req = f.request("+14155550123", &code);
    req.max_check_attempts = 100;
    let v = created(
        f.store
            .start(req, None, now, &WriteContext::system())
            .await
            .unwrap(),
    );
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (f, id) = (f.clone(), v.id.clone());
            tokio::spawn(async move { f.check_at(CheckTarget::Id(id), "000000", now).await })
        })
        .collect();
    let (mut counted, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(o) => {
                assert!(
                    matches!(decision(&o), CheckDecision::Reject { .. }),
                    "{o:?}"
                );
                counted += 1;
            }
            Err(StoreError::Locked { .. }) => refused += 1,
            Err(e) => panic!("expected a rejection or Locked, got {e:?}"),
        }
    }
    assert_eq!(
        (counted, refused),
        (5, 15),
        "the lock starts at the 5th wrong code"
    );
    let stored = f.store.get_verification(&v.id).await.unwrap().unwrap();
    assert_eq!(stored.check_attempts, 5);
    // Locked: the right code is refused too, and the verification stays pending.
    locked(
        f.check_at(CheckTarget::Id(v.id.clone()), "123456", now)
            .await,
    );
    let blocked = f
        .store
        .list_events(&EventFilter {
            kind: Some("verification.blocked".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(blocked.len(), 1, "one lock, one event: {blocked:?}");
}

/// A take refused by one bucket charges none of the others.
pub async fn a_refused_take_charges_no_bucket(f: Fixture) {
    let tag = unique();
    let one = Bucket {
        key: format!("send:to:svc_{tag}:+14155550123"),
        limit: Limit::new(1, 60),
    };
    let three = Bucket {
        key: format!("send:ip:svc_{tag}:192.0.2.9"),
        limit: Limit::new(3, 60),
    };
    let both = [one.clone(), three.clone()];
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    assert_eq!(f.store.take_tokens(&both, t0).await.unwrap(), Ok(()));
    for _ in 0..5 {
        let refused = f.store.take_tokens(&both, t0).await.unwrap().unwrap_err();
        assert!(refused.retry_after_secs.is_some_and(|s| s > 0));
    }
    // The refusals took nothing from `three`: two of its three tokens are left.
    let only_three = [three];
    assert_eq!(f.store.take_tokens(&only_three, t0).await.unwrap(), Ok(()));
    assert_eq!(f.store.take_tokens(&only_three, t0).await.unwrap(), Ok(()));
    assert!(f.store.take_tokens(&only_three, t0).await.unwrap().is_err());
    // `one` is still spent.
    assert!(f.store.take_tokens(&[one], t0).await.unwrap().is_err());
}

/// Takes racing on one bucket: exactly its count passes.
pub async fn concurrent_token_takes_stop_exactly_at_the_limit(f: Fixture) {
    let f = Arc::new(f);
    let bucket = vec![Bucket {
        key: format!("check:service:svc_{}", unique()),
        limit: Limit::new(10, 3_600),
    }];
    let now = Utc::now();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (f, bucket) = (f.clone(), bucket.clone());
            tokio::spawn(async move { f.store.take_tokens(&bucket, now).await.unwrap() })
        })
        .collect();
    let mut passed = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            passed += 1;
        }
    }
    assert_eq!(passed, 10);
}

/// The send limit counts sends of the last window only: once the window has passed since
/// the first send, the recipient may be sent to again.
pub async fn the_send_limit_window_slides(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    let t0 = Utc::now();
    for i in 0..5 {
        f.store
            .start(
                f.request("+14155550123", &code),
                None,
                t0 + Duration::seconds(i * 10),
                &WriteContext::system(),
            )
            .await
            .unwrap();
    }
    let refused = f
        .store
        .start(
            f.request("+14155550123", &code),
            None,
            t0 + Duration::seconds(599),
            &WriteContext::system(),
        )
        .await;
    match refused {
        Err(StoreError::RateLimited { retry_after_secs }) => {
            assert!((1..=2).contains(&retry_after_secs), "{retry_after_secs}")
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    // 601 s after the first send, one send has left the window.
    let later = t0 + Duration::seconds(601);
    match f
        .store
        .start(
            f.request("+14155550123", &code),
            None,
            later,
            &WriteContext::system(),
        )
        .await
    {
        Ok(StartOutcome::Created(_) | StartOutcome::Resent(_)) => {}
        other => panic!("expected a send, got {other:?}"),
    }
    assert!(matches!(
        f.store
            .start(
                f.request("+14155550123", &code),
                None,
                later,
                &WriteContext::system()
            )
            .await,
        Err(StoreError::RateLimited { .. })
    ));
}

pub async fn budgets_refuse_the_send_that_would_pass_and_alert_once(f: Fixture) {
    let s = &f.store;
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    let cost = Money::from_decimal(0.2).unwrap();
    let guard = BudgetGuard {
        daily_limit: Some(Money::from_decimal(1.0).unwrap()),
        ..Default::default()
    };
    let events = |s: Arc<dyn Store>| async move {
        s.list_events(&EventFilter {
            kind: Some("budget.threshold".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
    };
    for _ in 0..3 {
        s.charge_budget("svc_1", &guard, cost, now, &WriteContext::system())
            .await
            .unwrap()
            .unwrap();
    }
    assert!(events(s.clone()).await.is_empty(), "60%: no alert");
    s.charge_budget("svc_1", &guard, cost, now, &WriteContext::system())
        .await
        .unwrap()
        .unwrap();
    let e = events(s.clone()).await;
    assert_eq!(e.len(), 1, "80% at 0.8: {e:?}");
    assert_eq!(e[0].data["percent"], 80);
    assert_eq!(e[0].data["period"], "day");
    s.charge_budget("svc_1", &guard, cost, now, &WriteContext::system())
        .await
        .unwrap()
        .unwrap();
    let refused = s
        .charge_budget("svc_1", &guard, cost, now, &WriteContext::system())
        .await
        .unwrap();
    assert_eq!(refused.unwrap_err().guard, GuardName::Budget);
    let e = events(s.clone()).await;
    assert_eq!(e.len(), 2, "100% once: {e:?}");
    assert_eq!(e[1].data["percent"], 100);
    // A refund makes room; the next day starts afresh.
    s.refund_budget("svc_1", cost, now).await.unwrap();
    s.charge_budget("svc_1", &guard, cost, now, &WriteContext::system())
        .await
        .unwrap()
        .unwrap();
    let tomorrow = now + Duration::days(1);
    s.charge_budget("svc_1", &guard, cost, tomorrow, &WriteContext::system())
        .await
        .unwrap()
        .unwrap();
    // Shadow: the refusal is reported, the charge still made.
    let shadow = BudgetGuard {
        mode: Mode::Shadow,
        ..guard
    };
    for _ in 0..5 {
        s.charge_budget("svc_2", &shadow, cost, now, &WriteContext::system())
            .await
            .unwrap()
            .unwrap();
    }
    assert!(
        s.charge_budget("svc_2", &shadow, cost, now, &WriteContext::system())
            .await
            .unwrap()
            .is_err()
    );
    assert!(
        s.charge_budget("svc_2", &shadow, cost, now, &WriteContext::system())
            .await
            .unwrap()
            .is_err()
    );
}

pub async fn decisions_are_logged_and_blocks_raise_an_event(f: Fixture) {
    let s = &f.store;
    let now = Utc::now();
    let shadow = Refusal {
        guard: GuardName::Geo,
        reason: "numbers of IR are blocked for this service".into(),
        retry_after_secs: None,
    };
    let allowed = DecisionRecord {
        service_id: "svc_1".into(),
        action: Action::Send,
        to: "+989121234567".into(),
        client_ip: Some("192.0.2.1".into()),
        verification_id: Some("ver_1".into()),
        allowed: true,
        blocked: None,
        shadow: vec![shadow.clone()],
    };
    s.record_decision(&allowed, now, &WriteContext::system())
        .await
        .unwrap();
    let blocked = DecisionRecord {
        verification_id: None,
        allowed: false,
        blocked: Some(Refusal {
            guard: GuardName::NumberType,
            reason: "premium_rate numbers get no message".into(),
            retry_after_secs: None,
        }),
        shadow: vec![],
        ..allowed.clone()
    };
    s.record_decision(&blocked, now, &WriteContext::system())
        .await
        .unwrap();
    let list = s.list_decisions("svc_1", 10).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].record, blocked, "newest first");
    assert_eq!(list[1].record, allowed);
    let events = s
        .list_events(&EventFilter {
            kind: Some("verification.blocked".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "shadow refusals raise no event");
    assert_eq!(events[0].data["reason"], "number_type");
    assert_eq!(events[0].data["to"], "+9*******4567", "masked");
}

/// The pumping guard's log (`guards::pumping::shared`): one order per service that every
/// node sees, each append returning what the caller had not seen yet; services apart;
/// read back from a position and a time, in pages.
pub async fn the_pumping_log_is_one_order_for_every_node(f: Fixture) {
    let f = Arc::new(f);
    let svc = f.service.id.clone();
    let event = |at: i64, n: u32, approval: bool| PumpingEvent {
        at,
        approval,
        to: format!("+23324400{n:04}"),
        country: (!approval).then(|| "GH".to_string()),
    };
    let (s1, between) = f
        .store
        .append_pumping(&svc, &event(1_000, 1, false), 0)
        .await
        .unwrap();
    assert!(between.is_empty(), "{between:?}");
    // A second node that has seen nothing gets the first entry before its own.
    let (s2, between) = f
        .store
        .append_pumping(&svc, &event(1_001, 2, false), 0)
        .await
        .unwrap();
    assert!(s2 > s1);
    assert_eq!(between, vec![(s1, event(1_000, 1, false))]);
    // The first node, having seen s1, gets s2 with its approval.
    let (s3, between) = f
        .store
        .append_pumping(&svc, &event(1_002, 1, true), s1)
        .await
        .unwrap();
    assert_eq!(between, vec![(s2, event(1_001, 2, false))]);
    // Another service's log is apart.
    let (_, other) = f
        .store
        .append_pumping("svc_other_for_the_log", &event(1_003, 9, false), 0)
        .await
        .unwrap();
    assert!(other.is_empty(), "{other:?}");
    let all = f.store.pumping_log(&svc, 0, 0, 100).await.unwrap();
    assert_eq!(
        all,
        vec![
            (s1, event(1_000, 1, false)),
            (s2, event(1_001, 2, false)),
            (s3, event(1_002, 1, true)),
        ]
    );
    assert_eq!(
        f.store.pumping_log(&svc, s1, 0, 100).await.unwrap().len(),
        2
    );
    assert_eq!(
        f.store
            .pumping_log(&svc, 0, 1_001, 100)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        f.store.pumping_log(&svc, 0, 0, 2).await.unwrap(),
        all[..2].to_vec()
    );
    // Concurrent appends (nodes at once): distinct positions, and each caller is told
    // exactly the entries between what it had seen and its own.
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let f = Arc::clone(&f);
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            let e = event(2_000 + i64::from(i), 100 + i, false);
            let (seq, between) = f.store.append_pumping(&svc, &e, s3).await.unwrap();
            (seq, e, between)
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    got.sort_by_key(|(seq, _, _)| *seq);
    let seqs: Vec<i64> = got.iter().map(|(s, _, _)| *s).collect();
    let mut distinct = seqs.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 16);
    let log = f.store.pumping_log(&svc, s3, 0, 100).await.unwrap();
    assert_eq!(log.len(), 16);
    for (i, (seq, e, between)) in got.iter().enumerate() {
        assert_eq!(log[i], (*seq, e.clone()));
        assert_eq!(between, &log[..i].to_vec(), "entries before {seq}");
    }
}
