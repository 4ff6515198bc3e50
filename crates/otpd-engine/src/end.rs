//! Reading a verification, ending one on the caller's word (cancel, or approve out of
//! band), and the messages a test key's sends recorded.

use otpd_core::apikey::Principal;
use otpd_core::audit::WriteContext;
use otpd_core::ids::Kind;
use otpd_core::store::RecordedMessage;
use otpd_core::verification::{Status, Verification};
use zeroize::Zeroizing;

use crate::Verifier;
use crate::check::ensure_visible;
use crate::error::{VerifyError, VerifyResult};

/// Accepts an id or a SID.
pub fn normalize_id(id: &str) -> String {
    Kind::Verification
        .id_of_sid(id)
        .unwrap_or_else(|| id.to_string())
}

/// A recorded test message, opened.
pub struct OpenedMessage {
    /// The message as stored (its body sealed).
    pub record: RecordedMessage,
    /// The body as it would have been sent.
    pub body: Zeroizing<String>,
}

impl Verifier {
    /// A verification the caller may see, by id or SID.
    pub async fn read(&self, principal: &Principal, id: &str) -> VerifyResult<Verification> {
        let v = self
            .store
            .get_verification(&normalize_id(id))
            .await?
            .ok_or(VerifyError::NotFound("verification"))?;
        ensure_visible(principal, &v)?;
        Ok(v)
    }

    /// The latest verification (of any status) for a normalized recipient of a service,
    /// in the caller's world (test or live).
    pub async fn latest(
        &self,
        principal: &Principal,
        service_id: &str,
        to: &str,
    ) -> VerifyResult<Option<Verification>> {
        Ok(self
            .store
            .latest_verification(service_id, to, principal.test)
            .await?)
    }

    /// Ends a pending verification on the caller's word: `Canceled`, or `Approved` out of
    /// band (Twilio's `Status=approved`; the code is spent). Not pending → `Expired` or
    /// `NotPending`.
    pub async fn end(
        &self,
        principal: &Principal,
        id: &str,
        to: Status,
        ctx: &WriteContext,
    ) -> VerifyResult<Verification> {
        self.read(principal, id).await?;
        let now = self.clock.now();
        let id = normalize_id(id);
        let v = match to {
            Status::Approved => self.store.approve(&id, now, ctx).await?,
            Status::Canceled => self.store.cancel(&id, now, ctx).await?,
            other => {
                return Err(VerifyError::invalid(format!(
                    "a verification cannot be set to {}",
                    other.as_str()
                )));
            }
        }
        .ok_or(VerifyError::NotFound("verification"))?;
        match v.status_at(now) {
            s if s == to => {
                tracing::info!(status = s.as_str(), "verification ended by the application");
                Ok(v)
            }
            Status::Expired => Err(VerifyError::Expired),
            other => Err(VerifyError::NotPending(other)),
        }
    }

    /// Messages recorded for a verification started with a test key (test keys only).
    pub async fn messages(
        &self,
        principal: &Principal,
        id: &str,
    ) -> VerifyResult<Vec<OpenedMessage>> {
        if !principal.test {
            return Err(VerifyError::Forbidden(
                "recorded messages are readable with test keys only",
            ));
        }
        let v = self.read(principal, id).await?;
        if !v.test {
            return Err(VerifyError::NotFound("test verification"));
        }
        let sealer = self.secret.sealer();
        let mut out = Vec::new();
        for record in self.store.recorded_messages(&v.id).await? {
            let body = sealer
                .open_str(&record.id, &record.sealed_body)
                .map_err(|_| VerifyError::Unreadable)?;
            out.push(OpenedMessage { record, body });
        }
        Ok(out)
    }
}
