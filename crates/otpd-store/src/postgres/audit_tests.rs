//! The audit trail, retention, dashboard sessions and statistics against a real PostgreSQL
//! database (one per test).

use chrono::{Duration, Utc};
use otpd_core::apikey::{Role, mint};
use otpd_core::audit::{self, Actor};
use otpd_core::code::OtpCode;
use otpd_core::event::EventType;
use otpd_core::store::*;

use super::tests::fixture;

const TO: &str = "+14155550123";

#[tokio::test]
async fn events_carry_the_actor_of_the_request_that_caused_them() {
    let Some(f) = fixture().await else { return };
    let code = OtpCode::parse("123456").unwrap();
    let actor = Actor {
        key_id: Some("key_a".into()),
        request_id: Some("req-1".into()),
        client_ip: Some("203.0.113.9".into()),
    };
    audit::scope(
        actor.clone(),
        f.store.start(f.request(TO, &code), None, Utc::now()),
    )
    .await
    .unwrap();
    // Outside any request (the worker's events): no actor.
    f.store
        .append_event(EventType::CircuitOpened, serde_json::json!({}), Utc::now())
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

#[tokio::test]
async fn the_event_log_refuses_updates_and_deletes() {
    let Some(f) = fixture().await else { return };
    f.store
        .append_event(EventType::CircuitOpened, serde_json::json!({}), Utc::now())
        .await
        .unwrap();
    for sql in ["UPDATE events SET data = '{}'", "DELETE FROM events"] {
        let err = sqlx::query(sql).execute(&f.store.pool).await.unwrap_err();
        assert!(err.to_string().contains("event"), "{sql}: {err}");
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(&f.store.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn purge_deletes_old_rows_and_is_itself_audited() {
    let Some(f) = fixture().await else { return };
    let code = OtpCode::parse("123456").unwrap();
    let long_ago = Utc::now() - Duration::days(40);
    f.store
        .start(f.request(TO, &code), None, long_ago)
        .await
        .unwrap();
    f.store
        .start(f.request("+14155550124", &code), None, Utc::now())
        .await
        .unwrap();
    let policy = RetentionPolicy {
        verifications: Some(Duration::days(30)),
        messages: Some(Duration::days(30)),
        events: Some(Duration::days(30)),
        guard_decisions: Some(Duration::days(30)),
    };
    let counts = f.store.purge(&policy, Utc::now()).await.unwrap();
    assert_eq!(counts.get("verifications"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("deliveries"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("sends"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("events"), Some(&1), "{counts:?}");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM verifications")
        .fetch_one(&f.store.pool)
        .await
        .unwrap();
    assert_eq!(left, 1);
    let purged = f
        .store
        .list_events(&EventFilter {
            kind: Some("retention.purged".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(purged.len(), 1);
    assert_eq!(purged[0].data["deleted"]["verifications"], 1);
    // Nothing old is left: a second purge deletes nothing and records nothing.
    assert!(f.store.purge(&policy, Utc::now()).await.unwrap().is_empty());
    // The gate is closed again.
    assert!(
        sqlx::query("DELETE FROM events")
            .execute(&f.store.pool)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn erasure_removes_every_row_of_the_recipient_only() {
    let Some(f) = fixture().await else { return };
    let code = OtpCode::parse("123456").unwrap();
    f.store
        .start(f.request(TO, &code), None, Utc::now())
        .await
        .unwrap();
    f.store
        .start(f.request("+14155550199", &code), None, Utc::now())
        .await
        .unwrap();
    let counts = f
        .store
        .erase_recipient(TO, "+1******0123", Utc::now())
        .await
        .unwrap();
    assert_eq!(counts.get("verifications"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("sends"), Some(&1), "{counts:?}");
    for table in ["verifications", "sends"] {
        let left: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&f.store.pool)
            .await
            .unwrap();
        assert_eq!(left, 1, "{table}: the other recipient's row stays");
    }
    let erased = f
        .store
        .list_events(&EventFilter {
            kind: Some("erasure.completed".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(erased[0].data["to"], "+1******0123");
}

#[tokio::test]
async fn sessions_end_at_expiry_sign_out_or_key_revocation() {
    let Some(f) = fixture().await else { return };
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

#[tokio::test]
async fn stats_aggregate_the_window() {
    let Some(f) = fixture().await else { return };
    let code = OtpCode::parse("123456").unwrap();
    let now = Utc::now();
    f.store
        .start(f.request(TO, &code), None, now)
        .await
        .unwrap();
    let hasher = f.secret.hasher();
    let matcher =
        |v: &otpd_core::verification::Verification| hasher.matches(&v.id, &code, &v.code_hash);
    let target = CheckTarget::To {
        service_id: f.service.id.clone(),
        to: TO.into(),
    };
    f.store.check(target, &matcher, now).await.unwrap();
    f.store
        .start(f.request("+14155550124", &code), None, now)
        .await
        .unwrap();
    let stats = f
        .store
        .stats(now - Duration::hours(1), Duration::minutes(5), 10, now)
        .await
        .unwrap();
    assert_eq!(stats.sends.iter().map(|(_, n)| n).sum::<u64>(), 2);
    assert_eq!(
        stats.countries,
        vec![CountryStats {
            country: "US".into(),
            started: 2,
            approved: 1
        }]
    );
    assert_eq!(stats.recent.len(), 2);
    assert_eq!(stats.providers[0].provider, "sink");
}
