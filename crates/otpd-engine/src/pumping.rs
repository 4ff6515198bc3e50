//! The SMS-pumping guard's per-process replica: one detector per service for every node.
//! Its input is a log in the store, replayed in order by each node
//! (`otpd_core::guards::pumping::shared`), so nodes decide as one and a restart decides
//! as before; the rules are the domain's.

use chrono::{DateTime, Utc};
use otpd_core::guards::pumping::shared::SharedPumping;
use otpd_core::guards::{Decision, Mode};
use otpd_core::recipient::Recipient;
use otpd_core::service::Service;
use otpd_core::store::GuardStore;

/// This process's replicas of each service's pumping log.
#[derive(Default)]
pub struct Pumping(SharedPumping);

impl Pumping {
    /// Asks the pumping guard about a send (into `decision`, under the mode; a weak
    /// suspicion is recorded as a shadow refusal).
    pub async fn check_send(
        &self,
        store: &dyn GuardStore,
        service: &Service,
        decision: &mut Decision,
        recipient: &Recipient,
        now: DateTime<Utc>,
    ) {
        let guard = &service.settings.guards.pumping;
        let Recipient::Phone(p) = recipient else {
            return;
        };
        if guard.mode == Mode::Off {
            return;
        }
        let judged = self
            .0
            .check_send(
                store,
                &service.id,
                guard,
                p.e164(),
                p.region(),
                now.timestamp(),
            )
            .await;
        if let Some(e) = judged.degraded {
            tracing::warn!(error = %e, "pumping log unreachable: judged on this node's state");
        }
        decision.add(guard.mode, judged.verdict);
        if let Some(w) = judged.watch {
            decision.add(Mode::Shadow, Err(w));
        }
    }

    /// Counts a right code (conversion is what tells users from pumps).
    pub async fn approved(
        &self,
        store: &dyn GuardStore,
        service: &Service,
        to: &str,
        now: DateTime<Utc>,
    ) {
        let guard = &service.settings.guards.pumping;
        if let Err(e) = self
            .0
            .approved(store, &service.id, guard, to, now.timestamp())
            .await
        {
            tracing::warn!(error = %e, "pumping log unreachable: approval counted on this node");
        }
    }
}
