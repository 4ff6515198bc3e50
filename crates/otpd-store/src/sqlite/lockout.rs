//! The lockout in SQLite: a failure log and a table of locks per `(service, subject)`,
//! used inside the check and send transactions of verifications and factors, so that the
//! decision, the failure and the lock are one atomic step.

use chrono::{DateTime, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::event::EventType;
use otpd_core::lockout::{LockoutPolicy, Subject, retry_after_secs};
use otpd_core::service::ServiceSettings;
use otpd_core::store::StoreError;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

use super::{SqlResult, ms, record_event, time};

/// The lockout policy of a service (its default when the settings predate it).
pub(super) fn policy(tx: &Connection, service_id: &str) -> SqlResult<LockoutPolicy> {
    let settings: Option<String> = tx
        .prepare_cached("SELECT settings FROM services WHERE id = ?")?
        .query_row([service_id], |r| r.get(0))
        .optional()?;
    Ok(settings
        .and_then(|s| serde_json::from_str::<ServiceSettings>(&s).ok())
        .map(|s| s.lockout)
        .unwrap_or_default())
}

/// Fails with `Locked` (retry after the latest lock end) if any of `subjects` is locked.
pub(super) fn ensure_unlocked(
    tx: &Connection,
    service_id: &str,
    subjects: &[Subject],
    now: DateTime<Utc>,
) -> SqlResult<()> {
    match locked_until(tx, service_id, subjects, now)? {
        Some(until) => Err(StoreError::Locked {
            retry_after_secs: retry_after_secs(until, now),
        }
        .into()),
        None => Ok(()),
    }
}

/// The latest lock in force at `now` among `subjects`.
pub(super) fn locked_until(
    tx: &Connection,
    service_id: &str,
    subjects: &[Subject],
    now: DateTime<Utc>,
) -> SqlResult<Option<DateTime<Utc>>> {
    let mut until: Option<i64> = None;
    let mut locked = tx.prepare_cached(
        "SELECT locked_until FROM lockouts WHERE service_id = ? AND subject = ? AND locked_until > ?",
    )?;
    for subject in subjects {
        let row: Option<i64> = locked
            .query_row(params![service_id, subject.key(), ms(now)], |r| r.get(0))
            .optional()?;
        until = until.max(row);
    }
    Ok(until.map(time))
}

/// Records a wrong code for each subject; a subject reaching the policy's limit is locked
/// (its failures consumed) and a `verification.blocked` event says so.
pub(super) fn record_failures(
    tx: &Connection,
    service_id: &str,
    subjects: &[Subject],
    policy: &LockoutPolicy,
    now: DateTime<Utc>,
    ctx: &WriteContext,
) -> SqlResult<()> {
    for subject in subjects {
        let key = subject.key();
        tx.prepare_cached(
            "INSERT INTO lockout_failures (service_id, subject, at) VALUES (?, ?, ?)",
        )?
        .execute(params![service_id, key, ms(now)])?;
        let failures: i64 = tx
            .prepare_cached(
                "SELECT COUNT(*) FROM lockout_failures WHERE service_id = ? AND subject = ? AND at > ?",
            )?
            .query_row(params![service_id, key, ms(policy.window_start(now))], |r| r.get(0))?;
        let Some(until) = policy.lock_after(failures.max(0) as u64, now) else {
            continue;
        };
        tx.prepare_cached(
            "INSERT INTO lockouts (service_id, subject, locked_until) VALUES (?, ?, ?) \
             ON CONFLICT (service_id, subject) DO UPDATE SET locked_until = excluded.locked_until",
        )?
        .execute(params![service_id, key, ms(until)])?;
        clear(tx, service_id, std::slice::from_ref(subject))?;
        record_event(
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
        )?;
    }
    Ok(())
}

/// Forgets the failures of `subjects` (after a right code).
pub(super) fn clear(tx: &Connection, service_id: &str, subjects: &[Subject]) -> SqlResult<()> {
    let mut forget =
        tx.prepare_cached("DELETE FROM lockout_failures WHERE service_id = ? AND subject = ?")?;
    for subject in subjects {
        forget.execute(params![service_id, subject.key()])?;
    }
    Ok(())
}

/// Deletes failures older than the longest window and locks that have ended.
pub(super) fn sweep(tx: &Connection, now: DateTime<Utc>) -> SqlResult<()> {
    let longest = chrono::Duration::seconds(i64::from(otpd_core::lockout::MAX_LOCKOUT_SECONDS));
    tx.prepare_cached("DELETE FROM lockout_failures WHERE at < ?")?
        .execute([ms(now - longest)])?;
    tx.prepare_cached("DELETE FROM lockouts WHERE locked_until <= ?")?
        .execute([ms(now)])?;
    Ok(())
}
