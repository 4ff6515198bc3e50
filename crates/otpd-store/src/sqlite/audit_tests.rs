//! The event log's append-only trigger, the retention purge and erasure, checked row by row
//! in the SQLite file (the store-generic audit, session and statistics tests are in the
//! conformance suite).

use chrono::{Duration, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::code::OtpCode;
use otpd_core::event::EventType;
use otpd_core::store::*;

use super::SqliteStore;
use super::tests::fixture;

const TO: &str = "+14155550123";

#[tokio::test]
async fn the_event_log_refuses_updates_and_deletes() {
    let f = fixture().await;
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
        let err = execute(&f.store, sql).await.unwrap_err();
        assert!(err.to_string().contains("event"), "{sql}: {err}");
    }
    let count = count(&f.store, "SELECT COUNT(*) FROM events").await;
    assert_eq!(count, 1);
}

#[tokio::test]
async fn purge_deletes_old_rows_and_is_itself_audited() {
    let f = fixture().await;
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
    let left = count(&f.store, "SELECT COUNT(*) FROM verifications").await;
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
    assert!(execute(&f.store, "DELETE FROM events").await.is_err());
}

#[tokio::test]
async fn erasure_removes_every_row_of_the_recipient_only() {
    let f = fixture().await;
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
        let left = count(&f.store, &format!("SELECT COUNT(*) FROM {table}")).await;
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

/// Runs one statement in a write transaction of the store.
async fn execute(store: &SqliteStore, sql: &str) -> StoreResult<usize> {
    store.write(|tx| Ok(tx.execute(sql, [])?)).await
}

/// The single number a `SELECT COUNT(*) …` answers.
async fn count(store: &SqliteStore, sql: &str) -> i64 {
    store
        .read(|c| Ok(c.query_row(sql, [], |r| r.get(0))?))
        .await
        .unwrap()
}
