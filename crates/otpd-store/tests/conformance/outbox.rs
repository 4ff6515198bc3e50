//! The delivery queue: claims with a lease that another worker takes over once it ends
//! (invariant 3), finishing attempts, fallbacks, receipts and their timeouts.

use std::sync::Arc;

use chrono::{Duration, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::channel::Channel;
use otpd_core::code::OtpCode;
use otpd_core::store::*;
use otpd_core::verification::{DeliveryStatus, Status};

use crate::support::{Fixture, created, hand_over};

pub async fn outbox_lease_is_exclusive_until_it_runs_out(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    f.store
        .start(
            f.request("+14155550123", &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
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
            &WriteContext::system(),
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
    assert!(
        f.store
            .apply_receipt(&receipt, later, &WriteContext::system())
            .await
            .unwrap()
    );
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
    assert!(
        !f.store
            .apply_receipt(&wrong, later, &WriteContext::system())
            .await
            .unwrap()
    );
}

pub async fn message_options_travel_with_the_delivery_job(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    let mut req = f.request("+14155550123", &code);
    req.message_options = otpd_core::verification::MessageOptions {
        friendly_name: Some("Shop".into()),
        app_hash: None,
        messaging_service_sid: Some(format!("MG{}", "0".repeat(32))),
        built_in_warning: Some(false),
    };
    f.store
        .start(req, None, Utc::now(), &WriteContext::system())
        .await
        .unwrap();
    let job = f
        .store
        .claim("w", Utc::now(), Duration::seconds(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.message_options.friendly_name.as_deref(), Some("Shop"));
    assert_eq!(
        job.message_options.messaging_service_sid,
        Some(format!("MG{}", "0".repeat(32))),
        "the sender of the destination's messaging configuration travels too"
    );
    assert_eq!(job.message_options.built_in_warning, Some(false));
}

pub async fn final_failure_without_fallback_fails_the_verification(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    f.store
        .start(
            f.request("+14155550123", &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
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
            &WriteContext::system(),
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

pub async fn fallback_channel_is_queued_after_a_final_failure(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    let mut req = f.request("+14155550123", &code);
    req.fallback = vec![Channel::Voice];
    f.store
        .start(req, None, Utc::now(), &WriteContext::system())
        .await
        .unwrap();
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
            &WriteContext::system(),
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

pub async fn an_overdue_receipt_hands_the_same_code_to_the_next_provider_once(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    let mut req = f.request("+14155550123", &code);
    req.providers = vec!["a".into(), "b".into()];
    f.store
        .start(req, None, Utc::now(), &WriteContext::system())
        .await
        .unwrap();
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
            &WriteContext::system(),
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
            .receipt_timeout(
                &overdue[0],
                Some(next.clone()),
                "no receipt",
                deadline,
                &WriteContext::system()
            )
            .await
            .unwrap()
    );
    // A second sweeper (another node) finds nothing to do.
    assert!(
        !f.store
            .receipt_timeout(
                &overdue[0],
                Some(next),
                "no receipt",
                deadline,
                &WriteContext::system()
            )
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

pub async fn a_failed_receipt_ends_the_wait_at_once(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    f.store
        .start(
            f.request("+14155550123", &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
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
    assert!(
        f.store
            .apply_receipt(&receipt, now, &WriteContext::system())
            .await
            .unwrap()
    );
    let overdue = f.store.overdue_receipts(now, 10).await.unwrap();
    assert_eq!(overdue.len(), 1);
    // Handled once (nothing left to try here): the wait is over.
    assert!(
        f.store
            .receipt_timeout(&overdue[0], None, "x", now, &WriteContext::system())
            .await
            .unwrap()
    );
    assert!(f.store.overdue_receipts(now, 10).await.unwrap().is_empty());
}

pub async fn a_held_ussd_delivery_is_found_by_number_and_provider_until_it_is_delivered(
    f: Fixture,
) {
    let code = OtpCode::parse("123456").unwrap();
    let mut req = f.request("+254711000111", &code);
    req.channel = Channel::Ussd;
    req.providers = vec!["at".into()];
    let now = Utc::now();
    created(
        f.store
            .start(req, None, now, &WriteContext::system())
            .await
            .unwrap(),
    );
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
    assert!(
        f.store
            .apply_receipt(&receipt, now, &WriteContext::system())
            .await
            .unwrap()
    );
    assert!(
        f.store
            .held_ussd("at", "+254711000111", now)
            .await
            .unwrap()
            .is_none(),
        "answered once"
    );
}

/// A job claimed by worker A with a short lease is not claimable by B before the lease
/// ends, and is from its end on. Every backend judges the lease by the `now` it is given
/// (the worker passes its clock's), so the test moves time instead of waiting for it.
pub async fn a_short_lease_is_taken_over_only_after_it_ends(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    let t0 = Utc::now();
    created(
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
    let lease = Duration::seconds(1);
    let job = f
        .store
        .claim("a", t0, lease)
        .await
        .unwrap()
        .expect("a due job");
    assert_eq!(job.lease_owner, "a");
    for early in [t0, t0 + lease - Duration::milliseconds(1)] {
        assert!(
            f.store.claim("b", early, lease).await.unwrap().is_none(),
            "taken over {} ms before the lease ended",
            (t0 + lease - early).num_milliseconds()
        );
    }
    let taken = f
        .store
        .claim("b", t0 + lease, Duration::seconds(30))
        .await
        .unwrap()
        .expect("taken over when the lease ended");
    assert_eq!(taken.id, job.id);
    assert_eq!(taken.lease_owner, "b");
    assert_eq!(taken.sealed_code, job.sealed_code, "the same code");
    // B holds it now: A's late report changes nothing that B cannot finish.
    f.store
        .finish(
            &taken,
            AttemptResult::Sent {
                status: DeliveryStatus::Sent,
                provider_message_id: None,
                receipt_deadline: None,
            },
            t0 + lease,
            &WriteContext::system(),
        )
        .await
        .unwrap();
    assert!(
        f.store
            .claim("c", t0 + lease + Duration::seconds(31), lease)
            .await
            .unwrap()
            .is_none(),
        "a finished job is not claimed again, even after B's lease"
    );
}

/// Many workers claiming at once: each job goes to exactly one of them.
pub async fn concurrent_claims_hand_each_job_to_one_worker(f: Fixture) {
    let f = Arc::new(f);
    let code = OtpCode::parse("123456").unwrap();
    let now = Utc::now();
    for i in 0..10 {
        f.store
            .start(
                f.request(&format!("+1415555{i:04}"), &code),
                None,
                now,
                &WriteContext::system(),
            )
            .await
            .unwrap();
    }
    let tasks: Vec<_> = (0..30)
        .map(|w| {
            let f = f.clone();
            tokio::spawn(async move {
                f.store
                    .claim(&format!("w{w}"), now, Duration::seconds(30))
                    .await
                    .unwrap()
                    .map(|j| j.id)
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "a job was handed to two workers");
    assert_eq!(n, 10, "every due job is claimable");
}

/// A retry releases the job until its time, and counts the attempt.
pub async fn a_retry_is_due_again_at_its_time(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    let now = Utc::now();
    f.store
        .start(
            f.request("+14155550123", &code),
            None,
            now,
            &WriteContext::system(),
        )
        .await
        .unwrap();
    let job = f.claim("a", now).await;
    assert_eq!(job.attempts, 0);
    let at = now + Duration::seconds(10);
    f.store
        .finish(
            &job,
            AttemptResult::Retry {
                at,
                error: "busy".into(),
            },
            now,
            &WriteContext::system(),
        )
        .await
        .unwrap();
    let before = f
        .store
        .claim("b", at - Duration::seconds(1), Duration::seconds(30))
        .await
        .unwrap();
    assert!(before.is_none(), "due only at its time");
    let again = f.claim("b", at).await;
    assert_eq!(again.id, job.id);
    assert_eq!(again.attempts, 1);
    assert_eq!(again.current_provider(), Some("sink"));
    let v = f
        .store
        .get_verification(&job.verification_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.status, Status::Pending);
}

pub async fn a_receipt_is_matched_only_within_its_provider(f: Fixture) {
    // Two messages with two providers, which happened to give both the same id of theirs.
    let code = OtpCode::parse("123456").unwrap();
    let mut ids = Vec::new();
    for (to, provider) in [("+14155550131", "alpha"), ("+14155550132", "beta")] {
        let mut req = f.request(to, &code);
        req.providers = vec![provider.into()];
        let v = created(
            f.store
                .start(req, None, Utc::now(), &WriteContext::system())
                .await
                .unwrap(),
        );
        ids.push((v.id.clone(), v.deliveries[0].id.clone()));
    }
    let now = Utc::now();
    for _ in 0..2 {
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
                    provider_message_id: Some("shared-1".into()),
                    receipt_deadline: Some(now + Duration::seconds(30)),
                },
                now,
                &WriteContext::system(),
            )
            .await
            .unwrap();
    }
    let [(alpha_v, alpha_dlv), (beta_v, beta_dlv)] = <[_; 2]>::try_from(ids).unwrap();
    let status = |vid: String| {
        let store = f.store.clone();
        async move {
            store
                .get_verification(&vid)
                .await
                .unwrap()
                .unwrap()
                .deliveries[0]
                .status
        }
    };
    let receipt = |provider: &str, message_id: &str, delivered: bool| Receipt {
        provider: provider.into(),
        message_id: message_id.into(),
        delivered,
        error: None,
    };

    // otpd's id of beta's message, in a receipt for alpha: nothing is found or changed.
    let later = now + Duration::seconds(1);
    assert!(
        !f.store
            .apply_receipt(
                &receipt("alpha", &beta_dlv, false),
                later,
                &WriteContext::system()
            )
            .await
            .unwrap()
    );
    assert!(
        f.store
            .receipt_wait("alpha", &beta_dlv)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(status(beta_v.clone()).await, DeliveryStatus::Sent);
    assert_eq!(status(alpha_v.clone()).await, DeliveryStatus::Sent);

    // The shared provider id means, for each provider, its own message.
    assert!(
        f.store
            .receipt_wait("beta", "shared-1")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        f.store
            .apply_receipt(
                &receipt("beta", "shared-1", true),
                later,
                &WriteContext::system()
            )
            .await
            .unwrap()
    );
    assert_eq!(status(beta_v.clone()).await, DeliveryStatus::Delivered);
    assert_eq!(status(alpha_v.clone()).await, DeliveryStatus::Sent);
    assert!(
        f.store
            .apply_receipt(
                &receipt("alpha", "shared-1", false),
                later,
                &WriteContext::system()
            )
            .await
            .unwrap()
    );
    assert_eq!(status(alpha_v).await, DeliveryStatus::Failed);
    assert_eq!(status(beta_v).await, DeliveryStatus::Delivered);
    // A provider that sent neither finds neither.
    assert!(
        !f.store
            .apply_receipt(
                &receipt("gamma", "shared-1", true),
                later,
                &WriteContext::system()
            )
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .apply_receipt(
                &receipt("gamma", &alpha_dlv, true),
                later,
                &WriteContext::system()
            )
            .await
            .unwrap()
    );
}
