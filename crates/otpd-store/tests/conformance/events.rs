//! Events: every change of a verification writes its event in the same step, and no
//! event carries a code.

use chrono::{Duration, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::code::OtpCode;
use otpd_core::store::*;
use otpd_core::verification::CheckDecision;

use crate::support::{Fixture, created, decision, hand_over};

/// Create, wrong code, resend, delivery, receipt, right code; cancel; exhaustion;
/// expiry: each leaves its event, in order, for its verification only.
pub async fn every_change_writes_its_event(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    let now = Utc::now();
    let v = f.create("+14155550123", "123456").await;
    assert_eq!(f.event_kinds(&v.id).await, ["verification.created"]);
    f.check(CheckTarget::Id(v.id.clone()), "000000").await;
    f.store
        .start(
            f.request("+14155550123", &code),
            None,
            now,
            &WriteContext::system(),
        )
        .await
        .unwrap();
    let job = hand_over(&f, now).await;
    let receipt = Receipt {
        provider: "sink".into(),
        message_id: job.id.clone(),
        delivered: true,
        error: None,
    };
    assert!(
        f.store
            .apply_receipt(&receipt, now, &WriteContext::system())
            .await
            .unwrap()
    );
    let o = f.check(CheckTarget::Id(v.id.clone()), "123456").await;
    assert_eq!(decision(&o), CheckDecision::Approve);
    assert_eq!(
        f.event_kinds(&v.id).await,
        [
            "verification.created",
            "verification.check_failed",
            "verification.resent",
            "verification.delivery_sent",
            "verification.delivered",
            "verification.approved",
        ]
    );
    // Checks of a spent code change nothing and write nothing.
    f.check(CheckTarget::Id(v.id.clone()), "123456").await;
    assert_eq!(f.event_kinds(&v.id).await.len(), 6);

    let canceled = f.create("+14155550124", "123456").await;
    f.store
        .cancel(&canceled.id, now, &WriteContext::system())
        .await
        .unwrap();
    assert_eq!(
        f.event_kinds(&canceled.id).await,
        ["verification.created", "verification.canceled"]
    );

    let mut req = f.request("+14155550125", &code);
    req.max_check_attempts = 1;
    let exhausted = created(
        f.store
            .start(req, None, now, &WriteContext::system())
            .await
            .unwrap(),
    );
    let o = f
        .check(CheckTarget::Id(exhausted.id.clone()), "000000")
        .await;
    assert_eq!(decision(&o), CheckDecision::Exhaust);
    assert_eq!(
        f.event_kinds(&exhausted.id).await,
        [
            "verification.created",
            "verification.check_failed",
            "verification.max_attempts_reached"
        ]
    );

    let mut req = f.request("+14155550126", &code);
    req.ttl = Duration::seconds(1);
    let expiring = created(
        f.store
            .start(
                req,
                None,
                now - Duration::seconds(5),
                &WriteContext::system(),
            )
            .await
            .unwrap(),
    );
    assert!(
        f.store
            .expire_due(now, 100, &WriteContext::system())
            .await
            .unwrap()
            >= 1
    );
    assert_eq!(
        f.event_kinds(&expiring.id).await,
        ["verification.created", "verification.expired"]
    );
    // Every event names its service.
    for id in [&v.id, &canceled.id, &exhausted.id, &expiring.id] {
        for e in f.events_of(id).await {
            assert_eq!(
                e.service_id.as_deref(),
                Some(f.service.id.as_str()),
                "{e:?}"
            );
        }
    }
}

/// Neither a right nor a wrong code appears in any event (invariant 6).
pub async fn events_of_a_check_carry_no_code(f: Fixture) {
    let v = f.create("+14155550123", "918273").await;
    f.check(CheckTarget::Id(v.id.clone()), "645372").await;
    f.check(CheckTarget::Id(v.id.clone()), "918273").await;
    let all = f
        .store
        .list_events(&EventFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(all.len() >= 3);
    for e in all {
        let text = e.data.to_string();
        assert!(
            !text.contains("918273") && !text.contains("645372"),
            "{text}"
        );
    }
}
