//! Where the domain's guards meet a request: asks each guard under its service's mode,
//! spends what it spends in the store (tokens, budget, a proof-of-work challenge), and
//! writes the decision record. The rules themselves live in `otpd_core::guards`; this
//! file gathers their inputs and their state.

use chrono::{DateTime, Utc};
use otpd_core::apikey::Principal;
use otpd_core::audit::WriteContext;
use otpd_core::channel::Channel;
use otpd_core::guards::budget::Money;
use otpd_core::guards::proof_of_work::{self, Rejection, Solution};
use otpd_core::guards::rate::{Bucket, Subject};
use otpd_core::guards::{Action, Decision, DecisionRecord, GuardName, Mode, Refusal};
use otpd_core::recipient::Recipient;
use otpd_core::service::Service;
use otpd_core::store::{Spend, StoreError};
use otpd_telemetry::Place;

use crate::Verifier;
use crate::error::VerifyResult;

/// Who a decision is about.
pub(crate) struct Who<'a> {
    /// The service.
    pub service: &'a Service,
    /// The principal.
    pub principal: &'a Principal,
    /// The normalized recipient.
    pub to: &'a str,
    /// The end user's IP.
    pub client_ip: Option<&'a str>,
    /// The request's write context (its actor, its count of events).
    pub ctx: &'a WriteContext,
}

impl Who<'_> {
    /// The rate-limit subject of this request.
    pub fn subject(&self) -> Subject<'_> {
        Subject {
            service_id: &self.service.id,
            to: Some(self.to),
            client_ip: self.client_ip,
            key_id: Some(&self.principal.key_id),
        }
    }
}

/// Asks the stateless guards (geo, number type) about a send, under their modes.
pub(crate) fn static_send_decision(
    service: &Service,
    channel: Channel,
    recipient: &Recipient,
) -> Decision {
    let mut d = Decision::default();
    let g = &service.settings.guards;
    if let Recipient::Phone(p) = recipient {
        d.add(
            g.geo.mode,
            g.geo.check(
                p.e164(),
                p.region(),
                service.settings.allowed_countries.as_deref(),
            ),
        );
        d.add(
            g.number_type.mode,
            g.number_type.check(
                p.line_type(),
                channel,
                service.settings.skip_sms_to_landlines,
            ),
        );
    }
    d
}

/// The refusal a store error stands for, when it is a guard's (send limit, lockout).
pub(crate) fn store_refusal(e: &StoreError) -> Option<Refusal> {
    match e {
        StoreError::RateLimited { retry_after_secs } => Some(Refusal {
            guard: GuardName::RateLimit,
            reason: "too many codes sent to this recipient (rate_limits.sends_per_to)".into(),
            retry_after_secs: Some(*retry_after_secs),
        }),
        StoreError::Locked { retry_after_secs } => Some(Refusal {
            guard: GuardName::Lockout,
            reason: "too many wrong codes for this recipient".into(),
            retry_after_secs: Some(*retry_after_secs),
        }),
        _ => None,
    }
}

impl Verifier {
    /// Whether a recipient is a phone number on the safe list (exempt from the fraud
    /// guards).
    pub(crate) async fn on_safe_list(&self, recipient: &Recipient) -> VerifyResult<bool> {
        match recipient {
            Recipient::Phone(p) => Ok(self.store.safe_number(p.e164()).await?.is_some()),
            _ => Ok(false),
        }
    }

    /// Takes the rate-limit tokens of a send or check (into `decision`, under the mode).
    pub(crate) async fn rate_limit(
        &self,
        service: &Service,
        decision: &mut Decision,
        action: Action,
        subject: &Subject<'_>,
        now: DateTime<Utc>,
    ) -> VerifyResult<()> {
        let guard = &service.settings.guards.rate_limits;
        let buckets = guard.buckets(action, subject);
        if buckets.is_empty() {
            return Ok(());
        }
        let verdict = self.store.take_tokens(&buckets, now).await?;
        decision.add(guard.mode, verdict);
        Ok(())
    }

    /// Takes the tokens of the keyed rate limits a start named (`otpd_core::guards::keyed`):
    /// always enforced — the application declared them and names them per request.
    pub(crate) async fn keyed_rate_limit(
        &self,
        decision: &mut Decision,
        buckets: &[Bucket],
        now: DateTime<Utc>,
    ) -> VerifyResult<()> {
        if buckets.is_empty() {
            return Ok(());
        }
        let verdict = self.store.take_tokens(buckets, now).await?;
        decision.add(Mode::Enforce, verdict);
        Ok(())
    }

    /// Asks the proof-of-work guard about a send (into `decision`, under the mode): when
    /// the service wants a solved puzzle for this send, judges the presented one and
    /// spends it. `spender` is a digest of the send's idempotency key, so its retry is not
    /// a replay.
    pub(crate) async fn proof_of_work(
        &self,
        service: &Service,
        decision: &mut Decision,
        solution: Option<&Solution>,
        spender: Option<&str>,
        now: DateTime<Utc>,
    ) -> VerifyResult<()> {
        let guard = &service.settings.guards.proof_of_work;
        if !guard.required(decision) {
            return Ok(());
        }
        let outcome = match solution {
            None => Err(Rejection::Missing),
            Some(s) => self.spend_solution(&service.id, s, spender, now).await?,
        };
        decision.add(guard.mode, outcome.map_err(Rejection::refusal));
        Ok(())
    }

    async fn spend_solution(
        &self,
        service_id: &str,
        solution: &Solution,
        spender: Option<&str>,
        now: DateTime<Utc>,
    ) -> VerifyResult<Result<(), Rejection>> {
        let Some((id, _)) = solution.parts() else {
            return Ok(Err(Rejection::Invalid));
        };
        let stored = self.store.get_challenge(id).await?;
        if let Err(r) = proof_of_work::judge(solution, stored.as_ref(), service_id, now.timestamp())
        {
            return Ok(Err(r));
        }
        Ok(match self.store.spend_challenge(id, spender, now).await? {
            Spend::Spent | Spend::Retried => Ok(()),
            Spend::AlreadySpent => Err(Rejection::Spent),
        })
    }

    /// Charges a send's price to the service's budget (into `decision`, under the mode).
    /// Returns what was charged, to give back if the send does not happen.
    pub(crate) async fn charge(
        &self,
        service: &Service,
        decision: &mut Decision,
        cost: Money,
        now: DateTime<Utc>,
        ctx: &WriteContext,
    ) -> VerifyResult<Money> {
        let guard = &service.settings.guards.budget;
        if guard.mode == Mode::Off || cost == Money(0) {
            return Ok(Money(0));
        }
        let verdict = self
            .store
            .charge_budget(&service.id, guard, cost, now, ctx)
            .await?;
        let charged = if verdict.is_err() && guard.mode == Mode::Enforce {
            Money(0)
        } else {
            cost
        };
        decision.add(guard.mode, verdict);
        Ok(charged)
    }

    /// Gives back a charge whose send did not happen (logged if that fails).
    pub(crate) async fn refund(&self, service: &Service, charged: Money, now: DateTime<Utc>) {
        if charged == Money(0) {
            return;
        }
        if let Err(e) = self.store.refund_budget(&service.id, charged, now).await {
            tracing::warn!(error = %e, "could not refund a budget charge");
        }
    }

    /// Writes the decision record of a send or check. A failure to record is logged, never
    /// turned into a refusal of an otherwise decided request.
    pub(crate) async fn record(
        &self,
        who: &Who<'_>,
        action: Action,
        decision: Decision,
        verification_id: Option<&str>,
        now: DateTime<Utc>,
    ) {
        if decision.blocked.is_some() || !decision.shadow.is_empty() {
            let region = otpd_telemetry::region_of(who.to);
            let place = Place {
                service: Some(&who.service.name),
                region: region.as_deref(),
            };
            if let Some(r) = &decision.blocked {
                self.telemetry.guard_refused(action, r.guard, false, place);
            }
            for r in &decision.shadow {
                self.telemetry.guard_refused(action, r.guard, true, place);
            }
        }
        let record = DecisionRecord {
            service_id: who.service.id.clone(),
            action,
            to: who.to.to_string(),
            client_ip: who.client_ip.map(str::to_string),
            verification_id: verification_id.map(str::to_string),
            allowed: decision.blocked.is_none(),
            blocked: decision.blocked,
            shadow: decision.shadow,
        };
        if let Err(e) = self.store.record_decision(&record, now, who.ctx).await {
            tracing::warn!(error = %e, "could not record a guard decision");
        }
    }
}
