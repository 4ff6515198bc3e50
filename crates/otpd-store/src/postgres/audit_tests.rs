//! The event log's append-only trigger, the retention purge and erasure, checked row by row
//! in a real PostgreSQL database (one per test; the store-generic audit, session and
//! statistics tests are in the conformance suite).

use chrono::{Duration, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::code::OtpCode;
use otpd_core::event::EventType;
use otpd_core::store::*;

use super::tests::fixture;

const TO: &str = "+14155550123";

#[tokio::test]
async fn the_event_log_refuses_updates_and_deletes() {
    let Some(f) = fixture().await else { return };
    f.store
        .append_event(
            EventType::CircuitOpened,
            serde_json::json!({}),
            Utc::now(),
            &WriteContext::system(),
        )
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
        .start(
            f.request(TO, &code),
            None,
            long_ago,
            &WriteContext::system(),
        )
        .await
        .unwrap();
    f.store
        .start(
            f.request("+14155550124", &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap();
    let policy = RetentionPolicy {
        verifications: Some(Duration::days(30)),
        messages: Some(Duration::days(30)),
        events: Some(Duration::days(30)),
        api_requests: None,
        guard_decisions: Some(Duration::days(30)),
    };
    let counts = f
        .store
        .purge(&policy, Utc::now(), &WriteContext::system())
        .await
        .unwrap();
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
    assert!(
        f.store
            .purge(&policy, Utc::now(), &WriteContext::system())
            .await
            .unwrap()
            .is_empty()
    );
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
        .start(
            f.request(TO, &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap();
    f.store
        .start(
            f.request("+14155550199", &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap();
    let counts = f
        .store
        .erase_recipient(TO, "+1******0123", Utc::now(), &WriteContext::system())
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
