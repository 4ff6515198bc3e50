//! Checking a code: visibility before any attempt is spent, the check rate limits, the
//! store's atomic compare-and-spend with the lockout, and the outcome counted.

use chrono::{DateTime, Utc};
use otpd_core::apikey::Principal;
use otpd_core::audit::WriteContext;
use otpd_core::code::OtpCode;
use otpd_core::guards::{Action, Decision};
use otpd_core::service::Service;
use otpd_core::store::{CheckOutcome, CheckTarget, StoreError};
use otpd_core::verification::{CheckDecision, Status, Verification};
use otpd_telemetry::{CheckResult, Place};

use crate::Verifier;
use crate::client_ip::ClientIp;
use crate::error::{VerifyError, VerifyResult};
use crate::guards::{Who, store_refusal};
use crate::recipient::check_recipient;

/// Which verification a check is for.
pub enum CheckBy {
    /// By id or SID.
    Id(String),
    /// The latest for a recipient in a service the caller may use.
    To {
        /// The service (resolved and authorized by the face).
        service: Box<Service>,
        /// Recipient as given.
        to: String,
        /// ISO 3166 region for numbers written without `+`.
        country: Option<String>,
    },
}

/// A decided check: what was decided and the verification after it.
pub struct Checked {
    /// `Approve` or `Reject` (the other decisions are errors).
    pub decision: CheckDecision,
    /// The verification after the check.
    pub verification: Verification,
    /// The time the decision was made at.
    pub now: DateTime<Utc>,
}

/// What a check has learnt of where it is: its service's name and its recipient.
#[derive(Default)]
struct Seen {
    service: Option<String>,
    to: Option<String>,
}

/// What a check is on: a verification already read (by id), or what the store finds.
enum Target {
    Seen(Box<Verification>),
    Store(CheckTarget),
}

impl Verifier {
    /// Checks `code`. A wrong code with attempts left is `Ok` with `Reject`; every other
    /// non-approval is an error. Every outcome is counted.
    pub async fn check(
        &self,
        principal: &Principal,
        code: &str,
        by: CheckBy,
        ip: ClientIp,
        ctx: &WriteContext,
    ) -> VerifyResult<Checked> {
        let mut seen = Seen::default();
        let checked = self
            .decide_check(principal, code, by, ip, ctx, &mut seen)
            .await;
        let region = seen.to.as_deref().and_then(otpd_telemetry::region_of);
        let approved = checked
            .as_ref()
            .ok()
            .filter(|c| c.decision == CheckDecision::Approve)
            .map(|c| c.verification.channel);
        let place = Place {
            service: seen.service.as_deref(),
            region: region.as_deref(),
        };
        self.telemetry.check(result_of(&checked), place, approved);
        checked
    }

    /// [`Verifier::check`] without the counting; `seen` learns the service and the
    /// recipient as soon as they are known (for the count's labels).
    async fn decide_check(
        &self,
        principal: &Principal,
        code: &str,
        by: CheckBy,
        ip: ClientIp,
        ctx: &WriteContext,
        seen: &mut Seen,
    ) -> VerifyResult<Checked> {
        let code = OtpCode::parse(code)?;
        let by_id = matches!(by, CheckBy::Id(_));
        let (target, service, to) = match by {
            CheckBy::Id(id) => {
                // Visibility first: a key must not spend attempts on another service's codes.
                let v = self.read(principal, &id).await?;
                let service = self
                    .store
                    .find_service(&v.service_id)
                    .await?
                    .ok_or(VerifyError::NotFound("verification"))?;
                let to = v.to.clone();
                (Target::Seen(Box::new(v)), service, to)
            }
            CheckBy::To {
                service,
                to,
                country,
            } => {
                let to = check_recipient(&service, &to, country.as_deref())?;
                let target = Target::Store(CheckTarget::To {
                    service_id: service.id.clone(),
                    to: to.clone(),
                    test: principal.test,
                });
                (target, *service, to)
            }
        };
        seen.service = Some(service.name.clone());
        seen.to = Some(to.clone());
        let client_ip = ip.resolve(&service, ctx)?;
        let now = self.clock.now();
        let who = Who {
            service: &service,
            principal,
            to: &to,
            client_ip: client_ip.as_deref(),
            ctx,
        };
        let mut guarded = Decision::default();
        self.rate_limit(&service, &mut guarded, Action::Check, &who.subject(), now)
            .await?;
        if let Some(r) = guarded.blocked.clone() {
            self.record(&who, Action::Check, guarded, None, now).await;
            return Err(VerifyError::Refused(r));
        }
        let hasher = self.secret.hasher();
        let matcher = move |v: &Verification| hasher.matches(&v.id, &code, &v.code_hash);
        let checked = match target {
            // The verification just read: the store may decide on it (one read fewer).
            Target::Seen(v) => {
                self.store
                    .check_seen(&v, &service.settings.lockout, &matcher, now, ctx)
                    .await
            }
            Target::Store(t) => {
                self.store
                    .check(t, &service.settings.lockout, &matcher, now, ctx)
                    .await
            }
        };
        let outcome = match checked {
            Ok(o) => o,
            Err(e) => {
                if let Some(r) = store_refusal(&e) {
                    guarded.blocked = Some(r);
                    self.record(&who, Action::Check, guarded, None, now).await;
                }
                return Err(e.into());
            }
        };
        let (decision, v) = match outcome {
            CheckOutcome::NotFound => return Err(VerifyError::NotFound("verification")),
            CheckOutcome::Decided {
                decision,
                verification,
            } => (decision, verification),
        };
        ensure_visible(principal, &v)?;
        tracing::Span::current().record("verification_id", v.id.as_str());
        match decision {
            CheckDecision::Approve => {
                self.pumping
                    .approved(&*self.store, &service, &v.to, now)
                    .await;
                tracing::info!("code approved");
            }
            CheckDecision::Reject { remaining } => {
                tracing::info!(remaining, "wrong code");
            }
            CheckDecision::Exhaust => {
                tracing::info!("wrong code; attempt limit reached");
                return Err(VerifyError::MaxAttempts {
                    locked_for_secs: exhaustion_locks(&service, &v),
                });
            }
            CheckDecision::NotPending(status) => return Err(not_pending(status, by_id, &v, now)),
        }
        Ok(Checked {
            decision,
            verification: *v,
            now,
        })
    }
}

/// How a check's outcome is counted.
fn result_of(checked: &VerifyResult<Checked>) -> CheckResult {
    match checked {
        Ok(c) if c.decision == CheckDecision::Approve => CheckResult::Approved,
        Ok(_) => CheckResult::WrongCode,
        Err(e) => match e {
            VerifyError::MaxAttempts { .. } => CheckResult::MaxAttempts,
            VerifyError::NotFound(_) => CheckResult::NotFound,
            VerifyError::Expired => CheckResult::Expired,
            VerifyError::NotPending(_) => CheckResult::NotPending,
            VerifyError::Refused(_)
            | VerifyError::Store(StoreError::RateLimited { .. } | StoreError::Locked { .. }) => {
                CheckResult::RateLimited
            }
            VerifyError::Unreadable
            | VerifyError::Store(
                StoreError::Unavailable(_) | StoreError::Corrupt(_) | StoreError::Raced(_),
            ) => CheckResult::Error,
            _ => CheckResult::Invalid,
        },
    }
}

/// A verification the caller may see, else not found (the two look alike on purpose).
pub(crate) fn ensure_visible(p: &Principal, v: &Verification) -> VerifyResult<()> {
    if p.may_see(&v.service_id, v.test) {
        Ok(())
    } else {
        Err(VerifyError::NotFound("verification"))
    }
}

/// How long the wrong codes that exhausted `v` lock its recipient, when they certainly
/// do: the service's lockout locks at no more failures than the verification allows, and
/// its window spans the verification's whole life (so every one of them still counts).
/// Otherwise `None` (earlier failures may have locked it too; the caller is told so).
fn exhaustion_locks(service: &Service, v: &Verification) -> Option<u64> {
    let lockout = &service.settings.lockout;
    let lifetime = (v.expires_at - v.created_at).num_seconds();
    (lockout.max_failures <= v.max_check_attempts && i64::from(lockout.window_seconds) >= lifetime)
        .then_some(u64::from(lockout.duration_seconds))
}

/// The error for a check on a verification that is not pending.
fn not_pending(status: Status, by_id: bool, v: &Verification, now: DateTime<Utc>) -> VerifyError {
    match status {
        // The lock holds for the verification's lifetime, whichever way it is addressed.
        Status::MaxAttemptsReached if by_id || now < v.expires_at => VerifyError::MaxAttempts {
            locked_for_secs: None,
        },
        // An expired code says so, however it is addressed.
        Status::Expired => VerifyError::Expired,
        _ if !by_id => VerifyError::NotFound("pending verification for this recipient"),
        other => VerifyError::NotPending(other),
    }
}
