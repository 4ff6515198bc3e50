//! The safe list: one entry per number, its first SID kept, durable like any other row.

use chrono::{Duration, Utc};
use otpd_core::store::*;

use crate::support::Fixture;

pub async fn numbers_are_added_once_found_and_removed(f: Fixture) {
    let now = Utc::now();
    let first = SafeNumber {
        sid: "GN0123456789abcdef0123456789abcdef".into(),
        phone_number: "+14155550123".into(),
        created_at: now,
    };
    assert_eq!(f.store.safe_number("+14155550123").await.unwrap(), None);
    let added = f.store.add_safe_number(&first).await.unwrap();
    assert_eq!(added.sid, first.sid);
    assert_eq!(added.phone_number, first.phone_number);
    // Adding it again keeps the first entry (its SID and time).
    let again = SafeNumber {
        sid: "GNffffffffffffffffffffffffffffffff".into(),
        created_at: now + Duration::seconds(5),
        ..first.clone()
    };
    let kept = f.store.add_safe_number(&again).await.unwrap();
    assert_eq!(kept.sid, first.sid);
    assert_eq!(kept.created_at.timestamp_millis(), now.timestamp_millis());
    let found = f.store.safe_number("+14155550123").await.unwrap().unwrap();
    assert_eq!(found.sid, first.sid);
    assert_eq!(f.store.safe_number("+14155550124").await.unwrap(), None);

    assert!(f.store.remove_safe_number("+14155550123").await.unwrap());
    assert!(!f.store.remove_safe_number("+14155550123").await.unwrap());
    assert_eq!(f.store.safe_number("+14155550123").await.unwrap(), None);
}
