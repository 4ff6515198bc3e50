//! Verifications and the rules of checking a code against one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::channel::Channel;

/// Where a verification is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for the right code.
    Pending,
    /// The right code was given; the code is spent.
    Approved,
    /// Canceled by the application.
    Canceled,
    /// The code's lifetime ended.
    Expired,
    /// Too many wrong codes.
    MaxAttemptsReached,
    /// No delivery succeeded.
    Failed,
}

impl Status {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Canceled => "canceled",
            Status::Expired => "expired",
            Status::MaxAttemptsReached => "max_attempts_reached",
            Status::Failed => "failed",
        }
    }

    /// Parses the storage name.
    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Pending,
            Status::Approved,
            Status::Canceled,
            Status::Expired,
            Status::MaxAttemptsReached,
            Status::Failed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// How one delivery attempt stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting in the outbox (also between retries).
    Queued,
    /// Accepted by the provider.
    Sent,
    /// The provider confirmed delivery.
    Delivered,
    /// Given up on.
    Failed,
    /// Not sent because the verification ended first.
    Skipped,
}

impl DeliveryStatus {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Skipped => "skipped",
        }
    }

    /// Parses the storage name.
    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Queued,
            DeliveryStatus::Sent,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
            DeliveryStatus::Skipped,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// Per-verification message choices that override the service's (Twilio's
/// `CustomFriendlyName` and `AppHash`); stored with the verification so that every
/// delivery, retry and resend renders the same message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageOptions {
    /// Shown as `{service}` instead of the service's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    /// Android SMS Retriever app hash line (SMS only), instead of the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_hash: Option<String>,
    /// The Twilio Messaging Service an SMS goes out through (the service's messaging
    /// configuration for the destination; `otpd_core::messaging`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_service_sid: Option<String>,
    /// A built-in template chosen for this verification (Twilio's `TemplateSid`): the
    /// built-in text of the locale, with (`true`) or without (`false`) the "don't share"
    /// sentence, instead of the service's template (SMS only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_in_warning: Option<bool>,
}

impl MessageOptions {
    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self.friendly_name.is_none()
            && self.app_hash.is_none()
            && self.messaging_service_sid.is_none()
            && self.built_in_warning.is_none()
    }
}

/// One delivery of a verification's code, as shown to API callers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// `dlv_…`; also the `message_id` handed to the provider.
    pub id: String,
    /// Channel used.
    pub channel: Channel,
    /// Provider chosen (`test` for test keys).
    pub provider: String,
    /// Outcome so far.
    pub status: DeliveryStatus,
    /// Provider attempts made.
    pub attempts: u32,
    /// Last error, for failed or retried attempts.
    pub error: Option<String>,
    /// When it was queued (Twilio's attempt `time`).
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A verification: a code sent to one recipient for one service.
#[derive(Clone, Debug, PartialEq)]
pub struct Verification {
    /// `ver_…`
    pub id: String,
    /// Owning service id.
    pub service_id: String,
    /// Owning service name.
    pub service_name: String,
    /// Normalized recipient.
    pub to: String,
    /// Channel of the latest send.
    pub channel: Channel,
    /// Stored status (see [`Verification::status_at`] for the one to show).
    pub status: Status,
    /// `HMAC(secret, id ‖ code)`.
    pub code_hash: Vec<u8>,
    /// End of life.
    pub expires_at: DateTime<Utc>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Wrong checks allowed.
    pub max_check_attempts: u32,
    /// Checks made (right or wrong).
    pub check_attempts: u32,
    /// Locale of the messages.
    pub locale: String,
    /// Caller's opaque metadata.
    pub metadata: Option<serde_json::Value>,
    /// The application user the code is for, when given: wrong codes then also count
    /// toward that entity's lockout, shared with its authenticator factors.
    pub entity: Option<String>,
    /// Started with a test key.
    pub test: bool,
    /// Deliveries in order.
    pub deliveries: Vec<Delivery>,
}

impl Verification {
    /// The status to report at `now`: a pending verification past its expiry is expired
    /// even before the sweeper has written that down.
    pub fn status_at(&self, now: DateTime<Utc>) -> Status {
        if self.status == Status::Pending && now >= self.expires_at {
            Status::Expired
        } else {
            self.status
        }
    }

    /// Whether a check at `now` would compare a code (pending, unexpired, attempts left);
    /// the lockout refuses only such checks.
    pub fn open_for_checks(&self, now: DateTime<Utc>) -> bool {
        self.status_at(now) == Status::Pending && self.check_attempts < self.max_check_attempts
    }

    /// Checks left before the verification locks.
    pub fn remaining_attempts(&self) -> u32 {
        self.max_check_attempts.saturating_sub(self.check_attempts)
    }
}

/// What a check does to a verification; the store applies it atomically.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckDecision {
    /// Right code: approve and spend it.
    Approve,
    /// Wrong code with attempts left: count the attempt.
    Reject {
        /// Attempts left after this one.
        remaining: u32,
    },
    /// Wrong code on the last allowed attempt: count it and lock.
    Exhaust,
    /// Not pending (or expired): change nothing, report this status.
    NotPending(Status),
}

/// Decides a check. Pure: the caller compares the code (in constant time) and passes `now`.
pub fn decide_check(v: &Verification, code_matches: bool, now: DateTime<Utc>) -> CheckDecision {
    match v.status_at(now) {
        Status::Pending => {}
        other => return CheckDecision::NotPending(other),
    }
    if v.check_attempts >= v.max_check_attempts {
        return CheckDecision::NotPending(Status::MaxAttemptsReached);
    }
    if code_matches {
        return CheckDecision::Approve;
    }
    let after = v.check_attempts + 1;
    if after >= v.max_check_attempts {
        CheckDecision::Exhaust
    } else {
        CheckDecision::Reject {
            remaining: v.max_check_attempts - after,
        }
    }
}

/// What happens to the lockout of a checked verification's subjects (its recipient and
/// its entity).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockoutEffect {
    /// Nothing.
    Keep,
    /// A right code: their failure counts are cleared.
    Clear,
    /// A wrong code: one failure each, and a lock for a subject that reaches the service's
    /// lockout policy.
    CountFailure,
}

/// What a decided check changes: the rules of a check, written once. Every store applies
/// them in its one atomic step (the SQL stores in a transaction, Redis in a script that
/// takes them as arguments, its journal replaying them into the durable store).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckEffects {
    /// The status after a counted attempt (compare-and-set on the status and attempt
    /// count decided on); `None` when no attempt is counted.
    pub attempt: Option<Status>,
    /// The verification ends as expired now (no attempt counted).
    pub expire: bool,
    /// The lockout change.
    pub lockout: LockoutEffect,
    /// The events of the change, in order.
    pub events: &'static [crate::event::EventType],
}

impl CheckEffects {
    /// Nothing changes (a verification already over answers with its own state).
    pub const NONE: CheckEffects = CheckEffects {
        attempt: None,
        expire: false,
        lockout: LockoutEffect::Keep,
        events: &[],
    };

    /// Whether anything changes.
    pub fn changes(&self) -> bool {
        self.attempt.is_some() || self.expire
    }

    /// The data of this change's events: the attempt count after it, or nothing for an
    /// expiry.
    pub fn event_data(&self, attempts_after: u32) -> serde_json::Value {
        if self.attempt.is_some() {
            serde_json::json!({ "check_attempts": attempts_after })
        } else {
            serde_json::json!({})
        }
    }
}

impl CheckDecision {
    /// What this decision changes on `v` (the verification it was decided on).
    pub fn effects(self, v: &Verification) -> CheckEffects {
        self.effects_from(v.status == Status::Pending)
    }

    /// What this decision changes on a verification stored as pending (`was_pending`)
    /// or not.
    fn effects_from(self, was_pending: bool) -> CheckEffects {
        use crate::event::EventType;
        match self {
            CheckDecision::Approve => CheckEffects {
                attempt: Some(Status::Approved),
                expire: false,
                lockout: LockoutEffect::Clear,
                events: &[EventType::Approved],
            },
            CheckDecision::Reject { .. } => CheckEffects {
                attempt: Some(Status::Pending),
                expire: false,
                lockout: LockoutEffect::CountFailure,
                events: &[EventType::CheckFailed],
            },
            // The attempt that exhausts the limit is a failed check, then the limit.
            CheckDecision::Exhaust => CheckEffects {
                attempt: Some(Status::MaxAttemptsReached),
                expire: false,
                lockout: LockoutEffect::CountFailure,
                events: &[EventType::CheckFailed, EventType::MaxAttemptsReached],
            },
            // A pending verification found past its expiry ends now, with its event.
            CheckDecision::NotPending(Status::Expired) if was_pending => CheckEffects {
                attempt: None,
                expire: true,
                lockout: LockoutEffect::Keep,
                events: &[EventType::Expired],
            },
            CheckDecision::NotPending(_) => CheckEffects::NONE,
        }
    }

    /// The decision's name in a journal (`approve`, `reject`, `exhaust`, `expire`), for a
    /// decision that changes something.
    pub fn journal_name(self) -> Option<&'static str> {
        match self {
            CheckDecision::Approve => Some("approve"),
            CheckDecision::Reject { .. } => Some("reject"),
            CheckDecision::Exhaust => Some("exhaust"),
            CheckDecision::NotPending(Status::Expired) => Some("expire"),
            CheckDecision::NotPending(_) => None,
        }
    }

    /// The effects of a decision named in a journal (see [`CheckDecision::journal_name`]).
    pub fn effects_of_journal_name(name: &str) -> Option<CheckEffects> {
        let decision = match name {
            "approve" => CheckDecision::Approve,
            "reject" => CheckDecision::Reject { remaining: 0 },
            "exhaust" => CheckDecision::Exhaust,
            "expire" => CheckDecision::NotPending(Status::Expired),
            _ => return None,
        };
        Some(decision.effects_from(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use chrono::Duration;

    #[test]
    fn each_decision_has_its_effects() {
        let now = Utc::now();
        let v = pending(now);
        let approve = CheckDecision::Approve.effects(&v);
        assert_eq!(approve.attempt, Some(Status::Approved));
        assert_eq!(approve.lockout, LockoutEffect::Clear);
        assert_eq!(approve.events, &[EventType::Approved]);
        let exhaust = CheckDecision::Exhaust.effects(&v);
        assert_eq!(exhaust.attempt, Some(Status::MaxAttemptsReached));
        assert_eq!(exhaust.lockout, LockoutEffect::CountFailure);
        assert_eq!(
            exhaust.events,
            &[EventType::CheckFailed, EventType::MaxAttemptsReached]
        );
        assert_eq!(exhaust.event_data(5)["check_attempts"], 5);
        let reject = CheckDecision::Reject { remaining: 2 }.effects(&v);
        assert_eq!(reject.attempt, Some(Status::Pending));
        assert_eq!(reject.events, &[EventType::CheckFailed]);
        let expire = CheckDecision::NotPending(Status::Expired).effects(&v);
        assert!(expire.expire && expire.attempt.is_none());
        assert_eq!(expire.events, &[EventType::Expired]);
        assert_eq!(expire.event_data(0), serde_json::json!({}));
        let mut over = v.clone();
        over.status = Status::Expired;
        assert!(
            !CheckDecision::NotPending(Status::Expired)
                .effects(&over)
                .changes()
        );
        assert!(
            !CheckDecision::NotPending(Status::Approved)
                .effects(&v)
                .changes()
        );
    }

    #[test]
    fn journal_names_round_trip() {
        let v = pending(Utc::now());
        for d in [
            CheckDecision::Approve,
            CheckDecision::Reject { remaining: 3 },
            CheckDecision::Exhaust,
            CheckDecision::NotPending(Status::Expired),
        ] {
            let name = d.journal_name().unwrap();
            assert_eq!(
                CheckDecision::effects_of_journal_name(name),
                Some(d.effects(&v))
            );
        }
        assert_eq!(
            CheckDecision::NotPending(Status::Canceled).journal_name(),
            None
        );
        assert_eq!(CheckDecision::effects_of_journal_name("bogus"), None);
    }

    fn pending(now: DateTime<Utc>) -> Verification {
        Verification {
            id: "ver_1".into(),
            service_id: "svc_1".into(),
            service_name: "default".into(),
            to: "+14155550123".into(),
            channel: Channel::Sms,
            status: Status::Pending,
            code_hash: vec![],
            expires_at: now + Duration::seconds(600),
            created_at: now,
            updated_at: now,
            max_check_attempts: 5,
            check_attempts: 0,
            locale: "en".into(),
            metadata: None,
            entity: None,
            test: false,
            deliveries: vec![],
        }
    }

    #[test]
    fn right_code_approves_wrong_code_counts() {
        let now = Utc::now();
        let v = pending(now);
        assert_eq!(decide_check(&v, true, now), CheckDecision::Approve);
        assert_eq!(
            decide_check(&v, false, now),
            CheckDecision::Reject { remaining: 4 }
        );
    }

    #[test]
    fn the_last_wrong_attempt_exhausts_and_later_ones_are_refused() {
        let now = Utc::now();
        let mut v = pending(now);
        v.check_attempts = 4;
        assert_eq!(decide_check(&v, false, now), CheckDecision::Exhaust);
        assert_eq!(decide_check(&v, true, now), CheckDecision::Approve);
        v.check_attempts = 5;
        assert_eq!(
            decide_check(&v, true, now),
            CheckDecision::NotPending(Status::MaxAttemptsReached)
        );
    }

    #[test]
    fn expiry_is_exact() {
        let now = Utc::now();
        let v = pending(now);
        let at_expiry = v.expires_at;
        assert_eq!(
            decide_check(&v, true, at_expiry - Duration::milliseconds(1)),
            CheckDecision::Approve
        );
        assert_eq!(
            decide_check(&v, true, at_expiry),
            CheckDecision::NotPending(Status::Expired)
        );
        assert_eq!(v.status_at(at_expiry), Status::Expired);
    }

    #[test]
    fn finished_verifications_change_no_more() {
        let now = Utc::now();
        for st in [
            Status::Approved,
            Status::Canceled,
            Status::Failed,
            Status::Expired,
        ] {
            let mut v = pending(now);
            v.status = st;
            assert_eq!(decide_check(&v, true, now), CheckDecision::NotPending(st));
        }
    }
}
