//! What only a shared server can show: several pools (standing for several otpd nodes) on
//! one database, racing for the same codes, jobs, tokens and send limits, and migrations
//! run by every node at once.

use std::sync::Arc;

use chrono::{Duration, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::code::OtpCode;
use otpd_core::guards::rate::{Bucket, Limit};
use otpd_core::store::*;

use super::PostgresStore;
use super::testdb;
use super::tests::fixture;

/// A second "node": its own pool on the fixture's database.
async fn node(url: &str) -> PostgresStore {
    PostgresStore::connect(url).await.unwrap()
}

/// Invariant 3: a job leased by node A is not due for node B until A's lease runs out;
/// then B takes it over (A having vanished without finishing it).
#[tokio::test]
async fn a_dead_nodes_lease_is_taken_over_after_it_runs_out_and_not_before() {
    let Some(f) = fixture().await else { return };
    let code = OtpCode::parse("123456").unwrap();
    let t0 = Utc::now();
    f.store
        .start(
            f.request("+14155550101", &code),
            None,
            t0,
            &WriteContext::system(),
        )
        .await
        .unwrap();
    let a = node(&f.db.url).await;
    let b = node(&f.db.url).await;
    let lease = Duration::seconds(2);
    let job = a
        .claim("node-a", t0, lease)
        .await
        .unwrap()
        .expect("A claims");
    assert_eq!(job.lease_owner, "node-a");
    // A dies holding the job.
    a.close().await;
    drop(a);
    for at in [t0, t0 + Duration::milliseconds(1999)] {
        assert!(
            b.claim("node-b", at, lease).await.unwrap().is_none(),
            "B must not take a job whose lease is still running"
        );
    }
    let taken = b
        .claim("node-b", t0 + lease, lease)
        .await
        .unwrap()
        .expect("B takes the job over once the lease ran out");
    assert_eq!(taken.id, job.id);
    assert_eq!(taken.lease_owner, "node-b");
    b.finish(
        &taken,
        AttemptResult::Sent {
            status: otpd_core::verification::DeliveryStatus::Delivered,
            provider_message_id: None,
            receipt_deadline: None,
        },
        t0 + lease,
        &WriteContext::system(),
    )
    .await
    .unwrap();
    assert!(
        b.claim("node-b", t0 + Duration::hours(1), lease)
            .await
            .unwrap()
            .is_none()
    );
}

/// Concurrent workers on two nodes claim every job exactly once (`FOR UPDATE SKIP LOCKED`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_on_two_nodes_take_each_job_once() {
    let Some(f) = fixture().await else { return };
    let code = OtpCode::parse("123456").unwrap();
    let now = Utc::now();
    const JOBS: usize = 30;
    for i in 0..JOBS {
        f.store
            .start(
                f.request(&format!("+1415555{:04}", 1000 + i), &code),
                None,
                now,
                &WriteContext::system(),
            )
            .await
            .unwrap();
    }
    let nodes = [
        Arc::new(node(&f.db.url).await),
        Arc::new(node(&f.db.url).await),
    ];
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let store = nodes[w % 2].clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(job) = store
                    .claim(&format!("w{w}"), now, Duration::seconds(60))
                    .await
                    .unwrap()
                {
                    mine.push(job.id);
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let claimed = all.len();
    all.sort();
    all.dedup();
    assert_eq!(claimed, JOBS, "every job claimed once");
    assert_eq!(all.len(), JOBS);
}

/// Invariant 4: a rate limit of 10 holds exactly when 60 requests race on two nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_take_tokens_on_two_nodes_hold_the_limit_exactly() {
    let Some(t) = testdb::fresh().await else {
        return;
    };
    let nodes = [Arc::new(node(&t.url).await), Arc::new(node(&t.url).await)];
    let now = Utc::now();
    let buckets = vec![
        Bucket {
            key: "send:ip:svc_1:192.0.2.1".into(),
            limit: Limit {
                count: 10,
                period_seconds: 3600,
            },
        },
        Bucket {
            key: "send:key:key_1".into(),
            limit: Limit {
                count: 1000,
                period_seconds: 3600,
            },
        },
    ];
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let store = nodes[i % 2].clone();
            let mut b = buckets.clone();
            if i % 3 == 0 {
                // The same buckets named in another order must not deadlock.
                b.reverse();
            }
            tokio::spawn(async move { store.take_tokens(&b, now).await.unwrap().is_ok() })
        })
        .collect();
    let mut taken = 0;
    for t in tasks {
        taken += usize::from(t.await.unwrap());
    }
    assert_eq!(taken, 10);
    // All or none: the refused requests took nothing from the wide bucket either.
    let wide: i64 = sqlx::query_scalar("SELECT tat_ms FROM rate_buckets WHERE key = $1")
        .bind("send:key:key_1")
        .fetch_one(t.store.pool())
        .await
        .unwrap();
    let mut expected = None;
    for _ in 0..10 {
        expected = Some(
            otpd_core::guards::rate::take(&buckets[1..], &[expected], now.timestamp_millis())
                .unwrap()[0],
        );
    }
    assert_eq!(
        Some(wide),
        expected,
        "exactly 10 tokens taken from the wide bucket"
    );
}

/// Invariant 4: the per-recipient send limit (5) holds exactly when 12 sends race on
/// three nodes; the sends that got through share one pending verification.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_on_three_nodes_hold_the_send_limit() {
    let Some(f) = fixture().await else { return };
    let f = Arc::new(f);
    let nodes = [
        Arc::new(node(&f.db.url).await),
        Arc::new(node(&f.db.url).await),
        Arc::new(node(&f.db.url).await),
    ];
    let now = Utc::now();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let store = nodes[i % 3].clone();
            let code = OtpCode::parse("123456").unwrap();
            let req = f.request("+14155550177", &code);
            tokio::spawn(async move { store.start(req, None, now, &WriteContext::system()).await })
        })
        .collect();
    let (mut ok, mut limited, mut ids) = (0, 0, Vec::new());
    for t in tasks {
        match t.await.unwrap() {
            Ok(StartOutcome::Created(v) | StartOutcome::Resent(v)) => {
                ok += 1;
                ids.push(v.id);
            }
            Err(StoreError::RateLimited { .. }) => limited += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((ok, limited), (5, 7));
    ids.dedup();
    assert_eq!(ids.len(), 1, "one pending verification per recipient");
}

/// Every node migrates at start: concurrent runs on an empty database must all succeed
/// (sqlx serializes them with an advisory lock) and leave the schema applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_from_several_nodes_all_succeed() {
    let Some(t) = testdb::fresh_empty().await else {
        return;
    };
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let url = t.url.clone();
            tokio::spawn(async move {
                let store = PostgresStore::connect(&url).await.unwrap();
                store.migrate().await.map_err(|e| e.to_string())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(t.store.pool())
        .await
        .unwrap();
    assert_eq!(applied, super::MIGRATOR.iter().count() as i64);
    t.store.ping().await.unwrap();
}

/// Invariant 7: with PostgreSQL unreachable every call fails with `Unavailable` (which the
/// server answers with a 503) within the acquire timeout; nothing approves.
#[tokio::test]
async fn an_unreachable_server_is_unavailable_not_a_hang() {
    // Nothing listens on port 1; the eager connect fails, a lazy pool reports Unavailable.
    let started = std::time::Instant::now();
    let err =
        PostgresStore::connect("postgres://otpd:secret-pw@127.0.0.1:1/none?acquire_timeout_ms=500")
            .await
            .unwrap_err()
            .to_string();
    assert!(!err.contains("secret-pw"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// The statement timeout from the URL holds for requests (a statement running longer is
/// cancelled: `Unavailable`), but not for migrations, which may wait for another node's.
#[tokio::test]
async fn the_statement_timeout_applies_to_requests_not_migrations() {
    let Some(t) = testdb::fresh_empty().await else {
        return;
    };
    let store = PostgresStore::connect(&format!("{}?statement_timeout_ms=50", t.url))
        .await
        .unwrap();
    // Hold the migration lock for longer than the timeout: the migration waits it out.
    let holder = PostgresStore::connect(&t.url).await.unwrap();
    let mut lock = holder.pool().acquire().await.unwrap();
    // sqlx's migration lock id for this database (as sqlx-postgres computes it: a
    // constant times the CRC-32 of the database name).
    let crc32 = |data: &[u8]| {
        let mut crc = 0xFFFF_FFFFu32;
        for b in data {
            crc ^= u32::from(*b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    };
    let lock_id = 0x3d32_ad9e_i64 * i64::from(crc32(t.name.as_bytes()));
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(lock_id)
        .execute(&mut *lock)
        .await
        .unwrap();
    let migrating = tokio::spawn({
        let store = store.clone();
        async move { store.migrate().await }
    });
    // Wait until the migration is seen waiting for the lock, for longer (by the server's
    // clock) than the statement timeout would allow a statement to run; then release it.
    let watch = PostgresStore::connect(&t.url).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND NOT l.granted AND a.datname = $1 \
             AND a.wait_event_type = 'Lock' \
             AND clock_timestamp() - a.query_start > interval '200 milliseconds')",
        )
        .bind(&t.name)
        .fetch_one(watch.pool())
        .await
        .unwrap();
        if waiting {
            break;
        }
        if migrating.is_finished() {
            let done = migrating.await;
            panic!("the migration did not wait for the lock: {done:?}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the migration was never seen waiting for the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!migrating.is_finished(), "the migration waits for the lock");
    sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(&mut *lock)
        .await
        .unwrap();
    migrating.await.unwrap().unwrap();
    store.ping().await.unwrap();
    let slow = sqlx::query("SELECT pg_sleep(0.5)")
        .execute(store.pool())
        .await
        .map_err(super::db)
        .unwrap_err();
    assert!(matches!(slow, StoreError::Unavailable(_)), "{slow:?}");
}

/// Invariant 4 for lockouts: wrong codes for one entity racing on two nodes (each on its
/// own verification) start the lock at exactly the policy's limit, and no check slips
/// past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_codes_on_two_nodes_lock_the_entity_at_exactly_the_limit() {
    let Some(f) = fixture().await else { return };
    let mut service = f.service.clone();
    service.settings.lockout = otpd_core::lockout::LockoutPolicy {
        max_failures: 5,
        ..Default::default()
    };
    f.store.update_service(&service, None).await.unwrap();
    let code = OtpCode::parse("123456").unwrap();
    let now = Utc::now();
    let mut ids = Vec::new();
    for i in 0..10 {
        let mut req = f.request(&format!("+1415555{:04}", 2000 + i), &code);
        req.entity = Some("user-1".into());
        match f
            .store
            .start(req, None, now, &WriteContext::system())
            .await
            .unwrap()
        {
            StartOutcome::Created(v) => ids.push(v.id),
            other => panic!("{other:?}"),
        }
    }
    let nodes = [
        Arc::new(node(&f.db.url).await),
        Arc::new(node(&f.db.url).await),
    ];
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = nodes[i % 2].clone();
            let id = ids[i % ids.len()].clone();
            let lockout = service.settings.lockout;
            tokio::spawn(async move {
                let wrong = |_: &otpd_core::verification::Verification| false;
                store
                    .check(
                        CheckTarget::Id(id),
                        &lockout,
                        &wrong,
                        now,
                        &WriteContext::system(),
                    )
                    .await
            })
        })
        .collect();
    let (mut rejected, mut locked) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(CheckOutcome::Decided { .. }) => rejected += 1,
            Err(StoreError::Locked { .. }) => locked += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((rejected, locked), (5, 15));
    let blocks = f
        .store
        .list_events(&EventFilter {
            kind: Some("verification.blocked".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let entity_locks = blocks
        .iter()
        .filter(|e| {
            e.data["reason"] == "lockout" && e.data["subject"].to_string().contains("entity")
        })
        .count();
    assert_eq!(entity_locks, 1, "{blocks:?}");
}

/// Invariant 4 for budgets: a daily limit of 1.00 holds exactly when 30 sends of 0.10
/// are charged at once on two nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_budget_charges_on_two_nodes_hold_the_limit_exactly() {
    use otpd_core::guards::budget::{BudgetGuard, Money};
    let Some(t) = testdb::fresh().await else {
        return;
    };
    let nodes = [Arc::new(node(&t.url).await), Arc::new(node(&t.url).await)];
    let guard = BudgetGuard {
        daily_limit: Some(Money::from_decimal(1.0).unwrap()),
        ..Default::default()
    };
    let cost = Money::from_decimal(0.1).unwrap();
    let now = Utc::now();
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let (store, guard) = (nodes[i % 2].clone(), guard.clone());
            tokio::spawn(async move {
                store
                    .charge_budget("svc_1", &guard, cost, now, &WriteContext::system())
                    .await
                    .unwrap()
                    .is_ok()
            })
        })
        .collect();
    let mut charged = 0;
    for task in tasks {
        charged += usize::from(task.await.unwrap());
    }
    assert_eq!(charged, 10);
}
