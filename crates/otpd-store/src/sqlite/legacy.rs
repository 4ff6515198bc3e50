//! The sqlx forms of helpers already moved to rusqlite, for the modules not moved yet.
//! Transitional: deleted when the last module runs on `conn`.

/// The lockout on sqlx.
pub(super) mod lockout {
    use chrono::{DateTime, Utc};
    use otpd_core::event::EventType;
    use otpd_core::lockout::{LockoutPolicy, Subject, retry_after_secs};
    use otpd_core::service::ServiceSettings;
    use otpd_core::store::{StoreError, StoreResult};
    use serde_json::json;
    use sqlx::{Sqlite, Transaction};

    use super::super::{db, insert_event, ms, time};

    /// The lockout policy of a service (its default when the settings predate it).
    pub(in crate::sqlite) async fn policy(
        tx: &mut Transaction<'static, Sqlite>,
        service_id: &str,
    ) -> StoreResult<LockoutPolicy> {
        let settings: Option<String> =
            sqlx::query_scalar("SELECT settings FROM services WHERE id = ?")
                .bind(service_id)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db)?;
        Ok(settings
            .and_then(|s| serde_json::from_str::<ServiceSettings>(&s).ok())
            .map(|s| s.lockout)
            .unwrap_or_default())
    }

    /// Fails with `Locked` (retry after the latest lock end) if any of `subjects` is locked.
    pub(in crate::sqlite) async fn ensure_unlocked(
        tx: &mut Transaction<'static, Sqlite>,
        service_id: &str,
        subjects: &[Subject],
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut until: Option<i64> = None;
        for subject in subjects {
            let row: Option<i64> = sqlx::query_scalar(
            "SELECT locked_until FROM lockouts WHERE service_id = ? AND subject = ? AND locked_until > ?",
        )
        .bind(service_id)
        .bind(subject.key())
        .bind(ms(now))
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
            until = until.max(row);
        }
        match until {
            Some(until) => Err(StoreError::Locked {
                retry_after_secs: retry_after_secs(time(until), now),
            }),
            None => Ok(()),
        }
    }

    /// Records a wrong code for each subject; a subject reaching the policy's limit is locked
    /// (its failures consumed) and a `verification.blocked` event says so.
    pub(in crate::sqlite) async fn record_failures(
        tx: &mut Transaction<'static, Sqlite>,
        service_id: &str,
        subjects: &[Subject],
        policy: &LockoutPolicy,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        for subject in subjects {
            let key = subject.key();
            sqlx::query("INSERT INTO lockout_failures (service_id, subject, at) VALUES (?, ?, ?)")
                .bind(service_id)
                .bind(&key)
                .bind(ms(now))
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            let failures: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM lockout_failures WHERE service_id = ? AND subject = ? AND at > ?",
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
                "INSERT INTO lockouts (service_id, subject, locked_until) VALUES (?, ?, ?) \
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
            )
            .await?;
        }
        Ok(())
    }

    /// Forgets the failures of `subjects` (after a right code).
    pub(in crate::sqlite) async fn clear(
        tx: &mut Transaction<'static, Sqlite>,
        service_id: &str,
        subjects: &[Subject],
    ) -> StoreResult<()> {
        for subject in subjects {
            sqlx::query("DELETE FROM lockout_failures WHERE service_id = ? AND subject = ?")
                .bind(service_id)
                .bind(subject.key())
                .execute(&mut **tx)
                .await
                .map_err(db)?;
        }
        Ok(())
    }
}
