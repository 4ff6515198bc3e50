//! The lockout in PostgreSQL: a failure log and a table of locks per `(service, subject)`,
//! used inside the check and send transactions of verifications and factors, so that the
//! decision, the failure and the lock are one atomic step.

use chrono::{DateTime, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::event::EventType;
use otpd_core::lockout::{LockoutPolicy, Subject, retry_after_secs};
use otpd_core::service::ServiceSettings;
use otpd_core::store::{StoreError, StoreResult};
use serde_json::json;
use sqlx::{Postgres, Transaction};

use super::{db, insert_event, lock_key, ms, time};

/// The lockout policy of a service (its default when the settings predate it).
pub(super) async fn policy(
    tx: &mut Transaction<'static, Postgres>,
    service_id: &str,
) -> StoreResult<LockoutPolicy> {
    let settings: Option<String> =
        sqlx::query_scalar("SELECT settings FROM services WHERE id = $1")
            .bind(service_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?;
    Ok(settings
        .and_then(|s| serde_json::from_str::<ServiceSettings>(&s).ok())
        .map(|s| s.lockout)
        .unwrap_or_default())
}

/// Locks `subjects` (advisory, until commit) for a check that may count a failure: checks
/// of one subject on any node then decide one after the other, so exactly the failure that
/// reaches the limit starts the lock and no check slips past it. Sends only read locks
/// (they hold the recipient's lock and then the verification row; a check holds the row
/// and then these: taking these in a send could deadlock).
pub(super) async fn lock_subjects(
    tx: &mut Transaction<'static, Postgres>,
    service_id: &str,
    subjects: &[Subject],
) -> StoreResult<()> {
    for subject in subjects {
        lock_key(tx, "lockout", &format!("{service_id}\n{}", subject.key())).await?;
    }
    Ok(())
}

/// Fails with `Locked` (retry after the latest lock end) if any of `subjects` is locked.
pub(super) async fn ensure_unlocked(
    tx: &mut Transaction<'static, Postgres>,
    service_id: &str,
    subjects: &[Subject],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    match locked_until(tx, service_id, subjects, now).await? {
        Some(until) => Err(StoreError::Locked {
            retry_after_secs: retry_after_secs(until, now),
        }),
        None => Ok(()),
    }
}

/// The latest lock in force at `now` among `subjects`.
pub(super) async fn locked_until(
    tx: &mut Transaction<'static, Postgres>,
    service_id: &str,
    subjects: &[Subject],
    now: DateTime<Utc>,
) -> StoreResult<Option<DateTime<Utc>>> {
    let mut until: Option<i64> = None;
    for subject in subjects {
        let row: Option<i64> = sqlx::query_scalar(
            "SELECT locked_until FROM lockouts WHERE service_id = $1 AND subject = $2 AND locked_until > $3",
        )
        .bind(service_id)
        .bind(subject.key())
        .bind(ms(now))
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
        until = until.max(row);
    }
    Ok(until.map(time))
}

/// Records a wrong code for each subject; a subject reaching the policy's limit is locked
/// (its failures consumed) and a `verification.blocked` event says so.
pub(super) async fn record_failures(
    tx: &mut Transaction<'static, Postgres>,
    service_id: &str,
    subjects: &[Subject],
    policy: &LockoutPolicy,
    now: DateTime<Utc>,
    ctx: &WriteContext,
) -> StoreResult<()> {
    for subject in subjects {
        let key = subject.key();
        // One wrong code at a time per subject (across nodes): the count below sees every
        // earlier failure, so the lock starts at exactly the policy's limit.
        lock_key(tx, "lockout", &format!("{service_id}\n{key}")).await?;
        sqlx::query("INSERT INTO lockout_failures (service_id, subject, at) VALUES ($1, $2, $3)")
            .bind(service_id)
            .bind(&key)
            .bind(ms(now))
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        let failures: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM lockout_failures WHERE service_id = $1 AND subject = $2 AND at > $3",
        )
        .bind(service_id)
        .bind(&key)
        .bind(ms(policy.window_start(now)))
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?;
        let Some(until) = policy.lock_after(failures.max(0) as u64, now) else {
            continue;
        };
        sqlx::query(
            "INSERT INTO lockouts (service_id, subject, locked_until) VALUES ($1, $2, $3) \
             ON CONFLICT (service_id, subject) DO UPDATE SET locked_until = excluded.locked_until",
        )
        .bind(service_id)
        .bind(&key)
        .bind(ms(until))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        clear(tx, service_id, std::slice::from_ref(subject)).await?;
        insert_event(
            tx,
            EventType::Blocked,
            None,
            Some(service_id),
            json!({
                "reason": "lockout",
                "subject": subject.display(),
                "failures": failures,
                "locked_until": until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            }),
            now,
            ctx,
        )
        .await?;
    }
    Ok(())
}

/// Forgets the failures of `subjects` (after a right code).
pub(super) async fn clear(
    tx: &mut Transaction<'static, Postgres>,
    service_id: &str,
    subjects: &[Subject],
) -> StoreResult<()> {
    for subject in subjects {
        sqlx::query("DELETE FROM lockout_failures WHERE service_id = $1 AND subject = $2")
            .bind(service_id)
            .bind(subject.key())
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// Deletes failures older than the longest window and locks that have ended.
pub(super) async fn sweep(
    tx: &mut Transaction<'static, Postgres>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let longest = chrono::Duration::seconds(i64::from(otpd_core::lockout::MAX_LOCKOUT_SECONDS));
    sqlx::query("DELETE FROM lockout_failures WHERE at < $1")
        .bind(ms(now - longest))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    sqlx::query("DELETE FROM lockouts WHERE locked_until <= $1")
        .bind(ms(now))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}
