//! The rules of a start, written once: given what a store loaded for a send (the
//! idempotency record, the recipient's pending verification, the locks of its subjects,
//! its recent sends), decide whether it is a replay, a refusal, a new verification or a
//! resend, and what changes. Pure: every store (the SQL stores in a transaction, Redis
//! between a read and a compare-and-set) loads [`StartState`], asks [`decide_start`] and
//! applies the [`StartPlan`] — none of them decides on its own.

use chrono::{DateTime, Duration, Utc};

use crate::lockout::{Subject, retry_after_secs};
use crate::store::StoreError;

/// The idempotency record already kept for a start's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriorRequest {
    /// Whether it was made for the same request (the digests match).
    pub same_request: bool,
    /// The world of its verification (started with a test key or a live one).
    pub test: bool,
    /// Its verification.
    pub verification_id: String,
}

/// The pending verification of the recipient in the caller's world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingVerification {
    /// Its id.
    pub id: String,
    /// The application user it was started for, if any.
    pub entity: Option<String>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

/// The recipient's sends inside the send window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecentSends {
    /// How many.
    pub count: u32,
    /// The oldest one's time.
    pub oldest: Option<DateTime<Utc>>,
}

/// The per-recipient send limit: `count` sends in any sliding `window` (the service's
/// `rate_limits`; the one send limit per recipient, kept in the send's own atomic step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendLimit {
    /// Sends allowed per window.
    pub count: u32,
    /// The window.
    pub window: Duration,
}

impl SendLimit {
    /// Where the window that counts at `now` begins (sends after it count).
    pub fn window_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.window
    }

    /// Refuses a send past the limit, with the whole seconds until the oldest send in the
    /// window leaves it.
    pub fn admit(&self, recent: RecentSends, now: DateTime<Utc>) -> Result<(), StoreError> {
        if recent.count < self.count {
            return Ok(());
        }
        let frees_at = recent.oldest.unwrap_or(now) + self.window;
        Err(StoreError::RateLimited {
            retry_after_secs: retry_after_secs(frees_at, now),
        })
    }
}

/// What a store loaded for a start, in its atomic step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StartState {
    /// The idempotency record of the request's key (when it has one and one is kept).
    pub prior: Option<PriorRequest>,
    /// The recipient's pending verification in the caller's world.
    pub pending: Option<PendingVerification>,
    /// The latest lock in force at `now` among [`lock_subjects`]' subjects.
    pub locked_until: Option<DateTime<Utc>>,
    /// The recipient's sends inside the window ([`SendLimit::window_start`]).
    pub recent_sends: RecentSends,
}

/// The subjects whose locks a store loads for a send: the recipient, the application user
/// the send names, and the one the pending verification already has — a user locked out
/// by wrong codes gets no new code, whichever number it goes to.
pub fn lock_subjects(
    to: &str,
    entity: Option<&str>,
    pending: Option<&PendingVerification>,
) -> Vec<Subject> {
    Subject::of_send(to, [entity, pending.and_then(|p| p.entity.as_deref())])
}

/// What a start does to the recipient's verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendAction {
    /// A new verification, with the id the request minted (a `created` event).
    Create,
    /// A new code on the pending verification with this id (a `resent` event).
    Resend(String),
}

/// What an admitted start changes, all in its one atomic step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartPlan {
    /// A pending verification found past its expiry: it ends as expired now (an
    /// `expired` event), so that a new one starts.
    pub expire: Option<String>,
    /// Create or resend.
    pub action: SendAction,
}

/// The decision on a start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartDecision {
    /// The same idempotent request again: answer with its verification, change nothing.
    Replay(String),
    /// Go ahead: record the send (it counts towards the limit), its delivery job or test
    /// message, the idempotency record, and the plan's changes and events.
    Proceed(StartPlan),
}

/// Decides a start. The order is the contract's: an idempotent replay answers before any
/// limit (a retried request is not a new send); then a lock on a subject refuses; then the
/// send limit; then the pending verification is resent, or a new one created (a pending
/// one past its expiry ends first).
///
/// `test` is the caller's world: an idempotency record of the other world is a conflict,
/// never a replay (a key does not change worlds).
pub fn decide_start(
    state: &StartState,
    test: bool,
    limit: SendLimit,
    now: DateTime<Utc>,
) -> Result<StartDecision, StoreError> {
    if let Some(prior) = &state.prior {
        if !prior.same_request || prior.test != test {
            return Err(StoreError::IdempotencyConflict);
        }
        return Ok(StartDecision::Replay(prior.verification_id.clone()));
    }
    if let Some(until) = state.locked_until.filter(|until| *until > now) {
        return Err(StoreError::Locked {
            retry_after_secs: retry_after_secs(until, now),
        });
    }
    limit.admit(state.recent_sends, now)?;
    let plan = match &state.pending {
        Some(p) if p.expires_at <= now => StartPlan {
            expire: Some(p.id.clone()),
            action: SendAction::Create,
        },
        Some(p) => StartPlan {
            expire: None,
            action: SendAction::Resend(p.id.clone()),
        },
        None => StartPlan {
            expire: None,
            action: SendAction::Create,
        },
    };
    Ok(StartDecision::Proceed(plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    const LIMIT: SendLimit = SendLimit {
        count: 2,
        window: Duration::seconds(600),
    };

    fn pending(expires: i64) -> PendingVerification {
        PendingVerification {
            id: "ver_1".into(),
            entity: Some("u1".into()),
            expires_at: t(expires),
        }
    }

    #[test]
    fn a_fresh_recipient_gets_a_new_verification() {
        let d = decide_start(&StartState::default(), false, LIMIT, t(0)).unwrap();
        assert_eq!(
            d,
            StartDecision::Proceed(StartPlan {
                expire: None,
                action: SendAction::Create
            })
        );
    }

    #[test]
    fn a_pending_verification_is_resent_and_an_expired_one_replaced() {
        let state = StartState {
            pending: Some(pending(100)),
            ..StartState::default()
        };
        let resend = decide_start(&state, false, LIMIT, t(99)).unwrap();
        assert_eq!(
            resend,
            StartDecision::Proceed(StartPlan {
                expire: None,
                action: SendAction::Resend("ver_1".into())
            })
        );
        let replace = decide_start(&state, false, LIMIT, t(100)).unwrap();
        assert_eq!(
            replace,
            StartDecision::Proceed(StartPlan {
                expire: Some("ver_1".into()),
                action: SendAction::Create
            })
        );
    }

    #[test]
    fn a_replay_answers_before_locks_and_limits() {
        let state = StartState {
            prior: Some(PriorRequest {
                same_request: true,
                test: false,
                verification_id: "ver_9".into(),
            }),
            locked_until: Some(t(50)),
            recent_sends: RecentSends {
                count: 9,
                oldest: Some(t(0)),
            },
            ..StartState::default()
        };
        assert_eq!(
            decide_start(&state, false, LIMIT, t(1)).unwrap(),
            StartDecision::Replay("ver_9".into())
        );
        // Another request under the key, or the other world's record: a conflict.
        assert!(matches!(
            decide_start(&state, true, LIMIT, t(1)),
            Err(StoreError::IdempotencyConflict)
        ));
        let mut other = state.clone();
        other.prior.as_mut().unwrap().same_request = false;
        assert!(matches!(
            decide_start(&other, false, LIMIT, t(1)),
            Err(StoreError::IdempotencyConflict)
        ));
    }

    #[test]
    fn a_lock_refuses_before_the_limit_until_it_ends() {
        let state = StartState {
            locked_until: Some(t(30)),
            recent_sends: RecentSends {
                count: 2,
                oldest: Some(t(0)),
            },
            ..StartState::default()
        };
        assert!(matches!(
            decide_start(&state, false, LIMIT, t(10)),
            Err(StoreError::Locked {
                retry_after_secs: 20
            })
        ));
        // Once the lock is over the limit answers, with the wait for the oldest send.
        assert!(matches!(
            decide_start(&state, false, LIMIT, t(30)),
            Err(StoreError::RateLimited {
                retry_after_secs: 570
            })
        ));
    }

    #[test]
    fn the_limit_admits_below_its_count() {
        let state = StartState {
            recent_sends: RecentSends {
                count: 1,
                oldest: Some(t(0)),
            },
            ..StartState::default()
        };
        assert!(decide_start(&state, false, LIMIT, t(1)).is_ok());
        assert_eq!(LIMIT.window_start(t(600)), t(0));
    }

    #[test]
    fn the_pending_users_lock_counts_too() {
        let p = pending(100);
        assert_eq!(
            lock_subjects("+15550001", None, Some(&p)),
            vec![
                Subject::To("+15550001".into()),
                Subject::Entity("u1".into())
            ]
        );
    }
}
