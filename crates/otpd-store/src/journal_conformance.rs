//! The rules every durable store's [`JournalSink`] keeps, as one function each backend's
//! tests call with a fresh store holding one service: idempotent ops, state changes that
//! wait for their verification, monotonic status and attempts, the sealed code erased
//! when a verification ends, events appended once.

use chrono::{Duration, Utc};
use otpd_core::audit::Actor;
use otpd_core::audit::WriteContext;
use otpd_core::channel::Channel;
use otpd_core::event::EventType;
use otpd_core::ids::Kind;
use otpd_core::store::{
    EventFilter, JournalDelivery, JournalEntry, JournalEvent, JournalOp, JournalSink, Store,
    VerificationRecord,
};
use otpd_core::verification::Status;

fn event(kind: EventType, verification: &str, service: &str) -> JournalEvent {
    JournalEvent {
        id: Kind::Event.new_id(),
        kind,
        verification_id: Some(verification.into()),
        service_id: Some(service.into()),
        data: serde_json::json!({}),
        at: Utc::now(),
        actor: Actor {
            key_id: Some("key_j".into()),
            ..Default::default()
        },
    }
}

async fn kinds<S: Store>(store: &S, verification: &str) -> Vec<String> {
    store
        .list_events(&EventFilter {
            verification_id: Some(verification.into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list events")
        .into_iter()
        .map(|e| e.kind.as_str().to_string())
        .collect()
}

/// Runs the journal rules against `store`, which must hold the service `service_id`.
/// Panics on the first broken rule.
pub async fn journal_sink<S: Store + JournalSink>(store: &S, service_id: &str) {
    let now = Utc::now();
    let id = Kind::Verification.new_id();
    let record = VerificationRecord {
        id: id.clone(),
        service_id: service_id.into(),
        to: "+14155550123".into(),
        channel: Channel::Sms,
        code_hash: vec![7; 32],
        sealed_code: vec![9; 40],
        expires_at: now + Duration::seconds(600),
        created_at: now,
        max_check_attempts: 5,
        locale: "en".into(),
        metadata: None,
        entity: None,
        region: Some("US".into()),
        test: false,
        key_id: "key_j".into(),
        message_options: Default::default(),
    };
    let delivery = JournalDelivery {
        id: Kind::Delivery.new_id(),
        verification_id: id.clone(),
        channel: Channel::Sms,
        fallback: vec![],
        providers: vec!["sink".into()],
        test: false,
        at: now,
    };

    // A state change before its verification fails (to be retried) and changes nothing.
    let approve = JournalEntry {
        ops: vec![JournalOp::State {
            id: id.clone(),
            status: Status::Approved,
            check_attempts: 2,
            at: now + Duration::seconds(5),
            events: vec![event(EventType::Approved, &id, service_id)],
        }],
    };
    assert!(store.apply_journal(&approve).await.is_err());

    // Creation with its job and event, applied twice: one of each.
    let created = JournalEntry {
        ops: vec![
            JournalOp::Create(Box::new(record.clone())),
            JournalOp::Event(event(EventType::Created, &id, service_id)),
            JournalOp::Enqueue(delivery.clone()),
        ],
    };
    store.apply_journal(&created).await.expect("create");
    store.apply_journal(&created).await.expect("create again");
    let v = store
        .get_verification(&id)
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!((v.status, v.check_attempts), (Status::Pending, 0));
    assert_eq!(v.deliveries.len(), 1);
    assert_eq!(kinds(store, &id).await, ["verification.created"]);
    let job = store
        .claim("j", now, Duration::seconds(30))
        .await
        .unwrap()
        .expect("the job is claimable");
    assert_eq!(job.id, delivery.id);
    assert_eq!(job.sealed_code.as_deref(), Some(&[9u8; 40][..]));

    // A resend changes the channel; a wrong code counts; attempts never fall.
    let resend = JournalEntry {
        ops: vec![JournalOp::Resend {
            id: id.clone(),
            channel: Channel::Whatsapp,
            entity: Some("user-1".into()),
            message_options: Default::default(),
            at: now + Duration::seconds(1),
        }],
    };
    store.apply_journal(&resend).await.expect("resend");
    store.apply_journal(&resend).await.expect("resend again");
    let wrong = JournalEntry {
        ops: vec![JournalOp::State {
            id: id.clone(),
            status: Status::Pending,
            check_attempts: 1,
            at: now + Duration::seconds(2),
            events: vec![event(EventType::CheckFailed, &id, service_id)],
        }],
    };
    store.apply_journal(&wrong).await.expect("wrong code");
    store.apply_journal(&wrong).await.expect("wrong code again");
    let v = store.get_verification(&id).await.unwrap().unwrap();
    assert_eq!((v.channel, v.check_attempts), (Channel::Whatsapp, 1));
    assert_eq!(v.entity.as_deref(), Some("user-1"));

    // Approval: status, attempts, sealed code erased (invariant 1), its event once.
    store.apply_journal(&approve).await.expect("approve");
    store.apply_journal(&approve).await.expect("approve again");
    let v = store.get_verification(&id).await.unwrap().unwrap();
    assert_eq!((v.status, v.check_attempts), (Status::Approved, 2));
    assert_eq!(
        kinds(store, &id).await,
        [
            "verification.created",
            "verification.check_failed",
            "verification.approved"
        ]
    );
    let job = store
        .claim("j2", now + Duration::seconds(60), Duration::seconds(30))
        .await
        .unwrap()
        .expect("the lease ran out");
    assert!(
        job.sealed_code.is_none(),
        "sealed code erased when it ended"
    );

    // An ended verification does not move again (a late expiry changes nothing).
    let late = JournalEntry {
        ops: vec![JournalOp::State {
            id: id.clone(),
            status: Status::Expired,
            check_attempts: 0,
            at: now + Duration::seconds(700),
            events: vec![event(EventType::Expired, &id, service_id)],
        }],
    };
    store.apply_journal(&late).await.expect("late expiry");
    let v = store.get_verification(&id).await.unwrap().unwrap();
    assert_eq!(v.status, Status::Approved);
    assert_eq!(kinds(store, &id).await.len(), 3);

    // The durable sweep expired a verification whose approval (made before the expiry)
    // arrives later: the approval wins.
    let id2 = Kind::Verification.new_id();
    let mut r2 = record.clone();
    r2.id = id2.clone();
    r2.to = "+14155550124".into();
    r2.created_at = now - Duration::seconds(700);
    r2.expires_at = now - Duration::seconds(100);
    store
        .apply_journal(&JournalEntry {
            ops: vec![JournalOp::Create(Box::new(r2))],
        })
        .await
        .expect("create 2");
    store
        .expire_due(now, 100, &WriteContext::system())
        .await
        .expect("sweep");
    store
        .apply_journal(&JournalEntry {
            ops: vec![JournalOp::State {
                id: id2.clone(),
                status: Status::Approved,
                check_attempts: 1,
                at: now - Duration::seconds(200),
                events: vec![],
            }],
        })
        .await
        .expect("late approval");
    let v2 = store.get_verification(&id2).await.unwrap().unwrap();
    assert_eq!(v2.status, Status::Approved);

    // Each send counted once in the statistics (two creations, one resend).
    let stats = store
        .stats(now - Duration::days(1), Duration::hours(1), 10, now)
        .await
        .expect("stats");
    assert_eq!(stats.sends.iter().map(|(_, n)| n).sum::<u64>(), 3);
}
