//! The store conformance suite: the rules every storage backend must keep, written
//! against `Arc<dyn otpd_core::store::Store>` only and run once per backend.
//!
//! Each test is a plain `pub async fn name(f: Fixture)` in a topic module
//! ([`verifications`], [`outbox`], [`limits`], [`events`], [`factors`], [`passkeys`], [`webhooks`],
//! [`operations`], [`safe_list`]) and is listed once in
//! [`conformance_tests!`]. The macro expands every listed test per backend into a module
//! named after the backend, so test names read `sqlite::concurrent_right_checks_have_exactly_one_winner`
//! (`cargo nextest run -p otpd-store -E 'test(/^postgres::/)'` runs one backend).
//!
//! # Adding a backend
//!
//! One factory and one macro line. The factory returns a fresh, migrated, empty store for
//! one test, or `support::unavailable(..)` when its server cannot be reached (the test is
//! then skipped with a message, or fails when `OTPD_REQUIRE_STORES=1`, as in `.ci/run`).
//! [`support::postgres`] makes a database per test and [`support::redis`] a key prefix per
//! test; `Backend::teardown` cleans them up whether the test passed or not (steps run in
//! the order given). The factories below, in short:
//!
//! ```ignore
//! async fn postgres() -> Option<Backend> {
//!     let db = match support::postgres::fresh_database().await {
//!         Ok(db) => db,
//!         Err(e) => return support::unavailable("postgres", e),
//!     };
//!     let store = otpd_store::PostgresStore::connect(&db.url).await.expect("connect");
//!     store.migrate().await.expect("migrate");
//!     Some(Backend::new(store).teardown(db.drop_database()))
//! }
//! conformance_tests!(postgres, postgres);
//!
//! async fn postgres_redis() -> Option<Backend> {
//!     let redis = match support::redis::fresh_prefix().await {
//!         Ok(r) => r,
//!         Err(e) => return support::unavailable("redis", e),
//!     };
//!     let (durable, db) = fresh_postgres().await?; // as `postgres` above
//!     let config = otpd_store::RedisConfig {
//!         prefix: redis.prefix.clone(),
//!         clock: otpd_store::Clock::Caller, // the tests move `now` by hand
//!         ..otpd_store::RedisConfig::new(redis.url.clone())
//!     };
//!     let hot = otpd_store::RedisHot::connect(Arc::new(durable), config).await.expect("redis");
//!     let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//!     let spooler = otpd_store::Spooler::new(hot.clone(), "conformance");
//!     tokio::spawn(spooler.run(async move { let _ = stopped.await; }));
//!     Some(
//!         Backend::new(hot)
//!             .teardown(async move { let _ = stop.send(()); })
//!             .teardown(db.drop_database())
//!             .teardown(redis.delete_keys()),
//!     )
//! }
//! conformance_tests!(postgres_redis, postgres_redis);
//! ```
//!
//! A backend that applies some changes asynchronously (Redis in front of PostgreSQL: the
//! journal [`otpd_store::Spooler`] copies sends, checks and their events into the durable
//! store a moment later) runs its background work as a node does (the spooler above),
//! and must hide the lag itself wherever a caller would see it: `RedisHot` reads of the
//! durable side (claims of deliveries and webhooks, `next_due`, events, deliveries,
//! statistics, the expiry sweep, queue sizes) first wait for the journal entries written
//! before them (a read barrier, see the Redis module's docs). The suite has no
//! "settle" hook and needs none: what a test sees is what an API client or a worker of
//! one node would see.
//!
//! A backend whose rate limits keep their own clock (Redis's `TIME` by default) runs the
//! suite with the caller's clock (`Clock::Caller`), as tests move `now` by hand; its own
//! clock is then tested in the backend's unit tests.
//!
//! # Adding a test
//!
//! Write `pub async fn my_rule(f: Fixture)` in a topic module and add `module::my_rule` to
//! the list in [`conformance_tests!`]. Tests decide with the `now` they pass to the store
//! (delivery and webhook leases too: every backend compares them with the `now` of the
//! claim), never by waiting for real time to pass. A test reads through the
//! store's public traits right after writing, with no sleeps to let a backend catch up:
//! a backend with background work hides its lag behind its own read barrier (see
//! "Adding a backend").
//!
//! Backend-specific behaviour (SQLite files, WAL, pragmas; SQL triggers) stays in the
//! backend's own unit tests.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod events;
mod factors;
mod limits;
mod operations;
mod outbox;
mod passkeys;
mod safe_list;
mod support;
mod verifications;
mod webhooks;

use support::Backend;

/// Expands every conformance test for one backend: `conformance_tests!(name, factory)`
/// makes `mod name { #[tokio::test] async fn each_test() { .. } }`, where `factory` is an
/// `async fn() -> Option<Backend>`.
macro_rules! conformance_tests {
    ($backend:ident, $factory:ident) => {
        mod $backend {
            conformance_tests!(@each $factory;
                verifications::create_check_wrong_then_right_spends_the_code,
                verifications::a_check_of_an_unknown_verification_finds_nothing,
                verifications::resend_keeps_id_code_and_expiry_and_adds_a_delivery,
                verifications::attempts_exhaust_and_lock,
                verifications::expiry_ends_the_verification_and_erases_the_sealed_code,
                verifications::a_check_after_expiry_changes_nothing,
                verifications::idempotent_start_replays_and_detects_conflicts,
                verifications::concurrent_idempotent_starts_create_once,
                verifications::cancel_ends_only_pending_verifications,
                verifications::out_of_band_approval_spends_the_code_once,
                verifications::concurrent_right_checks_have_exactly_one_winner,
                verifications::test_mode_sends_are_recorded_in_the_same_step_and_never_queued,
                verifications::test_and_live_sends_to_one_recipient_never_share_a_verification,
                verifications::deliveries_are_listed_with_filters_and_pages_and_fetched_by_id,
                verifications::the_verification_a_check_returns_is_the_stored_one,
                outbox::outbox_lease_is_exclusive_until_it_runs_out,
                outbox::a_short_lease_is_taken_over_only_after_it_ends,
                outbox::concurrent_claims_hand_each_job_to_one_worker,
                outbox::a_retry_is_due_again_at_its_time,
                outbox::message_options_travel_with_the_delivery_job,
                outbox::final_failure_without_fallback_fails_the_verification,
                outbox::fallback_channel_is_queued_after_a_final_failure,
                outbox::an_overdue_receipt_hands_the_same_code_to_the_next_provider_once,
                outbox::a_failed_receipt_ends_the_wait_at_once,
                outbox::a_receipt_is_matched_only_within_its_provider,
                outbox::a_held_ussd_delivery_is_found_by_number_and_provider_until_it_is_delivered,
                limits::send_limit_counts_sends_per_recipient,
                limits::the_pumping_log_is_one_order_for_every_node,
                limits::the_send_limit_window_slides,
                limits::concurrent_sends_stop_exactly_at_the_send_limit,
                limits::a_locked_recipient_gets_no_new_code_and_a_right_code_clears_failures,
                limits::a_locked_user_gets_no_new_code_on_any_number,
                limits::concurrent_wrong_codes_lock_exactly_once,
                limits::tokens_are_taken_all_or_none_and_come_back_on_time,
                limits::a_refused_take_charges_no_bucket,
                limits::concurrent_token_takes_stop_exactly_at_the_limit,
                limits::a_proof_of_work_challenge_is_spent_once_among_concurrent_sends,
                limits::budgets_refuse_the_send_that_would_pass_and_alert_once,
                limits::decisions_are_logged_and_blocks_raise_an_event,
                events::every_change_writes_its_event,
                events::events_of_a_check_carry_no_code,
                operations::events_carry_the_actor_of_the_request_that_caused_them,
                operations::sessions_end_at_expiry_sign_out_or_key_revocation,
                operations::stats_aggregate_the_window,
                operations::key_and_service_changes_are_seen_by_the_next_lookup,
                operations::api_request_events_are_purged_by_their_own_age,
                safe_list::numbers_are_added_once_found_and_removed,
                factors::factor_lifecycle_activate_check_replay_delete,
                factors::a_used_step_is_refused_by_the_conditional_update,
                factors::concurrent_checks_of_one_code_approve_once,
                factors::backup_codes_are_single_use_and_replaced_as_a_set,
                factors::wrong_sms_and_totp_codes_share_the_entity_lockout,
                factors::entities_factor_updates_and_challenges,
                factors::factor_events_queue_a_message_per_subscribed_factor_webhook,
                passkeys::a_passkey_ceremony_is_taken_once_before_its_deadline,
                passkeys::passkeys_are_registered_once_listed_and_deleted,
                passkeys::a_passkey_counter_never_goes_back,
                passkeys::passkey_failures_share_the_entity_lockout,
                webhooks::events_are_queued_for_the_services_with_a_webhook_url_in_the_same_step,
                webhooks::a_message_is_retried_then_dead_lettered_then_replayed_with_the_same_event,
                webhooks::replaying_a_service_requeues_only_its_dead_letters,
                webhooks::the_outbox_size_and_a_receipt_wait_are_readable,
            );
        }
    };
    (@each $factory:ident; $($module:ident :: $test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                $crate::support::run(super::$factory(), $crate::$module::$test).await;
            }
        )*
    };
}

/// SQLite: a new database file in a temporary directory per test.
async fn sqlite() -> Option<Backend> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let store = otpd_store::SqliteStore::open(&url).await.expect("open");
    store.migrate().await.expect("migrate");
    Some(Backend::new(store).keep(dir))
}
conformance_tests!(sqlite, sqlite);

/// A migrated PostgreSQL store on a database of its own (on the machine's server).
async fn fresh_postgres() -> Option<(otpd_store::PostgresStore, support::postgres::TestDatabase)> {
    let db = match support::postgres::fresh_database().await {
        Ok(db) => db,
        Err(e) => {
            support::unavailable("postgres", e);
            return None;
        }
    };
    let store = otpd_store::PostgresStore::connect(&db.url)
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    Some((store, db))
}

/// PostgreSQL: a database of its own per test, dropped after.
async fn postgres() -> Option<Backend> {
    let (store, db) = fresh_postgres().await?;
    Some(Backend::new(store).teardown(db.drop_database()))
}
conformance_tests!(postgres, postgres);

/// PostgreSQL with Redis in front for the hot path: a database and a key prefix of its
/// own per test, and the journal spooler running as on a node.
async fn postgres_redis() -> Option<Backend> {
    let redis = match support::redis::fresh_prefix().await {
        Ok(r) => r,
        Err(e) => return support::unavailable("redis", e),
    };
    let (durable, db) = fresh_postgres().await?;
    // The tests move `now` by hand; the rate limits follow it (Redis's own clock, the
    // production default, is tested in the Redis module's unit tests).
    let config = otpd_store::RedisConfig {
        prefix: redis.prefix.clone(),
        clock: otpd_store::Clock::Caller,
        ..otpd_store::RedisConfig::new(redis.url.clone())
    };
    let hot = otpd_store::RedisHot::connect(std::sync::Arc::new(durable), config)
        .await
        .expect("connect to redis");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let spooler = otpd_store::Spooler::new(hot.clone(), "conformance");
    tokio::spawn(spooler.run(async move {
        let _ = stopped.await;
    }));
    Some(
        Backend::new(hot)
            .teardown(async move {
                let _ = stop.send(());
            })
            .teardown(db.drop_database())
            .teardown(redis.delete_keys()),
    )
}
conformance_tests!(postgres_redis, postgres_redis);

/// The helpers that make per-test PostgreSQL databases and Redis prefixes work against
/// this machine's servers (or skip, or fail under `OTPD_REQUIRE_STORES=1`), ready for the
/// backends that use them.
mod helpers {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::support;

    #[tokio::test]
    async fn the_teardown_runs_even_when_the_test_fails() {
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let backend = async move {
            let teardown = async move { flag.store(true, Ordering::SeqCst) };
            super::sqlite().await.map(|b| b.teardown(teardown))
        };
        let failing = |_f| async { panic!("a deliberately failing test") };
        let outcome = tokio::spawn(support::run(backend, failing)).await;
        assert!(outcome.is_err(), "the failure is reported");
        assert!(ran.load(Ordering::SeqCst), "the teardown ran");
    }

    #[tokio::test]
    async fn a_postgres_test_database_is_created_and_dropped() {
        let db = match support::postgres::fresh_database().await {
            Ok(db) => db,
            Err(e) => {
                support::unavailable("postgres", e);
                return;
            }
        };
        assert!(db.url.contains("/otpd_t_"), "a database of its own");
        let name = db.name().to_string();
        assert!(support::postgres::database_exists(&name).await.unwrap());
        db.drop_database().await;
        assert!(
            !support::postgres::database_exists(&name).await.unwrap(),
            "dropped"
        );
    }

    #[tokio::test]
    async fn a_redis_test_prefix_is_fresh_and_its_keys_deleted() {
        let a = match support::redis::fresh_prefix().await {
            Ok(r) => r,
            Err(e) => {
                support::unavailable("redis", e);
                return;
            }
        };
        let b = support::redis::fresh_prefix()
            .await
            .expect("redis answered once");
        assert_ne!(a.prefix, b.prefix);
        let key = format!("{{{}}}k", a.prefix);
        assert_eq!(
            a.command::<String>(&["SET", &key, "1"]).await.unwrap(),
            "OK"
        );
        let other = format!("{}k", b.prefix);
        a.command::<()>(&["SET", &other, "1"]).await.unwrap();
        a.clone().delete_keys().await;
        assert_eq!(a.command::<i64>(&["EXISTS", &key]).await.unwrap(), 0);
        assert_eq!(
            a.command::<i64>(&["EXISTS", &other]).await.unwrap(),
            1,
            "another test's keys are left alone"
        );
        b.delete_keys().await;
        assert_eq!(a.command::<i64>(&["EXISTS", &other]).await.unwrap(), 0);
    }
}
