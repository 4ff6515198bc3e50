//! The audit trail's actors, dashboard sessions and the dashboard's statistics: what the
//! operator sees must be the same whichever node (and backend) answers.

use chrono::{Duration, Utc};
use otpd_core::apikey::{Role, mint};
use otpd_core::audit::{Actor, WriteContext};
use otpd_core::code::OtpCode;
use otpd_core::event::EventType;
use otpd_core::store::*;

use crate::support::Fixture;

const TO: &str = "+14155550123";

pub async fn events_carry_the_actor_of_the_request_that_caused_them(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    let actor = Actor {
        key_id: Some("key_a".into()),
        request_id: Some("req-1".into()),
        client_ip: Some("203.0.113.9".into()),
    };
    let request = WriteContext::new(actor.clone());
    f.store
        .start(f.request(TO, &code), None, Utc::now(), &request)
        .await
        .unwrap();
    assert_eq!(request.events_written(), 1);
    // Outside any request (the worker's events): no actor.
    f.store
        .append_event(
            EventType::CircuitOpened,
            serde_json::json!({}),
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap();
    let all = f
        .store
        .list_events(&EventFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].actor, actor);
    assert_eq!(all[0].data["to"], "+1******0123");
    assert_eq!(all[1].actor, Actor::default());

    let by_key = EventFilter {
        key_id: Some("key_a".into()),
        service_id: Some(f.service.id.clone()),
        request_id: Some("req-1".into()),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(f.store.list_events(&by_key).await.unwrap().len(), 1);
    let until_past = EventFilter {
        until: Some(Utc::now() - Duration::hours(1)),
        limit: 10,
        ..Default::default()
    };
    assert!(f.store.list_events(&until_past).await.unwrap().is_empty());
}

pub async fn sessions_end_at_expiry_sign_out_or_key_revocation(f: Fixture) {
    let now = Utc::now();
    let key = mint("ops", Role::Admin, false, None, now);
    f.store.insert_key(&key.record, &key.digest).await.unwrap();
    let session = DashboardSession {
        key_id: key.record.id.clone(),
        created_at: now,
        expires_at: now + Duration::hours(1),
    };
    f.store.create_session(b"d1", &session, now).await.unwrap();
    let found = f.store.find_session(b"d1", now).await.unwrap().unwrap();
    assert_eq!(found.key_id, session.key_id);
    assert_eq!(
        found.expires_at.timestamp_millis(),
        session.expires_at.timestamp_millis()
    );
    assert_eq!(
        f.store
            .find_session(b"d1", now + Duration::hours(2))
            .await
            .unwrap(),
        None
    );
    assert_eq!(f.store.find_session(b"other", now).await.unwrap(), None);
    f.store.create_session(b"d2", &session, now).await.unwrap();
    assert!(f.store.delete_session(b"d2").await.unwrap());
    assert_eq!(f.store.find_session(b"d2", now).await.unwrap(), None);
    f.store.revoke_key(&key.record.id, now).await.unwrap();
    assert_eq!(f.store.find_session(b"d1", now).await.unwrap(), None);
}

pub async fn stats_aggregate_the_window(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    let now = Utc::now();
    f.store
        .start(f.request(TO, &code), None, now, &WriteContext::system())
        .await
        .unwrap();
    let hasher = f.secret.hasher();
    let matcher =
        |v: &otpd_core::verification::Verification| hasher.matches(&v.id, &code, &v.code_hash);
    let target = f.to(TO);
    let lockout = f.lockout().await;
    f.store
        .check(target, &lockout, &matcher, now, &WriteContext::system())
        .await
        .unwrap();
    f.store
        .start(
            f.request("+14155550124", &code),
            None,
            now,
            &WriteContext::system(),
        )
        .await
        .unwrap();
    // Each hand-off counts for its provider: one delivered, one failed (to be retried).
    let job = f
        .store
        .claim("w", now, Duration::seconds(30))
        .await
        .unwrap()
        .unwrap();
    let delivered = AttemptResult::Sent {
        status: otpd_core::verification::DeliveryStatus::Delivered,
        provider_message_id: Some("m1".into()),
        receipt_deadline: None,
    };
    f.store
        .finish(&job, delivered, now, &WriteContext::system())
        .await
        .unwrap();
    let job = f
        .store
        .claim("w", now, Duration::seconds(30))
        .await
        .unwrap()
        .unwrap();
    let retry = AttemptResult::Retry {
        at: now + Duration::hours(2),
        error: "sink: timed out".into(),
    };
    f.store
        .finish(&job, retry, now, &WriteContext::system())
        .await
        .unwrap();
    let stats = f
        .store
        .stats(now - Duration::hours(1), Duration::minutes(5), 10, now)
        .await
        .unwrap();
    assert_eq!(stats.sends.iter().map(|(_, n)| n).sum::<u64>(), 2);
    assert_eq!(stats.approvals.iter().map(|(_, n)| n).sum::<u64>(), 1);
    assert_eq!(stats.failures.iter().map(|(_, n)| n).sum::<u64>(), 1);
    assert_eq!(stats.blocks.iter().map(|(_, n)| n).sum::<u64>(), 0);
    assert_eq!(
        stats.countries,
        vec![CountryStats {
            country: "US".into(),
            started: 2,
            approved: 1,
            pending: 1,
        }]
    );
    assert_eq!(stats.recent.len(), 2);
    let sink = &stats.providers[0];
    assert_eq!(sink.provider, "sink");
    assert_eq!(
        (
            sink.sent,
            sink.delivered,
            sink.failed,
            sink.skipped,
            sink.receipt_timeouts
        ),
        (1, 1, 1, 0, 0),
        "{sink:?}"
    );
}

/// Keys and services are looked up on every request (and may be answered from a
/// short-lived cache): a change made through the store is seen by its next lookup.
pub async fn key_and_service_changes_are_seen_by_the_next_lookup(f: Fixture) {
    let now = Utc::now();
    let key = mint("app", Role::Verify, false, None, now);
    assert!(f.store.find_key(&key.digest).await.unwrap().is_none());
    f.store.insert_key(&key.record, &key.digest).await.unwrap();
    let found = f.store.find_key(&key.digest).await.unwrap().unwrap();
    assert_eq!(found.id, key.record.id);
    assert!(f.store.find_key(&key.digest).await.unwrap().is_some());
    assert!(f.store.revoke_key(&key.record.id, now).await.unwrap());
    assert!(
        f.store.find_key(&key.digest).await.unwrap().is_none(),
        "a revoked key is refused at once"
    );

    let by = [
        f.service.name.clone(),
        f.service.id.clone(),
        f.service.sid.clone(),
    ];
    for name in &by {
        let s = f.store.find_service(name).await.unwrap().unwrap();
        assert_eq!(s.settings.code_length, f.service.settings.code_length);
    }
    let mut changed = f.service.clone();
    changed.settings.code_length = if f.service.settings.code_length == 8 {
        6
    } else {
        8
    };
    f.store.update_service(&changed, None).await.unwrap();
    for name in &by {
        let s = f.store.find_service(name).await.unwrap().unwrap();
        assert_eq!(
            s.settings.code_length, changed.settings.code_length,
            "{name}"
        );
    }
    assert!(f.store.delete_service(&f.service.id).await.unwrap());
    for name in &by {
        assert!(
            f.store.find_service(name).await.unwrap().is_none(),
            "{name}"
        );
    }
}

/// `api.request` events have a retention of their own (security review, finding 4): the
/// old ones go, every other event and the recent ones stay.
pub async fn api_request_events_are_purged_by_their_own_age(f: Fixture) {
    let now = Utc::now();
    let old = now - Duration::days(40);
    for (kind, at) in [
        (EventType::ApiRequest, old),
        (EventType::ApiRequest, now),
        (EventType::CircuitOpened, old),
    ] {
        f.store
            .append_event(kind, serde_json::json!({}), at, &WriteContext::system())
            .await
            .unwrap();
    }
    let policy = RetentionPolicy {
        api_requests: Some(Duration::days(30)),
        ..RetentionPolicy::default()
    };
    let counts = f
        .store
        .purge(&policy, now, &WriteContext::system())
        .await
        .unwrap();
    assert_eq!(counts.get("events"), Some(&1), "{counts:?}");
    let left = |kind: &str| EventFilter {
        kind: Some(kind.into()),
        limit: 100,
        ..EventFilter::default()
    };
    let requests = f.store.list_events(&left("api.request")).await.unwrap();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        requests[0].created_at.timestamp_millis(),
        now.timestamp_millis()
    );
    let circuits = f
        .store
        .list_events(&left("provider.circuit_opened"))
        .await
        .unwrap();
    assert_eq!(circuits.len(), 1, "{circuits:?}");
}
