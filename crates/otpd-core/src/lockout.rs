//! Lockout: too many wrong codes for one subject — a recipient (`to:+1415…`) or an
//! application user (`entity:user-42`) — lock that subject for a while, across every kind of
//! check (sent codes, authenticator apps, backup codes), so guessing cannot move from one
//! kind to another.
//!
//! The rules are here; each store applies them inside the same atomic step as the check
//! decision (record the failure, start the lock), and refuses checks and sends for a locked
//! subject before changing anything.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::mask::mask_recipient;

/// Longest window or lock a service may set (24 h).
pub const MAX_LOCKOUT_SECONDS: u32 = 86_400;
/// Most failures a service may allow before the lock.
pub const MAX_LOCKOUT_FAILURES: u32 = 1_000;

/// A service's lockout rule: `max_failures` wrong codes within `window_seconds` lock the
/// subject for `duration_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockoutPolicy {
    /// Wrong codes that start a lock.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// The window they are counted in, in seconds.
    #[serde(default = "default_seconds")]
    pub window_seconds: u32,
    /// How long the lock lasts, in seconds.
    #[serde(default = "default_seconds")]
    pub duration_seconds: u32,
}

fn default_max_failures() -> u32 {
    5
}
fn default_seconds() -> u32 {
    900
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            max_failures: default_max_failures(),
            window_seconds: default_seconds(),
            duration_seconds: default_seconds(),
        }
    }
}

impl LockoutPolicy {
    /// Checks the ranges.
    pub fn validate(self) -> Result<Self, DomainError> {
        let seconds = 1..=MAX_LOCKOUT_SECONDS;
        if (1..=MAX_LOCKOUT_FAILURES).contains(&self.max_failures)
            && seconds.contains(&self.window_seconds)
            && seconds.contains(&self.duration_seconds)
        {
            Ok(self)
        } else {
            Err(DomainError::InvalidRequest(format!(
                "lockout: max_failures 1-{MAX_LOCKOUT_FAILURES}, window_seconds and \
                 duration_seconds 1-{MAX_LOCKOUT_SECONDS}"
            )))
        }
    }

    /// Start of the window in which failures count at `now`.
    pub fn window_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - Duration::seconds(i64::from(self.window_seconds))
    }

    /// The end of the lock that starts now, if `failures` (counted in the window, the one
    /// just made included) reach the limit.
    pub fn lock_after(&self, failures: u64, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (failures >= u64::from(self.max_failures))
            .then(|| now + Duration::seconds(i64::from(self.duration_seconds)))
    }
}

/// Whose wrong codes are counted together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A recipient of sent codes (E.164 number or email address).
    To(String),
    /// An application user (authenticator factors, backup codes, and verifications started
    /// with `entity`).
    Entity(String),
}

impl Subject {
    /// The stored key: `to:<address>` or `entity:<id>`.
    pub fn key(&self) -> String {
        match self {
            Subject::To(to) => format!("to:{to}"),
            Subject::Entity(e) => format!("entity:{e}"),
        }
    }

    /// The form shown in events: recipients masked.
    pub fn display(&self) -> String {
        match self {
            Subject::To(to) => format!("to:{}", mask_recipient(to)),
            Subject::Entity(e) => format!("entity:{e}"),
        }
    }

    /// The subjects whose lock refuses a send (every store asks this): the recipient, and
    /// the application user the send names or the resent verification already has — a
    /// user locked out by wrong codes gets no new code, whichever number it goes to.
    pub fn of_send(to: &str, entities: [Option<&str>; 2]) -> Vec<Subject> {
        let mut subjects = vec![Subject::To(to.to_string())];
        for entity in entities.into_iter().flatten() {
            let subject = Subject::Entity(entity.to_string());
            if !subjects.contains(&subject) {
                subjects.push(subject);
            }
        }
        subjects
    }
}

/// Whole seconds until `until` (at least 1), for `Retry-After`.
pub fn retry_after_secs(until: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    let ms = (until - now).num_milliseconds().max(1) as u64;
    ms.div_ceil(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_is_refused_by_its_recipient_and_its_users_locks() {
        assert_eq!(
            Subject::of_send("+1", [Some("u"), Some("u")]),
            vec![Subject::To("+1".into()), Subject::Entity("u".into())]
        );
        assert_eq!(
            Subject::of_send("+1", [None, None]),
            vec![Subject::To("+1".into())]
        );
    }

    #[test]
    fn the_limit_th_failure_starts_the_lock() {
        let p = LockoutPolicy::default();
        let now = Utc::now();
        assert_eq!(p.lock_after(4, now), None);
        assert_eq!(p.lock_after(5, now), Some(now + Duration::seconds(900)));
        assert_eq!(p.window_start(now), now - Duration::seconds(900));
    }

    #[test]
    fn policy_ranges_are_checked_and_missing_fields_default() {
        assert!(LockoutPolicy::default().validate().is_ok());
        for bad in [
            LockoutPolicy {
                max_failures: 0,
                ..Default::default()
            },
            LockoutPolicy {
                window_seconds: 0,
                ..Default::default()
            },
            LockoutPolicy {
                duration_seconds: MAX_LOCKOUT_SECONDS + 1,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let p: LockoutPolicy = serde_json::from_str(r#"{"max_failures": 3}"#).unwrap();
        assert_eq!(p.window_seconds, 900);
        assert!(serde_json::from_str::<LockoutPolicy>(r#"{"nope": 1}"#).is_err());
    }

    #[test]
    fn subjects_have_stable_keys_and_masked_display() {
        assert_eq!(Subject::To("+14155552671".into()).key(), "to:+14155552671");
        assert_eq!(
            Subject::To("+14155552671".into()).display(),
            "to:+1******2671"
        );
        assert_eq!(Subject::Entity("user-42".into()).key(), "entity:user-42");
    }

    #[test]
    fn retry_after_rounds_up() {
        let now = Utc::now();
        assert_eq!(retry_after_secs(now + Duration::milliseconds(1), now), 1);
        assert_eq!(retry_after_secs(now + Duration::milliseconds(1001), now), 2);
        assert_eq!(retry_after_secs(now - Duration::seconds(5), now), 1);
    }
}
